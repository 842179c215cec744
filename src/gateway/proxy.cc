#include "gateway/proxy.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

#include "common/random.h"
#include "director/protocol.h"
#include "gateway/headers.h"
#include "gateway/proxy_internal.h"
#include "prom/registry.h"
#include "request/openai_request.h"

namespace infergate::gateway {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using proxy_detail::SteadyTime;

constexpr std::string_view kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";

bool is_inference_path(std::string_view path) {
  return path == "/v1/completions" || path == "/v1/chat/completions" || path == "/v1/responses" ||
         path == "/v1/embeddings" || path == "/v1/conversations";
}

double milliseconds_between(SteadyTime from, SteadyTime to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// The OpenAI model list: {"object":"list","data":[{"id","object":"model","owned_by"},...]}.
std::string models_list_json(const std::vector<ListedModel>& models) {
  nlohmann::json data = nlohmann::json::array();
  for (const ListedModel& model : models) {
    data.push_back({{"id", model.id}, {"object", "model"}, {"owned_by", model.owned_by}});
  }
  return nlohmann::json{{"object", "list"}, {"data", std::move(data)}}.dump();
}

}  // namespace

namespace proxy_detail {

std::string_view picker_error_reason(const Status& status) {
  switch (status.http_status()) {
    case 400:
      return "bad_request";
    case 429:
      return "shed";
    case 503:
      return "no_endpoint";
    default:
      return "internal";
  }
}

Status final_status(const ExchangeFailure& failure, int attempts) {
  const std::string& why = failure.status.message();
  switch (failure.kind) {
    case AttemptFailure::kConnectRefused:
    case AttemptFailure::kConnectTimeout:
      return Status::unavailable(fmt::format("no model server could be reached ({} attempt{}): {}",
                                             attempts, attempts == 1 ? "" : "s", why));
    case AttemptFailure::kFirstByteTimeout:
      return Status(504, fmt::format("the model server did not answer in time: {}", why));
    case AttemptFailure::kReset:
    case AttemptFailure::kServerError:
      break;
  }
  return Status(502, fmt::format("the model server closed the connection before answering ({} "
                                 "attempt{}): {}",
                                 attempts, attempts == 1 ? "" : "s", why));
}

}  // namespace proxy_detail

using namespace proxy_detail;

// Counts a request in flight for as long as its handler's frame exists (also when the frame is
// destroyed unfinished at shutdown).
class Proxy::InFlight {
 public:
  explicit InFlight(Proxy& proxy) : proxy_(proxy) {
    proxy_.in_flight_.fetch_add(1, std::memory_order_acq_rel);
    proxy_.metrics_.in_flight().inc();
  }
  ~InFlight() {
    proxy_.metrics_.in_flight().dec();
    proxy_.in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  Proxy& proxy_;
};

Proxy::Proxy(std::vector<ProxyPool> pools, std::shared_ptr<const RouteTable> routes,
             std::vector<ListedModel> models, UpstreamPool& pool, EndpointHealth& health,
             GatewayMetrics& metrics, prom::Registry& registry,
             std::shared_ptr<spdlog::logger> access_log, ProxyOptions options, std::uint64_t seed,
             extproc::ExtProcClient* epp)
    : pools_(std::move(pools)),
      routes_(std::move(routes)),
      models_(std::move(models)),
      pool_(pool),
      health_(health),
      metrics_(metrics),
      registry_(registry),
      access_log_(std::move(access_log)),
      options_(options),
      seed_(seed != 0 ? seed : std::random_device()()),
      epp_(epp) {
  if (pools_.empty() && epp_ == nullptr) throw std::invalid_argument("Proxy: no pool");
}

http::Handler Proxy::handler() {
  // Not a coroutine itself: handle's frame is the only one.
  return [this](http::Request& request, http::ResponseWriter& writer) {
    return handle(request, writer);
  };
}

asio::awaitable<void> Proxy::handle(http::Request& request, http::ResponseWriter& writer) {
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  const bhttp::verb method = request.method();
  const bool get = method == bhttp::verb::get || method == bhttp::verb::head;

  // Probes and scrapes: neither counted nor logged.
  if (path == "/healthz" && get) {
    const std::string body = R"({"status":"ok"})";
    co_await writer.send(200, kJson, body);
    co_return;
  }
  if (path == "/readyz" && get) {
    co_await readyz(writer);
    co_return;
  }
  if (path == "/metrics" && get) {
    co_await writer.send(200, kPrometheusText, registry_.expose());
    co_return;
  }

  const InFlight in_flight(*this);
  RequestState state;
  state.request_timeout = options_.request_timeout;
  if (options_.request_timeout.count() > 0) state.deadline = state.start + options_.request_timeout;
  state.record.method = std::string(request.method_string());
  state.record.path = std::string(path);

  if (is_inference_path(path) || path == "/v1/models") {
    const bool models = path == "/v1/models";
    if (models ? !get : method != bhttp::verb::post) {
      const Status status(405, fmt::format("method {} is not allowed for {}; use {}",
                                           request.method_string(), path, models ? "GET" : "POST"));
      http::Headers allow;
      allow.emplace_back("Allow", models ? "GET, HEAD" : "POST");
      co_await reply_error(state, writer, status, "method_not_allowed", false, std::move(allow));
    } else if (models && !models_.empty()) {
      co_await list_models(state, writer);
    } else if (epp_ != nullptr) {
      co_await pick_through_epp(state, request, path, writer);
    } else {
      director::Headers headers = director_headers(request);
      state.pool = only_pool();  // when set, no coroutine frame to choose it
      if (state.pool != nullptr || co_await choose_pool(state, request, path, headers, writer)) {
        co_await forward(state, request, writer, std::move(headers),
                         embedded_route(*state.pool, request, models));
      }
    }
  } else {
    const Status status =
        Status::not_found(fmt::format("no route for {} {}; the gateway serves POST "
                                      "/v1/completions, /v1/chat/completions, /v1/responses, "
                                      "/v1/embeddings, /v1/conversations and GET /v1/models",
                                      request.method_string(), path));
    co_await reply_error(state, writer, status, "not_found", false);
  }
  finish(state);
}

Proxy::RouteFunction Proxy::embedded_route(const ProxyPool& pool, const http::Request& request,
                                           bool bodyless) {
  // Two pointers at most: std::function holds such a lambda without allocating.
  director::Director* const director = &*pool.director;
  if (bodyless) {
    return [director](const director::Headers& route_headers,
                      const std::vector<std::string>* allowed) {
      return director->route_bodyless(route_headers, std::nullopt, allowed);
    };
  }
  return [director, &request](const director::Headers& route_headers,
                              const std::vector<std::string>* allowed) {
    const std::optional<std::vector<std::string>> no_subset;
    return director->route({.headers = route_headers,
                            .body = request.body(),
                            .subset = no_subset,
                            .allowed = allowed});
  };
}

asio::awaitable<bool> Proxy::choose_pool(RequestState& state, const http::Request& request,
                                         std::string_view path, director::Headers& headers,
                                         http::ResponseWriter& writer) {
  // Body-based routing: the model the body names, never a client's own header.
  set_director_header(headers, kModelNameHeader, "");
  if (request.method() == bhttp::verb::post) {
    const Result<request::OpenAiRequest> parsed =
        request::parse_openai_request(request::api_kind_from_path(path), request.body());
    if (!parsed) {
      co_await reply_error(state, writer, parsed.status(), "bad_request", false);
      co_return false;
    }
    state.record.model = parsed->model;
    headers.emplace_back(std::string(kModelNameHeader), parsed->model);
  }
  const std::string_view host = director::find_header(headers, ":authority").value_or("");
  const RouteRule* rule = routes_->match(
      {.method = request.method_string(), .path = path, .host = host, .headers = headers});
  if (rule == nullptr) {
    const std::string model = state.record.model;
    const Status status = Status::not_found(
        model.empty() ? fmt::format("no route matches {} {}", request.method_string(), path)
                      : fmt::format("the model `{}` does not exist: no route matches it", model));
    co_await reply_error(state, writer, status, "no_route", false);
    co_return false;
  }
  const std::uint64_t draw = route_draws_.fetch_add(1, std::memory_order_relaxed);
  const std::optional<RouteBackend> backend =
      RouteTable::pick_backend(*rule, derive_seed(seed_, /*domain=*/0x726f757465, draw));
  if (!backend) {
    const Status status = Status::internal(
        fmt::format("route {} rule {} has no backend to send the request to (no backendRefs, or "
                    "every weight is 0)",
                    rule->route, rule->rule_index));
    co_await reply_error(state, writer, status, "no_backend", false);
    co_return false;
  }
  state.pool = &pools_[backend->pool_index];
  if (rule->request_timeout) {
    state.request_timeout = *rule->request_timeout;
    state.deadline = state.start + *rule->request_timeout;
  }
  state.backend_request_timeout = rule->backend_request_timeout;
  co_return true;
}

asio::awaitable<void> Proxy::list_models(RequestState& state, http::ResponseWriter& writer) {
  std::string body = models_list_json(models_);
  state.record.status = 200;
  if (!co_await writer.send(200, kJson, std::move(body))) state.record.status = kClientClosed;
}

asio::awaitable<void> Proxy::readyz(http::ResponseWriter& writer) {
  // Ready when every pool has an endpoint with fresh metrics.
  std::size_t ready = 0;
  std::size_t endpoints = 0;
  std::size_t pools_ready = 0;
  for (const ProxyPool& pool : pools_) {
    const auto snapshot = pool.director->datastore().snapshot();
    const TimePoint now = pool.director->clock().now();
    std::size_t pool_ready = 0;
    for (const auto& endpoint : snapshot->endpoints) {
      if (endpoint.fresh_metrics(now, options_.metrics_staleness_threshold)) ++pool_ready;
    }
    ready += pool_ready;
    endpoints += snapshot->endpoints.size();
    if (pool_ready > 0) ++pools_ready;
  }
  // With an external picker the gateway itself needs no endpoint metrics.
  const bool all_pools = epp_ != nullptr || pools_ready == pools_.size();
  const bool draining = draining_.load(std::memory_order_acquire);
  const unsigned status = all_pools && !draining ? 200 : 503;
  std::string body = fmt::format(R"({{"status":"{}","endpoints_ready":{},"endpoints":{}}})",
                                 draining             ? "draining"
                                 : all_pools          ? "ready"
                                 : pools_.size() == 1 ? "no endpoint has fresh metrics"
                                                      : "a pool has no endpoint with fresh metrics",
                                 ready, endpoints);
  co_await writer.send(status, kJson, std::move(body));
}

std::optional<std::vector<std::string>> Proxy::allowed_endpoints(
    const ProxyPool& proxy_pool, const std::vector<std::string>& attempted) const {
  const std::vector<std::string> ejected = health_.ejected();
  if (ejected.empty() && attempted.empty()) {
    return std::vector<std::string>();  // the common case: no lock, no list
  }
  std::vector<std::string> pool;
  const auto snapshot = proxy_pool.director->datastore().snapshot();
  pool.reserve(snapshot->endpoints.size());
  for (const auto& endpoint : snapshot->endpoints) pool.push_back(endpoint.info->host_port);
  std::vector<std::string> allowed = allowed_candidates(pool, ejected, attempted);
  if (allowed.empty()) return std::nullopt;
  if (allowed.size() == pool.size()) allowed.clear();
  return allowed;
}

void Proxy::record_failure(const std::string& host_port, AttemptFailure failure) {
  metrics_.count_error(failure_name(failure));
  if (health_.record_failure(host_port)) {
    metrics_.count_ejection(host_port);
    spdlog::warn(
        "gateway: endpoint {} ejected for a cool-down after consecutive failures (last: "
        "{})",
        host_port, failure_name(failure));
  }
}

std::chrono::milliseconds Proxy::budget(const RequestState& state,
                                        std::chrono::milliseconds step) const {
  std::optional<SteadyTime> deadline = state.deadline;
  if (state.attempt_deadline && (!deadline || *state.attempt_deadline < *deadline)) {
    deadline = state.attempt_deadline;
  }
  if (!deadline) return step;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      *deadline - std::chrono::steady_clock::now());
  return std::clamp(left, std::chrono::milliseconds(1), step);
}

std::optional<UpstreamEndpoint> Proxy::begin_attempt(RequestState& state, AttemptPlan& plan,
                                                     const std::string& host_port,
                                                     ExchangeTimeouts& timeouts, bool& timed_out) {
  std::optional<UpstreamEndpoint> endpoint = parse_upstream_endpoint(host_port);
  if (!plan.attempted().empty()) metrics_.count_retry();
  plan.record_attempt(host_port);
  ++state.record.attempts;
  if (!endpoint) {
    spdlog::error("gateway: the picker named an unusable endpoint \"{}\"", host_port);
    return std::nullopt;
  }
  if (state.deadline && std::chrono::steady_clock::now() >= *state.deadline) {
    timed_out = true;
    return std::nullopt;
  }
  if (state.backend_request_timeout) {
    state.attempt_deadline = std::chrono::steady_clock::now() + *state.backend_request_timeout;
  }
  timeouts = ExchangeTimeouts{.connect = budget(state, options_.connect_timeout),
                              .first_byte = budget(state, options_.first_byte_timeout)};
  return endpoint;
}

bool Proxy::attempt_failed(RequestState& state, std::string_view request_id,
                           const std::string& host_port, ExchangeFailure failure,
                           FailedAttempts& failed) {
  spdlog::debug("gateway: request {} attempt {} at {} failed: {}", request_id,
                state.record.attempts, host_port, failure.status.message());
  record_failure(host_port, failure.kind);
  state.record.error = failure.status.message();
  const bool retryable = is_retryable(failure.kind);
  failed.last_failure = std::move(failure);
  failed.kept_response.reset();
  return retryable;
}

void Proxy::attempt_answered_error(RequestState& state, KeptResponse kept, bool complete,
                                   UpstreamExchange& exchange, FailedAttempts& failed) {
  record_failure(kept.endpoint, AttemptFailure::kServerError);
  state.record.error = fmt::format("{} answered {}", kept.endpoint, kept.head.status);
  if (complete) {
    pool_.release(current_shard(), kept.endpoint, std::move(exchange.connection));
    failed.kept_response = std::move(kept);
    failed.last_failure.reset();
  } else {
    failed.last_failure = ExchangeFailure{
        AttemptFailure::kReset, Status(502, fmt::format("{} answered {} with an unreadable body",
                                                        kept.endpoint, kept.head.status))};
    failed.kept_response.reset();
  }
}

void Proxy::attempt_answered(const std::string& host_port, unsigned status,
                             const AttemptPlan& plan) {
  if (status >= 500) {
    record_failure(host_port, AttemptFailure::kServerError);
    if (plan.attempted().size() > 1) metrics_.count_error("all_attempts_failed");
  } else {
    health_.record_success(host_port);
  }
}

asio::awaitable<void> Proxy::forward(RequestState& state, const http::Request& request,
                                     http::ResponseWriter& writer, director::Headers headers,
                                     const RouteFunction& route) {
  director::Director& director = *state.pool->director;
  // Ejected endpoints sit out (an empty pool is the director's to report).
  std::vector<std::string> allowed =
      allowed_endpoints(*state.pool, {}).value_or(std::vector<std::string>());
  Result<director::RoutedRequest> first_route =
      route(headers, allowed.empty() ? nullptr : &allowed);
  if (!first_route) {
    co_await reply_error(state, writer, first_route.status(),
                         picker_error_reason(first_route.status()), true);
    co_return;
  }
  director::RoutedRequest& routed = *first_route;  // re-routes move theirs in
  state.record.request_id = routed.request_id();
  state.record.model = routed.incoming_model();
  state.record.target_model = routed.target_model();
  const bool has_body = !request.body().empty() || request.method() == bhttp::verb::post;
  const bool request_id_generated = routed.request_id_generated();
  if (request_id_generated) {
    // Re-routes keep the id, and the model server sees it.
    set_director_header(headers, director::protocol::kRequestIdHeader, routed.request_id());
  }
  auto build_upstream_request = [&](director::RoutedRequest& from) {
    http::Request upstream(request.method(), request.target(), 11);
    copy_forwarded_headers(request, upstream);
    if (request_id_generated) {
      upstream.set(std::string(director::protocol::kRequestIdHeader), from.request_id());
    }
    if (has_body) upstream.body() = from.take_body();
    // Neither Connection nor Content-Length is copied: HTTP/1.1 keeps the connection open by
    // default, and the client connection writes Content-Length from the body.
    return upstream;
  };
  http::Request prototype = build_upstream_request(routed);

  UpstreamCancel& cancel = state.cancel;
  writer.on_client_gone([&cancel] { cancel.cancel(); });

  AttemptPlan plan(options_.max_retries);
  plan.set_destinations(routed.destination());
  FailedAttempts failed;
  bool timed_out = false;
  while (true) {
    std::optional<std::string> next = plan.next();
    if (!next) {
      if (plan.attempted().empty() || !plan.can_retry()) break;
      // The destination list is used up: ask the director again, without what failed.
      std::optional<std::vector<std::string>> candidates =
          allowed_endpoints(*state.pool, plan.attempted());
      if (!candidates) break;  // nothing left that has not failed or been ejected
      allowed = std::move(*candidates);
      Result<director::RoutedRequest> rerouted =
          route(headers, allowed.empty() ? nullptr : &allowed);
      if (!rerouted) break;  // counted by the director; the last failure answers the client
      routed = std::move(*rerouted);
      state.record.target_model = routed.target_model();
      plan.set_destinations(routed.destination());
      prototype = build_upstream_request(routed);
      continue;
    }
    ExchangeTimeouts timeouts;
    const std::optional<UpstreamEndpoint> endpoint =
        begin_attempt(state, plan, *next, timeouts, timed_out);
    if (timed_out) break;
    if (!endpoint) continue;
    auto outcome =
        co_await pool_.start_exchange(current_shard(), *endpoint, prototype, timeouts, cancel);
    if (cancel.cancelled() || writer.client_gone()) {
      client_gone(state, &routed);
      co_return;
    }
    if (auto* failure = std::get_if<ExchangeFailure>(&outcome)) {
      if (!attempt_failed(state, routed.request_id(), *next, std::move(*failure), failed)) break;
      continue;
    }
    UpstreamExchange& exchange = std::get<UpstreamExchange>(outcome);
    if (exchange.head.status >= 500 && plan.can_retry()) {
      // Keep the error (small, usually JSON) in case no other endpoint does better.
      KeptResponse kept{.head = std::move(exchange.head), .body = {}, .endpoint = *next};
      const bool complete = co_await keep_error_body(state, writer, exchange, kept.body);
      if (cancel.cancelled() || writer.client_gone()) {
        client_gone(state, &routed);
        co_return;
      }
      attempt_answered_error(state, std::move(kept), complete, exchange, failed);
      continue;
    }
    attempt_answered(*next, exchange.head.status, plan);
    co_await relay(state, writer, routed, exchange, cancel, *endpoint);
    co_return;
  }

  // Every attempt failed (or there was nowhere to go).
  if (plan.attempted().size() > 1) metrics_.count_error("all_attempts_failed");
  if (failed.kept_response) {
    // The model server's own error, relayed as it was sent.
    KeptResponse& kept = *failed.kept_response;
    http::ResponseHead& head = kept.head;
    const std::optional<std::string_view> upstream_type =
        http::find_header(head.headers, "content-type");
    routed.on_response_head(static_cast<int>(head.status), upstream_type);
    routed.on_served_endpoint(kept.endpoint);
    std::string body;
    routed.on_response_body(kept.body, true, body);
    const std::string content_type(upstream_type.value_or(""));
    http::Headers extra = relayed_response_headers(std::move(head.headers));
    state.record.status = head.status;
    state.record.endpoint = kept.endpoint;
    co_await writer.send(head.status, content_type, std::move(body), std::move(extra));
    co_return;
  }
  routed.finish(false);
  if (timed_out || !failed.last_failure) {
    const Status status = timed_out
                              ? Status(504, fmt::format("the request did not complete within {} ms",
                                                        state.request_timeout.count()))
                              : Status::unavailable("no endpoint left to try");
    co_await reply_error(state, writer, status, timed_out ? "upstream_timeout" : "no_endpoint",
                         false);
    co_return;
  }
  const Status status = final_status(*failed.last_failure, state.record.attempts);
  // The attempt's reason was counted already; the director counts the answer.
  director.count_error(status, state.record.model, state.record.target_model);
  state.record.status = static_cast<unsigned>(status.http_status());
  state.record.error = status.message();
  std::string body = status.to_openai_json();
  co_await writer.send(static_cast<unsigned>(status.http_status()), kJson, std::move(body));
}

asio::awaitable<bool> Proxy::keep_error_body(RequestState& state, http::ResponseWriter& writer,
                                             UpstreamExchange& exchange, std::string& body) {
  state.cancel.set_active(exchange.connection.get());
  bool complete = false;
  while (body.size() <= kMaxKeptErrorBodyBytes) {
    Result<std::size_t> read =
        co_await exchange.connection->read_body_some(body, budget(state, options_.idle_timeout));
    if (!read.ok() || *read == 0) {
      complete = read.ok();
      break;
    }
  }
  state.cancel.set_active(nullptr);
  co_return complete && !state.cancel.cancelled() && !writer.client_gone();
}

asio::awaitable<void> Proxy::relay(RequestState& state, http::ResponseWriter& writer,
                                   director::RoutedRequest& routed, UpstreamExchange& exchange,
                                   UpstreamCancel& cancel, const UpstreamEndpoint& endpoint) {
  const http::ResponseHead& head = exchange.head;
  const std::optional<std::string_view> upstream_type =
      http::find_header(head.headers, "content-type");
  routed.on_response_head(static_cast<int>(head.status), upstream_type);
  routed.on_served_endpoint(endpoint.host_port);
  state.record.endpoint = endpoint.host_port;
  state.record.status = head.status;
  state.record.error.clear();
  const std::string content_type(upstream_type.value_or(""));
  // The head's fields are not needed past this point: the relayed ones are moved, not copied.
  http::Headers extra = relayed_response_headers(std::move(exchange.head.headers));
  if (options_.emit_endpoint_scores) {
    extra.emplace_back(std::string(director::protocol::kScoresKey), routed.endpoint_scores());
    extra.emplace_back(std::string(kServedHeader), endpoint.host_port);
  }
  const bool streaming = routed.streaming() || is_event_stream(content_type);

  http::ClientConnection& upstream = *exchange.connection;
  cancel.set_active(&upstream);
  std::string chunk;
  std::string out;
  std::string whole;  // a response sent with Content-Length
  bool begun = false;
  while (true) {
    chunk.clear();
    Result<std::size_t> read =
        co_await upstream.read_body_some(chunk, budget(state, options_.idle_timeout));
    if (cancel.cancelled() || writer.client_gone()) {
      cancel.set_active(nullptr);
      client_gone(state, &routed);
      co_return;
    }
    if (!read.ok()) {
      cancel.set_active(nullptr);
      routed.finish(false);
      const bool timeout = read.status().http_status() == 504;
      record_failure(endpoint.host_port,
                     timeout ? AttemptFailure::kFirstByteTimeout : AttemptFailure::kReset);
      const Status status(
          timeout ? 504 : 502,
          fmt::format("the model server's response broke off: {}", read.status().message()));
      if (!begun) {
        co_await reply_error(state, writer, status, timeout ? "upstream_timeout" : "upstream_reset",
                             false);
      } else {
        // Bytes went out already: the stream is left unterminated, which the client sees as a
        // truncated response.
        state.pool->director->count_error(status, state.record.model, state.record.target_model);
        state.record.error = status.message();
      }
      co_return;
    }
    const bool end_of_stream = *read == 0;
    if (!chunk.empty() && !state.first_byte) state.first_byte = std::chrono::steady_clock::now();
    if (!streaming) {
      // Sent whole, with Content-Length: gathered here (usually one piece: no copy), then handed
      // to the director once.
      routed.on_response_piece(chunk.size());
      if (whole.empty()) {
        whole.swap(chunk);
      } else {
        whole.append(chunk);
      }
      if (end_of_stream) {
        routed.on_whole_response_body(whole);
        break;
      }
      continue;
    }
    out.clear();
    if (!chunk.empty() || end_of_stream) routed.on_response_body(chunk, end_of_stream, out);
    if (!begun && (!out.empty() || end_of_stream)) {
      begun = true;
      if (!co_await writer.begin_stream(head.status, content_type, extra)) {
        cancel.set_active(nullptr);
        client_gone(state, &routed);
        co_return;
      }
    }
    if (!out.empty() && !co_await writer.write_chunk(out)) {
      cancel.set_active(nullptr);
      client_gone(state, &routed);
      co_return;
    }
    if (end_of_stream) break;
  }
  cancel.set_active(nullptr);
  pool_.release(current_shard(), endpoint.host_port, std::move(exchange.connection));
  if (routed.usage()) {
    state.record.prompt_tokens = routed.usage()->prompt_tokens;
    state.record.completion_tokens = routed.usage()->completion_tokens;
  }
  bool sent = false;
  if (streaming) {
    sent = co_await writer.end_stream();
  } else {
    sent = co_await writer.send(head.status, content_type, std::move(whole), std::move(extra));
  }
  if (!sent) {
    metrics_.count_error("client_disconnected");
    state.record.status = kClientClosed;
  }
}

void Proxy::client_gone(RequestState& state, director::RoutedRequest* routed) {
  if (routed != nullptr) routed->finish(false);
  metrics_.count_error("client_disconnected");
  state.record.status = kClientClosed;
  state.record.error = "client closed the connection";
}

asio::awaitable<void> Proxy::reply_error(RequestState& state, http::ResponseWriter& writer,
                                         const Status& status, std::string_view reason,
                                         bool counted_by_director, http::Headers extra) {
  metrics_.count_error(reason);
  if (!counted_by_director) {
    // Before a pool is chosen the error is the gateway's own (e.g. no route): the director of
    // the only pool counts it when there is just one, as before routes existed.
    const ProxyPool* pool = state.pool != nullptr ? state.pool
                            : pools_.size() == 1  ? &pools_.front()
                                                  : nullptr;
    if (pool != nullptr) {
      pool->director->count_error(status, state.record.model, state.record.target_model);
    }
  }
  state.record.status = static_cast<unsigned>(status.http_status());
  state.record.error = status.message();
  std::string body = status.to_openai_json();
  const bool sent = co_await writer.send(static_cast<unsigned>(status.http_status()), kJson,
                                         std::move(body), std::move(extra));
  if (!sent) state.record.status = kClientClosed;
}

void Proxy::finish(RequestState& state) {
  const SteadyTime end = std::chrono::steady_clock::now();
  AccessRecord& record = state.record;
  if (record.status == 0) record.status = 500;
  record.duration_ms = milliseconds_between(state.start, end);
  if (state.first_byte) record.ttft_ms = milliseconds_between(state.start, *state.first_byte);
  metrics_.count_request(record.status);
  metrics_.observe_duration(record.duration_ms / 1000.0);
  if (record.ttft_ms && record.status < 300) metrics_.observe_ttft(*record.ttft_ms / 1000.0);
  if (access_log_) {
    const auto unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
    access_log_->info("{}", format_access_log(record, unix_ms));
  }
}

}  // namespace infergate::gateway
