#include "scheduling/scheduler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling {
namespace {

using datastore::EndpointMetrics;
using nlohmann::json;

struct EndpointLoad {
  int waiting;
  int running;
  double kv;
};

// A pool of endpoints "pod-<i>-rank-0" at 10.0.0.<i>:8000 with the given metrics.
class Pool {
 public:
  explicit Pool(const std::vector<EndpointLoad>& loads) {
    std::vector<datastore::EndpointSpec> specs;
    for (std::size_t i = 0; i < loads.size(); ++i) {
      specs.push_back({.pod_name = "pod-" + std::to_string(i),
                       .namespace_name = "default",
                       .address = "10.0.0." + std::to_string(i),
                       .port = 8000});
    }
    snapshot_ = store_.set_endpoints(specs);
    for (std::size_t i = 0; i < loads.size(); ++i) set_load(i, loads[i]);
  }
  // Publishes new metrics for endpoint `i`, as a scrape does.
  void set_load(std::size_t i, EndpointLoad load) {
    auto metrics = std::make_shared<EndpointMetrics>();
    metrics->waiting_requests = load.waiting;
    metrics->running_requests = load.running;
    metrics->kv_cache_usage = load.kv;
    store_.update_metrics(*snapshot_->endpoints[i].info, metrics);
  }
  const datastore::Snapshot& snapshot() const { return *snapshot_; }
  std::vector<Candidate> candidates() const {
    std::vector<Candidate> out;
    for (const auto& endpoint : snapshot_->endpoints)
      out.push_back({&endpoint, endpoint.state->metrics().get()});  // the datastore holds it
    return out;
  }

 private:
  datastore::Datastore store_;
  std::shared_ptr<const datastore::Snapshot> snapshot_;
};

template <typename T>
std::shared_ptr<const T> make(std::string_view type, const json& params = nullptr) {
  auto plugin = create_plugin(type, std::string(type), params);
  EXPECT_TRUE(plugin.ok()) << (plugin.ok() ? "" : plugin.status().message());
  return std::dynamic_pointer_cast<const T>(*plugin);
}

std::vector<double> scores_of(std::string_view type, const Pool& pool) {
  auto scorer = make<Scorer>(type);
  SchedulingRequest request;
  CycleState state;
  SchedulingContext context{request, pool.snapshot(), TimePoint{}, state};
  auto candidates = pool.candidates();
  std::vector<double> scores(candidates.size());
  scorer->score(context, candidates, scores);
  return scores;
}

TEST(ScorerTest, GoldenScores) {
  struct Case {
    const char* description;
    const char* type;
    std::vector<EndpointLoad> loads;
    std::vector<double> expected;
  };
  const std::vector<Case> cases = {
      {"queue: min-max normalised",
       "queue-scorer",
       {{0, 0, 0}, {5, 0, 0}, {10, 0, 0}},
       {1.0, 0.5, 0.0}},
      {"queue: all equal score 1", "queue-scorer", {{3, 0, 0}, {3, 0, 0}}, {1.0, 1.0}},
      {"queue: single endpoint", "queue-scorer", {{7, 0, 0}}, {1.0}},
      {"running: min-max normalised",
       "running-requests-size-scorer",
       {{0, 4, 0}, {0, 0, 0}, {0, 8, 0}},
       {0.5, 1.0, 0.0}},
      {"kv: one minus usage",
       "kv-cache-utilization-scorer",
       {{0, 0, 0.0}, {0, 0, 0.25}, {0, 0, 1.0}},
       {1.0, 0.75, 0.0}},
  };
  for (const auto& test : cases) {
    Pool pool(test.loads);
    auto scores = scores_of(test.type, pool);
    ASSERT_EQ(scores.size(), test.expected.size()) << test.description;
    for (std::size_t i = 0; i < scores.size(); ++i) {
      EXPECT_DOUBLE_EQ(scores[i], test.expected[i]) << test.description << " #" << i;
    }
  }
}

Scheduler make_scheduler(std::vector<std::pair<std::string_view, double>> scorers,
                         std::string_view picker = "max-score-picker",
                         const json& picker_params = nullptr) {
  Profile profile{.name = "default"};
  for (auto [type, weight] : scorers) profile.scorers.push_back({make<Scorer>(type), weight});
  profile.picker = make<Picker>(picker, picker_params);
  return Scheduler(make<ProfileHandler>("single-profile-handler"), {profile});
}

TEST(SchedulerTest, PicksTheEndpointWithTheBestWeightedScore) {
  Pool pool({{8, 10, 0.9}, {0, 2, 0.2}, {4, 5, 0.5}});
  Scheduler scheduler = make_scheduler({{"queue-scorer", 2}, {"kv-cache-utilization-scorer", 2}});
  SchedulingRequest request;
  CycleState state;
  auto result = scheduler.schedule(request, pool.snapshot(), TimePoint{}, state);
  ASSERT_TRUE(result.ok()) << result.status().message();
  EXPECT_EQ(result->destination(), "10.0.0.1:8000");
  // Explainability: every scorer's clamped score for every candidate, and the totals.
  const ProfileResult& profile = result->primary_result();
  ASSERT_NE(profile.scorers, nullptr);
  EXPECT_EQ(profile.scorers->names,
            (std::vector<std::string>{"queue-scorer", "kv-cache-utilization-scorer"}));
  EXPECT_EQ(profile.scorers->weights, (std::vector<double>{2, 2}));
  EXPECT_DOUBLE_EQ(profile.score(0, 0), 0.0);
  EXPECT_DOUBLE_EQ(profile.score(0, 2), 0.5);
  EXPECT_DOUBLE_EQ(profile.score(1, 1), 0.8);
  EXPECT_DOUBLE_EQ(profile.totals[1], 2 * 1.0 + 2 * 0.8);
}

TEST(SchedulerTest, MaxNumOfEndpointsGivesOrderedFallbacks) {
  Pool pool({{2, 0, 0}, {0, 0, 0}, {9, 0, 0}, {1, 0, 0}});
  Scheduler scheduler =
      make_scheduler({{"queue-scorer", 1}}, "max-score-picker", json{{"maxNumOfEndpoints", 3}});
  SchedulingRequest request;
  CycleState state;
  auto result = scheduler.schedule(request, pool.snapshot(), TimePoint{}, state);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->destination(), "10.0.0.1:8000,10.0.0.3:8000,10.0.0.0:8000");
}

