#pragma once

// The standalone gateway's request handler (an http::Handler): OpenAI-compatible inference
// requests are routed by the director and forwarded to the chosen model server, whose response is
// relayed back as it arrives.
//
//   POST /v1/completions, /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/conversations
//        → director.route → upstream (retries, ejection) → response relayed chunk by chunk
//   GET  /v1/models   → relayed from one endpoint of the pool (director.route_bodyless)
//   GET  /healthz     → 200 while the process runs
//   GET  /readyz      → 200 when an endpoint has fresh metrics (and not draining), else 503
//   GET  /metrics     → the registry (director's GIE EPP metrics + infergate_gateway_*)
//   anything else     → 404 (405 for a known path with the wrong method)
//
// Streaming: a response that is text/event-stream, or to a `"stream": true` request, is relayed
// with chunked coding, each upstream read passed on at once (through RoutedRequest, which restores
// the client's model name and reads the usage); other responses are sent whole with
// Content-Length once complete (the director holds them anyway to restore the model name). The
// response header goes out with the first body bytes, so an upstream that breaks before any byte
// still gets a clean 502 to the client.
//
// Errors are OpenAI-style JSON (Status::to_openai_json): 400 unreadable body, 404, 405, 429 shed,
// 503 no endpoint or none reachable, 502 upstream broke before any byte, 504 timeout; a 5xx from
// the model server that survives the retries is relayed as the server sent it. After bytes went
// out, an upstream failure truncates the response (no terminating chunk). Every error counts in
// infergate_gateway_errors_total{reason} and in the director's
// inference_objective_request_error_total.
//
// Threads: handle() runs on the connection's strand, possibly on any thread of the io_context;
// the proxy's shared parts (director, pool shards, health, metrics) are thread-safe as documented.
// The Proxy must outlive every handler coroutine.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "director/director.h"
#include "gateway/access_log.h"
#include "gateway/metrics.h"
#include "gateway/retry_policy.h"
#include "gateway/upstream_pool.h"
#include "http/server.h"

namespace infergate::prom {
class Registry;
}

namespace infergate::gateway {

struct ProxyOptions {
  std::chrono::milliseconds connect_timeout{5000};       // --connect-timeout
  std::chrono::milliseconds first_byte_timeout{300000};  // --first-byte-timeout
  std::chrono::milliseconds idle_timeout{300000};        // --idle-timeout (between body reads)
  std::chrono::milliseconds request_timeout{0};          // --request-timeout (0: none)
  int max_retries = 2;                                   // --max-retries
  bool emit_endpoint_scores = false;                     // --emit-endpoint-scores
  // Endpoints whose metrics are older count as not ready (/readyz).
  Duration metrics_staleness_threshold = std::chrono::seconds(2);
};

class Proxy {
 public:
  // Everything passed in must outlive the Proxy. `access_log` null: no access log.
  Proxy(director::Director& director, UpstreamPool& pool, EndpointHealth& health,
        GatewayMetrics& metrics, prom::Registry& registry,
        std::shared_ptr<spdlog::logger> access_log, ProxyOptions options);

  // The http::Handler.
  boost::asio::awaitable<void> handle(http::Request& request, http::ResponseWriter& writer);
  http::Handler handler();

  // Requests being handled (probes excluded).
  std::int64_t in_flight() const { return in_flight_.load(std::memory_order_acquire); }
  // From now on /readyz answers 503 (graceful shutdown). Any thread.
  void set_draining() { draining_.store(true, std::memory_order_release); }

 private:
  struct RequestState;
  class InFlight;
  // Routes the request among `allowed` endpoints (null: the whole pool).
  using RouteFunction = std::function<Result<director::RoutedRequest>(
      const director::Headers&, const std::vector<std::string>* allowed)>;

  boost::asio::awaitable<void> forward(RequestState& state, const http::Request& request,
                                       http::ResponseWriter& writer, director::Headers headers,
                                       const RouteFunction& route);
  boost::asio::awaitable<void> relay(RequestState& state, http::ResponseWriter& writer,
                                     director::RoutedRequest& routed, UpstreamExchange& exchange,
                                     UpstreamCancel& cancel, const UpstreamEndpoint& endpoint);
  boost::asio::awaitable<void> reply_error(RequestState& state, http::ResponseWriter& writer,
                                           const Status& status, std::string_view reason,
                                           bool counted_by_director);
  boost::asio::awaitable<void> readyz(http::ResponseWriter& writer);

  // The endpoints a pick may choose, leaving out ejected and `attempted` ones: empty when none
  // needs leaving out, nullopt when no endpoint is left.
  std::optional<std::vector<std::string>> allowed_endpoints(
      const std::vector<std::string>& attempted) const;
  void record_failure(const std::string& host_port, AttemptFailure failure);
  void client_gone(RequestState& state, director::RoutedRequest* routed);
  void finish(RequestState& state);
  std::chrono::milliseconds budget(const RequestState& state, std::chrono::milliseconds step) const;

  director::Director& director_;
  UpstreamPool& pool_;
  EndpointHealth& health_;
  GatewayMetrics& metrics_;
  prom::Registry& registry_;
  std::shared_ptr<spdlog::logger> access_log_;
  const ProxyOptions options_;
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<bool> draining_{false};
};

}  // namespace infergate::gateway
