#pragma once

// A gRPC server transport of infergate's own: HTTP/2 framing by nghttp2, sockets and TLS by
// Boost.Asio, one io_context per worker thread. It speaks the gRPC-over-HTTP/2 wire protocol
// (length-prefixed messages, `grpc-status`/`grpc-message` trailers, trailers-only error answers)
// for the handful of methods the EPP serves, so any gRPC client (Envoy, grpc++, grpc-go) talks to
// it as to a grpc++ server. It exists because the ext_proc Process stream is the EPP's hot path
// and grpc++'s generic machinery costs more per stream than the picking itself
// (docs/performance.md); `infergate epp --grpc-transport callback` keeps grpc++'s callback API.
//
// What it does not do: message compression (it announces `grpc-accept-encoding: identity`, and a
// compressed message ends the call with UNIMPLEMENTED), deadlines from `grpc-timeout` (the
// gateway enforces its own), server reflection.
//
// Model: a Call is the server side of one gRPC call (one HTTP/2 stream). The server creates it
// with the factory registered for the request's `:path` when the request headers arrive; unknown
// paths are answered UNIMPLEMENTED without a Call. The Call answers through its CallResponder.
//
// Threads: each connection lives on one worker's io_context; every Call callback, and every
// CallResponder call, happens on that worker's thread, one at a time per connection, so a Call
// needs no locking of its own. Calls may block only briefly (they run on an I/O thread).
//
// Errors: malformed HTTP/2 closes the connection (nghttp2 sends GOAWAY); a broken message frame
// or one larger than max_receive_message_bytes ends that call only (INTERNAL or
// RESOURCE_EXHAUSTED). The constructor throws std::runtime_error when it cannot listen.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "extproc/tls.h"

namespace google::protobuf {
class MessageLite;
}

namespace infergate::extproc::h2 {

// gRPC status codes (the numbers are the protocol's).
enum class GrpcCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kNotFound = 5,
  kResourceExhausted = 8,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
};

// The server's half of one call. Owned by the transport; valid from the factory call until the
// Call's on_cancel() or, after finish(), until the Call is destroyed.
class CallResponder {
 public:
  // Queues one response message; the response headers go out before the first. Ignored after
  // finish().
  virtual void send(const google::protobuf::MessageLite& message) = 0;
  // Ends the call after the queued messages: trailers with `code` and `message` (a
  // trailers-only answer when nothing was sent). The first call wins; later ones are ignored.
  // When the client has not finished sending, its stream is reset (NO_ERROR) once the trailers
  // are out, as HTTP/2 allows.
  virtual void finish(GrpcCode code, std::string_view message = {}) = 0;
  virtual bool finished() const = 0;

 protected:
  ~CallResponder() = default;
};

class Call {
 public:
  virtual ~Call() = default;
  // One complete request message (its serialized bytes, valid during the call only).
  virtual void on_message(std::string_view message) = 0;
  // The client finished sending (END_STREAM). The Call should finish() when its answers are out.
  virtual void on_half_close() = 0;
  // The call ended without finish(): the client reset the stream, the connection broke, or the
  // server shut down. The responder must not be used any more. Called at most once.
  virtual void on_cancel() = 0;
};

using CallFactory = std::function<std::unique_ptr<Call>(CallResponder& responder)>;
// Method path ("/package.Service/Method") → factory.
using MethodTable = std::map<std::string, CallFactory, std::less<>>;

struct ServerOptions {
  std::string address = "0.0.0.0";
  std::uint16_t port = 0;  // 0: an ephemeral port (Server::port() tells which)
  unsigned workers = 0;    // I/O threads (0: one per core)
  // Null: plaintext HTTP/2 (h2c, "prior knowledge"). Otherwise TLS with ALPN h2.
  const TlsMaterial* tls = nullptr;
  std::size_t max_receive_message_bytes = 4u << 20;  // gRPC's default
  std::uint32_t max_concurrent_streams = 10000;      // per connection (SETTINGS)
  // Flow-control windows granted to the client, so large bodies are not held back by
  // WINDOW_UPDATE round trips.
  std::uint32_t stream_window_bytes = 1u << 20;
  std::uint32_t connection_window_bytes = 16u << 20;
};

// Counters, readable from any thread.
struct ServerStats {
  std::atomic<std::uint64_t> connections_total{0};
  std::atomic<std::int64_t> connections_active{0};
  std::atomic<std::uint64_t> calls_total{0};
  std::atomic<std::uint64_t> unknown_methods{0};     // answered UNIMPLEMENTED
  std::atomic<std::uint64_t> bad_messages{0};        // frame errors, oversize, compressed
  std::atomic<std::uint64_t> protocol_errors{0};     // connections closed on HTTP/2 errors
  std::atomic<std::uint64_t> handshake_failures{0};  // TLS
};

class Server {
 public:
  // Binds, listens and starts the worker threads. `methods` must not be empty.
  Server(ServerOptions options, MethodTable methods);
  // shutdown() with no grace.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::uint16_t port() const;
  const ServerStats& stats() const;
  // Stops accepting, tells every connection to go away (GOAWAY: calls in flight continue, new
  // ones are refused), waits up to `grace` for the calls to end, then cancels the rest, closes
  // every connection and joins the threads. Idempotent; any thread except a worker.
  void shutdown(std::chrono::milliseconds grace);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infergate::extproc::h2
