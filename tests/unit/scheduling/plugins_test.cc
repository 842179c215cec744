// Behaviour of the plugins that read more than the basic load metrics.
#include <gtest/gtest.h>

#include <map>

#include "scheduling/admission.h"
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
      candidates.push_back({&endpoint, metrics.back().get()});
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

// Publishes the fixture's metrics (scraped at `scraped_at`) to the datastore.
void publish(Fixture& fixture, TimePoint scraped_at) {
  for (std::size_t i = 0; i < fixture.metrics.size(); ++i) {
    fixture.metrics[i]->updated_at = scraped_at;
    fixture.store.update_metrics(*fixture.snapshot->endpoints[i].info, fixture.metrics[i]);
  }
}

template <typename T>
std::shared_ptr<const T> plugin_as(std::string_view type, const json& params = nullptr) {
  auto plugin = create_plugin(type, std::string(type), params);
  EXPECT_TRUE(plugin.ok()) << (plugin.ok() ? "" : plugin.status().message());
  return std::dynamic_pointer_cast<const T>(*plugin);
}

TEST(UtilizationDetectorTest, SaturationIsTheMeanOfTheWorseRatioWithStaleCountingAsOne) {
  struct Case {
    const char* description;
    std::vector<std::pair<int, double>> loads;  // waiting, kv
    TimePoint now;
    double expected;
  };
  const std::vector<Case> cases = {
      {"idle", {{0, 0.0}, {0, 0.0}}, from_milliseconds(100), 0.0},
      {"queue-bound", {{5, 0.1}, {0, 0.4}}, from_milliseconds(100), (1.0 + 0.5) / 2},
      {"kv-bound", {{1, 0.8}, {1, 1.0}}, from_milliseconds(100), (1.0 + 1.25) / 2},
      {"stale metrics count as 1", {{0, 0.0}, {0, 0.0}}, from_milliseconds(500), 1.0},
  };
  auto detector = plugin_as<SaturationDetector>("utilization-detector");
  for (const auto& test : cases) {
    Fixture fixture(test.loads.size());
    for (std::size_t i = 0; i < test.loads.size(); ++i) {
      fixture.metrics[i]->waiting_requests = test.loads[i].first;
      fixture.metrics[i]->kv_cache_usage = test.loads[i].second;
    }
    publish(fixture, TimePoint{});
    SchedulingRequest request;
    SchedulingContext context{request, *fixture.snapshot, test.now, fixture.state};
    EXPECT_DOUBLE_EQ(detector->saturation(context, fixture.candidates), test.expected)
        << test.description;
  }
  Fixture empty(0);
  SchedulingRequest request;
  SchedulingContext context{request, *empty.snapshot, TimePoint{}, empty.state};
  EXPECT_EQ(detector->saturation(context, empty.candidates), 1.0) << "empty pool";
}

TEST(UtilizationDetectorTest, FilterKeepsEndpointsWithRoomOrAllWhenNoneHasAny) {
  auto filter =
      plugin_as<Filter>("utilization-detector", json{{"queueDepthThreshold", 3},
                                                     {"kvCacheUtilThreshold", 0.5},
                                                     {"metricsStalenessThreshold", "1s"}});
  Fixture fixture(3);
  fixture.metrics[0]->waiting_requests = 3;  // at the queue limit: no room
  fixture.metrics[1]->kv_cache_usage = 0.2;
  fixture.metrics[2]->kv_cache_usage = 0.6;  // over the KV limit
  publish(fixture, TimePoint{});
  SchedulingRequest request;
  SchedulingContext context{request, *fixture.snapshot, from_milliseconds(900), fixture.state};
  auto candidates = fixture.candidates;
  filter->filter(context, candidates);
  ASSERT_EQ(candidates.size(), 1u);
  EXPECT_EQ(candidates[0].endpoint->info->name, "pod-1-rank-0");

  fixture.metrics[1]->waiting_requests = 9;
  candidates = fixture.candidates;
  filter->filter(context, candidates);
  EXPECT_EQ(candidates.size(), 3u) << "fail-open";
}