TEST(SchedulerTest, TiesAreBrokenAtRandomFromTheCycleSeed) {
  Pool pool({{0, 0, 0}, {0, 0, 0}, {0, 0, 0}});
  Scheduler scheduler = make_scheduler({{"queue-scorer", 1}});
  SchedulingRequest request;
  std::set<std::string> seen;
  for (std::uint64_t seed = 0; seed < 64; ++seed) {
    CycleState state{.random_seed = seed};
    auto first = scheduler.schedule(request, pool.snapshot(), TimePoint{}, state);
    auto again = scheduler.schedule(request, pool.snapshot(), TimePoint{}, state);
    ASSERT_TRUE(first.ok() && again.ok());
    EXPECT_EQ(first->destination(), again->destination()) << "same seed, same pick";
    seen.insert(first->destination());
  }
  EXPECT_EQ(seen.size(), 3u);
}

TEST(SchedulerTest, RandomPickerIgnoresScores) {
  Pool pool({{0, 0, 0}, {100, 0, 0}});
  Scheduler scheduler = make_scheduler({{"queue-scorer", 1}}, "random-picker");
  SchedulingRequest request;
  std::set<std::string> seen;
  for (std::uint64_t seed = 0; seed < 32; ++seed) {
    CycleState state{.random_seed = seed};
    seen.insert(scheduler.schedule(request, pool.snapshot(), TimePoint{}, state)->destination());
  }
  EXPECT_EQ(seen.size(), 2u);
}

class RejectAll final : public Filter {
 public:
  RejectAll() : Filter("reject-all") {}
  std::string_view type() const override { return "reject-all"; }
  void filter(const SchedulingContext&, std::vector<Candidate>& candidates) const override {
    candidates.clear();
  }
};

TEST(SchedulerTest, EmptyPoolIs503AndEverythingFilteredIs429) {
  Pool empty({});
  Scheduler scheduler = make_scheduler({{"queue-scorer", 1}});
  SchedulingRequest request;
  CycleState state;
  auto none = scheduler.schedule(request, empty.snapshot(), TimePoint{}, state);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().http_status(), 503);

  Pool pool({{0, 0, 0}});
  Profile profile{.name = "default", .filters = {std::make_shared<RejectAll>()}};
  profile.picker = make<Picker>("max-score-picker");
  Scheduler filtered(make<ProfileHandler>("single-profile-handler"), {profile});
  auto rejected = filtered.schedule(request, pool.snapshot(), TimePoint{}, state);
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.status().http_status(), 429);
  EXPECT_NE(rejected.status().message().find("reject-all"), std::string::npos);
}

TEST(SchedulerTest, EndpointsWithoutMetricsScoreAsIdle) {
  datastore::Datastore store;
  auto snapshot = store.set_endpoints({{.pod_name = "fresh", .address = "10.0.0.7", .port = 80}});
  Scheduler scheduler = make_scheduler({{"queue-scorer", 2}, {"kv-cache-utilization-scorer", 2}});
  SchedulingRequest request;
  CycleState state;
  auto result = scheduler.schedule(request, *snapshot, TimePoint{}, state);
  ASSERT_TRUE(result.ok());
  EXPECT_DOUBLE_EQ(result->primary_result().totals[0], 4.0);
}

