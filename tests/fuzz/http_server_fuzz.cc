// Clients' HTTP/1.1 requests, as the server reads them: an http::Server over loopback, sent the
// input's bytes by a client that then ends its side of the stream, and answered by a handler that
// echoes each request it is given.
// Input: one byte choosing the server (default limits, or a 256-byte header, 8 fields and a
// 64-byte body), whether the handler answers whole or streamed, and how the bytes are cut into
// writes; then the bytes the client sends.
// Properties (differential): the server answers as Beast's request_parser says it should when
// given the same bytes at once, one request at a time, with the server's limits and head rules
// (wire::parse_head), in order: each request with 200 and its method, target, version and body
// echoed (HEAD: the header only, its Content-Length the echo's), keep-alive as the request asks;
// the connection ends after a request that does not keep it alive; a request the parser rejects
// is answered with the rejection's status (400, 413, 431) and nothing after it; bytes that end
// inside a request get no answer. Where the bytes arrive in pieces two answers may differ: an
// error in a head that never ends may be found only at the header limit (431) or not at all, and
// an interim 100 Continue may come before a body. The server's counters count what it answered.

#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "fuzz/loopback.h"
#include "http/server.h"
#include "http/wire.h"

namespace {

using infergate::fuzz::FuzzInput;
using infergate::fuzz::require;
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
namespace http = infergate::http;
namespace wire = infergate::http::wire;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// What the handler writes back for a request: its request line, then its body.
std::string echo_of(const http::Request& request) {
  std::string echo(request.method_string());
  echo.append(" ").append(request.target());
  echo.append(request.version() >= 11 ? " HTTP/1.1\n" : " HTTP/1.0\n");
  echo.append(request.body());
  return echo;
}

bool streamed_answers = false;  // the handler's way of answering, set per input

asio::awaitable<void> echo_handler(http::Request& request, http::ResponseWriter& writer) {
  const std::string echo = echo_of(request);
  if (!streamed_answers) {
    co_await writer.send(200, "text/plain", echo);
    co_return;
  }
  const std::string_view text = echo;
  co_await writer.begin_stream(200, "text/plain");
  co_await writer.write_chunk(text.substr(0, text.size() / 2));
  co_await writer.write_chunk(text.substr(text.size() / 2));
  co_await writer.end_stream();
}

http::ServerOptions options_with(std::size_t header_limit, std::size_t max_fields,
                                 std::size_t body_limit) {
  http::ServerOptions options;
  options.header_limit_bytes = header_limit;
  options.max_header_fields = max_fields;
  options.body_limit_bytes = body_limit;
  options.strand_per_connection = false;
  // The client ends its side once it has sent everything: the server must answer what came
  // before, so its watch for gone clients (which would count that client as gone) never starts.
  options.client_watch_delay = std::chrono::hours(1);
  return options;
}

// Two servers on one io_context, run by the fuzzing thread only while an input is being served.
struct Servers {
  Servers() {
    for (const http::ServerOptions& server_options : options) {
      servers.push_back(std::make_unique<http::Server>(io, server_options, echo_handler));
      servers.back()->start();
    }
  }

  const std::vector<http::ServerOptions> options = {options_with(16 << 10, 0, 4 << 20),
                                                    options_with(256, 8, 64)};
  asio::io_context io;
  std::vector<std::unique_ptr<http::Server>> servers;
};

// One answer the server should give.
struct Expected {
  unsigned status = 200;
  std::string echo;           // for 200
  bool head_request = false;  // the answer has no body
  bool keep_alive = true;     // for 200: the request keeps the connection open
  // A malformed head whose end is not in the bytes (or past the header limit): the parser finds
  // the fault at once only when it gets those bytes at once. Given them in pieces it waits for the
  // head's end, which does not come, and rejects the head only once it reaches the header limit
  // (431), so the answer may also be that, or none.
  bool head_unended = false;
};

// Parses one request off the front of `bytes` as the server does, given them at once: the head
// through wire::parse_head, then the field count, then the body. nullopt when the bytes end
// inside the request (the server closes without an answer).
std::optional<Expected> next_expected(std::string_view& bytes, const http::ServerOptions& options,
                                      bool streamed) {
  bhttp::request_parser<bhttp::string_body> parser;
  parser.body_limit(options.body_limit_bytes);
  parser.header_limit(static_cast<std::uint32_t>(options.header_limit_bytes));
  boost::beast::flat_buffer buffer;
  buffer.commit(asio::buffer_copy(buffer.prepare(bytes.size()), asio::buffer(bytes)));
  const auto take_parsed = [&] { bytes = bytes.substr(bytes.size() - buffer.size()); };
  // Whether the head's end is within the limit (the parser sees no further).
  const std::size_t head_end = bytes.find("\r\n\r\n");
  const bool head_ends =
      head_end != std::string_view::npos && head_end + 4 <= options.header_limit_bytes;
  error_code ec;
  wire::HeadProgress head_progress;
  const bool head_read =
      wire::parse_head(parser, buffer, options.header_limit_bytes, head_progress, ec);
  take_parsed();
  if (!head_read && !ec) return std::nullopt;
  if (ec && ec != bhttp::error::header_limit && !head_ends) {
    return Expected{.status = 400, .head_unended = true};
  }
  if (!ec && options.max_header_fields != 0 &&
      static_cast<std::size_t>(std::distance(parser.get().begin(), parser.get().end())) >
          options.max_header_fields) {
    return Expected{.status = 431};
  }
  if (!ec) {
    const bool body_read = wire::parse_buffered(
        parser, buffer, [](const auto& p) { return p.is_done(); }, ec);
    take_parsed();
    if (!body_read && !ec) return std::nullopt;
  }
  if (ec == bhttp::error::body_limit) return Expected{.status = 413};
  if (ec == bhttp::error::header_limit) return Expected{.status = 431};
  if (ec) return Expected{.status = 400};
  const http::Request& request = parser.get();
  // A streamed answer to an HTTP/1.0 client ends with the connection (no chunked coding).
  const bool keep_alive = parser.keep_alive() && !(streamed && request.version() < 11);
  return Expected{.echo = echo_of(request),
                  .head_request = request.method() == bhttp::verb::head,
                  .keep_alive = keep_alive};
}

std::vector<Expected> expected_answers(std::string_view bytes, const http::ServerOptions& options,
                                       bool streamed) {
  std::vector<Expected> answers;
  while (!bytes.empty()) {
    std::optional<Expected> answer = next_expected(bytes, options, streamed);
    if (!answer) break;
    answers.push_back(std::move(*answer));
    if (answers.back().status != 200 || !answers.back().keep_alive) break;
  }
  return answers;
}

// Sends `writes` as a client, and keeps what the server sends until it closes.
asio::awaitable<void> talk(std::uint16_t port, std::vector<std::string_view> writes,
                           std::string& received) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
  socket.set_option(tcp::no_delay(true));
  received = co_await infergate::fuzz::send_then_read_to_end(socket, std::move(writes));
}

