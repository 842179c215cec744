#include "bench/simulate.h"

#include <fmt/format.h>

#include <cmath>

#include "bench/load.h"

namespace infergate::bench {
namespace {

constexpr std::size_t kMaxBodyCacheBytes = std::size_t{512} << 20;

double ratio(double numerator, double denominator) {
  return denominator > 0 ? numerator / denominator : 0;
}

RequestRecord to_record(sim::SimulatedRequest&& request, const SimulateOptions& options) {
  RequestRecord record;
  record.index = request.index;
  record.measured =
      request.arrival >= options.warmup && request.arrival < options.warmup + options.duration;
  record.scheduled = request.arrival;
  record.start = request.arrival;
  record.end = request.end;
  if (!request.status.is_ok()) {
    record.outcome = Outcome::kHttpError;
    record.http_status = static_cast<unsigned>(request.status.http_status());
    record.error_message = request.status.message();
    return record;
  }
  record.outcome = Outcome::kSuccess;
  record.first_token = request.first_token;
  record.last_token = request.last_token;
  record.text_events = static_cast<std::size_t>(request.output_tokens);
  record.prompt_tokens = request.prompt_tokens;
  record.completion_tokens = request.output_tokens;
  record.cached_tokens = request.cached_tokens;
  record.text_event_gaps = std::move(request.token_gaps);
  return record;
}

}  // namespace

Status validate(const SimulateOptions& options) {
  if (!(options.rate > 0) || !std::isfinite(options.rate)) {
    return Status::bad_request("--rate must be a finite number greater than 0");
  }
  if (options.duration <= Duration::zero()) {
    return Status::bad_request("--duration must be greater than 0");
  }
  if (options.warmup < Duration::zero()) return Status::bad_request("--warmup must be >= 0");
  return Status::ok();
}

BenchConfig simulate_bench_config(const Workload& workload, const SimulateOptions& options) {
  BenchConfig config;
  config.workload = workload.options();
  config.load.mode = LoadMode::kRate;
  config.load.rate = options.rate;
  config.load.warmup = options.warmup;
  config.load.duration = options.duration;
  config.load.timeout = Duration::zero();
  config.load.seed = options.seed;
  return config;
}

Result<Report> simulate(const Workload& workload, const SimulateOptions& options,
                        const sim::ClusterConfig& cluster) {
  if (Status valid = validate(options); !valid.is_ok()) return valid;
  PoissonArrivals arrivals(options.rate, options.seed);
  const TimePoint end = options.warmup + options.duration;
  const std::string path(workload.path());
  // A shared-prefix workload cycles through its pool, so request i's body is pool entry
  // i mod pool size: build each once (JSON escaping of long prompts is the dearest part of a
  // simulated request), unless the pool would take more memory than kMaxBodyCacheBytes.
  const WorkloadOptions& shape = workload.options();
  const std::size_t pool = workload.pool_size();
  const bool cache_bodies =
      shape.kind == WorkloadKind::kSharedPrefix &&
      pool * (static_cast<std::size_t>(shape.system_prompt_tokens + shape.question_tokens) * 4 +
              256) <=
          kMaxBodyCacheBytes;
  std::vector<std::string> bodies(cache_bodies ? pool : 0);
  std::uint64_t index = 0;
  sim::ArrivalSource source = [&]() -> std::optional<sim::ClusterArrival> {
    TimePoint at{};
    if (workload.has_fixed_arrivals()) {  // a trace: its own arrival times, until it ends
      const std::optional<Duration> fixed = workload.fixed_arrival(index);
      if (!fixed) return std::nullopt;
      at = *fixed;
    } else {
      at = arrivals.next();
    }
    if (at >= end) return std::nullopt;
    const std::uint64_t i = index++;
    if (!cache_bodies) {
      return sim::ClusterArrival{.arrival = at, .path = path, .body = workload.request(i).body};
    }
    std::string& body = bodies[i % pool];
    if (body.empty()) body = workload.request(i).body;
    return sim::ClusterArrival{.arrival = at, .path = path, .body = body};
  };
  auto result = sim::run_cluster(cluster, source);
  if (!result) return result.status();
  return make_simulation_report(std::move(*result), options, cluster);
}

Report make_simulation_report(sim::ClusterResult result, const SimulateOptions& options,
                              const sim::ClusterConfig& cluster) {
  RunResult run;
  run.window_start = options.warmup;
  run.window_end = options.warmup + options.duration;
  run.finished = result.finished;
  for (sim::SimulatedRequest& request : result.requests) {
    run.records.push_back(to_record(std::move(request), options));
  }
  Report report = make_report(run);

  SimulationFigures figures;
  figures.configuration = cluster.name;
  figures.policy = std::string(sim::to_string(cluster.policy));
  figures.model_profile = options.model_profile;
  figures.replicas = cluster.replicas;
  figures.scrape_interval_ms =
      std::chrono::duration<double, std::milli>(cluster.scrape_interval).count();
  figures.prefix_query_tokens = result.totals.prefix_queries;
  figures.prefix_hit_tokens = result.totals.prefix_hits;
  figures.prefix_hit_rate = result.prefix_hit_rate();
  figures.oracle_prompt_tokens = result.oracle_prompt_tokens;
  figures.oracle_hit_tokens = result.oracle_hit_tokens;
  figures.oracle_hit_rate = result.oracle_hit_rate();
  figures.hit_rate_of_oracle = ratio(figures.prefix_hit_rate, figures.oracle_hit_rate);
  // The same check as every bench report's (make_report), kept here for the v1 schema.
  figures.littles_law_expected_in_flight = report.littles_law_expected_in_flight;
  figures.littles_law_relative_error = report.littles_law_relative_error;
  figures.preemptions = result.totals.preemptions;
  figures.engine_steps = result.totals.steps;
  for (const sim::ReplicaResult& replica : result.replicas) {
    figures.requests_per_replica.push_back(replica.routed);
  }
  figures.inflight_after = result.inflight_requests_after;
  report.simulation = std::move(figures);
  return report;
}

}  // namespace infergate::bench
