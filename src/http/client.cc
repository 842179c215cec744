#include "http/client.h"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <optional>
#include <utility>
#include <vector>

namespace infergate::http {

namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using SteadyTime = std::chrono::steady_clock::time_point;

namespace {

constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);

// When a step must finish, and the budget to name in a timeout message.
struct Deadline {
  SteadyTime at;
  std::chrono::milliseconds budget;

  static Deadline after(std::chrono::milliseconds timeout) {
    return {std::chrono::steady_clock::now() + timeout, timeout};
  }
};

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
  explicit Impl(asio::any_io_executor executor) : stream(std::move(executor)) {}

  std::string peer() const { return fmt::format("{}:{}", host, port); }

  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser;
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
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
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
    if (!parser->get().keep_alive() || parser->need_eof()) {
      close_socket();
    }
  }

  asio::awaitable<Status> send(Request request, Deadline deadline) {
    if (!stream.socket().is_open()) {
      co_return Status(500, fmt::format("send request to {}: not connected", peer()));
    }
    if (awaiting_response) {
      co_return Status(
          500, fmt::format("send request to {}: the previous response was not read", peer()));
    }
    if (request.find(bhttp::field::host) == request.end()) {
      const bool ipv6_literal = host.find(':') != std::string::npos;
      request.set(bhttp::field::host, ipv6_literal ? fmt::format("[{}]:{}", host, port) : peer());
    }
    if (!request.chunked()) {
      request.prepare_payload();
    }
    head_request = request.method() == bhttp::verb::head;
    stream.expires_at(deadline.at);
    auto [ec, bytes] = co_await bhttp::async_write(stream, request, kAsTuple);
    if (ec) {
      close();
      co_return exchange_error("send request to", peer(), ec, deadline);
    }
    awaiting_response = true;
    parser.reset();
    co_return Status::ok();
  }

  asio::awaitable<Result<ResponseHead>> read_head(Deadline deadline) {
    if (!awaiting_response || (parser && parser->is_header_done())) {
      co_return Status(
          500, fmt::format("read response from {}: no request awaiting its response", peer()));
    }
    stream.expires_at(deadline.at);
    while (true) {
      parser.emplace();
      parser->body_limit(body_limit);
      if (head_request) {
        parser->skip(true);
      }
      auto [ec, bytes] = co_await bhttp::async_read_header(stream, buffer, *parser, kAsTuple);
      if (ec) {
        close();
        co_return exchange_error("read response from", peer(), ec, deadline);
      }
      const unsigned status = parser->get().result_int();
      if (status < 100 || status >= 200 || status == 101) {
        break;
      }
      // An interim response (e.g. 100 Continue): the final one follows.
    }
    const auto& message = parser->get();
    ResponseHead head;
    head.status = message.result_int();
    head.keep_alive = message.keep_alive();
    head.chunked = message.chunked();
    if (auto length = parser->content_length()) {
      head.content_length = *length;
    }
    head.headers.reserve(static_cast<std::size_t>(std::distance(message.begin(), message.end())));
    for (const auto& field : message) {
      head.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    if (parser->is_done()) {
      finish_response();
    }
    co_return head;
  }

  asio::awaitable<Result<std::size_t>> read_body(std::string& out, Deadline deadline) {
    if (!parser || !parser->is_header_done()) {
      co_return Status(500,
                       fmt::format("read response body from {}: no response head read", peer()));
    }
    if (parser->is_done()) {
      co_return std::size_t{0};
    }
    stream.expires_at(deadline.at);
    while (true) {
      auto [ec, bytes] = co_await bhttp::async_read_some(stream, buffer, *parser, kAsTuple);
      if (ec) {
        close();
        co_return exchange_error("read response body from", peer(), ec, deadline);
      }
      std::string& body = parser->get().body();
      const std::size_t appended = body.size();
      out.append(body);
      body.clear();  // the parser appends at the current end, so it can be emptied between reads
      if (parser->is_done()) {
        finish_response();
      }
      if (appended > 0 || parser->is_done()) {
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
  const Deadline deadline = Deadline::after(timeout);

  std::vector<tcp::endpoint> endpoints;
  error_code ec;
  const auto address = asio::ip::make_address(impl.host, ec);
  if (!ec) {
    endpoints.emplace_back(address, port);
  } else {
    tcp::resolver resolver(impl.stream.get_executor());
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

  impl.stream.expires_at(deadline.at);
  auto [connect_ec, endpoint] = co_await impl.stream.async_connect(endpoints, kAsTuple);
  if (connect_ec == beast::error::timeout) {
    impl.close();
    co_return Status(
        504, fmt::format("connect to {}: timed out after {} ms", impl.peer(), timeout.count()));
  }
  if (connect_ec) {
    impl.close();
    co_return Status(503, fmt::format("connect to {}: {}", impl.peer(), connect_ec.message()));
  }
  impl.stream.socket().set_option(tcp::no_delay(true), ec);
  co_return Status::ok();
}

asio::awaitable<Status> ClientConnection::send_request(Request request,
                                                       std::chrono::milliseconds timeout) {
  return impl_->send(std::move(request), Deadline::after(timeout));
}

asio::awaitable<Result<ResponseHead>> ClientConnection::read_response_head(
    std::chrono::milliseconds timeout) {
  return impl_->read_head(Deadline::after(timeout));
}

asio::awaitable<Result<std::size_t>> ClientConnection::read_body_some(
    std::string& out, std::chrono::milliseconds timeout) {
  return impl_->read_body(out, Deadline::after(timeout));
}

asio::awaitable<Result<ClientResponse>> ClientConnection::request(
    Request request, std::chrono::milliseconds timeout) {
  Impl& impl = *impl_;
  const Deadline deadline = Deadline::after(timeout);
  if (Status sent = co_await impl.send(std::move(request), deadline); !sent.is_ok()) {
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

bool ClientConnection::is_open() const { return impl_->stream.socket().is_open(); }

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
