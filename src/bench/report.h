#pragma once

// The figures of one benchmark run, computed from its RunResult, and their two renderings: a
// table for people (stdout) and JSON for tools (--output-json).

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bench/load.h"
#include "bench/oracle.h"
#include "bench/server_metrics.h"
#include "bench/stats.h"
#include "bench/workload.h"

namespace infergate::bench {

// Above this p99 schedule lag the generator is reported as not keeping up with --rate: arrivals
// went out late, so the offered load was lower and burstier than asked.
inline constexpr std::chrono::milliseconds kMaxKeptUpScheduleLagP99{10};

// Little's law (benchmarks facts §5.6): in a steady state the mean number of requests in flight
// equals the arrival rate times the mean latency. A stage whose measured mean in flight differs
// from launch rate x mean e2e by more than this share is flagged: it was not in a steady state
// (queues growing: the load is above what the servers sustain, or the stage is too short for its
// latencies), or requests were lost in between.
inline constexpr double kLittlesLawTolerance = 0.15;

// What was run (echoed in reports).
struct BenchConfig {
  WorkloadOptions workload;
  LoadOptions load;
};

// Figures only a virtual-time cluster simulation (`infergate simulate`, bench/simulate.h) knows:
// the engines' own counters, the routing, and the workload's ORACLE bound. Whole run (warm-up and
// drain included) unless noted.
struct SimulationFigures {
  std::string configuration;  // the configuration's name
  std::string policy;         // "scheduler", "round-robin" or "random"
  std::string model_profile;  // engine profile of the replicas
  int replicas = 0;
  double scrape_interval_ms = 0;
  // Engines' prefix cache: tokens looked up and found (vllm:prefix_cache_queries / hits).
  std::uint64_t prefix_query_tokens = 0;
  std::uint64_t prefix_hit_tokens = 0;
  double prefix_hit_rate = 0;  // hits / queries
  // ORACLE (benchmarks facts §5.1): infinite cache, perfect routing, same requests and blocks.
  std::uint64_t oracle_prompt_tokens = 0;
  std::uint64_t oracle_hit_tokens = 0;
  double oracle_hit_rate = 0;
  double hit_rate_of_oracle = 0;  // prefix_hit_rate / oracle_hit_rate
  // Little's law over the measured window: mean in flight (Report::mean_in_flight) against
  // launch rate x mean e2e latency; relative_error = |measured - expected| / expected.
  double littles_law_expected_in_flight = 0;
  double littles_law_relative_error = 0;
  std::uint64_t preemptions = 0;
  std::uint64_t engine_steps = 0;
  std::vector<std::uint64_t> requests_per_replica;  // routed, by replica index
  std::int64_t inflight_after = 0;  // director in-flight accounting left after the run (0)
};

// Figures over the measured requests (those launched in the measured window) unless noted.
// Latencies are in milliseconds, over successful requests.
struct Report {
  std::size_t launched = 0;  // measured requests
  std::size_t succeeded = 0;
  std::size_t failed = 0;
  std::size_t warmup_requests = 0;                    // launched during the warm-up, not measured
  std::map<std::string, std::size_t> errors;          // error_label() -> count
  std::map<std::string, std::string> error_examples;  // error_label() -> first message

  double window_seconds = 0;  // length of the measured window
  // From the window's start to the end of the last measured request: the time the measured work
  // took, drain included. Rates of completed work divide by it.
  double span_seconds = 0;
  double launch_rate = 0;               // launched / window_seconds: the offered load
  double achieved_rate = 0;             // succeeded / span_seconds: the served load
  double output_tokens_per_second = 0;  // output tokens of successes / span_seconds
  double input_tokens_per_second = 0;   // usage prompt tokens of successes / span_seconds
  // Time-average number of requests in flight during the window (warm-up requests still running
  // in it count too).
  double mean_in_flight = 0;
  // Little's law: launch_rate x mean e2e of the measured requests (successes and failures alike,
  // each from launch to its end), against mean_in_flight; relative error
  // |measured - expected| / expected; holds when that is <= kLittlesLawTolerance (or nothing ran).
  double littles_law_expected_in_flight = 0;
  double littles_law_relative_error = 0;
  bool littles_law_holds = true;

  Distribution ttft_ms;           // first event with generated text - launch
  Distribution tpot_ms;           // (e2e - TTFT) / (output tokens - 1), requests with >= 2 tokens
  Distribution ntpot_ms;          // e2e / output tokens
  Distribution itl_ms;            // every gap between consecutive text events, all requests pooled
  Distribution e2e_ms;            // [DONE] (or end of body) - launch
  Distribution schedule_lag_ms;   // launch - scheduled arrival, every measured request
  bool generator_kept_up = true;  // schedule_lag_ms.p99 <= kMaxKeptUpScheduleLagP99

