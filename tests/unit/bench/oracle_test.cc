#include "bench/oracle.h"

#include <gtest/gtest.h>

#include "bench/simulate.h"

namespace infergate::bench {
namespace {

Workload shared_prefix_workload() {
  WorkloadOptions options;
  options.kind = WorkloadKind::kSharedPrefix;
  options.model = "m";
  options.num_groups = 4;
  options.prompts_per_group = 3;
  options.system_prompt_tokens = 100;
  options.question_tokens = 20;
  options.output_tokens = 4;
  options.seed = 5;
  return *Workload::create(options);
}

// A run that launched requests 0..count-1, the first `warmup` of them before the window.
RunResult run_of(std::uint64_t count, std::uint64_t warmup) {
  RunResult run;
  for (std::uint64_t index = 0; index < count; ++index) {
    RequestRecord record;
    record.index = index;
    record.measured = index >= warmup;
    run.records.push_back(record);
  }
  return run;
}

TEST(OracleTest, MatchesTheSimulationsBoundForTheSameRequests) {
  const Workload workload = shared_prefix_workload();
  sim::ClusterConfig cluster;
  cluster.replicas = 2;
  cluster.policy = sim::RoutingPolicy::kRoundRobin;
  const SimulateOptions options{.rate = 20, .duration = from_seconds(3), .seed = 2};
  auto report = simulate(workload, options, cluster);
  ASSERT_TRUE(report.ok()) << report.status().message();
  ASSERT_TRUE(report->simulation);
  ASSERT_GT(report->launched, 20u);

  const OracleBound bound = oracle_bound(workload, run_of(report->launched, 0), 16);
  EXPECT_EQ(bound.prompt_tokens, report->simulation->oracle_prompt_tokens);
  EXPECT_EQ(bound.hit_tokens, report->simulation->oracle_hit_tokens);
  EXPECT_DOUBLE_EQ(bound.hit_rate, report->simulation->oracle_hit_rate);
  EXPECT_GT(bound.hit_rate, 0.5);
}

TEST(OracleTest, TheWarmUpFillsTheCacheButIsNotCounted) {
  const Workload workload = shared_prefix_workload();
  const std::uint64_t pool = workload.pool_size();
  // The measured requests repeat the warm-up's whole prompts: every full block is a hit.
  const OracleBound bound = oracle_bound(workload, run_of(2 * pool, pool), 16);
  std::uint64_t prompt_tokens = 0;
  std::uint64_t full_blocks = 0;
  for (std::uint64_t index = pool; index < 2 * pool; ++index) {
    const std::uint64_t tokens = workload.request(index).prompt_tokens;
    prompt_tokens += tokens;
    full_blocks += tokens / 16 * 16;
  }
  EXPECT_EQ(bound.prompt_tokens, prompt_tokens);
  EXPECT_EQ(bound.hit_tokens, full_blocks);
  EXPECT_EQ(bound.block_size, 16);

  // Nothing measured: no figures.
  const OracleBound none = oracle_bound(workload, run_of(pool, pool), 16);
  EXPECT_EQ(none.prompt_tokens, 0u);
  EXPECT_EQ(none.hit_rate, 0.0);
}

TEST(OracleTest, DistinctPromptsHaveNoHits) {
  WorkloadOptions options;
  options.model = "m";
  options.prompt_tokens = 64;
  const auto workload = Workload::create(options);
  ASSERT_TRUE(workload.ok());
  const OracleBound bound = oracle_bound(*workload, run_of(30, 0), 16);
  EXPECT_EQ(bound.prompt_tokens, 30u * 64);
  EXPECT_EQ(bound.hit_tokens, 0u);
}

}  // namespace
}  // namespace infergate::bench
