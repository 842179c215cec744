// Model servers' HTTP/1.1 responses, as the client reads them off a connection: an
// http::ClientConnection over loopback to a peer that answers with the input's bytes (whole or in
// many writes), then ends its side of the stream.
// Input: one byte choosing how the bytes are cut into writes, a GET or a HEAD request, whole
// (request) or streamed (exchange_head, then read_body_some) reading, and the default or a
// 64-byte body limit; then the bytes the peer sends.
// Properties (differential): the client reads what Beast's response_parser reads from the same
// bytes given at once (heads through wire::parse_head with the client's 8 KiB limit, interim 1xx
// responses skipped): the same status, head fields in order (a chunked body's trailer fields are
// not handed on) and body, or an error (502) where the parser finds one or the bytes end inside a
// response; never a timeout, as every byte has come. After a response that keeps the connection
// open, a second request on it reads the next response from the bytes that are left, the same
// way; after one that does not, the connection is closed.

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
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "fuzz/loopback.h"
#include "http/client.h"
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
using infergate::Status;

constexpr std::size_t kHeadLimit = 8 << 10;  // the client's
constexpr std::uint64_t kSmallBodyLimit = 64;
constexpr std::chrono::seconds kTimeout{10};

// The response the client should read: its status, fields and body, or none (an error).
struct Expected {
  bool ok = false;
  unsigned status = 0;
  http::Headers headers;
  std::string body;
  bool keep_alive = false;  // the connection stays open after it
};

// Reads the next final response off the front of `bytes` (the peer's end of the stream after
// them) as the client does.
Expected next_expected(std::string_view& bytes, bool head_request, std::uint64_t body_limit) {
  while (true) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.skip(head_request);
    parser.body_limit(body_limit);
    boost::beast::flat_buffer buffer;
    buffer.commit(asio::buffer_copy(buffer.prepare(bytes.size()), asio::buffer(bytes)));
    error_code ec;
    wire::HeadProgress head_progress;
    // The head's fields, as the client hands them on before the body (a chunked body's trailer
    // fields, which the parser adds to the message, are not among them).
    http::Headers headers;
    if (wire::parse_head(parser, buffer, kHeadLimit, head_progress, ec)) {
      for (const auto& field : parser.get()) {
        headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      }
      wire::parse_buffered(
          parser, buffer, [](const auto& p) { return p.is_done(); }, ec);
    }
    if (!ec && !parser.is_done()) {
      // Every byte is there: the end of the stream follows.
      if (parser.got_some()) {
        parser.put_eof(ec);
      } else {
        ec = bhttp::error::end_of_stream;
      }
    }
    if (ec) return {};
    bytes = bytes.substr(bytes.size() - buffer.size());  // what the parser did not take
    const auto& message = parser.get();
    const unsigned status = message.result_int();
    if (status >= 100 && status < 200 && status != 101) continue;  // interim: the final follows
    return {.ok = true,
            .status = status,
            .headers = std::move(headers),
            .body = message.body(),
            .keep_alive = parser.keep_alive()};
  }
}

// What the client read.
struct Read {
  bool ok = false;
  unsigned error_status = 0;
  http::ResponseHead head;
  std::string body;
};

asio::awaitable<Read> read_whole(http::ClientConnection& connection, http::Request request) {
  Read read;
  auto response = co_await connection.request(std::move(request), kTimeout);
  if (!response.ok()) {
    read.error_status = static_cast<unsigned>(response.status().http_status());
    co_return read;
  }
  read.ok = true;
  read.head.status = response->status;
  read.head.headers = std::move(response->headers);
  read.body = std::move(response->body);
  co_return read;
}

