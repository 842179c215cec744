// Behaviour of the plugins that read more than the basic load metrics.
#include <gtest/gtest.h>

#include <map>

#include "scheduling/plugin_registry.h"
#include "scheduling/scheduler.h"

namespace infergate::scheduling {
namespace {

using nlohmann::json;

struct Fixture {
  explicit Fixture(std::size_t count) {
    std::vector<datastore::EndpointSpec> specs;
    for (std::size_t i = 0; i < count; ++i) {
      specs.push_back({.pod_name = "pod-" + std::to_string(i),
                       .address = "10.0.0." + std::to_string(i),
                       .port = 8000});
    }
    snapshot = store.set_endpoints(specs);
    for (const auto& endpoint : snapshot->endpoints) {
      metrics.push_back(std::make_shared<datastore::EndpointMetrics>());
      candidates.push_back({&endpoint, metrics.back()});
    }
  }
  std::vector<double> score(std::string_view type, const SchedulingRequest& request,
                            const json& params = nullptr) {
    auto plugin = create_plugin(type, std::string(type), params);
    EXPECT_TRUE(plugin.ok());
    auto scorer = std::dynamic_pointer_cast<const Scorer>(*plugin);
    SchedulingContext context{request, *snapshot, TimePoint{}, state};
    std::vector<double> scores(candidates.size());
    scorer->score(context, candidates, scores);
    return scores;
  }

  datastore::Datastore store;
  std::shared_ptr<const datastore::Snapshot> snapshot;
  std::vector<std::shared_ptr<datastore::EndpointMetrics>> metrics;
  std::vector<Candidate> candidates;
  CycleState state;
};

TEST(LoraAffinityScorerTest, ActiveThenRoomThenWaitingThenNothing) {
  Fixture fixture(4);
  auto set = [&](std::size_t i, std::vector<std::string> running, std::vector<std::string> waiting,
                 int max) {
    fixture.metrics[i]->running_adapters = std::move(running);
    fixture.metrics[i]->waiting_adapters = std::move(waiting);
    fixture.metrics[i]->max_active_adapters = max;
  };
  set(0, {"sql", "chat"}, {}, 2);   // active
  set(1, {"chat"}, {}, 2);          // room for one more
  set(2, {"chat"}, {"sql"}, 2);     // full, but sql is waiting
  set(3, {"chat", "code"}, {}, 2);  // full, sql absent
  SchedulingRequest request{.target_model = "sql"};
  EXPECT_EQ(fixture.score("lora-affinity-scorer", request),
            (std::vector<double>{1.0, 0.8, 0.6, 0.0}));
}

TEST(TokenLoadScorerTest, ScalesInFlightTokensAgainstTheThreshold) {
  Fixture fixture(3);
  fixture.snapshot->endpoints[0].state->inflight_tokens = 0;
  fixture.snapshot->endpoints[1].state->inflight_tokens = 250;
  fixture.snapshot->endpoints[2].state->inflight_tokens = 5000;
  SchedulingRequest request;
  EXPECT_EQ(fixture.score("token-load-scorer", request, json{{"queueThresholdTokens", 1000}}),
            (std::vector<double>{1.0, 0.75, 0.0}));
}

TEST(SessionAffinityScorerTest, PrefersThePodNamedByTheSessionToken) {
  Fixture fixture(3);
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"x-session-token", "cG9kLTE="}};  // base64("pod-1")
  SchedulingRequest request{.headers = headers};
  EXPECT_EQ(fixture.score("session-affinity-scorer", request), (std::vector<double>{0, 1, 0}));
  const std::vector<std::pair<std::string, std::string>> garbage = {{"x-session-token", "%%%"}};
  EXPECT_EQ(fixture.score("session-affinity-scorer", SchedulingRequest{.headers = garbage}),
            (std::vector<double>{0, 0, 0}));
}

TEST(HeaderBasedTestingFilterTest, KeepsListedAddressesOrExactHostPorts) {
  struct Case {
    const char* description;
    std::optional<std::string> header;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"no header: nothing", std::nullopt, {}},
      {"one address", "10.0.0.2", {"pod-2-rank-0"}},
      {"address and host:port with spaces",
       "10.0.0.0, 10.0.0.1:8000",
       {"pod-0-rank-0", "pod-1-rank-0"}},
      {"wrong port", "10.0.0.1:9000", {}},
  };
  auto plugin = create_plugin("header-based-testing-filter", "f", nullptr);
  ASSERT_TRUE(plugin.ok());
  auto filter = std::dynamic_pointer_cast<const Filter>(*plugin);
  for (const auto& test : cases) {
    Fixture fixture(3);
    std::vector<std::pair<std::string, std::string>> headers;
    if (test.header) headers.emplace_back("test-epp-endpoint-selection", *test.header);
    SchedulingRequest request{.headers = headers};
    SchedulingContext context{request, *fixture.snapshot, TimePoint{}, fixture.state};
    filter->filter(context, fixture.candidates);
    std::vector<std::string> kept;
    for (const auto& candidate : fixture.candidates) kept.push_back(candidate.endpoint->info->name);
    EXPECT_EQ(kept, test.expected) << test.description;
  }
}

TEST(WeightedRandomPickerTest, PicksInProportionToScoreAndNeverAZeroScore) {
  Fixture fixture(3);
  auto plugin = create_plugin("weighted-random-picker", "p", nullptr);
  ASSERT_TRUE(plugin.ok());
  auto picker = std::dynamic_pointer_cast<const Picker>(*plugin);
  const std::vector<double> totals = {3.0, 1.0, 0.0};
  std::map<std::size_t, int> counts;
  SchedulingRequest request;
  for (std::uint64_t seed = 0; seed < 4000; ++seed) {
    CycleState state{.random_seed = seed};
    SchedulingContext context{request, *fixture.snapshot, TimePoint{}, state};
    std::vector<std::size_t> chosen;
    picker->pick(context, fixture.candidates, totals, chosen);
    ASSERT_EQ(chosen.size(), 1u);
    ++counts[chosen[0]];
  }
  EXPECT_EQ(counts[2], 0);
  EXPECT_NEAR(counts[0] / 4000.0, 0.75, 0.03);
  // All scores zero: any candidate may be picked.
  std::map<std::size_t, int> uniform;
  const std::vector<double> zeros = {0, 0, 0};
  for (std::uint64_t seed = 0; seed < 300; ++seed) {
    CycleState state{.random_seed = seed};
    SchedulingContext context{request, *fixture.snapshot, TimePoint{}, state};
    std::vector<std::size_t> chosen;
    picker->pick(context, fixture.candidates, zeros, chosen);
    ++uniform[chosen.at(0)];
  }
  EXPECT_EQ(uniform.size(), 3u);
}

}  // namespace
}  // namespace infergate::scheduling
