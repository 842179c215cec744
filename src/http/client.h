#pragma once

// HTTP/1.1 client on Asio C++20 coroutines, for tests, the load generator, metrics scrapers and the
// gateway's upstream connections.
//
// Errors are Status values, never exceptions:
//   503 — could not connect ("connect to host:port: <reason>"),
//   504 — a step did not finish within its timeout (the connection is closed),
//   502 — the peer sent a malformed response or closed/reset the connection mid-exchange (a reused
//         keep-alive connection the server has closed meanwhile also ends up here; callers that
//         pool connections may retry such requests on a fresh connection),
//   500 — the calls were made out of order (a bug in the caller).
// After any error the connection is closed.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "http/message.h"

namespace infergate::http {

// One TCP connection, reused (keep-alive) for sequential requests. Not thread-safe: all calls
// must come from coroutines on `executor`, one at a time. A request's response must be read to
// the end (read_body_some returns 0) before the next request is sent.
class ClientConnection {
 public:
  static constexpr std::uint64_t kDefaultBodyLimitBytes = 256ull << 20;

  explicit ClientConnection(asio::any_io_executor executor);
  ~ClientConnection();
  ClientConnection(ClientConnection&&) noexcept;
  ClientConnection& operator=(ClientConnection&&) noexcept;

  // Resolves `host` (numeric addresses skip the resolver) and connects, closing any previous
  // connection first. The timeout covers the TCP connect.
  asio::awaitable<Status> connect(std::string host, std::uint16_t port,
                                  std::chrono::milliseconds timeout);

  // Streaming use: send a request, read the response head, then the body piece by piece as it
  // arrives (e.g. to timestamp every SSE event). Each timeout covers that one call.
  //
  // Sends Host (the connected host:port) when the request has none and Content-Length from the
  // body unless the request is chunked; `request` itself is not changed, and it need only live
  // until the call returns.
  asio::awaitable<Status> send_request(const Request& request, std::chrono::milliseconds timeout);
  // Skips interim (1xx) responses. A response that ends the connection (Connection: close) closes
  // this connection once its body is complete.
  asio::awaitable<Result<ResponseHead>> read_response_head(std::chrono::milliseconds timeout);
  // send_request then read_response_head, both within the one `timeout`.
  asio::awaitable<Result<ResponseHead>> exchange_head(const Request& request,
                                                      std::chrono::milliseconds timeout);
  // Appends the body bytes that have arrived (waiting for at least one) to `out` and returns how
  // many; returns 0 once the body is complete. Chunked coding is removed.
  asio::awaitable<Result<std::size_t>> read_body_some(std::string& out,
                                                      std::chrono::milliseconds timeout);

  // Whole-response convenience; `timeout` covers sending, the head and the whole body.
  asio::awaitable<Result<ClientResponse>> request(Request request,
                                                  std::chrono::milliseconds timeout);

  // Largest response body accepted (502 beyond it).
  void set_body_limit(std::uint64_t bytes);
  bool is_open() const;
  // Closes the socket. May also be called (from another coroutine on the same executor) while a
  // call is pending, to abort it: that call then fails, and the connection is unusable until
  // connect() again.
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One-shot: connect, request, close. `timeout` covers all of it.
asio::awaitable<Result<ClientResponse>> fetch(asio::any_io_executor executor, std::string host,
                                              std::uint16_t port, Request request,
                                              std::chrono::milliseconds timeout);

// Blocking fetch for tests and CLI tools: runs its own io_context on the calling thread. Must not
// be called from an I/O thread.
Result<ClientResponse> fetch_blocking(std::string host, std::uint16_t port, Request request,
                                      std::chrono::milliseconds timeout);

}  // namespace infergate::http
