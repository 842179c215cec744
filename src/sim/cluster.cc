#include "sim/cluster.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <limits>
#include <memory>
#include <unordered_map>

#include "api/endpoint_picker_config.h"
#include "common/random.h"
#include "datastore/datastore.h"
#include "director/director.h"
#include "prom/registry.h"
#include "request/openai_request.h"
#include "request/prompt.h"
#include "scheduling/config_loader.h"

namespace infergate::sim {
namespace {

// Seed domains of the simulation's own draws.
constexpr std::uint64_t kDirectorDomain = 11;
constexpr std::uint64_t kRandomPolicyDomain = 12;
constexpr std::uint64_t kSamplingDomain = 13;

constexpr TimePoint kNever = TimePoint::max();

// Bound of the tokeniser cache (4 bytes per token id, plus the prompt bytes as the key).
constexpr std::size_t kMaxCachedTokens = std::size_t{8} << 20;

// What the director's front end would do with a request: where it goes and its accounting.
struct InFlight {
  std::optional<director::RoutedRequest> routed;  // kScheduler only
};

// A request between its arrival at the model server and its entry into the engine queue.
struct FrontendEntry {
  TimePoint ready;
  int replica;
  EngineRequest request;
};

struct Replica {
  std::unique_ptr<Engine> engine;
  std::shared_ptr<const datastore::EndpointInfo> info;  // kScheduler only
  std::optional<TimePoint> step_end;
  TimePoint next_scrape{};
  std::uint64_t routed = 0;
};

class Simulation {
 public:
  explicit Simulation(const ClusterConfig& config)
      : config_(config), oracle_(config.engine.block_size) {}

  Status init() {
    if (config_.replicas < 1) return Status::bad_request("--replicas must be at least 1");
    if (config_.scrape_interval <= Duration::zero()) {
      return Status::bad_request("--scrape-interval must be greater than 0");
    }
    std::vector<datastore::EndpointSpec> specs;
    for (int r = 0; r < config_.replicas; ++r) {
      specs.push_back(
          {.pod_name = fmt::format("replica-{}", r),
           .namespace_name = "default",
           .address = fmt::format("10.{}.{}.{}", (r >> 16) & 0xFF, (r >> 8) & 0xFF, r & 0xFF),
           .port = 8000});
    }
    store_.set_correct_stale_metrics(config_.correct_stale_metrics);
    const auto snapshot = store_.set_endpoints(specs);
    for (int r = 0; r < config_.replicas; ++r) {
      Replica replica;
      replica.engine = std::make_unique<Engine>(config_.engine);
      replica.info = snapshot->find(specs[static_cast<std::size_t>(r)].endpoint_name())->info;
      // Collectors start together and then drift apart: stagger the phases across the interval.
      replica.next_scrape = config_.scrape_interval * (r + 1) / config_.replicas;
      replicas_.push_back(std::move(replica));
    }
    replica_of_id_.assign(store_.id_bound(), -1);
    for (int r = 0; r < config_.replicas; ++r) {
      replica_of_id_[replicas_[static_cast<std::size_t>(r)].info->id] = r;
      publish_metrics(r, TimePoint{});
    }
    if (config_.policy == RoutingPolicy::kScheduler) {
      api::EndpointPickerConfig picker =
          config_.picker_config ? *config_.picker_config : api::default_endpoint_picker_config();
      auto setup = scheduling::build_scheduler(picker);
      if (!setup) {
        return Status::bad_request(
            fmt::format("configuration '{}': {}", config_.name, setup.status().message()));
      }
      director_ = std::make_unique<director::Director>(
          store_, std::move(*setup), nullptr, clock_, registry_,
          director::DirectorOptions{.pool_name = "simulated",
                                    .seed = derive_seed(config_.seed, kDirectorDomain) | 1});
    }
    random_policy_ = SplitMix64(derive_seed(config_.seed, kRandomPolicyDomain));
    return Status::ok();
  }

