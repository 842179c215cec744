// Stale-metrics correction of the load scorers (datastore/endpoint.h): requests dispatched since
// an endpoint's scrape are added to its scraped figures; with the correction off, or before any
// baseline is recorded, the scorers use GIE's exact formulas on the scraped figures.
#include <gtest/gtest.h>

#include "api/endpoint_picker_config.h"
#include "scheduling/config_loader.h"
#include "scheduling/plugin_registry.h"
#include "scheduling/scheduler.h"

namespace infergate::scheduling {
namespace {

struct Loads {
  int waiting = 0;
  int running = 0;
  double kv = 0;
};

class StaleMetricsTest : public ::testing::TestWithParam<bool> {
 protected:
  // Publishes one scrape per endpoint (block size 16, 100 blocks: 1,600 tokens of KV) with the
  // datastore's correction set to `correct`, then charges `dispatched` requests of `tokens` each.
  void publish(const std::vector<Loads>& loads, bool correct) {
    std::vector<datastore::EndpointSpec> specs;
    for (std::size_t i = 0; i < loads.size(); ++i) {
      specs.push_back({.pod_name = "pod-" + std::to_string(i),
                       .address = "10.0.0." + std::to_string(i),
                       .port = 8000});
    }
    store_.set_correct_stale_metrics(correct);
    snapshot_ = store_.set_endpoints(specs);
    candidates_.clear();
    for (std::size_t i = 0; i < loads.size(); ++i) {
      auto metrics = std::make_shared<datastore::EndpointMetrics>();
      metrics->waiting_requests = loads[i].waiting;
      metrics->running_requests = loads[i].running;
      metrics->kv_cache_usage = loads[i].kv;
      metrics->cache_block_size = 16;
      metrics->cache_num_blocks = 100;
      ASSERT_TRUE(store_.update_metrics(*snapshot_->endpoints[i].info, metrics));
      candidates_.push_back({&snapshot_->endpoints[i], metrics.get()});  // the datastore holds it
    }
  }
  void dispatch(std::size_t endpoint, std::int64_t requests, std::int64_t tokens) {
    snapshot_->endpoints[endpoint].state->inflight_requests += requests;
    snapshot_->endpoints[endpoint].state->inflight_tokens += tokens;
  }
  std::vector<double> score(std::string_view type) {
    auto plugin = create_plugin(type, std::string(type), nullptr);
    EXPECT_TRUE(plugin.ok());
    auto scorer = std::dynamic_pointer_cast<const Scorer>(*plugin);
    SchedulingRequest request;
    CycleState state;
    SchedulingContext context{request, *snapshot_, TimePoint{}, state};
    std::vector<double> scores(candidates_.size());
    scorer->score(context, candidates_, scores);
    return scores;
  }

