#pragma once

// The virtual-time cluster simulation behind `infergate simulate`: N replicas of the engine model
// (engine.h) behind the real picking pipeline (director::Director over a datastore::Datastore),
// driven by a discrete-event loop in virtual time — no sockets, no threads, no real clock.
//
// Events, in virtual time:
//   arrival        a request arrives at the gateway and is routed at once: by the director with a
//                  real EndpointPickerConfig (in-flight charged, pre-request hooks such as the
//                  prefix index run), or by a built-in policy (round robin, uniform random) that
//                  bypasses the director as a plain Kubernetes Service would;
//   engine entry   frontend_ms later (HTTP, tokenisation in the model server) it joins the chosen
//                  replica's waiting queue, as in `infergate sim`;
//   step end       a replica's engine step ends: its tokens stream to their requests (one event
//                  per token, so TTFT / ITL are per token), finished requests end and the
//                  director's response hook (RoutedRequest::finish) releases their accounting;
//                  the next step starts at once if there is work;
//   scrape         every scrape_interval per replica (phases staggered across replicas, as
//                  independent collectors are) the replica's queue, running count and KV usage
//                  are published to the datastore, so the picker sees slightly stale metrics;
//                  like a collector's, the publication records the director's in-flight
//                  counters for the stale-metrics correction (ClusterConfig).
// Ties at one instant resolve in the order above reversed (step ends, engine entries, scrapes,
// arrivals), replicas by index, so a run is a pure function of its inputs.
//
// Single-threaded and synchronous: run_cluster() returns when every request has finished.

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "api/types.h"
#include "common/clock.h"
#include "common/status.h"
#include "sim/engine.h"

namespace infergate::sim {

enum class RoutingPolicy {
  kScheduler,   // director + scheduler built from an EndpointPickerConfig
  kRoundRobin,  // replica i mod N, no director
  kRandom,      // uniformly random replica (seeded), no director
};

std::string_view to_string(RoutingPolicy policy);

struct ClusterConfig {
  std::string name;  // label of this configuration in reports
  RoutingPolicy policy = RoutingPolicy::kScheduler;
  // kScheduler: the picker configuration (GIE format, as decoded from YAML); nullopt: the
  // built-in default (queue 2, kv-cache 2, prefix 3, max-score-picker).
  std::optional<api::EndpointPickerConfig> picker_config;
  int replicas = 8;
  EngineConfig engine;  // every replica's engine (profile and overrides, as `infergate sim`)
  Duration scrape_interval = std::chrono::milliseconds(50);
  // kScheduler: the datastore's stale-metrics correction (`--correct-stale-metrics`): scrapes
  // record the director's in-flight counters so the load scorers add what was dispatched since.
  bool correct_stale_metrics = true;
  std::uint64_t seed = 1;  // director and random-policy draws, token sampling
};

// One request handed to the cluster, in non-decreasing arrival order.
struct ClusterArrival {
  TimePoint arrival{};
  std::string path = "/v1/completions";  // OpenAI API path, e.g. /v1/chat/completions
  std::string body;                      // the OpenAI JSON body, as a client would send it
};

// Called by run_cluster for the next request; nullopt when there are no more. Request i (0, 1,
// ...) is the i-th value returned.
using ArrivalSource = std::function<std::optional<ClusterArrival>()>;

// What happened to one request, all times in virtual time.
struct SimulatedRequest {
  std::uint64_t index = 0;
  TimePoint arrival{};
  std::optional<TimePoint> first_token;
  TimePoint last_token{};
  TimePoint end{};   // the last token, or the arrival for a request that failed
  int replica = -1;  // -1: not routed
  Status status;     // ok, or why it failed (routing 429/503, the engine's 400)
  int prompt_tokens = 0;
  int output_tokens = 0;
  int cached_tokens = 0;             // prefix-cache hit at first scheduling
  std::vector<Duration> token_gaps;  // between consecutive tokens (ITL samples)
};

// The ORACLE bound on the prefix-cache hit rate (benchmarks facts §5.1): an infinite cache behind
// perfect routing. Requests are added in arrival order; each request's chained block hashes (full
// blocks only) are looked up in one global set: the hit is block_size x the longest leading run
// already present; then all of them are inserted. Hash chains are the engine's (kv_cache.h), so
// the bound is in the same tokens as the engines' own counters.
class PrefixOracle {
 public:
  explicit PrefixOracle(int block_size) : block_size_(block_size) {}

  // Adds one request's prompt; returns its hit in tokens.
  std::uint64_t add(std::span<const std::uint32_t> prompt_tokens, BlockHash root_hash);

  std::uint64_t hit_tokens() const { return hit_tokens_; }
  std::uint64_t prompt_tokens() const { return prompt_tokens_; }
  double hit_rate() const {
    return prompt_tokens_ == 0 ? 0.0 : static_cast<double>(hit_tokens_) / prompt_tokens_;
  }

 private:
  int block_size_;
  std::unordered_set<BlockHash> seen_;
  std::vector<BlockHash> scratch_;
  std::uint64_t hit_tokens_ = 0;
  std::uint64_t prompt_tokens_ = 0;
};

struct ReplicaResult {
  std::string name;          // the datastore endpoint name, `replica-<i>-rank-0`
  std::uint64_t routed = 0;  // requests routed to it
  EngineCounters counters;   // its engine's own counters at the end of the run
};

struct ClusterResult {
  std::vector<SimulatedRequest> requests;  // in arrival order (requests[i].index == i)
  std::vector<ReplicaResult> replicas;
  EngineCounters totals;  // summed over replicas
  std::uint64_t oracle_hit_tokens = 0;
  std::uint64_t oracle_prompt_tokens = 0;
  TimePoint finished{};  // the last request's end
  // Director in-flight accounting summed over endpoints after the run: 0 when every routed
  // request released what it was charged.
  std::int64_t inflight_requests_after = 0;
  std::uint64_t events = 0;  // events the loop processed

  double prefix_hit_rate() const {  // the engines' prefix_hits / prefix_queries
    return totals.prefix_queries == 0
               ? 0.0
               : static_cast<double>(totals.prefix_hits) / totals.prefix_queries;
  }
  double oracle_hit_rate() const {
    return oracle_prompt_tokens == 0
               ? 0.0
               : static_cast<double>(oracle_hit_tokens) / oracle_prompt_tokens;
  }
};

// Runs one configuration over the requests `next_arrival` yields, to the end of the last one.
// Errors (400, start-up only): an invalid configuration (replicas < 1, a picker configuration the
// scheduler cannot build). Per-request failures are recorded in the requests, not returned.
Result<ClusterResult> run_cluster(const ClusterConfig& config, const ArrivalSource& next_arrival);

}  // namespace infergate::sim