// A thread reuses the metrics it loaded in its last decision only while the endpoint at that
// position is the same and has not published newer ones.
TEST(SchedulerTest, EveryDecisionSeesTheLatestMetricsWhateverTheCandidateOrder) {
  Pool pool({{0, 0, 0.1}, {9, 9, 0.9}});
  Scheduler scheduler = make_scheduler({{"queue-scorer", 1}, {"kv-cache-utilization-scorer", 1}});
  SchedulingRequest request;
  CycleState state;
  auto decide = [&](std::span<const datastore::Endpoint* const> candidates) {
    auto result = scheduler.schedule(request, pool.snapshot(), candidates, TimePoint{}, state);
    EXPECT_TRUE(result.ok());
    return result.ok() ? result->destination() : std::string();
  };
  const datastore::Endpoint* first = &pool.snapshot().endpoints[0];
  const datastore::Endpoint* second = &pool.snapshot().endpoints[1];
  const std::vector<const datastore::Endpoint*> in_order = {first, second};
  const std::vector<const datastore::Endpoint*> reversed = {second, first};
  EXPECT_EQ(decide(in_order), "10.0.0.0:8000");
  EXPECT_EQ(decide(reversed), "10.0.0.0:8000");
  pool.set_load(0, {9, 9, 0.9});
  pool.set_load(1, {0, 0, 0.1});
  EXPECT_EQ(decide(reversed), "10.0.0.1:8000");
  EXPECT_EQ(decide(in_order), "10.0.0.1:8000");
  // Another pool's endpoints at the same positions.
  Pool other({{9, 9, 0.9}, {9, 9, 0.9}, {0, 0, 0.0}});
  auto result = scheduler.schedule(request, other.snapshot(), TimePoint{}, state);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->destination(), "10.0.0.2:8000");
}

TEST(PluginRegistryTest, UnknownTypesAndParametersAreClearErrors) {
  auto unknown = create_plugin("best-scorer", "mine", nullptr);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown type 'best-scorer'"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("queue-scorer"), std::string::npos);

  auto bad_key = create_plugin("max-score-picker", "picker", json{{"maxEndpoints", 2}});
  ASSERT_FALSE(bad_key.ok());
  EXPECT_EQ(bad_key.status().message(), "plugin 'picker': unknown parameter 'maxEndpoints'");

  auto bad_value = create_plugin("max-score-picker", "picker", json{{"maxNumOfEndpoints", 0}});
  ASSERT_FALSE(bad_value.ok());
  EXPECT_EQ(bad_value.status().message(),
            "plugin 'picker': parameter 'maxNumOfEndpoints' must be an integer >= 1");

  for (const auto& type : plugin_types()) {
    auto plugin = create_plugin(type.type, "p", nullptr);
    ASSERT_TRUE(plugin.ok()) << type.type;
    EXPECT_EQ((*plugin)->type(), type.type);
    EXPECT_EQ((*plugin)->kind(), type.kind);
  }
}

// Pickers read snapshots while a writer changes membership and publishes metrics: every decision
// names an endpoint of the snapshot it was made on, and nothing crashes.
TEST(SchedulerTest, PickersRunWhileScrapersPublishAndMembershipChanges) {
  datastore::Datastore store;
  auto scheduler = std::make_shared<Scheduler>(
      make_scheduler({{"queue-scorer", 2}, {"kv-cache-utilization-scorer", 2}}));
  std::atomic<bool> done{false};
  std::atomic<bool> picking{false};
  std::atomic<int> decisions{0};
  std::thread writer([&] {
    // The rounds begin once a picker is deciding, so that they overlap however the threads are
    // scheduled.
    store.set_endpoints({{.pod_name = "pod-0", .address = "10.0.0.0", .port = 8000}});
    while (!picking) std::this_thread::yield();
    for (int round = 0; round < 3000; ++round) {
      std::vector<datastore::EndpointSpec> specs;
      for (int i = 0; i < 2 + round % 6; ++i) {
        specs.push_back({.pod_name = "pod-" + std::to_string(i),
                         .address = "10.0.0." + std::to_string(i),
                         .port = 8000});
      }
      auto snapshot = store.set_endpoints(specs);
      for (const auto& endpoint : snapshot->endpoints) {
        auto metrics = std::make_shared<EndpointMetrics>();
        metrics->waiting_requests = round % 7;
        metrics->kv_cache_usage = (round % 10) / 10.0;
        store.update_metrics(*endpoint.info, metrics);
      }
    }
    done = true;
  });
  std::vector<std::thread> pickers;
  for (int t = 0; t < 2; ++t) {
    pickers.emplace_back([&, t] {
      SchedulingRequest request;
      CycleState state{.random_seed = static_cast<std::uint64_t>(t)};
      while (!done) {
        auto snapshot = store.snapshot();
        if (snapshot->endpoints.empty()) continue;
        picking = true;
        ++state.random_seed;
        auto result = scheduler->schedule(request, *snapshot, TimePoint{}, state);
        ASSERT_TRUE(result.ok());
        ASSERT_NE(snapshot->find(result->primary_result().targets.front()->info->id), nullptr);
        ++decisions;
      }
    });
  }
  writer.join();
  for (auto& picker : pickers) picker.join();
  EXPECT_GT(decisions.load(), 0);
}

}  // namespace
}  // namespace infergate::scheduling
