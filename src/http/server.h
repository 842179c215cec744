#pragma once

// HTTP/1.1 server on Asio C++20 coroutines: keep-alive, pipelining (processed in order), bounded
// request reads, streaming (chunked) responses and prompt detection of clients that go away.
//
// Threading: every accepted connection gets its own strand on the io_context that accepted it, and
// the connection's coroutine, its handler and the handler's on_client_gone callback all run on that
// strand. Running the io_context on several threads is therefore safe; a handler that shares state
// with other connections must synchronise that state itself. (With
// ServerOptions::strand_per_connection off, "strand" below means the io_context's one thread.)
//
// One io_context per core: a Server may listen from several io_contexts at once, one acceptor
// each, all bound to the same port with SO_REUSEPORT. The kernel spreads new connections over the
// acceptors, and a connection stays on the io_context whose acceptor took it, so with one thread
// per io_context a connection and its handler never change threads.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"

namespace boost::asio {
class io_context;
}

namespace infergate::http {

struct ServerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0 = ephemeral (tests); Server::port() tells the bound one
  std::size_t body_limit_bytes = 4 << 20;     // a larger request body is answered with 413
  std::size_t header_limit_bytes = 16 << 10;  // a larger request header is answered with 431
  std::size_t max_header_fields = 0;  // more header fields are answered with 431 (0: no limit)
  // Time allowed to receive one request's header and body once its first byte has arrived (and,
  // on a new connection, for that first byte). A partial request past it is answered with 408.
  std::chrono::milliseconds read_timeout{30000};
  // Time a keep-alive connection may sit between requests before the server closes it.
  std::chrono::milliseconds idle_timeout{60000};
  // Time allowed for each response write; a client that stops reading is treated as gone.
  std::chrono::milliseconds write_timeout{30000};
  // How long a handler runs before the server starts watching its client for a disconnect (0:
  // from the start). Most requests are answered sooner, and a request not watched costs no
  // system call (arming the watch costs one); a longer one is noticed this much later at worst.
  std::chrono::milliseconds client_watch_delay{50};
  std::string server_name = "infergate";  // value of the Server header
  // Each connection on its own strand, so that an io_context may be run by several threads. Off
  // (only when every io_context the server listens from is run by exactly one thread): connections
  // use the io_context's executor directly, which saves a strand dispatch per completion.
  bool strand_per_connection = true;
};

// Counters, updated by connection strands and read from any thread.
struct ServerStats {
  std::atomic<std::uint64_t> connections_accepted{0};
  std::atomic<std::uint64_t> requests{0};            // complete requests handed to the handler
  std::atomic<std::uint64_t> bad_requests{0};        // malformed requests answered with 400
  std::atomic<std::uint64_t> body_too_large{0};      // 413
  std::atomic<std::uint64_t> headers_too_large{0};   // 431
  std::atomic<std::uint64_t> read_timeouts{0};       // partial requests answered with 408
  std::atomic<std::uint64_t> client_disconnects{0};  // clients gone while their handler ran
  std::atomic<std::uint64_t> handler_errors{0};      // handler threw or returned without responding
};

namespace detail {
class Connection;
struct Listener;
struct ServerState;
}  // namespace detail

// The handler's way to answer one request. It is created by the server, passed to the handler by
// reference and valid until the handler's coroutine returns; all calls must come from that
// coroutine (the connection's strand). A handler answers exactly once: either send(), or
// begin_stream() + write_chunk()* + end_stream(). Calls out of that order return false.
//
// If the handler returns without answering, the server sends 500. If it returns with a stream
// still open, the stream is treated as aborted: the connection is closed without the terminating
// chunk so that the client sees a truncated response rather than a complete one.
class ResponseWriter {
 public:
  ResponseWriter(const ResponseWriter&) = delete;
  ResponseWriter& operator=(const ResponseWriter&) = delete;

