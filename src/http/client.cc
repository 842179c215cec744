#include "http/client.h"

#include <fmt/format.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/write.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "common/text.h"
#include "http/response_parser.h"
#include "http/wire.h"

namespace infergate::http {

namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using SteadyTime = std::chrono::steady_clock::time_point;
using detail::ResponseParser;

namespace {

// Deferred operations are awaited in place (no coroutine frame per operation, as use_awaitable
// makes); as_tuple: errors are values.
constexpr auto kAsTuple = asio::as_tuple(asio::deferred);
// Room for reading a response: Beast reads as much as the buffer has free (at least 512 bytes),
// so a head and a small body usually arrive in one read.
constexpr std::size_t kReadBufferBytes = 16 << 10;
constexpr std::size_t kMaxReadBytes = 64 << 10;  // one read's limit, as Beast's
// Largest response head (Beast's parser's default, set on every parser and given to
// wire::parse_head, so that both bound the same head).
constexpr std::uint32_t kMaxResponseHeadBytes = 8 << 10;

// When a step must finish, and the budget to name in a timeout message. A step that needs no
// wait (the bytes are buffered already, or the socket takes a write at once) needs no deadline:
// `lazy` ones read the clock only when a wait begins, `after` ones fix it now (one deadline
// shared by several steps).
struct Deadline {
  std::optional<SteadyTime> at;
  std::chrono::milliseconds budget;

  static Deadline after(std::chrono::milliseconds timeout) {
    return {std::chrono::steady_clock::now() + timeout, timeout};
  }
  static Deadline lazy(std::chrono::milliseconds timeout) { return {std::nullopt, timeout}; }
  // The deadline, fixed by the first wait of a lazy one.
  SteadyTime resolve() {
    if (!at) at = std::chrono::steady_clock::now() + budget;
    return *at;
  }
};

// Whether the request must go through Beast's serializer: a chunked body is encoded by it, and
// TRACE is rejected by its framing rules.
bool needs_beast_serializer(const Request& request) {
  return request.chunked() || request.method() == bhttp::verb::trace;
}

bool is_http_error(const error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category();
}

Status exchange_error(std::string_view action, std::string_view peer, const error_code& ec,
                      const Deadline& deadline) {
  if (ec == beast::error::timeout) {
    return Status(
        504, fmt::format("{} {}: timed out after {} ms", action, peer, deadline.budget.count()));
  }
  if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
      ec == asio::error::eof) {
    return Status(502, fmt::format("{} {}: connection closed by peer", action, peer));
  }
  if (ec == bhttp::error::body_limit) {
    return Status(502, fmt::format("{} {}: response body too large", action, peer));
  }
  if (is_http_error(ec)) {
    return Status(502, fmt::format("{} {}: malformed response: {}", action, peer, ec.message()));
  }
  return Status(502, fmt::format("{} {}: {}", action, peer, ec.message()));
}

}  // namespace

struct ClientConnection::Impl {
  // A passed deadline closes the socket, failing the operation in progress.
  explicit Impl(asio::any_io_executor executor)
      : socket(executor), deadline(executor, [this] { close_socket_only(); }) {
    buffer.reserve(kReadBufferBytes);
  }

  std::string peer() const { return fmt::format("{}:{}", host, port); }

  // The error an operation ended with: a timeout when the deadline closed the socket.
  error_code finished(error_code ec) {
    if (ec && deadline.expired()) ec = beast::error::timeout;
    deadline.clear();
    return ec;
  }

  tcp::socket socket;
  wire::Deadline deadline;
  beast::flat_buffer buffer;
  std::string head_buffer;  // the request head being sent, reused
  std::optional<ResponseParser> parser;
  std::uint64_t body_limit = kDefaultBodyLimitBytes;
  std::string host;
  std::uint16_t port = 0;
  bool head_request = false;  // the response to HEAD has no body whatever its header says
  bool awaiting_response = false;

  void close_socket() {
    close_socket_only();
    buffer.clear();
  }

  void close_socket_only() {
    deadline.cancel();
    error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
  }

  // After an operation failed, or before a new connect: nothing is in progress.
  void close() {
    close_socket();
    parser.reset();
    awaiting_response = false;
  }