TEST(ConcurrencyDetectorTest, CountsInFlightRequestsOrTokensAgainstCapacity) {
  Fixture fixture(2);
  fixture.snapshot->endpoints[0].state->inflight_requests = 3;
  fixture.snapshot->endpoints[1].state->inflight_requests = 1;
  fixture.snapshot->endpoints[0].state->inflight_tokens = 500;
  SchedulingRequest request;
  SchedulingContext context{request, *fixture.snapshot, TimePoint{}, fixture.state};
  auto requests =
      plugin_as<SaturationDetector>("concurrency-detector", json{{"maxConcurrency", 2}});
  EXPECT_DOUBLE_EQ(requests->saturation(context, fixture.candidates), 1.0);
  auto tokens = plugin_as<SaturationDetector>(
      "concurrency-detector", json{{"concurrencyMode", "tokens"}, {"maxTokenConcurrency", 1000}});
  EXPECT_DOUBLE_EQ(tokens->saturation(context, fixture.candidates), 0.25);
  auto filter = plugin_as<Filter>("concurrency-detector", json{{"maxConcurrency", 2}});
  auto candidates = fixture.candidates;
  filter->filter(context, candidates);
  ASSERT_EQ(candidates.size(), 1u);
  EXPECT_EQ(candidates[0].endpoint->info->name, "pod-1-rank-0");
  EXPECT_FALSE(create_plugin("concurrency-detector", "c", json{{"concurrencyMode", "bytes"}}).ok());
}

TEST(AdmissionTest, OnlyNegativePrioritiesAreShedAndOnlyWhenSaturated) {
  struct Case {
    int priority;
    double saturation;
    int expected_status;
  };
  for (const Case& test : std::vector<Case>{
           {-1, 1.0, 429}, {-5, 3.0, 429}, {-1, 0.99, 200}, {0, 5.0, 200}, {10, 1.0, 200}}) {
    EXPECT_EQ(admit_legacy(test.priority, test.saturation).http_status(), test.expected_status)
        << test.priority << " @ " << test.saturation;
  }
}

TEST(PluginParametersTest, DurationsAndNumbersAreCheckedStrictly) {
  auto bad_duration =
      create_plugin("utilization-detector", "u", json{{"metricsStalenessThreshold", "fast"}});
  ASSERT_FALSE(bad_duration.ok());
  EXPECT_NE(bad_duration.status().message().find("invalid duration 'fast'"), std::string::npos);
  EXPECT_FALSE(
      create_plugin("utilization-detector", "u", json{{"kvCacheUtilThreshold", 1.5}}).ok());
  EXPECT_FALSE(create_plugin("utilization-detector", "u", json{{"headroom", -1}}).ok());
  EXPECT_FALSE(
      create_plugin("token-load-scorer", "t", json{{"queueThresholdTokens", "many"}}).ok());
}

// A scheduler whose one profile is the prefix-cache scorer and the max-score picker.
Scheduler prefix_scheduler(bool auto_tune) {
  auto scorer = plugin_as<Scorer>("prefix-cache-scorer", json{{"autoTune", auto_tune}});
  Profile profile{.name = "default", .scorers = {{scorer, 1.0}}};
  profile.picker = plugin_as<Picker>("max-score-picker");
  return Scheduler(plugin_as<ProfileHandler>("single-profile-handler"), {profile});
}

// One decision for `prompt`, then its pre-request hooks (the prompt recorded for the endpoint).
SchedulingResult decide_and_record(const Scheduler& scheduler, const datastore::Snapshot& snapshot,
                                   const std::string& prompt, std::uint64_t seed = 0) {
  SchedulingRequest request{.target_model = "m", .prompt_bytes = prompt};
  CycleState state{.random_seed = seed};
  auto result = scheduler.schedule(request, snapshot, TimePoint{}, state);
  EXPECT_TRUE(result.ok());
  SchedulingContext context{request, snapshot, TimePoint{}, state};
  scheduler.pre_request(context, *result);
  return *result;
}