  // Response header fields: Server, Content-Type (when not empty), then `extra_headers` in order.
  // An extra `Connection: close` makes the server close the connection after the response. The
  // server frames the body itself: Content-Length and Transfer-Encoding among `extra_headers` are
  // left out. For a HEAD request only the header is written (Content-Length still gives the
  // body's size).
  // (GCC 12 fails to compile a braced list passed as `extra_headers` inside a coroutine; pass a
  // named Headers variable instead.)

  // Writes a whole response with Content-Length (no body for 1xx, 204 and 304).
  asio::awaitable<bool> send(unsigned status, std::string_view content_type, std::string body,
                             Headers extra_headers = {});
  // Writes the response header of a chunked response (for an HTTP/1.0 client: a response
  // delimited by closing the connection).
  asio::awaitable<bool> begin_stream(unsigned status, std::string_view content_type,
                                     Headers extra_headers = {});
  // Writes `data` as one chunk and returns once it is handed to the kernel (no buffering, Nagle
  // is off). Empty data writes nothing and returns true.
  asio::awaitable<bool> write_chunk(std::string_view data);
  // Writes the terminating chunk.
  asio::awaitable<bool> end_stream();

  // All of the above return false once the client is gone (write error, write timeout, or the
  // peer closed or reset the connection); the handler should then stop working on the request.
  bool client_gone() const;

  // Registers `callback`, fired at most once, on the connection's strand and never after the
  // handler has returned, when the peer closes or resets the connection while the handler runs.
  // The server watches the socket for that once the handler has run for
  // ServerOptions::client_watch_delay, so a client that leaves while its request waits in a
  // queue is noticed even though nothing is being written. Registering
  // after the client is already gone fires the callback promptly. A later registration replaces
  // an earlier one. A client that half-closes (shuts down its sending side) counts as gone.
  void on_client_gone(std::function<void()> callback);

 private:
  friend class detail::Connection;
  explicit ResponseWriter(detail::Connection* connection) : connection_(connection) {}

  detail::Connection* connection_;
};

// Answers one request. Runs on the connection's strand; exceptions it throws are caught, logged
// and answered with 500 (if nothing was sent yet), and the connection is closed.
using Handler = std::function<asio::awaitable<void>(Request&, ResponseWriter&)>;

// Listens on one address and serves every connection with one handler.
//
// Protocol errors are answered with an OpenAI-style JSON error body and the connection is closed:
// malformed request 400, body over the limit 413, header over the limit 431, request not received
// within read_timeout 408.
class Server {
 public:
  // Binds and listens; throws std::runtime_error naming the address on failure (start-up only).
  // `io` must outlive the Server. Connections hold the server's shared state, so they may finish
  // after the Server object is gone, as long as `io` keeps running.
  Server(asio::io_context& io, ServerOptions options, Handler handler);
  // Listens from every io_context in `io_contexts` (see the threading note above); with one
  // io_context this is the constructor above. With several, the port (options.port, or the one
  // the kernel picks for 0) is first checked with a plain bind, so that a port another process
  // listens on fails with "address already in use" instead of being shared through SO_REUSEPORT.
  // Every io_context must outlive the Server; the stats and stop() cover all of them.
  Server(const std::vector<asio::io_context*>& io_contexts, ServerOptions options, Handler handler);
  // Calls stop().
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::uint16_t port() const;  // the bound port
  // Begins accepting on the io_context(s). Call once.
  void start();
  // Stops accepting and closes idle keep-alive connections. Requests being read or handled run to
  // completion (their responses carry Connection: close), then their connections close. Safe from
  // any thread; idempotent. Once every connection has finished, the server leaves no work on the
  // io_context(s).
  void stop();

  const ServerStats& stats() const;

 private:
  std::shared_ptr<detail::ServerState> state_;                // shared with every connection
  std::vector<std::shared_ptr<detail::Listener>> listeners_;  // one per io_context
};

}  // namespace infergate::http