  // Called once the whole response has been read. The parser stays, so that further body reads
  // keep reporting the end of the body.
  void finish_response() {
    awaiting_response = false;
    deadline.cancel();            // an idle connection leaves no timer behind
    if (!parser->keep_alive()) {  // Connection: close, or a body that ends with the connection
      close_socket();
    }
  }

  // The request's head with Host (when absent) and Content-Length (unless the method needs none
  // for an empty body) set as Beast's prepare_payload would, written into `head_buffer`.
  void write_head(const Request& request) {
    wire::HeadWriter head(head_buffer);
    head << request.method_string() << ' ' << request.target() << ' ';
    head.version(request.version()) << "\r\n";
    bool has_host = false;
    for (const auto& field : request) {
      const bhttp::field name = field.name();
      if (name == bhttp::field::content_length) continue;
      if (name == bhttp::field::host) has_host = true;
      head.field(field.name_string(), field.value());
    }
    if (!has_host) {
      head << "Host: ";
      if (host.find(':') != std::string::npos) {
        head << '[' << host << ']';
      } else {
        head << host;
      }
      head << ':';
      head.decimal(port) << "\r\n";
    }
    const std::size_t body_size = request.body().size();
    const bhttp::verb method = request.method();
    if (body_size > 0 || method == bhttp::verb::post || method == bhttp::verb::put ||
        method == bhttp::verb::options) {
      head << "Content-Length: ";
      head.decimal(body_size) << "\r\n";
    }
    head << "\r\n";
    head.finish();
  }

  asio::awaitable<Status> send(const Request& request, Deadline timeout) {
    if (!socket.is_open()) {
      co_return Status(500, fmt::format("send request to {}: not connected", peer()));
    }
    if (awaiting_response) {
      co_return Status(
          500, fmt::format("send request to {}: the previous response was not read", peer()));
    }
    head_request = request.method() == bhttp::verb::head;
    error_code ec;
    if (needs_beast_serializer(request)) {
      deadline.expires_at(timeout.resolve());
      Request copy = request;
      if (copy.find(bhttp::field::host) == copy.end()) {
        const bool ipv6_literal = host.find(':') != std::string::npos;
        copy.set(bhttp::field::host, ipv6_literal ? fmt::format("[{}]:{}", host, port) : peer());
      }
      if (!copy.chunked()) {
        copy.prepare_payload();
      }
      auto [write_ec, bytes] = co_await bhttp::async_write(socket, copy, kAsTuple);
      ec = write_ec;
    } else {
      write_head(request);
      const std::array<asio::const_buffer, 2> buffers{asio::buffer(head_buffer),
                                                      asio::buffer(request.body())};
      const std::size_t written = wire::write_now(socket, buffers, ec);
      if (!ec && written < asio::buffer_size(buffers)) {
        beast::buffers_suffix<std::array<asio::const_buffer, 2>> rest(buffers);
        rest.consume(written);
        deadline.expires_at(timeout.resolve());
        auto [write_ec, bytes] = co_await asio::async_write(socket, rest, kAsTuple);
        ec = write_ec;
      } else if (!ec) {
        co_await wire::yield(socket.get_executor());
      }
    }
    ec = finished(ec);
    if (ec) {
      close();
      co_return exchange_error("send request to", peer(), ec, timeout);
    }
    awaiting_response = true;
    parser.reset();
    co_return Status::ok();
  }