  ClusterResult run(const ArrivalSource& next_arrival) {
    std::optional<ClusterArrival> pending = next_arrival();
    enum class Kind { kNone, kStepEnd, kEngineEntry, kScrape, kArrival };
    while (true) {
      TimePoint at = kNever;
      Kind kind = Kind::kNone;
      int who = -1;
      for (int r = 0; r < config_.replicas; ++r) {
        const Replica& replica = replicas_[static_cast<std::size_t>(r)];
        if (replica.step_end && *replica.step_end < at) {
          at = *replica.step_end;
          kind = Kind::kStepEnd;
          who = r;
        }
      }
      if (!frontend_.empty() && frontend_.front().ready < at) {
        at = frontend_.front().ready;
        kind = Kind::kEngineEntry;
      }
      const bool busy = !frontend_.empty() || !in_flight_.empty();
      if (busy) {
        for (int r = 0; r < config_.replicas; ++r) {
          const TimePoint scrape = replicas_[static_cast<std::size_t>(r)].next_scrape;
          if (scrape < at) {
            at = scrape;
            kind = Kind::kScrape;
            who = r;
          }
        }
      }
      if (pending && pending->arrival < at) {
        at = std::max(pending->arrival, now_);  // a source out of order is clamped, not rewound
        kind = Kind::kArrival;
      }
      if (kind == Kind::kNone) break;
      now_ = at;
      clock_.set(at);
      ++result_.events;
      switch (kind) {
        case Kind::kStepEnd:
          end_step(who);
          break;
        case Kind::kEngineEntry:
          enter_engine();
          break;
        case Kind::kScrape: {
          Replica& replica = replicas_[static_cast<std::size_t>(who)];
          publish_metrics(who, at);
          replica.next_scrape += config_.scrape_interval;
          break;
        }
        case Kind::kArrival:
          if (!busy) catch_up_scrapes(at);
          arrive(std::move(*pending));
          pending = next_arrival();
          break;
        case Kind::kNone:
          break;
      }
    }
    // Nothing is left to happen. A request still in flight here could never finish (the engine
    // had nothing it could schedule): record it as failed rather than loop forever.
    for (auto& [index, entry] : in_flight_) {
      SimulatedRequest& record = result_.requests[index];
      record.status = Status::internal("the request never finished in the simulation");
      record.end = now_;
      if (entry.routed) entry.routed->finish(false);
    }
    in_flight_.clear();
    return finish_result();
  }

 private:
  void publish_metrics(int r, TimePoint at) {
    const Replica& replica = replicas_[static_cast<std::size_t>(r)];
    const Engine& engine = *replica.engine;
    auto metrics = std::make_shared<datastore::EndpointMetrics>();
    metrics->waiting_requests = engine.num_waiting();
    metrics->running_requests = engine.num_running();
    metrics->kv_cache_usage = engine.kv_cache_usage();
    metrics->max_active_adapters = engine.config().max_loras;
    metrics->cache_block_size = engine.config().block_size;
    metrics->cache_num_blocks = engine.config().num_gpu_blocks;
    metrics->updated_at = at;
    store_.update_metrics(*replica.info, std::move(metrics));
  }

  // After an idle gap no scrape event ran (nothing changed while idle): publish each replica's
  // state once as of its latest scrape time not after `at`, and move its schedule past it.
  void catch_up_scrapes(TimePoint at) {
    const Duration interval = config_.scrape_interval;
    for (int r = 0; r < config_.replicas; ++r) {
      Replica& replica = replicas_[static_cast<std::size_t>(r)];
      if (replica.next_scrape > at) continue;
      const TimePoint latest =
          replica.next_scrape + (at - replica.next_scrape) / interval * interval;
      publish_metrics(r, latest);
      replica.next_scrape = latest + interval;
    }
  }

  // request::prompt_token_ids, memoised: workloads repeat prompts (a shared-prefix pool cycles),
  // and tokenising long prompts is the dearest part of a simulated request. The ids are a
  // function of the API kind and the prefix bytes (the prompt, or the raw JSON of the messages or
  // token ids). Bounded: past kMaxCachedTokens new prompts are tokenised without being kept.
  std::vector<std::uint32_t> prompt_tokens(const request::OpenAiRequest& parsed) {
    std::string key;
    key.reserve(parsed.prefix_bytes().size() + 1);
    key.push_back(static_cast<char>(parsed.kind));
    key.append(parsed.prefix_bytes());
    if (auto it = token_cache_.find(key); it != token_cache_.end()) return it->second;
    std::vector<std::uint32_t> tokens = request::prompt_token_ids(parsed);
    if (cached_tokens_ + tokens.size() <= kMaxCachedTokens) {
      cached_tokens_ += tokens.size();
      token_cache_.emplace(std::move(key), tokens);
    }
    return tokens;
  }