// autoTune: an endpoint's index capacity is its num_gpu_blocks, followed when a scrape changes it.
TEST(PrefixCacheScorerTest, AutoTuneCapacityFollowsTheScrapedBlockCount) {
  Fixture fixture(1);
  const Scheduler scheduler = prefix_scheduler(/*auto_tune=*/true);
  auto publish = [&](int num_gpu_blocks) {
    auto metrics = std::make_shared<datastore::EndpointMetrics>();
    metrics->cache_block_size = 16;  // 64 characters a block
    metrics->cache_num_blocks = num_gpu_blocks;
    ASSERT_TRUE(fixture.store.update_metrics(*fixture.snapshot->endpoints[0].info, metrics));
  };
  const std::string prompt(64 * 8, 'p');
  auto run = [&] {
    return decide_and_record(scheduler, *fixture.snapshot, prompt).primary_result().totals[0];
  };
  publish(2);
  EXPECT_DOUBLE_EQ(run(), 0.0);
  EXPECT_DOUBLE_EQ(run(), 0.0) << "2 blocks kept, the last two: the first block is not held";
  publish(100);
  EXPECT_DOUBLE_EQ(run(), 0.0);
  EXPECT_DOUBLE_EQ(run(), 1.0) << "room for all 8 blocks since the new scrape";
}

TEST(PrefixCacheScorerTest, ScoresTheShareOfThePromptAlreadySentToEachEndpoint) {
  Fixture fixture(3);
  const Scheduler scheduler = prefix_scheduler(/*auto_tune=*/false);

  const std::string system(64 * 8, 's');  // 8 blocks of 64 characters
  const std::string first = system + std::string(64 * 8, 'a');
  auto run = [&](const std::string& prompt, std::uint64_t seed) {
    return decide_and_record(scheduler, *fixture.snapshot, prompt, seed);
  };
  const SchedulingResult cold = run(first, 1);
  EXPECT_EQ(cold.primary_result().totals, (std::vector<double>{0, 0, 0}));
  const std::string chosen = cold.destination();

  const SchedulingResult warm = run(first, 2);
  EXPECT_EQ(warm.destination(), chosen) << "the same prompt goes back to its endpoint";
  EXPECT_DOUBLE_EQ(
      *std::max_element(warm.primary_result().totals.begin(), warm.primary_result().totals.end()),
      1.0);

  const SchedulingResult shared = run(system + std::string(64 * 8, 'b'), 3);
  EXPECT_EQ(shared.destination(), chosen);
  EXPECT_DOUBLE_EQ(*std::max_element(shared.primary_result().totals.begin(),
                                     shared.primary_result().totals.end()),
                   0.5)
      << "8 of 16 blocks shared";

  SchedulingRequest other_model{.target_model = "other", .prompt_bytes = first};
  CycleState state;
  auto unrelated = scheduler.schedule(other_model, *fixture.snapshot, TimePoint{}, state);
  ASSERT_TRUE(unrelated.ok());
  EXPECT_EQ(unrelated->primary_result().totals, (std::vector<double>{0, 0, 0}))
      << "hashes are seeded by the target model";
}

TEST(PrefixCacheScorerTest, RejectsTheDeprecatedCharacterBlockSizeAlone) {
  auto deprecated = create_plugin("prefix-cache-scorer", "p", json{{"blockSize", 64}});
  ASSERT_FALSE(deprecated.ok());
  EXPECT_NE(deprecated.status().message().find("deprecated"), std::string::npos);
  EXPECT_TRUE(create_plugin("prefix-cache-scorer", "p",
                            json{{"blockSizeTokens", 32},
                                 {"maxPrefixTokensToMatch", 4096},
                                 {"lruCapacityPerServer", 1000}})
                  .ok());
}

}  // namespace
}  // namespace infergate::scheduling
