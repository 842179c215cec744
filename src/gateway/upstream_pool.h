#pragma once

// Keep-alive connections to the model servers, and the first half of one upstream exchange
// (connect or reuse, send the request, read the response head).
//
// Threading: the pool is split into shards, one per I/O thread, and a thread only ever touches
// its own shard (the caller passes its shard index, current_shard()): no locks and no
// cross-thread sharing on the request path. Each shard has an executor, and the connections it
// opens live on it: in the gateway, shard i is worker thread i and its own io_context, so a
// connection is opened, used, pooled and reused by one thread only. A connection taken out of a
// shard is owned by the request's coroutine until it is released into the shard of the thread
// releasing it (with several threads on one io_context that may be another thread's shard: the
// shards then share one executor). Operations complete on the calling coroutine's executor.
//
// Bounds: at most max_idle_per_endpoint idle connections per endpoint and shard (the surplus is
// closed), and an idle connection older than max_idle_age is closed instead of reused (model
// servers close idle keep-alive connections too: uvicorn after 5 s).
//
// Reuse and its one retry: a reused connection may have been closed by the server meanwhile. If
// sending on it fails, or it closes before the response head arrives (a 502 from the client, not a
// timeout), nothing of the request can have been processed, and the exchange is retried once on a
// fresh connection. Any other failure is reported to the caller, who decides about retries.

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/status.h"
#include "gateway/retry_policy.h"
#include "http/client.h"
#include "http/message.h"

namespace infergate::gateway {

// The calling thread's shard index: set once by each I/O thread that runs the proxy (Gateway's
// workers do, numbering them from 0); 0 on any other thread.
std::size_t current_shard();
void set_current_shard(std::size_t shard);

// Where a request goes: the endpoint's "host:port" as the picker names it, and its parts.
struct UpstreamEndpoint {
  std::string host_port;  // pool key, e.g. "10.0.0.1:8000" or "[::1]:8000"
  std::string host;       // without brackets
  std::uint16_t port = 0;
};
// Splits "host:port" / "[v6]:port"; nullopt when there is no valid port.
std::optional<UpstreamEndpoint> parse_upstream_endpoint(std::string_view host_port);

// Lets a request's owner abort the upstream exchange in progress (the client went away): cancel()
// closes the connection in use, which ends the pending connect, write or read with an error.
// Owned by the request's coroutine; cancel() must run on that coroutine's strand (as the
// ResponseWriter's on_client_gone callback does).
class UpstreamCancel {
 public:
  void cancel() {
    cancelled_ = true;
    if (active_ != nullptr) active_->close();
  }
  bool cancelled() const { return cancelled_; }
  // The connection the exchange is using now (null: none).
  void set_active(http::ClientConnection* connection) { active_ = connection; }

 private:
  bool cancelled_ = false;
  http::ClientConnection* active_ = nullptr;
};

struct ExchangeTimeouts {
  std::chrono::milliseconds connect{5000};
  // Sending the request and then receiving the response head, together.
  std::chrono::milliseconds first_byte{300000};
};

// A response head received; the connection is positioned to read its body.
struct UpstreamExchange {
  http::ResponseHead head;
  std::unique_ptr<http::ClientConnection> connection;
  bool reused = false;  // the connection came from the pool
};

// Why no response head arrived.
struct ExchangeFailure {
  AttemptFailure kind;
  Status status;  // the client's error (503 connect, 504 timeout, 502 reset)
};

struct UpstreamPoolOptions {
  // Per shard. As many as a model server runs requests at once (vLLM's max_num_seqs defaults to
  // 256): a lower cap closes connections after every burst of concurrent requests to one
  // endpoint (prefix affinity makes such bursts common) only to open them again.
  std::size_t max_idle_per_endpoint = 256;
  std::chrono::milliseconds max_idle_age{4000};
};

struct UpstreamPoolStats {
  std::atomic<std::uint64_t> opened{0};         // connections established
  std::atomic<std::uint64_t> reused{0};         // exchanges started on a pooled connection
  std::atomic<std::uint64_t> stale_retries{0};  // reused connections found closed, retried fresh
  std::atomic<std::uint64_t> discarded{0};      // idle connections closed (surplus, age, shutdown)
};

class UpstreamPool {
 public:
  // One shard per executor in `shard_executors` (at least one): an io_context's executor, not a
  // strand, since connections move between requests.
  explicit UpstreamPool(std::vector<boost::asio::any_io_executor> shard_executors,
                        UpstreamPoolOptions options = {});
  // `shard_count` shards on one executor (one io_context run by several threads).
  UpstreamPool(boost::asio::any_io_executor executor, std::size_t shard_count,
               UpstreamPoolOptions options = {});
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // Connects (or reuses a connection), sends a copy of `request` and reads the response head;
  // see the header comment for the one retry on a stale pooled connection. `cancel` is told the
  // connection in use. A 1xx-free head of any status is a success; failures are classified for
  // the retry policy.
  boost::asio::awaitable<std::variant<UpstreamExchange, ExchangeFailure>> start_exchange(
      std::size_t shard, const UpstreamEndpoint& endpoint, const http::Request& request,
      ExchangeTimeouts timeouts, UpstreamCancel& cancel);

  // Returns a connection whose response has been read to the end; it is kept for reuse when it is
  // still open and there is room, else closed. Release only from a thread owning `shard`.
  void release(std::size_t shard, const std::string& host_port,
               std::unique_ptr<http::ClientConnection> connection);

  // Closes every idle connection; later releases close their connection. Call once the I/O
  // threads have stopped (any thread), before the io_context is destroyed.
  void shutdown();

  // Idle connections in `shard` (tests).
  std::size_t idle(std::size_t shard) const;
  std::size_t shard_count() const { return shards_.size(); }
  const UpstreamPoolStats& stats() const { return stats_; }

 private:
  struct Idle {
    std::unique_ptr<http::ClientConnection> connection;
    std::chrono::steady_clock::time_point since;
  };
  struct alignas(64) Shard {                                  // one per thread: no false sharing
    boost::asio::any_io_executor executor;                    // where its connections live
    std::unordered_map<std::string, std::vector<Idle>> idle;  // most recent last
  };
  // The most recently used idle connection to `host_port` that is open and young enough.
  std::unique_ptr<http::ClientConnection> take_idle(std::size_t shard,
                                                    const std::string& host_port);

  const UpstreamPoolOptions options_;
  std::vector<Shard> shards_;
  std::atomic<bool> shut_down_{false};
  UpstreamPoolStats stats_;
};

}  // namespace infergate::gateway
