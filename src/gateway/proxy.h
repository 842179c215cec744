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
// External Endpoint Picker (`--epp`, `epp` non-null): inference requests and GET /v1/models (when
// no model list is configured) are picked through the EPP over ext_proc, as Envoy would
// (proxy_epp.cc; docs/gateway.md "Picking through an external EPP"): the request's headers (the
// client's destination keys removed, test-epp-endpoint-selection kept) and body go to the EPP;
// its local reply (400, 429, 503, ...) goes to the client as is, its text body made OpenAI-style
// JSON; otherwise the request, with the EPP's header mutation and body, goes to the destinations
// it listed (primary, then the fallbacks on a retryable failure, ejected endpoints skipped while
// others are listed; no re-route once the list is used up). The response head goes to the EPP
// with the served endpoint (envoy.lb metadata), and the response body passes through the EPP
// chunk by chunk, what it returns being relayed at once (SSE stays streaming). An EPP failure
// before the response started: FailClose answers 503 (errors_total{reason="epp_failure"});
// FailOpen picks with the embedded picker of the routed pool (the `--endpoints` / `--config`
// pools) and forwards the original request — or, on the response path, relays the upstream's
// response unchanged; without pools it answers 503. After bytes went out, the response is cut
// off. Every EPP failure counts in infergate_gateway_epp_failures_total{kind,outcome}. The
// client leaving cancels both the upstream exchange and the ext_proc stream.
//
// Threads: handle() runs on the thread of the worker io_context that accepted the connection (one
// thread per io_context, gateway.h); the proxy's shared parts (directors, health, metrics) are
// thread-safe as documented, and each worker uses its own upstream pool shard.
// The Proxy must outlive every handler coroutine.

#include <array>
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
namespace infergate::extproc {
class ExtProcClient;
class ExtProcExchange;
struct ImmediateReply;
struct ExtProcError;
}  // namespace infergate::extproc

namespace infergate::gateway {
namespace proxy_detail {
struct KeptResponse;
struct FailedAttempts;
}  // namespace proxy_detail

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
  // Everything passed in must outlive the Proxy. `pools` holds at least one pool unless `epp` is
  // set; `routes` null: everything goes to pools[0]. `access_log` null: no access log. `seed`
  // drives the weighted choice among a rule's backends (0: from the system). `epp` non-null:
  // pick through that external Endpoint Picker (see above).
  Proxy(std::vector<ProxyPool> pools, std::shared_ptr<const RouteTable> routes,
        std::vector<ListedModel> models, UpstreamPool& pool, EndpointHealth& health,
        GatewayMetrics& metrics, prom::Registry& registry,
        std::shared_ptr<spdlog::logger> access_log, ProxyOptions options, std::uint64_t seed = 0,
        extproc::ExtProcClient* epp = nullptr);

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
  // Routing by `pool`'s embedded director: director.route over the request's body, or
  // route_bodyless (`bodyless`, e.g. GET /v1/models). `request` must outlive the function.
  static RouteFunction embedded_route(const ProxyPool& pool, const http::Request& request,
                                      bool bodyless);

  boost::asio::awaitable<void> forward(RequestState& state, const http::Request& request,
                                       http::ResponseWriter& writer, director::Headers headers,
                                       const RouteFunction& route);
  boost::asio::awaitable<void> relay(RequestState& state, http::ResponseWriter& writer,
                                     director::RoutedRequest& routed, UpstreamExchange& exchange,
                                     UpstreamCancel& cancel, const UpstreamEndpoint& endpoint);
  // --- the external-EPP path (proxy_epp.cc) ---
  boost::asio::awaitable<void> pick_through_epp(RequestState& state, const http::Request& request,
                                                std::string_view path,
                                                http::ResponseWriter& writer);
  // Relays the upstream's response from `served` through the EPP: `upstream` null relays
  // `kept_body` (a 5xx kept from an attempt) instead of reading the exchange's connection, which
  // goes back to the pool when its body was read to the end.
  boost::asio::awaitable<void> relay_through_epp(RequestState& state, http::ResponseWriter& writer,
                                                 extproc::ExtProcExchange& exchange,
                                                 const http::ResponseHead& head,
                                                 const std::string& served,
                                                 UpstreamExchange* upstream, std::string kept_body);
  boost::asio::awaitable<void> send_immediate(RequestState& state, http::ResponseWriter& writer,
                                              const extproc::ImmediateReply& reply);
  // Counts and logs an EPP failure with what the gateway did about it (fail_open, fail_close,
  // truncated).
  void count_epp_failure(const extproc::ExtProcError& error, std::string_view outcome);
  // Reads a 5xx response's body whole to keep it: false when it could not be read to its end
  // (too large, broken) or the client left.
  boost::asio::awaitable<bool> keep_error_body(RequestState& state, http::ResponseWriter& writer,
                                               UpstreamExchange& exchange, std::string& body);

  // `extra` goes into the answer's head (e.g. the Allow field of a 405).
  boost::asio::awaitable<void> reply_error(RequestState& state, http::ResponseWriter& writer,
                                           const Status& status, std::string_view reason,
                                           bool counted_by_director, http::Headers extra = {});
  boost::asio::awaitable<void> readyz(http::ResponseWriter& writer);
  boost::asio::awaitable<void> list_models(RequestState& state, http::ResponseWriter& writer);
  // The pool of every request when there are no routes (nothing to choose), else nullptr.
  const ProxyPool* only_pool() const { return routes_ ? nullptr : &pools_.front(); }
  // With routes: chooses the pool (and the rule's timeouts) for an inference or /v1/models
  // request; false after answering the client with the error.
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
  // Starts the attempt at `host_port` (the next entry of `plan`): counts it and records it in the
  // plan, then gives the endpoint to connect to with the attempt's timeouts in `timeouts`;
  // nullopt when the entry is not a usable address (logged, try the next), or when the request's
  // deadline has passed (`timed_out` set: stop).
  std::optional<UpstreamEndpoint> begin_attempt(RequestState& state, AttemptPlan& plan,
                                                const std::string& host_port,
                                                ExchangeTimeouts& timeouts, bool& timed_out);
  // The attempt at `host_port` failed before a response: counts it against the endpoint and
  // keeps it as what answers the client; true when another endpoint may be tried.
  bool attempt_failed(RequestState& state, std::string_view request_id,
                      const std::string& host_port, ExchangeFailure failure,
                      proxy_detail::FailedAttempts& failed);
  // The attempt at `kept.endpoint` answered a 5xx while a retry is left, its body read into
  // `kept` (`complete`) or not: counts it against the endpoint, gives the connection back when
  // it can be reused, and keeps the response to relay (unreadable: a 502 failure instead).
  void attempt_answered_error(RequestState& state, proxy_detail::KeptResponse kept, bool complete,
                              UpstreamExchange& exchange, proxy_detail::FailedAttempts& failed);
  // The response of `host_port` is the one relayed: counted for the endpoint, or against it when
  // it is a 5xx.
  void attempt_answered(const std::string& host_port, unsigned status, const AttemptPlan& plan);

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
  std::atomic<std::uint64_t> route_draws_{0};              // weighted backend choices made
  extproc::ExtProcClient* const epp_;                      // null: the embedded picker only
  std::array<std::atomic<bool>, 8> epp_failure_logged_{};  // by ExtProcErrorKind
};

}  // namespace infergate::gateway