  std::int64_t prompt_tokens = 0;          // usage.prompt_tokens of successes
  std::int64_t output_tokens = 0;          // usage.completion_tokens (or text events) of successes
  std::int64_t cached_prompt_tokens = 0;   // usage.prompt_tokens_details.cached_tokens
  double cached_token_share = 0;           // cached_prompt_tokens / prompt_tokens
  std::size_t requests_without_usage = 0;  // successes whose stream had no usage chunk

  std::size_t connections_opened = 0;        // whole run, warm-up included
  std::size_t stale_connection_retries = 0;  // whole run
  bool stopped_early = false;

  // The model servers' prefix-cache counters over the stage (--server-metrics), when asked for.
  std::optional<PrefixCacheDelta> server_prefix_cache;
  // The ORACLE bound on that hit rate for the stage's requests (oracle.h), computed with it.
  std::optional<OracleBound> prefix_oracle;

  std::optional<SimulationFigures> simulation;  // set by simulations only
};

Report make_report(const RunResult& run);

// The human-readable table printed by `infergate bench`.
std::string format_report_table(const Report& report, const BenchConfig& config);

// The --output-json document. Field names are stable (add, never rename):
//   schema                 "infergate.bench.v1"
//   config                 url, model, api ("completions"|"chat"), workload ("random"|
//                          "shared-prefix"), mode ("rate"|"concurrency"), rate (null in
//                          concurrency mode), concurrency (null in rate mode), duration_s,
//                          warmup_s, timeout_s, seed, prompt_tokens, output_tokens, num_groups,
//                          prompts_per_group, system_prompt_tokens, question_tokens,
//                          num_sessions, turns_per_session, user_turn_tokens, trace_path
//   requests               launched, succeeded, failed, warmup
//   errors                 {"<label>": count}; labels: connect, timeout, http_<status>,
//                          stream_error, protocol
//   error_examples         {"<label>": first error message}
//   throughput             window_s, span_s, launch_rate, achieved_rate (req/s),
//                          output_tokens_per_s, input_tokens_per_s, mean_in_flight
//   littles_law            mean_in_flight, expected_in_flight (launch_rate x mean e2e),
//                          relative_error, tolerance, holds (bool)
//   latency_ms             ttft, tpot, ntpot, itl, e2e: each {count, mean, min, p50, p90, p99,
//                          max}, the statistics null when count is 0
//   schedule_lag_ms        same shape as a latency
//   generator_kept_up      bool: schedule_lag_ms.p99 <= kMaxKeptUpScheduleLagP99
//   tokens                 prompt, output, cached_prompt, cached_share, requests_without_usage
//   connections            opened, stale_retries
//   stopped_early          bool
//   server_metrics         (--server-metrics only) prefix_cache {query_tokens, hit_tokens,
//                          hit_rate, servers_counted, servers [{url, query_tokens, hit_tokens,
//                          error (null when counted)}], hit_rate_of_oracle (with prefix_oracle)}:
//                          the servers' own counters over the stage
//   prefix_oracle          (--server-metrics only) block_size, prompt_tokens, hit_tokens, hit_rate:
//                          the ORACLE bound for the stage's measured requests (oracle.h)
//   simulation             (simulations only; `url` is then null) configuration, policy,
//                          model_profile, replicas, scrape_interval_ms, prefix_cache {query_tokens,
//                          hit_tokens, hit_rate, oracle_prompt_tokens, oracle_hit_tokens,
//                          oracle_hit_rate, hit_rate_of_oracle}, littles_law {mean_in_flight,
//                          expected_in_flight, relative_error}, preemptions, engine_steps,
//                          requests_per_replica [..], inflight_after
std::string format_report_json(const Report& report, const BenchConfig& config);

// Several runs of one workload side by side (`infergate simulate`, one per configuration).
// `reports` and `configs` have the same length.
//   table: one column per run, one row per figure;
//   JSON:  {"schema": "infergate.simulate.v1", "runs": [<format_report_json document>, ...]}.
std::string format_comparison_table(std::span<const Report> reports,
                                    std::span<const BenchConfig> configs);
std::string format_comparison_json(std::span<const Report> reports,
                                   std::span<const BenchConfig> configs);

}  // namespace infergate::bench
