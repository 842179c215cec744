#include "sim/cluster.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <numeric>

#include "request/tokenizer.h"

namespace infergate::sim {
namespace {

// A small cluster: 200 blocks of 16 tokens (3,200 tokens of KV) per replica.
ClusterConfig small_cluster(RoutingPolicy policy, int replicas) {
  ClusterConfig config;
  config.name = std::string(to_string(policy));
  config.policy = policy;
  config.replicas = replicas;
  config.engine.num_gpu_blocks = 200;
  config.engine.max_num_seqs = 64;
  config.engine.max_num_batched_tokens = 2048;
  config.engine.max_model_len = 4096;
  config.seed = 7;
  return config;
}

std::string completion_body(const std::string& prompt, int max_tokens) {
  return nlohmann::json{{"model", "m"},
                        {"prompt", prompt},
                        {"max_tokens", max_tokens},
                        {"ignore_eos", true},
                        {"stream", true}}
      .dump();
}

// `count` requests every `gap`, each with a distinct 100-token prompt and 8 output tokens.
ArrivalSource distinct_prompts(int count, Duration gap) {
  auto index = std::make_shared<int>(0);
  return [=]() -> std::optional<ClusterArrival> {
    if (*index >= count) return std::nullopt;
    const int i = (*index)++;
    return ClusterArrival{
        .arrival = gap * i,
        .body = completion_body(
            request::make_text_with_tokens(100, static_cast<std::uint64_t>(i) + 1), 8)};
  };
}

TEST(ClusterTest, EveryRequestCompletesOnceAndInFlightReturnsToZero) {
  for (RoutingPolicy policy :
       {RoutingPolicy::kScheduler, RoutingPolicy::kRoundRobin, RoutingPolicy::kRandom}) {
    SCOPED_TRACE(std::string(to_string(policy)));
    auto result =
        run_cluster(small_cluster(policy, 3), distinct_prompts(200, std::chrono::milliseconds(7)));
    ASSERT_TRUE(result.ok()) << result.status().message();
    ASSERT_EQ(result->requests.size(), 200u);
    std::uint64_t routed = 0;
    for (const auto& replica : result->replicas) routed += replica.routed;
    EXPECT_EQ(routed, 200u);
    std::uint64_t generated = 0;
    for (std::size_t i = 0; i < result->requests.size(); ++i) {
      const SimulatedRequest& request = result->requests[i];
      EXPECT_EQ(request.index, i);
      ASSERT_TRUE(request.status.is_ok()) << request.status.message();
      EXPECT_EQ(request.output_tokens, 8);
      EXPECT_EQ(request.prompt_tokens, 100);
      ASSERT_TRUE(request.first_token.has_value());
      EXPECT_GT(*request.first_token, request.arrival);
      EXPECT_EQ(request.end, request.last_token);
      EXPECT_EQ(request.token_gaps.size(), 7u);
      EXPECT_GE(request.replica, 0);
      generated += static_cast<std::uint64_t>(request.output_tokens);
    }
    EXPECT_EQ(result->totals.generation_tokens, generated);
    EXPECT_EQ(result->inflight_requests_after, 0);
  }
}

TEST(ClusterTest, RoundRobinSpreadsEvenly) {
  auto result = run_cluster(small_cluster(RoutingPolicy::kRoundRobin, 4),
                            distinct_prompts(103, std::chrono::milliseconds(5)));
  ASSERT_TRUE(result.ok());
  for (const auto& replica : result->replicas) {
    EXPECT_GE(replica.routed, 25u);
    EXPECT_LE(replica.routed, 26u);
  }
  for (std::size_t i = 0; i < result->requests.size(); ++i) {
    EXPECT_EQ(result->requests[i].replica, static_cast<int>(i % 4));
  }
}

// The simulation publishes scrapes and charges in-flight requests through the same datastore and
// director as the gateway: with stale-metrics correction on, a burst that arrives between scrapes
// (identical replicas, distinct prompts) spreads evenly instead of following one stale figure.
TEST(ClusterTest, BurstBetweenScrapesSpreadsWithStaleMetricsCorrection) {
  ClusterConfig config = small_cluster(RoutingPolicy::kScheduler, 4);
  ASSERT_TRUE(config.correct_stale_metrics) << "on by default";
  auto result = run_cluster(config, distinct_prompts(12, Duration::zero()));
  ASSERT_TRUE(result.ok()) << result.status().message();
  for (const auto& replica : result->replicas) EXPECT_EQ(replica.routed, 3u) << replica.name;
  EXPECT_EQ(result->inflight_requests_after, 0);
}

TEST(ClusterTest, SchedulerFailuresAreRecordedNotThrown) {
  ClusterConfig config = small_cluster(RoutingPolicy::kScheduler, 2);
  int sent = 0;
  auto result = run_cluster(config, [&]() -> std::optional<ClusterArrival> {
    if (sent++ > 0) return std::nullopt;
    return ClusterArrival{.body = "{not json"};
  });
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->requests.size(), 1u);
  EXPECT_EQ(result->requests[0].status.http_status(), 400);
  EXPECT_EQ(result->inflight_requests_after, 0);
}

TEST(ClusterTest, InvalidConfigurationIsAnError) {
  ClusterConfig config = small_cluster(RoutingPolicy::kScheduler, 0);
  EXPECT_FALSE(run_cluster(config, [] { return std::optional<ClusterArrival>(); }).ok());
  config.replicas = 2;
  api::EndpointPickerConfig picker;
  picker.plugins.push_back({.name = "x", .type = "no-such-plugin"});
  picker.scheduling_profiles.push_back({.name = "p", .plugins = {{.plugin_ref = "x"}}});
  config.picker_config = picker;
  EXPECT_FALSE(run_cluster(config, [] { return std::optional<ClusterArrival>(); }).ok());
}

TEST(PrefixOracleTest, HandCheckedHits) {
  PrefixOracle oracle(4);
  const std::vector<std::uint32_t> a = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<std::uint32_t> b = {1, 2, 3, 4, 9, 9, 9, 9, 13};  // shares a's first block
  const std::vector<std::uint32_t> d = {5, 6, 7, 8, 1, 2, 3, 4};      // a's blocks, other order
  EXPECT_EQ(oracle.add(a, 100), 0u);
  EXPECT_EQ(oracle.add(b, 100), 4u);
  EXPECT_EQ(oracle.add(a, 100), 8u);  // a full repeat hits every full block
  EXPECT_EQ(oracle.add(d, 100), 0u);  // hashes chain: the same block after another prefix differs
  EXPECT_EQ(oracle.add(a, 200), 0u);  // another model or cache_salt: another chain
  EXPECT_EQ(oracle.add(std::vector<std::uint32_t>{1, 2, 3}, 100), 0u);  // no full block
  EXPECT_EQ(oracle.hit_tokens(), 12u);
  EXPECT_EQ(oracle.prompt_tokens(), 8u + 9u + 8u + 8u + 8u + 3u);
}

TEST(PrefixOracleTest, SharedPrefixClosedForm) {
  // benchmarks facts §5.1: H* = (N - G) / N x floor(S / bs) x bs / (S + Q) with unique questions.
  // G = 2 groups, N = 6 requests, S = 40, Q = 8, bs = 16: 4/6 x 32/48 = 4/9.
  PrefixOracle oracle(16);
  std::uint32_t next_question_token = 1000;
  for (int i = 0; i < 6; ++i) {
    const std::uint32_t group = static_cast<std::uint32_t>(i % 2);
    std::vector<std::uint32_t> prompt(40, group + 1);
    for (int q = 0; q < 8; ++q) prompt.push_back(next_question_token++);
    oracle.add(prompt, 1);
  }
  EXPECT_DOUBLE_EQ(oracle.hit_rate(), 4.0 / 9.0);
}

}  // namespace
}  // namespace infergate::sim
