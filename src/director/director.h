#pragma once

// The request pipeline every front end shares (ARCHITECTURE.md: director): parse the body →
// model rewrite → objective priority → candidates (pool ∩ subset hint) → admission → schedule →
// pre-request hooks; and, on the response path, the model name restored, usage read, in-flight
// accounting released and the EPP's request metrics recorded (epp-protocol facts §7–§9).
//
// Threads: Director::route*() may be called from any number of threads at once (the datastore
// snapshot is immutable, the scheduler is thread-safe, counters are atomic). One RoutedRequest
// belongs to one stream or connection and is used from one thread at a time.
//
// Errors are values (Status): 400 unreadable body, 429 shed (priority < 0 while saturated) or no
// endpoint left by the filters, 503 no candidate endpoint (empty pool, subset hint or test header
// matched nothing), 500 internal. Every error is counted in
// inference_objective_request_error_total{error_code} before it is returned.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "datastore/datastore.h"
#include "datastore/model_policies.h"
#include "request/body_rewrite.h"
#include "request/openai_request.h"
#include "request/response_usage.h"
#include "scheduling/config_loader.h"

namespace infergate::prom {
class Registry;
}

namespace infergate::director {

// Request or response headers: lower-case names (pseudo-headers such as ":path" included), in
// arrival order.
using Headers = std::vector<std::pair<std::string, std::string>>;

// The value of header `lower_case_name`, or nullopt.
std::optional<std::string_view> find_header(const Headers& headers,
                                            std::string_view lower_case_name);

// The reference EPP's error code names (epp-protocol §9.2) for an HTTP status: 400 BadRequest,
// 401 Unauthorized, 403 Forbidden, 404 NotFound, 429 ResourceExhausted, 503 ServiceUnavailable,
// anything else Internal; and infergate's own names for statuses the reference EPP never
// answers with: 405 MethodNotAllowed, 413 PayloadTooLarge, 502 BadGateway, 504 GatewayTimeout.
std::string_view error_code_name(int http_status);
// The body of a local reply for `status`: "inference error: <Code> - <message>".
std::string error_body(const Status& status);

struct DirectorOptions {
  // The pool's name (label `name` of the inference_pool_* gauges).
  std::string pool_name = "default";
  // --disable-endpoint-subset-filter: ignore the data plane's subset hint.
  bool disable_subset_filter = false;
  // Conformance test hooks (epp-protocol §11.1): the test-epp-endpoint-selection request header
  // restricts the candidates (taking precedence over the subset hint), and the front end reports
  // the served endpoint in x-conformance-test-served-endpoint.
  bool conformance_hooks = false;
  // --metrics-staleness-threshold: endpoints with older metrics are left out of the pool gauges.
  Duration metrics_staleness_threshold = std::chrono::seconds(2);
  // Seed of the draws made per request (weighted rewrites, body-less picks, picker tie-breaks);
  // 0 draws one from the system at construction.
  std::uint64_t seed = 0;
};

// What a front end hands over once a request's body has fully arrived.
struct RequestInput {
  const Headers& headers;  // with ":path" (fallbacks x-original-path, x-forwarded-path)
  std::string_view body;
  // The data plane's subset hint (`ip` or `ip:port` each); nullopt when it sent none. An empty
  // list matches nothing (503).
  const std::optional<std::vector<std::string>>& subset;
  // When set, only these endpoints (`host:port`, exact) are candidates: a front end's own
  // exclusions, e.g. the gateway leaving out ejected endpoints and those already tried.
  const std::vector<std::string>* allowed = nullptr;
  // When set, the string holding `body`, which the caller gives up: a body that needs no rewrite
  // is moved into the RoutedRequest instead of copied (the string is left unspecified).
  std::string* owned_body = nullptr;
};

class Director;
struct DirectorMetrics;
struct ModelSeries;

// A request the director has routed: where it goes, what to send, and its response path.
// Move-only. Its in-flight accounting (per-endpoint requests and tokens, the running-requests
// gauge) is taken by route() and released exactly once, by finish() or by the destructor.
class RoutedRequest {
 public:
  RoutedRequest(RoutedRequest&& other) noexcept;
  RoutedRequest& operator=(RoutedRequest&& other) noexcept;
  RoutedRequest(const RoutedRequest&) = delete;
  RoutedRequest& operator=(const RoutedRequest&) = delete;
  ~RoutedRequest();

