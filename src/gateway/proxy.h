#pragma once

// The standalone gateway's request handler (an http::Handler): OpenAI-compatible inference
// requests are routed by the director and forwarded to the chosen model server, whose response is
// relayed back as it arrives.
//
//   POST /v1/completions, /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/conversations
//        → [routes: pick the pool] → director.route → upstream (retries, ejection) → response
//          relayed chunk by chunk
//   GET  /v1/models   → with routes that name models: the list of those models (see below);
//                       otherwise relayed from one endpoint of the (routed) pool
//                       (director.route_bodyless)
//   GET  /healthz     → 200 while the process runs
//   GET  /readyz      → 200 when an endpoint has fresh metrics (and not draining), else 503
//   GET  /metrics     → the registry (director's GIE EPP metrics + infergate_gateway_*)
//   anything else     → 404 (405 for a known path with the wrong method)
//
// Pools and routes: with one pool and no RouteTable every request goes to that pool (the
// `--endpoints` quick start). With a RouteTable (`--config`), body-based routing first sets
// X-Gateway-Model-Name to the body's `model` (a client's own copy is always removed, so it cannot
// be spoofed), then the best-matching rule (routes.h) picks a pool by weight; no match is a 404
// (errors_total{reason="no_route"}), a rule without a usable backend a 500 ("no_backend"). The
// rule's timeouts apply: `request` bounds the whole exchange (retries and streaming included),
// `backendRequest` each upstream attempt up to its last byte.
// GET /v1/models then answers {"object":"list","data":[{"id","object":"model","owned_by"}...]}
// with the `models` given (the routed model names and the pools' policy model names), when there
// are any.
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
// Threads: handle() runs on the thread of the worker io_context that accepted the connection (one
// thread per io_context, gateway.h); the proxy's shared parts (directors, health, metrics) are
// thread-safe as documented, and each worker uses its own upstream pool shard.
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
#include "gateway/routes.h"
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

// One pool the proxy forwards to: its name and its director (picker, datastore, policies).
struct ProxyPool {
  std::string name;
  director::Director* director = nullptr;
};

// An entry of GET /v1/models.
struct ListedModel {
  std::string id;
  std::string owned_by;  // the pool serving it
};

class Proxy {
 public:
  // Everything passed in must outlive the Proxy. `pools` holds at least one pool; `routes` null:
  // everything goes to pools[0]. `access_log` null: no access log. `seed` drives the weighted
  // choice among a rule's backends (0: from the system).
  Proxy(std::vector<ProxyPool> pools, std::shared_ptr<const RouteTable> routes,
        std::vector<ListedModel> models, UpstreamPool& pool, EndpointHealth& health,
        GatewayMetrics& metrics, prom::Registry& registry,
        std::shared_ptr<spdlog::logger> access_log, ProxyOptions options, std::uint64_t seed = 0);

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
  boost::asio::awaitable<void> list_models(RequestState& state, http::ResponseWriter& writer);
  // Chooses the pool (and the rule's timeouts) for an inference or /v1/models request: false
  // after answering the client with the error.
  boost::asio::awaitable<bool> choose_pool(RequestState& state, const http::Request& request,
                                           std::string_view path, director::Headers& headers,
                                           http::ResponseWriter& writer);

  // The endpoints a pick in `pool` may choose, leaving out ejected and `attempted` ones: empty
  // when none needs leaving out, nullopt when no endpoint is left.
  std::optional<std::vector<std::string>> allowed_endpoints(
      const ProxyPool& pool, const std::vector<std::string>& attempted) const;
  void record_failure(const std::string& host_port, AttemptFailure failure);
  void client_gone(RequestState& state, director::RoutedRequest* routed);
  void finish(RequestState& state);
  std::chrono::milliseconds budget(const RequestState& state, std::chrono::milliseconds step) const;

  const std::vector<ProxyPool> pools_;
  const std::shared_ptr<const RouteTable> routes_;
  const std::vector<ListedModel> models_;
  UpstreamPool& pool_;
  EndpointHealth& health_;
  GatewayMetrics& metrics_;
  prom::Registry& registry_;
  std::shared_ptr<spdlog::logger> access_log_;
  const ProxyOptions options_;
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<bool> draining_{false};
  const std::uint64_t seed_;
  std::atomic<std::uint64_t> route_draws_{0};  // weighted backend choices made
};

}  // namespace infergate::gateway