  void fail(SimulatedRequest& record, Status status) {
    record.status = std::move(status);
    record.end = record.arrival;
  }

  void arrive(ClusterArrival arrival) {
    const std::uint64_t index = result_.requests.size();
    SimulatedRequest& record = result_.requests.emplace_back();
    record.index = index;
    record.arrival = now_;

    int replica = -1;
    InFlight entry;
    std::string body;
    if (config_.policy == RoutingPolicy::kScheduler) {
      const director::Headers headers = {{":path", arrival.path}};
      const std::optional<std::vector<std::string>> no_subset;
      auto routed =
          director_->route({.headers = headers, .body = arrival.body, .subset = no_subset});
      if (!routed) return fail(record, routed.status());
      replica = replica_of_id_[routed->scheduling()->primary_result().targets.front()->info->id];
      body = routed->take_body();
      entry.routed = std::move(*routed);
    } else {
      replica =
          config_.policy == RoutingPolicy::kRoundRobin
              ? static_cast<int>(round_robin_++ % static_cast<std::uint64_t>(config_.replicas))
              : static_cast<int>(
                    random_policy_.next_below(static_cast<std::uint64_t>(config_.replicas)));
      body = std::move(arrival.body);
    }
    record.replica = replica;
    ++replicas_[static_cast<std::size_t>(replica)].routed;

    // The model server's side: parse, tokenise, then the engine request (as `infergate sim`).
    auto parsed = request::parse_openai_request(request::api_kind_from_path(arrival.path), body);
    if (!parsed) {
      if (entry.routed) entry.routed->finish(false);
      return fail(record, parsed.status());
    }
    EngineRequest request;
    request.id = index;
    request.prompt_tokens = prompt_tokens(*parsed);
    const auto prompt_len = static_cast<std::int64_t>(request.prompt_tokens.size());
    const std::int64_t max_model_len = config_.engine.max_model_len;
    const std::int64_t max_tokens =
        parsed->max_tokens.value_or(std::max<std::int64_t>(1, max_model_len - prompt_len));
    request.max_output_tokens =
        static_cast<int>(std::clamp<std::int64_t>(max_tokens, 1, max_model_len + 1));
    request.stop_after_tokens = request.max_output_tokens;
    request.prefix_root_hash = root_block_hash(parsed->model, parsed->cache_salt);
    request.sampling_seed = derive_seed(config_.seed, kSamplingDomain, index);
    oracle_.add(request.prompt_tokens, request.prefix_root_hash);
    record.prompt_tokens = static_cast<int>(prompt_len);

    in_flight_.emplace(index, std::move(entry));
    frontend_.push_back({now_ + from_milliseconds(config_.engine.step_time.frontend_ms), replica,
                         std::move(request)});
  }

  void enter_engine() {
    FrontendEntry entry = std::move(frontend_.front());
    frontend_.pop_front();
    const std::uint64_t index = entry.request.id;
    Replica& replica = replicas_[static_cast<std::size_t>(entry.replica)];
    if (Status added = replica.engine->add_request(std::move(entry.request), now_);
        !added.is_ok()) {
      auto it = in_flight_.find(index);
      if (it->second.routed) it->second.routed->finish(false);
      in_flight_.erase(it);
      SimulatedRequest& record = result_.requests[index];
      record.status = std::move(added);
      record.end = now_;
      return;
    }
    start_step(entry.replica);
  }

  void start_step(int r) {
    Replica& replica = replicas_[static_cast<std::size_t>(r)];
    if (replica.step_end || !replica.engine->has_unfinished_requests()) return;
    if (auto duration = replica.engine->begin_step(now_)) replica.step_end = now_ + *duration;
  }

