#include "bench/simulate.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace infergate::bench {
namespace {

// 4 replicas of 200 KV blocks (3,200 tokens each, 12,800 in all).
sim::ClusterConfig small_cluster(sim::RoutingPolicy policy) {
  sim::ClusterConfig config;
  config.name = std::string(sim::to_string(policy));
  config.policy = policy;
  config.replicas = 4;
  config.engine.num_gpu_blocks = 200;
  config.engine.max_num_seqs = 64;
  config.engine.max_num_batched_tokens = 2048;
  config.engine.max_model_len = 4096;
  config.seed = 3;
  return config;
}

// 8 system prompts of 800 tokens: 6,400 distinct prefix tokens, twice one replica's KV cache and
// half the cluster's — the regime where routing decides the prefix-cache hit rate.
Workload shared_prefix_workload() {
  WorkloadOptions options;
  options.kind = WorkloadKind::kSharedPrefix;
  options.model = "m";
  options.num_groups = 8;
  options.prompts_per_group = 16;
  options.system_prompt_tokens = 800;
  options.question_tokens = 32;
  options.output_tokens = 8;
  options.seed = 5;
  return *Workload::create(options);
}

Workload random_workload() {
  WorkloadOptions options;
  options.model = "m";
  options.prompt_tokens = 120;
  options.output_tokens = 16;
  options.seed = 9;
  return *Workload::create(options);
}

SimulateOptions schedule(double rate, double duration_s, double warmup_s = 0) {
  return SimulateOptions{.rate = rate,
                         .warmup = from_seconds(warmup_s),
                         .duration = from_seconds(duration_s),
                         .seed = 11,
                         .model_profile = "test"};
}

TEST(SimulateTest, SameSeedSameReport) {
  const Workload workload = shared_prefix_workload();
  const SimulateOptions options = schedule(20, 5, 1);
  for (auto policy : {sim::RoutingPolicy::kScheduler, sim::RoutingPolicy::kRandom}) {
    const sim::ClusterConfig cluster = small_cluster(policy);
    auto first = simulate(workload, options, cluster);
    auto second = simulate(workload, options, cluster);
    ASSERT_TRUE(first.ok() && second.ok());
    const BenchConfig config = simulate_bench_config(workload, options);
    EXPECT_EQ(format_report_json(*first, config), format_report_json(*second, config));
    EXPECT_GT(first->succeeded, 50u);
  }
}

TEST(SimulateTest, DefaultProfileBeatsRoundRobinOnPrefixHits) {
  const Workload workload = shared_prefix_workload();
  const SimulateOptions options = schedule(20, 20, 2);
  auto scheduler = simulate(workload, options, small_cluster(sim::RoutingPolicy::kScheduler));
  auto round_robin = simulate(workload, options, small_cluster(sim::RoutingPolicy::kRoundRobin));
  ASSERT_TRUE(scheduler.ok() && round_robin.ok());
  const SimulationFigures& smart = *scheduler->simulation;
  const SimulationFigures& plain = *round_robin->simulation;
  // Same requests, same bound.
  EXPECT_EQ(smart.oracle_prompt_tokens, plain.oracle_prompt_tokens);
  EXPECT_DOUBLE_EQ(smart.oracle_hit_rate, plain.oracle_hit_rate);
  EXPECT_GT(smart.oracle_hit_rate, 0.8);
  EXPECT_LE(smart.prefix_hit_rate, smart.oracle_hit_rate + 1e-9);
  EXPECT_GT(smart.prefix_hit_rate, plain.prefix_hit_rate + 0.2)
      << smart.prefix_hit_rate << " vs " << plain.prefix_hit_rate;
  EXPECT_GT(smart.hit_rate_of_oracle, 0.9);
  EXPECT_EQ(smart.inflight_after, 0);
}

TEST(SimulateTest, LittlesLawHolds) {
  auto report = simulate(random_workload(), schedule(40, 30, 2),
                         small_cluster(sim::RoutingPolicy::kScheduler));
  ASSERT_TRUE(report.ok());
  ASSERT_TRUE(report->simulation);
  EXPECT_GT(report->mean_in_flight, 1.0);
  EXPECT_LT(report->simulation->littles_law_relative_error, 0.05)
      << report->mean_in_flight << " vs " << report->simulation->littles_law_expected_in_flight;
  EXPECT_NEAR(report->launch_rate, 40, 6);
  EXPECT_EQ(report->failed, 0u);
}

TEST(SimulateTest, ReportHasTheSimulationSection) {
  const Workload workload = random_workload();
  const SimulateOptions options = schedule(10, 2);
  std::vector<Report> reports;
  std::vector<BenchConfig> configs;
  for (auto policy : {sim::RoutingPolicy::kScheduler, sim::RoutingPolicy::kRoundRobin}) {
    auto report = simulate(workload, options, small_cluster(policy));
    ASSERT_TRUE(report.ok());
    reports.push_back(std::move(*report));
    configs.push_back(simulate_bench_config(workload, options));
  }
  const auto document = nlohmann::json::parse(format_comparison_json(reports, configs));
  EXPECT_EQ(document["schema"], "infergate.simulate.v1");
  ASSERT_EQ(document["runs"].size(), 2u);
  const auto& run = document["runs"][1];
  EXPECT_EQ(run["schema"], "infergate.bench.v1");
  EXPECT_TRUE(run["config"]["url"].is_null());
  EXPECT_EQ(run["simulation"]["policy"], "round-robin");
  EXPECT_EQ(run["simulation"]["replicas"], 4);
  EXPECT_EQ(run["simulation"]["requests_per_replica"].size(), 4u);
  EXPECT_TRUE(run["simulation"]["prefix_cache"].contains("oracle_hit_rate"));
  EXPECT_TRUE(run["latency_ms"]["ttft"]["p90"].is_number());
  const std::string table = format_comparison_table(reports, configs);
  EXPECT_NE(table.find("round-robin"), std::string::npos);
  EXPECT_NE(table.find("TTFT p90 (ms)"), std::string::npos);
  EXPECT_NE(table.find("ORACLE hit rate"), std::string::npos);
}

TEST(SimulateTest, RejectsBadSchedules) {
  const Workload workload = random_workload();
  EXPECT_EQ(simulate(workload, schedule(0, 1), small_cluster(sim::RoutingPolicy::kRandom))
                .status()
                .http_status(),
            400);
  EXPECT_FALSE(simulate(workload, schedule(1, 0), small_cluster(sim::RoutingPolicy::kRandom)).ok());
}

TEST(SimulateTest, ATraceArrivesAtItsTimestampsWithinTheWindow) {
  const std::string path = ::testing::TempDir() + "infergate_simulate_trace.jsonl";
  std::ofstream(path) << R"({"timestamp": 0.5, "prompt_tokens": 40, "output_tokens": 3})"
                      << "\n"
                      << R"({"timestamp": 1.5, "prompt_tokens": 40, "output_tokens": 3})"
                      << "\n"
                      << R"({"timestamp": 2.5, "prompt_tokens": 40, "output_tokens": 3})"
                      << "\n"
                      << R"({"timestamp": 9, "prompt_tokens": 40, "output_tokens": 3})"
                      << "\n";
  WorkloadOptions options;
  options.model = "m";
  options.kind = WorkloadKind::kTrace;
  options.trace_path = path;
  auto workload = Workload::create(options);
  ASSERT_TRUE(workload.ok()) << workload.status().message();
  // rate is unused; the warm-up takes the first entry, the window [1, 5) the next two, and the
  // entry at 9 s is past the end.
  auto report =
      simulate(*workload, schedule(1000, 4, 1), small_cluster(sim::RoutingPolicy::kRoundRobin));
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report->warmup_requests, 1u);
  EXPECT_EQ(report->launched, 2u);
  EXPECT_EQ(report->succeeded, 2u);
  EXPECT_EQ(report->output_tokens, 6);
}

}  // namespace
}  // namespace infergate::bench