// One answer read off the front of `received` (an answer to HEAD without a body).
struct Answer {
  error_code ec;
  unsigned status = 0;
  bool keep_alive = false;
  std::string content_length;  // the field's value
  std::string body;
};

Answer next_answer(std::string_view& received, bool head_request) {
  bhttp::response_parser<bhttp::string_body> parser;
  parser.skip(head_request);
  parser.body_limit(16 << 20);
  Answer answer;
  while (!answer.ec && !parser.is_done()) {
    const std::size_t used = parser.put(asio::buffer(received.data(), received.size()), answer.ec);
    received.remove_prefix(used);
    if (answer.ec == bhttp::error::need_more && used > 0 && !received.empty()) {
      answer.ec = {};
    } else if (answer.ec == bhttp::error::need_more || (!answer.ec && used == 0)) {
      answer.ec = {};
      parser.put_eof(answer.ec);  // the connection's end ends the answer, or cuts it short
      break;
    }
  }
  if (!answer.ec && parser.is_done()) {
    answer.status = parser.get().result_int();
    answer.keep_alive = parser.get().keep_alive();
    answer.content_length = parser.get()[bhttp::field::content_length];
    answer.body = parser.get().body();
  }
  return answer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Servers servers;
  FuzzInput input(data, size);
  const std::uint8_t choice = input.take_byte();
  const std::size_t server_idx = choice & 1;
  streamed_answers = (choice & 2) != 0;
  const bool cut = (choice & 4) != 0;
  const std::string_view bytes = input.rest();
  http::Server& server = *servers.servers[server_idx];
  const http::ServerOptions& options = servers.options[server_idx];

  const std::vector<Expected> expected = expected_answers(bytes, options, streamed_answers);

  const http::ServerStats& stats = server.stats();
  const std::uint64_t requests_before = stats.requests;
  const std::uint64_t errors_before =
      stats.bad_requests + stats.body_too_large + stats.headers_too_large;

  std::string received;
  bool finished = false;
  std::exception_ptr failure;
  const std::vector<std::string_view> writes =
      cut ? infergate::fuzz::pieces(bytes, choice) : std::vector<std::string_view>{bytes};
  asio::co_spawn(servers.io, talk(server.port(), writes, received), [&](std::exception_ptr e) {
    failure = e;
    finished = true;
  });
  servers.io.restart();
  while (!finished) servers.io.run_one();
  // The server's side of the connection finishes closing.
  servers.io.poll();
  require(!failure, "the client could not talk to the server");

  std::string_view rest = received;
  std::size_t answered = 0;
  std::size_t errors = 0;
  for (const Expected& want : expected) {
    if (want.head_unended && rest.empty()) break;
    Answer answer = next_answer(rest, want.head_request);
    // An interim answer to Expect: 100-continue, sent when the body had not arrived yet.
    while (!answer.ec && answer.status == 100 && want.status != 100) {
      answer = next_answer(rest, want.head_request);
    }
    require(!answer.ec, "the server's answer is not a whole HTTP response");
    require(answer.status == want.status || (want.head_unended && answer.status == 431),
            "the server answers with another status");
    if (want.status != 200) {
      require(!answer.keep_alive, "an error answer keeps the connection open");
      ++errors;
      continue;
    }
    ++answered;
    require(answer.keep_alive == want.keep_alive, "the answer's keep-alive is not the request's");
    if (!want.head_request) {
      require(answer.body == want.echo, "the handler was given another request");
    } else if (!streamed_answers) {
      require(answer.content_length == std::to_string(want.echo.size()),
              "a HEAD answer's Content-Length is not the body's");
    }
  }
  // What may follow: a 100 Continue to a request whose body did not come.
  while (!rest.empty()) {
    const Answer interim = next_answer(rest, false);
    require(!interim.ec && interim.status == 100, "the server sends more than the answers it owes");
  }
  require(stats.requests - requests_before == answered,
          "the server counts other requests than it handled");
  require(
      stats.bad_requests + stats.body_too_large + stats.headers_too_large - errors_before == errors,
      "the server counts other errors than it answered");
  return 0;
}