  void end_step(int r) {
    Replica& replica = replicas_[static_cast<std::size_t>(r)];
    replica.step_end.reset();
    const StepOutput step = replica.engine->finish_step(now_);
    for (const TokenEvent& token : step.tokens) {
      SimulatedRequest& record = result_.requests[token.request_id];
      if (record.first_token) {
        record.token_gaps.push_back(now_ - record.last_token);
      } else {
        record.first_token = now_;
      }
      record.last_token = now_;
    }
    for (const FinishedRequest& finished : step.finished) {
      SimulatedRequest& record = result_.requests[finished.request_id];
      record.end = now_;
      record.prompt_tokens = finished.prompt_tokens;
      record.output_tokens = finished.output_tokens;
      record.cached_tokens = finished.cached_tokens;
      const bool completed = finished.reason != FinishReason::kAbort;
      if (!completed) record.status = Status::internal("aborted in the engine");
      auto it = in_flight_.find(finished.request_id);
      if (it == in_flight_.end()) continue;
      // The director's response hook: in-flight accounting released, request metrics recorded.
      if (it->second.routed) it->second.routed->finish(completed);
      in_flight_.erase(it);
    }
    start_step(r);
  }

  ClusterResult finish_result() {
    for (const Replica& replica : replicas_) {
      const EngineCounters& counters = replica.engine->counters();
      result_.replicas.push_back({replica.info->name, replica.routed, counters});
      EngineCounters& totals = result_.totals;
      totals.prompt_tokens += counters.prompt_tokens;
      totals.generation_tokens += counters.generation_tokens;
      totals.prefix_queries += counters.prefix_queries;
      totals.prefix_hits += counters.prefix_hits;
      totals.preemptions += counters.preemptions;
      totals.steps += counters.steps;
    }
    for (const auto& endpoint : store_.snapshot()->endpoints) {
      result_.inflight_requests_after += endpoint.state->inflight_requests.load();
    }
    for (const SimulatedRequest& record : result_.requests) {
      result_.finished = std::max(result_.finished, record.end);
    }
    result_.oracle_hit_tokens = oracle_.hit_tokens();
    result_.oracle_prompt_tokens = oracle_.prompt_tokens();
    return std::move(result_);
  }

  const ClusterConfig& config_;
  ManualClock clock_;
  TimePoint now_{};
  datastore::Datastore store_;
  prom::Registry registry_;
  std::unique_ptr<director::Director> director_;
  std::vector<Replica> replicas_;
  std::vector<int> replica_of_id_;
  std::deque<FrontendEntry> frontend_;
  std::unordered_map<std::uint64_t, InFlight> in_flight_;
  std::uint64_t round_robin_ = 0;
  SplitMix64 random_policy_{0};
  PrefixOracle oracle_;
  std::unordered_map<std::string, std::vector<std::uint32_t>> token_cache_;
  std::size_t cached_tokens_ = 0;
  ClusterResult result_;
};

}  // namespace

std::string_view to_string(RoutingPolicy policy) {
  switch (policy) {
    case RoutingPolicy::kScheduler:
      return "scheduler";
    case RoutingPolicy::kRoundRobin:
      return "round-robin";
    case RoutingPolicy::kRandom:
      return "random";
  }
  return "unknown";
}

std::uint64_t PrefixOracle::add(std::span<const std::uint32_t> prompt_tokens, BlockHash root_hash) {
  const auto block_size = static_cast<std::size_t>(block_size_);
  const std::size_t full_blocks = prompt_tokens.size() / block_size;
  scratch_.clear();
  BlockHash parent = root_hash;
  for (std::size_t block = 0; block < full_blocks; ++block) {
    parent = chain_block_hash(parent, prompt_tokens.subspan(block * block_size, block_size));
    scratch_.push_back(parent);
  }
  std::size_t leading = 0;
  while (leading < scratch_.size() && seen_.contains(scratch_[leading])) ++leading;
  seen_.insert(scratch_.begin() + static_cast<std::ptrdiff_t>(leading), scratch_.end());
  const std::uint64_t hit = leading * block_size;
  hit_tokens_ += hit;
  prompt_tokens_ += prompt_tokens.size();
  return hit;
}

Result<ClusterResult> run_cluster(const ClusterConfig& config, const ArrivalSource& next_arrival) {
  Simulation simulation(config);
  if (Status status = simulation.init(); !status.is_ok()) return status;
  return simulation.run(next_arrival);
}

}  // namespace infergate::sim