  asio::awaitable<Result<ResponseHead>> read_head(Deadline timeout) {
    if (!awaiting_response || (parser && parser->is_header_done())) {
      co_return Status(
          500, fmt::format("read response from {}: no request awaiting its response", peer()));
    }
    while (true) {
      parser.emplace();
      parser->body_limit(body_limit);
      parser->header_limit(kMaxResponseHeadBytes);
      if (head_request) {
        parser->skip(true);
      }
      // Beast's read rules (an end of stream before any byte, a partial head at EOF), read
      // straight from the socket rather than through Beast's composed operation.
      error_code ec;
      wire::HeadProgress head_progress;
      while (!wire::parse_head(*parser, buffer, kMaxResponseHeadBytes, head_progress, ec) && !ec) {
        deadline.expires_at(timeout.resolve());
        auto [read_ec, bytes] = co_await socket.async_read_some(
            buffer.prepare(beast::read_size(buffer, kMaxReadBytes)), kAsTuple);
        if (read_ec == asio::error::eof) {
          if (parser->got_some()) {
            parser->put_eof(ec);  // a partial head
          } else {
            ec = bhttp::error::end_of_stream;
          }
          break;
        }
        if (read_ec) {
          ec = finished(read_ec);
          break;
        }
        buffer.commit(bytes);
      }
      if (ec) {
        close();
        co_return exchange_error("read response from", peer(), ec, timeout);
      }
      const unsigned status = parser->head().status;
      if (status < 100 || status >= 200 || status == 101) {
        break;
      }
      // An interim response (e.g. 100 Continue): the final one follows.
    }
    deadline.clear();
    ResponseHead& head = parser->head();
    // The parser's flags tell without parsing Connection again, except for a body that ends with
    // the connection (the parser then always says no; the header may say otherwise).
    head.keep_alive = parser->need_eof() ? parser->header_keep_alive() : parser->keep_alive();
    if (auto length = parser->content_length()) {
      head.content_length = *length;
    }
    ResponseHead result = std::move(head);
    if (parser->is_done()) {
      finish_response();
    }
    co_return result;
  }

  asio::awaitable<Result<std::size_t>> read_body(std::string& out, Deadline timeout) {
    if (!parser || !parser->is_header_done()) {
      co_return Status(500,
                       fmt::format("read response body from {}: no response head read", peer()));
    }
    if (parser->is_done()) {
      co_return std::size_t{0};
    }
    while (true) {
      // Bytes already buffered (often the whole body, read with the head) are parsed without I/O.
      error_code ec;
      bool parsed = false;
      if (buffer.size() > 0) {
        const std::size_t used = parser->put(buffer.data(), ec);
        buffer.consume(used);
        if (ec == bhttp::error::need_more) ec = {};
        parsed = used > 0;
      }
      if (!ec && !parsed) {
        deadline.expires_at(timeout.resolve());
        auto [read_ec, bytes] = co_await socket.async_read_some(
            buffer.prepare(beast::read_size(buffer, kMaxReadBytes)), kAsTuple);
        if (read_ec == asio::error::eof) {
          parser->put_eof(ec);  // the end of a body that ends with the connection, or too soon
        } else if (read_ec) {
          ec = finished(read_ec);
        } else {
          buffer.commit(bytes);
          continue;
        }
      }
      if (ec) {
        close();
        co_return exchange_error("read response body from", peer(), ec, timeout);
      }
      std::string& body = parser->body();
      const std::size_t appended = body.size();
      if (out.empty()) {
        out.swap(body);  // the common case: no copy
      } else {
        out.append(body);
      }
      body.clear();  // the parser appends at the current end, so it can be emptied between reads
      if (parser->is_done()) {
        finish_response();
      }
      if (appended > 0 || parser->is_done()) {
        deadline.clear();
        co_return appended;
      }
    }
  }
};

ClientConnection::ClientConnection(asio::any_io_executor executor)
    : impl_(std::make_unique<Impl>(std::move(executor))) {}
ClientConnection::~ClientConnection() = default;
ClientConnection::ClientConnection(ClientConnection&&) noexcept = default;
ClientConnection& ClientConnection::operator=(ClientConnection&&) noexcept = default;

asio::awaitable<Status> ClientConnection::connect(std::string host, std::uint16_t port,
                                                  std::chrono::milliseconds timeout) {
  Impl& impl = *impl_;
  impl.close();
  impl.host = std::move(host);
  impl.port = port;
  Deadline deadline = Deadline::after(timeout);

  std::vector<tcp::endpoint> endpoints;
  error_code ec;
  const auto address = asio::ip::make_address(impl.host, ec);
  if (!ec) {
    endpoints.emplace_back(address, port);
  } else {
    tcp::resolver resolver(impl.socket.get_executor());
    auto [resolve_ec, results] =
        co_await resolver.async_resolve(impl.host, std::to_string(port), kAsTuple);
    if (resolve_ec) {
      co_return Status(503, fmt::format("connect to {}: cannot resolve host: {}", impl.peer(),
                                        resolve_ec.message()));
    }
    for (const auto& entry : results) {
      endpoints.push_back(entry.endpoint());
    }
  }

  impl.deadline.expires_at(deadline.resolve());
  auto [ec_connect, endpoint] = co_await asio::async_connect(impl.socket, endpoints, kAsTuple);
  const error_code connect_ec = impl.finished(ec_connect);
  if (connect_ec == beast::error::timeout) {
    impl.close();
    co_return Status(
        504, fmt::format("connect to {}: timed out after {} ms", impl.peer(), timeout.count()));
  }
  if (connect_ec) {
    impl.close();
    co_return Status(503, fmt::format("connect to {}: {}", impl.peer(), connect_ec.message()));
  }
  impl.socket.set_option(tcp::no_delay(true), ec);
  impl.socket.non_blocking(true, ec);  // requests are written synchronously as far as they go
  co_return Status::ok();
}