  // x-request-id as received, or a generated UUIDv4 (then `request_id_generated()`; the front end
  // adds the header to what it forwards).
  const std::string& request_id() const { return request_id_; }
  bool request_id_generated() const { return request_id_generated_; }
  // The destination list `ip:port[,ip:port...]` (primary first, IPv6 bracketed).
  const std::string& destination() const { return destination_; }
  // The body to forward: the client's body with the top-level "model" set to the target model
  // (unchanged bytes when the name did not change). Empty for a body-less request.
  const std::string& body() const { return body_; }
  std::string take_body() { return std::move(body_); }
  const std::string& incoming_model() const { return incoming_model_; }
  const std::string& target_model() const { return target_model_; }
  int priority() const { return priority_; }
  // The request asked for a streamed response (`"stream": true`).
  bool streaming() const { return streaming_; }
  // The scheduling decision with every scorer's score per candidate; null for body-less requests.
  const scheduling::SchedulingResult* scheduling() const {
    return scheduling_ ? &*scheduling_ : nullptr;
  }
  // Explainability: the primary profile's candidates as a compact JSON object
  // {"<ip:port>":{"total":T,"<scorer>":S,...},...}, best first; "{}" for body-less requests.
  std::string endpoint_scores() const;

  // --- response path (call in this order; each at most once except the body) ---
  // The upstream's response headers: `:status` (a non-2xx status counts the request as a
  // ModelServerError) and `content-type` (text/event-stream ⇒ streamed response).
  void on_response_headers(const Headers& headers);
  // The same from a parsed response head: its status and its first Content-Type value (nullopt
  // when there is none), for front ends that need not build Headers for it.
  void on_response_head(int status, std::optional<std::string_view> content_type);
  // The endpoint the gateway reports it served the request from.
  void on_served_endpoint(std::string_view host_port) { served_endpoint_ = host_port; }
  const std::string& served_endpoint() const { return served_endpoint_; }
  // One chunk of the response body. Appends to `out` the bytes to send on now: for a streamed
  // response, the chunk with the model name restored (a match split across chunks is held back
  // until the next chunk); for a JSON response whose model needs restoring, nothing until
  // end_of_stream, then the whole body with the model restored; otherwise the chunk unchanged.
  // Usage is read from SSE data lines or from the whole JSON body. On end_of_stream, finish().
  void on_response_body(std::string_view chunk, bool end_of_stream, std::string& out);
  // The same for a response that is neither SSE nor streamed by request, when the caller holds
  // it whole anyway (e.g. to send it with Content-Length), without copying it: each piece's size
  // as it arrives (the first one is the time of the first byte), then the whole body once, which
  // is read for its usage and gets its model name restored in place; then finish().
  void on_response_piece(std::size_t bytes);
  void on_whole_response_body(std::string& body);
  // Ends the request: releases in-flight accounting and records the request metrics (duration,
  // sizes, tokens). Idempotent. `completed` is false when the stream ended early (client gone,
  // upstream reset): accounting is released, latency and token metrics are not recorded.
  void finish(bool completed = true);
  bool finished() const { return finished_; }
  const std::optional<request::TokenUsage>& usage() const { return usage_; }

 private:
  friend class Director;
  RoutedRequest() = default;

  // The response's model name is put back as the client named it (a rewrite changed it).
  bool restores_model() const;
  // A JSON response body held whole: its usage read and, with `restore`, a success's model name
  // restored in place.
  void read_whole_json_body(std::string& body, bool restore);