asio::awaitable<Read> read_streamed(http::ClientConnection& connection,
                                    const http::Request& request) {
  Read read;
  auto head = co_await connection.exchange_head(request, kTimeout);
  if (!head.ok()) {
    read.error_status = static_cast<unsigned>(head.status().http_status());
    co_return read;
  }
  read.head = std::move(*head);
  while (true) {
    auto appended = co_await connection.read_body_some(read.body, kTimeout);
    if (!appended.ok()) {
      read.error_status = static_cast<unsigned>(appended.status().http_status());
      co_return read;
    }
    if (*appended == 0) break;
  }
  read.ok = true;
  co_return read;
}

// (Not a conditional expression of two co_awaits: GCC 12 miscompiles that.)
asio::awaitable<Read> read_one(http::ClientConnection& connection, const http::Request& request,
                               bool streamed) {
  if (streamed) co_return co_await read_streamed(connection, request);
  co_return co_await read_whole(connection, request);
}

void require_read(const Read& read, const Expected& expected) {
  require(read.ok || read.error_status != 504, "the client timed out with every byte there");
  require(read.ok == expected.ok, "the client's success is not the parser's");
  if (!read.ok) {
    require(read.error_status == 502, "a response the parser rejects is not a 502");
    return;
  }
  require(read.head.status == expected.status && read.head.headers == expected.headers,
          "the client reads another head than the parser");
  require(read.body == expected.body, "the client reads another body than the parser");
}

// Accepts one connection, sends `writes`, ends its sending side and reads until the client goes.
asio::awaitable<void> peer(tcp::acceptor& acceptor, std::vector<std::string_view> writes) {
  tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
  co_await infergate::fuzz::send_then_read_to_end(socket, std::move(writes));
}

// The client's side: one request, and a second when the first response keeps the connection
// open; each read as the parser reads them.
asio::awaitable<void> exchanges(std::uint16_t port, bool head_request, bool streamed,
                                std::uint64_t body_limit, const Expected& first,
                                const std::optional<Expected>& second) {
  http::ClientConnection connection(co_await asio::this_coro::executor);
  connection.set_body_limit(body_limit);
  const Status connected = co_await connection.connect("127.0.0.1", port, kTimeout);
  require(connected.is_ok(), "the client could not connect");
  const http::Request request =
      http::make_request(head_request ? bhttp::verb::head : bhttp::verb::get, "/v1/models");
  require_read(co_await read_one(connection, request, streamed), first);
  if (!first.ok) co_return;
  require(connection.is_open() == first.keep_alive,
          "the connection stays open otherwise than the response says");
  if (!second) co_return;
  require_read(co_await read_one(connection, request, streamed), *second);
}

struct Loopback {
  asio::io_context io;
  tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Loopback loopback;
  FuzzInput input(data, size);
  const std::uint8_t choice = input.take_byte();
  const bool cut = (choice & 1) != 0;
  const bool head_request = (choice & 2) != 0;
  const bool streamed = (choice & 4) != 0;
  const std::uint64_t body_limit =
      (choice & 8) != 0 ? kSmallBodyLimit : http::ClientConnection::kDefaultBodyLimitBytes;
  const std::string_view bytes = input.rest();

  std::string_view rest = bytes;
  const Expected first = next_expected(rest, head_request, body_limit);
  const std::optional<Expected> second =
      first.ok && first.keep_alive
          ? std::optional<Expected>(next_expected(rest, head_request, body_limit))
          : std::nullopt;

  int finished = 0;
  std::exception_ptr failure;
  const auto on_done = [&](std::exception_ptr e) {
    if (e) failure = e;
    ++finished;
  };
  const std::vector<std::string_view> writes =
      cut ? infergate::fuzz::pieces(bytes, choice) : std::vector<std::string_view>{bytes};
  asio::co_spawn(loopback.io, peer(loopback.acceptor, writes), on_done);
  const std::uint16_t port = loopback.acceptor.local_endpoint().port();
  asio::co_spawn(loopback.io, exchanges(port, head_request, streamed, body_limit, first, second),
                 on_done);
  loopback.io.restart();
  while (finished < 2 && !failure) loopback.io.run_one();
  if (failure) std::rethrow_exception(failure);
  return 0;
}
