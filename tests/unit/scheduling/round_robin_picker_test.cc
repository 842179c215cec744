// round-robin-picker: candidates in turn, whatever their scores, from any number of threads.
#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "api/decode.h"
#include "scheduling/config_loader.h"
#include "scheduling/plugin_registry.h"

namespace infergate::scheduling {
namespace {

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
  std::shared_ptr<const Picker> picker(const nlohmann::json& params = nullptr) {
    auto plugin = create_plugin("round-robin-picker", "rr", params);
    EXPECT_TRUE(plugin.ok()) << (plugin.ok() ? "" : plugin.status().message());
    return std::dynamic_pointer_cast<const Picker>(*plugin);
  }
  std::vector<std::size_t> pick(const Picker& picker, std::span<const double> scores) {
    SchedulingRequest request;
    CycleState state{.random_seed = 7};
    SchedulingContext context{request, *snapshot, TimePoint{}, state};
    std::vector<std::size_t> chosen;
    picker.pick(context, candidates, scores, chosen);
    return chosen;
  }

  datastore::Datastore store;
  std::shared_ptr<const datastore::Snapshot> snapshot;
  std::vector<std::shared_ptr<datastore::EndpointMetrics>> metrics;
  std::vector<Candidate> candidates;
};

TEST(RoundRobinPickerTest, TakesTheCandidatesInTurnIgnoringScores) {
  Fixture fixture(3);
  auto picker = fixture.picker();
  const std::vector<double> scores = {0.0, 5.0, 1.0};  // the best would be 1 every time
  std::vector<std::size_t> sequence;
  for (int turn = 0; turn < 7; ++turn) {
    auto chosen = fixture.pick(*picker, scores);
    ASSERT_EQ(chosen.size(), 1u);
    sequence.push_back(chosen[0]);
  }
  EXPECT_EQ(sequence, (std::vector<std::size_t>{0, 1, 2, 0, 1, 2, 0}));
}

TEST(RoundRobinPickerTest, FallbacksAreTheNextCandidatesInTurn) {
  Fixture fixture(3);
  auto picker = fixture.picker({{"maxNumOfEndpoints", 2}});
  const std::vector<double> scores(3, 0.0);
  EXPECT_EQ(fixture.pick(*picker, scores), (std::vector<std::size_t>{0, 1}));
  EXPECT_EQ(fixture.pick(*picker, scores), (std::vector<std::size_t>{1, 2}));
  EXPECT_EQ(fixture.pick(*picker, scores), (std::vector<std::size_t>{2, 0}));
  // More endpoints asked for than there are candidates: each once.
  auto wide = fixture.picker({{"maxNumOfEndpoints", 5}});
  EXPECT_EQ(fixture.pick(*wide, scores), (std::vector<std::size_t>{0, 1, 2}));
}

TEST(RoundRobinPickerTest, NoCandidatesPicksNothing) {
  Fixture fixture(0);
  EXPECT_TRUE(fixture.pick(*fixture.picker(), {}).empty());
}

TEST(RoundRobinPickerTest, RejectsUnknownAndBadParameters) {
  EXPECT_FALSE(create_plugin("round-robin-picker", "rr", {{"seed", 1}}).ok());
  EXPECT_FALSE(create_plugin("round-robin-picker", "rr", {{"maxNumOfEndpoints", 0}}).ok());
}

TEST(RoundRobinPickerTest, ThreadsShareOneTurnCounter) {
  Fixture fixture(4);
  auto picker = fixture.picker();
  constexpr int kThreads = 4;
  constexpr int kPicksPerThread = 2000;
  std::vector<std::map<std::size_t, int>> counts(kThreads);
  std::vector<std::thread> threads;
  for (int thread = 0; thread < kThreads; ++thread) {
    threads.emplace_back([&, thread] {
      SchedulingRequest request;
      CycleState state;
      SchedulingContext context{request, *fixture.snapshot, TimePoint{}, state};
      const std::vector<double> scores(4, 0.0);
      std::vector<std::size_t> chosen;
      for (int pick = 0; pick < kPicksPerThread; ++pick) {
        picker->pick(context, fixture.candidates, scores, chosen);
        ++counts[thread][chosen.at(0)];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::map<std::size_t, int> total;
  for (const auto& per_thread : counts) {
    for (const auto& [index, count] : per_thread) total[index] += count;
  }
  // Every turn is taken exactly once, so the endpoints get exactly equal shares.
  for (std::size_t index = 0; index < 4; ++index) {
    EXPECT_EQ(total[index], kThreads * kPicksPerThread / 4) << index;
  }
}

TEST(RoundRobinPickerTest, AConfigurationCanUseItAsItsPicker) {
  auto resources = api::decode_documents(R"(
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: round-robin-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: round-robin-picker
)",
                                         "config.yaml");
  ASSERT_TRUE(resources.ok()) << resources.status().message();
  auto setup = build_scheduler(std::get<api::EndpointPickerConfig>(resources->front()));
  ASSERT_TRUE(setup.ok()) << setup.status().message();
  const Profile& profile = setup->scheduler->profiles().at(0);
  EXPECT_EQ(profile.picker->type(), "round-robin-picker");
  EXPECT_TRUE(profile.scorers.empty());
}

}  // namespace
}  // namespace infergate::scheduling
