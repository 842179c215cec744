#include "director/director.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>

#include "common/random.h"
#include "common/text.h"
#include "director/metrics.h"
#include "director/protocol.h"
#include "scheduling/admission.h"

namespace infergate::director {
namespace {

// A JSON response body kept only to read its usage is not kept beyond this (a reply that large
// carries no usage worth the memory); a body that must be held for the model restore is kept whole.
constexpr std::size_t kMaxUsageBufferBytes = 8 << 20;

// The approximate-prefix scorer's 4 characters per token (scheduling facts §3).
constexpr std::int64_t kCharactersPerToken = 4;

std::string_view first_header(const Headers& headers, std::string_view a, std::string_view b) {
  if (auto value = find_header(headers, a); value && !value->empty()) return *value;
  if (auto value = find_header(headers, b); value && !value->empty()) return *value;
  return {};
}

std::string make_uuid_v4(std::uint64_t high, std::uint64_t low) {
  high = (high & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;  // version 4
  low = (low & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;    // variant 10
  // xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx, lower-case hex: the 32 nibbles of high then low, most
  // significant first, with dashes after the 8th, 12th, 16th and 20th. Written by hand: one per
  // request without an x-request-id, and a formatting library call costs ten times as much.
  constexpr std::string_view kHexDigits = "0123456789abcdef";
  std::string uuid(36, '-');
  std::size_t position = 0;
  const auto put_nibbles = [&](std::uint64_t bits, int count, int shift) {
    for (int i = 0; i < count; ++i, shift -= 4) {
      uuid[position++] = kHexDigits[(bits >> shift) & 0xF];
    }
  };
  put_nibbles(high, 8, 60);
  ++position;
  put_nibbles(high, 4, 28);
  ++position;
  put_nibbles(high, 4, 12);
  ++position;
  put_nibbles(low, 4, 60);
  ++position;
  put_nibbles(low, 12, 44);
  return uuid;
}

// The address part of "ip", "ip:port", "[v6]" or "[v6]:port" (a bare IPv6 address has several
// colons and no port).
std::string_view address_of(std::string_view entry) {
  if (!entry.empty() && entry.front() == '[') {
    const auto close = entry.find(']');
    return close == std::string_view::npos ? entry.substr(1) : entry.substr(1, close - 1);
  }
  const auto colon = entry.find(':');
  if (colon == std::string_view::npos || entry.find(':', colon + 1) != std::string_view::npos) {
    return entry;
  }
  return entry.substr(0, colon);
}

bool has_port(std::string_view entry) {
  if (!entry.empty() && entry.front() == '[') {
    const auto close = entry.find(']');
    return close != std::string_view::npos && close + 1 < entry.size() && entry[close + 1] == ':';
  }
  const auto colon = entry.find(':');
  return colon != std::string_view::npos && entry.find(':', colon + 1) == std::string_view::npos;
}

// The model policies a thread loaded last: whose (a director's id) and at which version.
struct PoliciesPin {
  std::uint64_t director_id = ~std::uint64_t{0};
  std::uint64_t version = 0;
  std::shared_ptr<const datastore::ModelPolicies> policies;
};

// Per-thread scheduling scratch: the cycle state keeps the prompt's hash buffers between requests.
struct RouteScratch {
  std::vector<const datastore::Endpoint*> candidates;
  scheduling::CycleState cycle;
  PoliciesPin policies;
};
thread_local RouteScratch route_scratch;

std::atomic<std::uint64_t> next_director_id{0};

double seconds(Duration duration) { return std::chrono::duration<double>(duration).count(); }

}  // namespace

std::optional<std::string_view> find_header(const Headers& headers,
                                            std::string_view lower_case_name) {
  for (const auto& [name, value] : headers) {
    if (name == lower_case_name) return std::string_view(value);
  }
  return std::nullopt;
}

std::string_view error_code_name(int http_status) {
  switch (http_status) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 413:
      return "PayloadTooLarge";
    case 429:
      return "ResourceExhausted";
    case 502:
      return "BadGateway";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "GatewayTimeout";
    default:
      return "Internal";
  }
}

std::string error_body(const Status& status) {
  return fmt::format("inference error: {} - {}", error_code_name(status.http_status()),
                     status.message());
}

// --- RoutedRequest ---

RoutedRequest::RoutedRequest(RoutedRequest&& other) noexcept
    : director_(other.director_),
      series_(other.series_),
      request_id_(std::move(other.request_id_)),
      request_id_generated_(other.request_id_generated_),
      destination_(std::move(other.destination_)),
      body_(std::move(other.body_)),
      incoming_model_(std::move(other.incoming_model_)),
      target_model_(std::move(other.target_model_)),
      priority_(other.priority_),
      streaming_(other.streaming_),
      scheduling_(std::move(other.scheduling_)),
      snapshot_(std::move(other.snapshot_)),
      charged_(std::move(other.charged_)),
      charged_tokens_(other.charged_tokens_),
      started_(other.started_),
      first_byte_(other.first_byte_),
      request_bytes_(other.request_bytes_),
      response_bytes_(other.response_bytes_),
      response_status_(other.response_status_),
      response_sse_(other.response_sse_),
      served_endpoint_(std::move(other.served_endpoint_)),
      restorer_(std::move(other.restorer_)),
      sse_usage_(std::move(other.sse_usage_)),
      buffered_(std::move(other.buffered_)),
      buffer_holds_output_(other.buffer_holds_output_),
      usage_(std::move(other.usage_)),
      finished_(other.finished_) {
  other.finished_ = true;  // the moved-from request owns no accounting
}

RoutedRequest& RoutedRequest::operator=(RoutedRequest&& other) noexcept {
  if (this == &other) return *this;
  finish(false);
  director_ = other.director_;
  series_ = other.series_;
  request_id_ = std::move(other.request_id_);
  request_id_generated_ = other.request_id_generated_;
  destination_ = std::move(other.destination_);
  body_ = std::move(other.body_);
  incoming_model_ = std::move(other.incoming_model_);
  target_model_ = std::move(other.target_model_);
  priority_ = other.priority_;
  streaming_ = other.streaming_;
  scheduling_ = std::move(other.scheduling_);
  snapshot_ = std::move(other.snapshot_);
  charged_ = std::move(other.charged_);
  charged_tokens_ = other.charged_tokens_;
  started_ = other.started_;
  first_byte_ = other.first_byte_;
  request_bytes_ = other.request_bytes_;
  response_bytes_ = other.response_bytes_;
  response_status_ = other.response_status_;
  response_sse_ = other.response_sse_;
  served_endpoint_ = std::move(other.served_endpoint_);
  restorer_ = std::move(other.restorer_);
  sse_usage_ = std::move(other.sse_usage_);
  buffered_ = std::move(other.buffered_);
  buffer_holds_output_ = other.buffer_holds_output_;
  usage_ = std::move(other.usage_);
  finished_ = other.finished_;
  other.finished_ = true;  // the moved-from request owns no accounting
  other.charged_.reset();
  return *this;
}

RoutedRequest::~RoutedRequest() { finish(false); }

std::string RoutedRequest::endpoint_scores() const {
  if (!scheduling_) return "{}";
  const scheduling::ProfileResult& result = scheduling_->primary_result();
  std::vector<std::size_t> order(result.scored.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return result.totals[a] > result.totals[b];
  });
  nlohmann::ordered_json scores = nlohmann::ordered_json::object();
  for (std::size_t candidate : order) {
    nlohmann::ordered_json entry;
    entry["total"] = result.totals[candidate];
    for (std::size_t s = 0; s < result.scorers->names.size(); ++s) {
      entry[result.scorers->names[s]] = result.score(s, candidate);
    }
    scores[result.scored[candidate]->info->host_port] = std::move(entry);
  }
  return scores.dump();
}

void RoutedRequest::on_response_headers(const Headers& headers) {
  if (auto status = find_header(headers, ":status")) {
    int value = 0;
    for (char c : *status) {
      if (c < '0' || c > '9') break;
      value = value * 10 + (c - '0');
    }
    response_status_ = value;
  }
  if (auto type = find_header(headers, "content-type")) {
    response_sse_ = type->find("text/event-stream") != std::string_view::npos;
  }
}

void RoutedRequest::on_response_head(int status, std::optional<std::string_view> content_type) {
  response_status_ = status;
  if (content_type) {
    response_sse_ = content_type->find("text/event-stream") != std::string_view::npos;
  }
}

void RoutedRequest::on_response_body(std::string_view chunk, bool end_of_stream, std::string& out) {
  if (finished_) {
    out.append(chunk);
    return;
  }
  on_response_piece(chunk.size());
  const bool restore = restores_model();
  if (response_sse_ || (streaming_ && response_status_ < 300)) {
    if (!sse_usage_) {
      sse_usage_ = std::make_unique<request::SseUsageScanner>();
      if (restore) {
        restorer_ = std::make_unique<request::ModelNameRestorer>(target_model_, incoming_model_);
      }
    }
    sse_usage_->feed(chunk);
    if (restorer_) {
      restorer_->feed(chunk, out);
    } else {
      out.append(chunk);
    }
    if (end_of_stream) {
      if (restorer_) restorer_->finish(out);
      sse_usage_->finish();
      usage_ = sse_usage_->usage();
      finish(true);
    }
    return;
  }
  // A JSON body: kept for its usage, and held back when its model must be restored.
  buffer_holds_output_ = restore;
  if (buffer_holds_output_ || buffered_.size() + chunk.size() <= kMaxUsageBufferBytes) {
    buffered_.append(chunk);
  }
  if (!buffer_holds_output_) out.append(chunk);
  if (end_of_stream) {
    read_whole_json_body(buffered_, buffer_holds_output_);
    if (buffer_holds_output_) out.append(buffered_);
    buffered_.clear();
    buffered_.shrink_to_fit();
    finish(true);
  }
}

void RoutedRequest::on_response_piece(std::size_t bytes) {
  if (finished_) return;
  if (bytes > 0 && first_byte_ == TimePoint{}) first_byte_ = director_->clock_.now();
  response_bytes_ += bytes;
}

void RoutedRequest::on_whole_response_body(std::string& body) {
  if (finished_) return;
  // As on_response_body: a body over the usage limit is read only when its model is restored.
  const bool restore = restores_model();
  if (restore || body.size() <= kMaxUsageBufferBytes) read_whole_json_body(body, restore);
  finish(true);
}

bool RoutedRequest::restores_model() const {
  return incoming_model_ != target_model_ && !incoming_model_.empty();
}

void RoutedRequest::read_whole_json_body(std::string& body, bool restore) {
  auto usage = request::parse_body_usage(body);
  if (usage.ok()) usage_ = *usage;
  if (restore && response_status_ < 300) {
    auto restored = request::rewrite_model(body, incoming_model_);
    if (restored.ok()) body = std::move(*restored);
  }
}

void RoutedRequest::finish(bool completed) {
  if (finished_) return;
  finished_ = true;
  if (director_ == nullptr) return;
  if (charged_) {
    charged_->inflight_requests.fetch_sub(1, std::memory_order_relaxed);
    charged_->inflight_tokens.fetch_sub(charged_tokens_, std::memory_order_relaxed);
    charged_.reset();
  }
  if (series_ == nullptr) return;  // body-less requests are not objective requests
  const ModelSeries& series = *series_;
  series.running_requests.dec();
  if (!completed) return;
  if (response_status_ >= 300) {
    series.model_server_errors.inc();
    return;
  }
  const TimePoint now = director_->clock_.now();
  const double elapsed = seconds(now - started_);
  series.request_duration_seconds.observe(elapsed);
  if (first_byte_ != TimePoint{})
    series.request_ttft_seconds.observe(seconds(first_byte_ - started_));
  series.response_sizes.observe(static_cast<double>(response_bytes_));
  if (usage_) {
    series.input_tokens.observe(static_cast<double>(usage_->prompt_tokens));
    series.output_tokens.observe(static_cast<double>(usage_->completion_tokens));
    series.prompt_cached_tokens.observe(static_cast<double>(usage_->cached_tokens));
    if (usage_->completion_tokens > 0) {
      series.normalized_time_per_output_token_seconds.observe(
          elapsed / static_cast<double>(usage_->completion_tokens));
    }
  }
}

// --- Director ---

Director::Director(datastore::Datastore& store, scheduling::SchedulerSetup setup,
                   std::shared_ptr<const datastore::ModelPolicies> policies, const Clock& clock,
                   prom::Registry& registry, DirectorOptions options)
    : id_(next_director_id.fetch_add(1, std::memory_order_relaxed)),
      store_(store),
      setup_(std::move(setup)),
      policies_(policies ? std::move(policies)
                         : std::make_shared<const datastore::ModelPolicies>()),
      clock_(clock),
      options_(std::move(options)),
      metrics_(std::make_unique<DirectorMetrics>(registry, setup_, store_, options_.pool_name,
                                                 clock_, options_.metrics_staleness_threshold)),
      random_state_(options_.seed != 0 ? options_.seed : std::random_device{}() * 0x9E3779B9ULL) {}

Director::~Director() = default;

void Director::set_policies(std::shared_ptr<const datastore::ModelPolicies> policies) {
  policies_.store(
      policies ? std::move(policies) : std::make_shared<const datastore::ModelPolicies>(),
      std::memory_order_release);
  policies_version_.fetch_add(1, std::memory_order_release);
}

const datastore::ModelPolicies& Director::current_policies() const {
  // Policies change with configuration, not per request: while the version stays, the thread's
  // pinned reference saves the atomic shared_ptr load's locked instructions.
  PoliciesPin& pin = route_scratch.policies;
  const std::uint64_t version = policies_version_.load(std::memory_order_acquire);
  if (pin.director_id != id_ || pin.version != version) {
    pin.policies = policies_.load(std::memory_order_acquire);
    pin.director_id = id_;
    pin.version = version;
  }
  return *pin.policies;
}

std::uint64_t Director::next_random() const {
  return SplitMix64(random_state_.fetch_add(0x9E3779B97F4A7C15ULL, std::memory_order_relaxed))
      .next_u64();
}

void Director::count_error(const Status& status, std::string_view model,
                           std::string_view target_model) const {
  metrics_->request_error_total.with({model, target_model, error_code_name(status.http_status())})
      .inc();
}

void Director::candidates(const datastore::Snapshot& snapshot, const Headers& headers,
                          const std::optional<std::vector<std::string>>& subset,
                          const std::vector<std::string>* allowed,
                          std::vector<const datastore::Endpoint*>& out) const {
  out.clear();
  if (allowed != nullptr) {
    const auto outside = [&](const datastore::Endpoint* endpoint) {
      return std::find(allowed->begin(), allowed->end(), endpoint->info->host_port) ==
             allowed->end();
    };
    candidates(snapshot, headers, subset, nullptr, out);
    out.erase(std::remove_if(out.begin(), out.end(), outside), out.end());
    return;
  }
  // Conformance: the test header wins over the subset hint; `ip:port` entries pin the port.
  if (options_.conformance_hooks) {
    if (auto selection = find_header(headers, protocol::kTestSelectionHeader)) {
      std::vector<std::string_view> entries;
      std::string_view rest = *selection;
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        const std::string_view entry = trim_blanks(rest.substr(0, comma));
        if (!entry.empty()) entries.push_back(entry);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
      for (const auto& endpoint : snapshot.endpoints) {
        const auto& info = *endpoint.info;
        for (std::string_view entry : entries) {
          if (has_port(entry) ? entry == info.host_port : address_of(entry) == info.spec.address) {
            out.push_back(&endpoint);
            break;
          }
        }
      }
      return;
    }
  }
  // The subset hint is matched by address (every rank of a listed pod), as the reference does.
  if (subset && !options_.disable_subset_filter) {
    for (const auto& endpoint : snapshot.endpoints) {
      for (const std::string& entry : *subset) {
        if (address_of(entry) == endpoint.info->spec.address) {
          out.push_back(&endpoint);
          break;
        }
      }
    }
    return;
  }
  for (const auto& endpoint : snapshot.endpoints) out.push_back(&endpoint);
}

Result<RoutedRequest> Director::route(const RequestInput& input) {
  const TimePoint started = clock_.now();
  const Headers& headers = input.headers;

  std::string_view path = first_header(headers, ":path", "x-original-path");
  if (path.empty()) path = first_header(headers, "x-forwarded-path", "x-forwarded-path");
  if (path.empty()) path = "/v1/completions";
  auto parsed = request::parse_openai_request(request::api_kind_from_path(path), input.body);
  if (!parsed) {
    count_error(parsed.status());
    return parsed.status();
  }

  // The request's random numbers (split draw, request id, the cycle's seed) from one draw of the
  // shared state: one atomic update per request instead of one per number.
  SplitMix64 request_random(next_random());
  RoutedRequest routed;
  routed.director_ = this;
  routed.started_ = started;
  routed.request_bytes_ = input.body.size();
  routed.incoming_model_ = parsed->model;
  routed.streaming_ = parsed->stream;

  // Target model: the rewrite header, then an InferenceModelRewrite rule for the incoming name.
  const datastore::ModelPolicies& policies = current_policies();
  std::string_view rewrite_header =
      first_header(headers, protocol::kModelRewriteHeader, protocol::kLlmdModelRewriteHeader);
  routed.target_model_ = rewrite_header.empty() ? parsed->model : std::string(rewrite_header);
  if (auto rewrite = policies.rewrite(parsed->model, request_random.next_unit())) {
    routed.target_model_ = std::move(rewrite->target_model);
    metrics_->model_rewrite_decisions_total
        .with({rewrite->rewrite_name, routed.incoming_model_, routed.target_model_})
        .inc();
  }
  const std::string_view objective =
      first_header(headers, protocol::kObjectiveHeader, protocol::kLlmdObjectiveHeader);
  routed.priority_ = static_cast<int>(policies.priority(objective, parsed->model));

  const DirectorMetrics::RequestSeries charged =
      metrics_->request_series(routed.incoming_model_, routed.target_model_, routed.priority_);
  charged.requests->inc();
  const ModelSeries& series = *charged.series;
  series.request_sizes.observe(static_cast<double>(input.body.size()));

  if (auto id = find_header(headers, protocol::kRequestIdHeader); id && !id->empty()) {
    routed.request_id_ = *id;
  } else {
    routed.request_id_ = make_uuid_v4(request_random.next_u64(), request_random.next_u64());
    routed.request_id_generated_ = true;
  }

  auto fail = [&](const Status& status) -> Result<RoutedRequest> {
    count_error(status, routed.incoming_model_, routed.target_model_);
    routed.director_ = nullptr;  // nothing charged yet
    return status;
  };

  routed.snapshot_ = store_.snapshot();
  const datastore::Snapshot& snapshot = *routed.snapshot_;
  RouteScratch& scratch = route_scratch;
  candidates(snapshot, headers, input.subset, input.allowed, scratch.candidates);
  if (scratch.candidates.empty()) {
    return fail(Status::unavailable(snapshot.endpoints.empty()
                                        ? "no ready endpoints in the inference pool"
                                        : "no endpoint of the pool matches the request's subset"));
  }

  const std::string_view prompt = parsed->prefix_bytes();
  scheduling::SchedulingRequest request{
      .request_id = routed.request_id_,
      .target_model = routed.target_model_,
      .priority = routed.priority_,
      .headers = headers,
      .prompt_bytes = prompt,
      .cache_salt = parsed->cache_salt,
      .estimated_tokens = static_cast<std::int64_t>(prompt.size()) / kCharactersPerToken,
  };
  scheduling::CycleState& cycle = scratch.cycle;
  cycle.random_seed = request_random.next_u64();
  cycle.plugin_observer = metrics_.get();
  cycle.prefix_matched = false;

  // Legacy admission: only sheddable requests (priority < 0) consult the saturation detector.
  if (routed.priority_ < 0 && setup_.saturation_detector) {
    static const datastore::EndpointMetrics kNoMetrics;
    std::vector<std::shared_ptr<const datastore::EndpointMetrics>> held;
    std::vector<scheduling::Candidate> measured;
    held.reserve(scratch.candidates.size());
    measured.reserve(scratch.candidates.size());
    for (const auto* endpoint : scratch.candidates) {
      held.push_back(endpoint->state->metrics());
      measured.push_back({endpoint, held.back() ? held.back().get() : &kNoMetrics});
    }
    const scheduling::SchedulingContext context{request, snapshot, started, cycle};
    const Status admitted = scheduling::admit_legacy(
        routed.priority_, setup_.saturation_detector->saturation(context, measured));
    if (!admitted.is_ok()) return fail(admitted);
  }

  const auto schedule_start = std::chrono::steady_clock::now();
  auto result = setup_.scheduler->schedule(request, snapshot, scratch.candidates, started, cycle);
  // The last plugin's end is the cycle's end but for the result's assembly: one clock read less.
  const auto schedule_end = cycle.plugin_clock_mark != std::chrono::steady_clock::time_point{}
                                ? cycle.plugin_clock_mark
                                : std::chrono::steady_clock::now();
  metrics_->scheduler_e2e.observe(
      std::chrono::duration<double>(schedule_end - schedule_start).count());
  if (!result) {
    metrics_->scheduler_attempts_total.with({"failure", routed.target_model_, "", "", ""}).inc();
    return fail(result.status());
  }
  const auto& targets = result->primary_result().targets;
  if (targets.empty()) return fail(Status::internal("the scheduler returned no endpoint"));
  const datastore::EndpointInfo& primary = *targets.front()->info;
  metrics_->attempt_success(routed.target_model_, primary).inc();
  setup_.scheduler->pre_request({request, snapshot, started, cycle}, *result);
  routed.destination_ = result->destination();

  if (routed.target_model_ != routed.incoming_model_) {
    auto rewritten = request::rewrite_model(input.body, routed.target_model_);
    if (!rewritten) return fail(rewritten.status());
    routed.body_ = std::move(*rewritten);
  } else if (input.owned_body != nullptr && input.owned_body->data() == input.body.data() &&
             input.owned_body->size() == input.body.size()) {
    routed.body_ = std::move(*input.owned_body);
  } else {
    routed.body_.assign(input.body);
  }
  routed.scheduling_ = std::move(*result);

  routed.charged_ = targets.front()->state;
  routed.charged_tokens_ = request.estimated_tokens;
  routed.charged_->inflight_requests.fetch_add(1, std::memory_order_relaxed);
  routed.charged_->inflight_tokens.fetch_add(routed.charged_tokens_, std::memory_order_relaxed);
  series.running_requests.inc();
  routed.series_ = &series;
  return routed;
}

Result<RoutedRequest> Director::route_bodyless(
    const Headers& headers, const std::optional<std::vector<std::string>>& subset,
    const std::vector<std::string>* allowed) {
  RoutedRequest routed;
  routed.started_ = clock_.now();
  if (auto id = find_header(headers, protocol::kRequestIdHeader); id && !id->empty()) {
    routed.request_id_ = *id;
  } else {
    routed.request_id_ = make_uuid_v4(next_random(), next_random());
    routed.request_id_generated_ = true;
  }
  routed.snapshot_ = store_.snapshot();
  RouteScratch& scratch = route_scratch;
  candidates(*routed.snapshot_, headers, subset, allowed, scratch.candidates);
  if (scratch.candidates.empty()) {
    const Status status =
        Status::unavailable(routed.snapshot_->endpoints.empty()
                                ? "no ready endpoints in the inference pool"
                                : "no endpoint of the pool matches the request's subset");
    count_error(status);
    return status;
  }
  const datastore::Endpoint* chosen =
      scratch.candidates[SplitMix64(next_random()).next_below(scratch.candidates.size())];
  routed.director_ = this;
  routed.destination_ = chosen->info->host_port;
  routed.charged_ = chosen->state;
  routed.charged_->inflight_requests.fetch_add(1, std::memory_order_relaxed);
  return routed;
}

}  // namespace infergate::director