asio::awaitable<Status> ClientConnection::send_request(const Request& request,
                                                       std::chrono::milliseconds timeout) {
  return impl_->send(request, Deadline::lazy(timeout));
}

asio::awaitable<Result<ResponseHead>> ClientConnection::read_response_head(
    std::chrono::milliseconds timeout) {
  return impl_->read_head(Deadline::lazy(timeout));
}

asio::awaitable<Result<ResponseHead>> ClientConnection::exchange_head(
    const Request& request, std::chrono::milliseconds timeout) {
  Impl& impl = *impl_;
  const Deadline deadline = Deadline::after(timeout);
  if (Status sent = co_await impl.send(request, deadline); !sent.is_ok()) {
    co_return sent;
  }
  co_return co_await impl.read_head(deadline);
}

asio::awaitable<Result<std::size_t>> ClientConnection::read_body_some(
    std::string& out, std::chrono::milliseconds timeout) {
  return impl_->read_body(out, Deadline::lazy(timeout));
}

asio::awaitable<Result<ClientResponse>> ClientConnection::request(
    Request request, std::chrono::milliseconds timeout) {
  Impl& impl = *impl_;
  const Deadline deadline = Deadline::after(timeout);
  if (Status sent = co_await impl.send(request, deadline); !sent.is_ok()) {
    co_return sent;
  }
  Result<ResponseHead> head = co_await impl.read_head(deadline);
  if (!head.ok()) {
    co_return head.status();
  }
  ClientResponse response{head->status, std::move(head->headers), {}};
  while (true) {
    Result<std::size_t> appended = co_await impl.read_body(response.body, deadline);
    if (!appended.ok()) {
      co_return appended.status();
    }
    if (*appended == 0) {
      break;
    }
  }
  co_return response;
}

void ClientConnection::set_body_limit(std::uint64_t bytes) { impl_->body_limit = bytes; }

bool ClientConnection::is_open() const { return impl_->socket.is_open(); }

void ClientConnection::close() {
  // Only the socket: an operation in progress still uses the buffer and the parser until its
  // completion runs, which may already be queued with data read before the close (it then parses
  // that data, or fails with operation_aborted). The next connect() resets the rest.
  impl_->close_socket_only();
}

asio::awaitable<Result<ClientResponse>> fetch(asio::any_io_executor executor, std::string host,
                                              std::uint16_t port, Request request,
                                              std::chrono::milliseconds timeout) {
  const SteadyTime start = std::chrono::steady_clock::now();
  ClientConnection connection(std::move(executor));
  if (Status connected = co_await connection.connect(std::move(host), port, timeout);
      !connected.is_ok()) {
    co_return connected;
  }
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  const auto remaining = std::max(timeout - elapsed, std::chrono::milliseconds(0));
  Result<ClientResponse> response = co_await connection.request(std::move(request), remaining);
  connection.close();
  co_return response;
}

Result<ClientResponse> fetch_blocking(std::string host, std::uint16_t port, Request request,
                                      std::chrono::milliseconds timeout) {
  asio::io_context io;
  std::optional<Result<ClientResponse>> result;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        result =
            co_await fetch(io.get_executor(), std::move(host), port, std::move(request), timeout);
      },
      asio::detached);
  io.run();
  if (!result) {
    return Status::internal("fetch_blocking: the request did not complete");
  }
  return std::move(*result);
}

}  // namespace infergate::http