  const Director* director_ = nullptr;
  const ModelSeries* series_ = nullptr;  // set once the models are known
  std::string request_id_;
  bool request_id_generated_ = false;
  std::string destination_;
  std::string body_;
  std::string incoming_model_;
  std::string target_model_;
  int priority_ = 0;
  bool streaming_ = false;
  std::optional<scheduling::SchedulingResult> scheduling_;
  std::shared_ptr<const datastore::Snapshot> snapshot_;  // keeps the chosen endpoints alive
  std::shared_ptr<datastore::EndpointState> charged_;    // in-flight accounting, while held
  std::int64_t charged_tokens_ = 0;
  TimePoint started_{};
  TimePoint first_byte_{};
  std::size_t request_bytes_ = 0;
  std::size_t response_bytes_ = 0;
  int response_status_ = 0;
  bool response_sse_ = false;
  std::string served_endpoint_;
  std::unique_ptr<request::ModelNameRestorer> restorer_;  // streamed responses that need it
  std::unique_ptr<request::SseUsageScanner> sse_usage_;
  std::string buffered_;  // JSON response body, for the usage (and the model restore)
  bool buffer_holds_output_ = false;
  std::optional<request::TokenUsage> usage_;
  bool finished_ = false;
};

class Director {
 public:
  // `store` and `clock` must outlive the director. The scheduler setup comes from
  // scheduling::build_scheduler. Metric families are registered in `registry`
  // (GIE's EPP names, metrics facts §8), and a collect hook refreshes the inference_pool_*
  // gauges from the datastore when /metrics is scraped.
  Director(datastore::Datastore& store, scheduling::SchedulerSetup setup,
           std::shared_ptr<const datastore::ModelPolicies> policies, const Clock& clock,
           prom::Registry& registry, DirectorOptions options = {});
  ~Director();
  Director(const Director&) = delete;
  Director& operator=(const Director&) = delete;

  // Routes a request whose whole body has arrived (epp-protocol §7.2, §8, §9).
  Result<RoutedRequest> route(const RequestInput& input);
  // Routes a request without a body (e.g. GET /v1/models): a uniformly random candidate (pool ∩
  // subset hint ∩ test header); 503 when there is none.
  Result<RoutedRequest> route_bodyless(const Headers& headers,
                                       const std::optional<std::vector<std::string>>& subset,
                                       const std::vector<std::string>* allowed = nullptr);

  // Replaces the objectives and rewrites (resources changed). Any thread.
  void set_policies(std::shared_ptr<const datastore::ModelPolicies> policies);

  datastore::Datastore& datastore() const { return store_; }
  const DirectorOptions& options() const { return options_; }
  const scheduling::SchedulerSetup& setup() const { return setup_; }
  const Clock& clock() const { return clock_; }
  // Counts an error raised by a front end outside route() (e.g. an oversize body), so that every
  // error shows in inference_objective_request_error_total.
  void count_error(const Status& status, std::string_view model = {},
                   std::string_view target_model = {}) const;

 private:
  friend class RoutedRequest;
  // The candidate endpoints of `snapshot` for a request: all, or those the subset hint and (with
  // conformance hooks) the test header allow, within `allowed` when given. `out` is cleared
  // first.
  void candidates(const datastore::Snapshot& snapshot, const Headers& headers,
                  const std::optional<std::vector<std::string>>& subset,
                  const std::vector<std::string>* allowed,
                  std::vector<const datastore::Endpoint*>& out) const;
  std::uint64_t next_random() const;
  // The current policies through the calling thread's pinned reference. Valid until the thread
  // calls it again.
  const datastore::ModelPolicies& current_policies() const;

  std::uint64_t id_;  // unique per director in the process: names it in per-thread pins
  datastore::Datastore& store_;
  scheduling::SchedulerSetup setup_;
  std::atomic<std::shared_ptr<const datastore::ModelPolicies>> policies_;
  std::atomic<std::uint64_t> policies_version_{0};  // goes up after every set_policies
  const Clock& clock_;
  DirectorOptions options_;
  std::unique_ptr<DirectorMetrics> metrics_;
  mutable std::atomic<std::uint64_t> random_state_;
};

}  // namespace infergate::director