  datastore::Datastore store_;
  std::shared_ptr<const datastore::Snapshot> snapshot_;
  std::vector<Candidate> candidates_;
};

TEST(StaleMetricsBaselineTest, DatastoreStampsTheInFlightCountersOfTheScrape) {
  datastore::Datastore store;
  EXPECT_TRUE(store.correct_stale_metrics()) << "on by default";
  auto snapshot = store.set_endpoints({{.pod_name = "a", .address = "10.0.0.1", .port = 80}});
  const auto& endpoint = snapshot->endpoints[0];
  endpoint.state->inflight_requests = 3;
  endpoint.state->inflight_tokens = 300;

  auto now = std::make_shared<datastore::EndpointMetrics>();
  ASSERT_TRUE(store.update_metrics(*endpoint.info, now));
  EXPECT_EQ(now->inflight_requests_at_scrape, 3) << "no baseline given: the counters now";
  EXPECT_EQ(now->inflight_tokens_at_scrape, 300);

  const auto at_start = store.inflight(*endpoint.info);
  ASSERT_TRUE(at_start.has_value());
  EXPECT_EQ(at_start->requests, 3);
  endpoint.state->inflight_requests = 5;  // dispatched while the scrape was under way
  auto started = std::make_shared<datastore::EndpointMetrics>();
  started->running_requests = 3;  // the scrape shows the three requests in flight as it began
  ASSERT_TRUE(store.update_metrics(*endpoint.info, started, at_start));
  EXPECT_EQ(started->inflight_requests_at_scrape, 3) << "the counters as the scrape began";
  EXPECT_EQ(datastore::requests_not_in_scrape(*started, *endpoint.state), 2);

  store.set_correct_stale_metrics(false);
  auto strict = std::make_shared<datastore::EndpointMetrics>();
  ASSERT_TRUE(store.update_metrics(*endpoint.info, strict, at_start));
  EXPECT_EQ(strict->inflight_requests_at_scrape, -1);
  EXPECT_EQ(strict->inflight_tokens_at_scrape, -1);
  EXPECT_EQ(datastore::requests_not_in_scrape(*strict, *endpoint.state), 0);
}

TEST(StaleMetricsBaselineTest, RequestsStillInTransitAtTheScrapeCountAsUnseen) {
  datastore::Datastore store;
  auto snapshot = store.set_endpoints({{.pod_name = "a", .address = "10.0.0.1", .port = 80}});
  const auto& endpoint = snapshot->endpoints[0];
  endpoint.state->inflight_requests = 4;
  auto metrics = std::make_shared<datastore::EndpointMetrics>();
  metrics->waiting_requests = 1;
  metrics->running_requests = 2;  // the engine shows 3 of the 4: one had not reached it yet
  ASSERT_TRUE(store.update_metrics(*endpoint.info, metrics));
  EXPECT_EQ(datastore::requests_not_in_scrape(*metrics, *endpoint.state), 1);
  EXPECT_EQ(datastore::corrected_waiting_requests(*metrics, *endpoint.state), 2.0);
  endpoint.state->inflight_requests += 2;  // two more since
  EXPECT_EQ(datastore::requests_not_in_scrape(*metrics, *endpoint.state), 3);
  // Other clients' requests in the figures (more than this picker has in flight): the
  // in-flight baseline alone applies.
  metrics->waiting_requests = 10;
  EXPECT_EQ(datastore::requests_not_in_scrape(*metrics, *endpoint.state), 2);
}

TEST_P(StaleMetricsTest, QueueScorerAddsRequestsDispatchedSinceTheScrape) {
  const bool correct = GetParam();
  publish({{.waiting = 2}, {.waiting = 2}, {.waiting = 2}}, correct);
  dispatch(0, 3, 0);
  dispatch(1, 1, 0);
  if (correct) {
    // Waiting 5, 3, 2: min-max normalised.
    EXPECT_EQ(score("queue-scorer"), (std::vector<double>{0.0, 2.0 / 3.0, 1.0}));
  } else {
    // GIE: all equal scraped queues score 1.0.
    EXPECT_EQ(score("queue-scorer"), (std::vector<double>{1.0, 1.0, 1.0}));
  }
}

TEST_P(StaleMetricsTest, RequestsThatEndedSinceTheScrapeDoNotLowerTheFigures) {
  const bool correct = GetParam();
  publish({{.waiting = 4, .kv = 0.5}, {.waiting = 1, .kv = 0.25}}, correct);
  dispatch(0, -2, -320);  // two requests charged before the scrape ended since
  EXPECT_EQ(score("queue-scorer"), (std::vector<double>{0.0, 1.0}));
  EXPECT_EQ(score("kv-cache-utilization-scorer"), (std::vector<double>{0.5, 0.75}));
}

TEST_P(StaleMetricsTest, KvCacheScorerAddsDispatchedTokensOverTheCapacity) {
  const bool correct = GetParam();
  publish({{.kv = 0.5}, {.kv = 0.5}, {.kv = 0.9}}, correct);
  dispatch(0, 1, 160);   // 160 of 1,600 tokens: +0.1
  dispatch(2, 1, 1600);  // past the capacity: usage at most 1
  const std::vector<double> scores = score("kv-cache-utilization-scorer");
  ASSERT_EQ(scores.size(), 3u);
  if (correct) {
    EXPECT_DOUBLE_EQ(scores[0], 0.4);
    EXPECT_DOUBLE_EQ(scores[1], 0.5);
    EXPECT_DOUBLE_EQ(scores[2], 0.0);
  } else {
    // GIE: 1 - scraped usage.
    EXPECT_DOUBLE_EQ(scores[0], 0.5);
    EXPECT_DOUBLE_EQ(scores[1], 0.5);
    EXPECT_NEAR(scores[2], 0.1, 1e-12);
  }
}

TEST_P(StaleMetricsTest, RunningRequestsScorerAddsRequestsDispatchedSinceTheScrape) {
  const bool correct = GetParam();
  publish({{.running = 4}, {.running = 6}}, correct);
  dispatch(0, 4, 0);
  EXPECT_EQ(score("running-requests-size-scorer"),
            correct ? (std::vector<double>{0.0, 1.0}) : (std::vector<double>{1.0, 0.0}));
}

INSTANTIATE_TEST_SUITE_P(CorrectionOnAndOff, StaleMetricsTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "On" : "Off"; });

TEST(StaleMetricsKvTest, UnknownCapacityLeavesTheScrapedUsage) {
  datastore::Datastore store;
  auto snapshot = store.set_endpoints({{.pod_name = "a", .address = "10.0.0.1", .port = 80}});
  auto metrics = std::make_shared<datastore::EndpointMetrics>();
  metrics->kv_cache_usage = 0.3;  // no cache_config_info: capacity unknown
  ASSERT_TRUE(store.update_metrics(*snapshot->endpoints[0].info, metrics));
  snapshot->endpoints[0].state->inflight_tokens += 10000;
  EXPECT_DOUBLE_EQ(datastore::corrected_kv_cache_usage(*metrics, *snapshot->endpoints[0].state),
                   0.3);
}

TEST(StaleMetricsKvTest, NeverScrapedEndpointsAreNotCorrected) {
  // Candidates of endpoints never scraped carry default metrics: no baseline.
  datastore::EndpointMetrics defaults;
  datastore::EndpointState state;
  state.inflight_requests = 7;
  EXPECT_EQ(datastore::corrected_waiting_requests(defaults, state), 0.0);
}

// The default profile on four identical endpoints whose scrapes are all the same: a burst of
// requests between scrapes spreads evenly instead of piling onto the one best-looking endpoint.
TEST(StaleMetricsSchedulerTest, BurstBetweenScrapesSpreadsWithTheCorrection) {
  for (bool correct : {true, false}) {
    SCOPED_TRACE(correct ? "on" : "off");
    datastore::Datastore store;
    store.set_correct_stale_metrics(correct);
    std::vector<datastore::EndpointSpec> specs;
    for (int i = 0; i < 4; ++i) {
      specs.push_back({.pod_name = "pod-" + std::to_string(i),
                       .address = "10.0.0." + std::to_string(i),
                       .port = 8000});
    }
    auto snapshot = store.set_endpoints(specs);
    for (std::size_t i = 0; i < 4; ++i) {
      auto metrics = std::make_shared<datastore::EndpointMetrics>();
      metrics->kv_cache_usage = i == 2 ? 0.10 : 0.20;  // pod-2 looks least loaded
      metrics->cache_block_size = 16;
      metrics->cache_num_blocks = 1000;
      ASSERT_TRUE(store.update_metrics(*snapshot->endpoints[i].info, metrics));
    }
    auto setup = build_scheduler(api::default_endpoint_picker_config());
    ASSERT_TRUE(setup.ok()) << setup.status().message();
    std::vector<int> routed(4, 0);
    for (int n = 0; n < 8; ++n) {
      const std::string prompt = "distinct prompt number " + std::to_string(n) +
                                 std::string(200, static_cast<char>('a' + n));
      SchedulingRequest request{
          .target_model = "m", .prompt_bytes = prompt, .estimated_tokens = 50};
      CycleState state{.random_seed = static_cast<std::uint64_t>(n) + 1};
      auto result = setup->scheduler->schedule(request, *snapshot, TimePoint{}, state);
      ASSERT_TRUE(result.ok()) << result.status().message();
      const auto& target = *result->primary_result().targets.front();
      ++routed[target.info->id];
      // The director's charge on routing.
      target.state->inflight_requests += 1;
      target.state->inflight_tokens += request.estimated_tokens;
    }
    if (correct) {
      EXPECT_EQ(routed, (std::vector<int>{2, 2, 2, 2}));
    } else {
      EXPECT_EQ(routed, (std::vector<int>{0, 0, 8, 0})) << "GIE: every request to pod-2";
    }
  }
}

}  // namespace
}  // namespace infergate::scheduling
