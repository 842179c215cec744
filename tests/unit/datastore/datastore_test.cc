#include "datastore/datastore.h"

#include <gtest/gtest.h>

#include <thread>

namespace infergate::datastore {
namespace {

EndpointSpec spec(std::string pod, std::string address, std::uint16_t port, int rank = 0) {
  return EndpointSpec{.pod_name = std::move(pod),
                      .namespace_name = "default",
                      .address = std::move(address),
                      .port = port,
                      .rank = rank};
}

std::vector<std::string> names(const Snapshot& snapshot) {
  std::vector<std::string> out;
  for (const auto& endpoint : snapshot.endpoints) out.push_back(endpoint.info->name);
  return out;
}

TEST(DatastoreTest, EndpointsAreNamedByPodAndRankWithHostPort) {
  Datastore store;
  auto snapshot =
      store.set_endpoints({spec("vllm-0", "10.0.0.1", 8000, 0), spec("vllm-0", "10.0.0.1", 8001, 1),
                           spec("vllm-1", "fd00::2", 8000)});
  EXPECT_EQ(names(*snapshot),
            (std::vector<std::string>{"vllm-0-rank-0", "vllm-0-rank-1", "vllm-1-rank-0"}));
  EXPECT_EQ(snapshot->endpoints[1].info->host_port, "10.0.0.1:8001");
  EXPECT_EQ(snapshot->endpoints[2].info->host_port, "[fd00::2]:8000");
  EXPECT_EQ(snapshot->endpoints[0].info->engine_type, "vllm");
  EXPECT_EQ(store.id_bound(), 3u);
}

TEST(DatastoreTest, EngineTypeComesFromThePodLabel) {
  Datastore store;
  auto with_label = spec("sgl-0", "10.0.0.3", 30000);
  with_label.labels[kEngineTypeLabel] = "sglang";
  EXPECT_EQ(store.set_endpoints({with_label})->endpoints[0].info->engine_type, "sglang");
}

TEST(DatastoreTest, UnchangedEndpointsKeepIdAndStateAcrossReconciles) {
  Datastore store;
  auto first = store.set_endpoints({spec("a", "10.0.0.1", 80), spec("b", "10.0.0.2", 80)});
  const Endpoint* b = first->find("b-rank-0");
  ASSERT_NE(b, nullptr);
  b->state->inflight_requests = 3;
  auto second = store.set_endpoints({spec("b", "10.0.0.2", 80), spec("c", "10.0.0.3", 80)});
  const Endpoint* b_again = second->find("b-rank-0");
  ASSERT_NE(b_again, nullptr);
  EXPECT_EQ(b_again->info->id, b->info->id);
  EXPECT_EQ(b_again->state->inflight_requests.load(), 3);
  // "a" left, so "c" reuses its id and the id range stays dense.
  EXPECT_EQ(second->find("c-rank-0")->info->id, first->find("a-rank-0")->info->id);
  EXPECT_EQ(store.id_bound(), 2u);
  EXPECT_GT(second->version, first->version);
  // The old snapshot is untouched.
  EXPECT_EQ(names(*first), (std::vector<std::string>{"a-rank-0", "b-rank-0"}));
}

TEST(DatastoreTest, ChangedSpecReplacesTheEndpoint) {
  Datastore store;
  auto first = store.set_endpoints({spec("a", "10.0.0.1", 80)});
  auto old_info = first->endpoints[0].info;
  auto second = store.set_endpoints({spec("a", "10.0.0.9", 80)});
  EXPECT_NE(second->endpoints[0].info, old_info);
  EXPECT_EQ(second->endpoints[0].info->host_port, "10.0.0.9:80");
  EXPECT_FALSE(store.update_metrics(*old_info, std::make_shared<EndpointMetrics>()))
      << "a collector of the replaced endpoint must stop";
}

TEST(DatastoreTest, UpsertAndRemove) {
  Datastore store;
  const EndpointId a = store.upsert_endpoint(spec("a", "10.0.0.1", 80));
  EXPECT_EQ(store.upsert_endpoint(spec("a", "10.0.0.1", 80)), a) << "unchanged: same id";
  store.upsert_endpoint(spec("b", "10.0.0.2", 80));
  EXPECT_TRUE(store.remove_endpoint("a-rank-0"));
  EXPECT_FALSE(store.remove_endpoint("a-rank-0"));
  EXPECT_EQ(names(*store.snapshot()), std::vector<std::string>{"b-rank-0"});
}

TEST(DatastoreTest, MetricsUpdateInPlaceAndFreshnessIsChecked) {
  Datastore store;
  auto snapshot = store.set_endpoints({spec("a", "10.0.0.1", 80)});
  const Endpoint& endpoint = snapshot->endpoints[0];
  EXPECT_EQ(endpoint.fresh_metrics(from_seconds(1), from_seconds(2)), nullptr) << "never scraped";
  auto metrics = std::make_shared<EndpointMetrics>();
  metrics->waiting_requests = 4;
  metrics->updated_at = from_seconds(10);
  ASSERT_TRUE(store.update_metrics(*endpoint.info, metrics));
  EXPECT_EQ(store.snapshot()->version, snapshot->version) << "no republish for a scrape";
  ASSERT_NE(endpoint.fresh_metrics(from_seconds(11), from_seconds(2)), nullptr);
  EXPECT_EQ(endpoint.fresh_metrics(from_seconds(11), from_seconds(2))->waiting_requests, 4);
  EXPECT_EQ(endpoint.fresh_metrics(from_seconds(13), from_seconds(2)), nullptr) << "stale";
}

TEST(DatastoreTest, ReadersSeeConsistentSnapshotsWhileWritersPublish) {
  Datastore store;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int round = 0; round < 2000; ++round) {
      std::vector<EndpointSpec> specs;
      for (int i = 0; i <= round % 8; ++i)
        specs.push_back(spec("p" + std::to_string(i), "10.0.0.1", 80));
      auto snapshot = store.set_endpoints(specs);
      for (const auto& endpoint : snapshot->endpoints) {
        auto metrics = std::make_shared<EndpointMetrics>();
        metrics->running_requests = round;
        store.update_metrics(*endpoint.info, metrics);
      }
    }
    done = true;
  });
  std::size_t reads = 0;
  do {  // at least one read, even when the writer finishes first on a loaded machine
    auto snapshot = store.snapshot();
    for (std::size_t i = 1; i < snapshot->endpoints.size(); ++i) {
      ASSERT_LT(snapshot->endpoints[i - 1].info->id, snapshot->endpoints[i].info->id);
    }
    for (const auto& endpoint : snapshot->endpoints) {
      if (auto metrics = endpoint.state->metrics()) {
        ASSERT_GE(metrics->running_requests, 0);
      }
    }
    ++reads;
  } while (!done);
  writer.join();
  EXPECT_GT(reads, 0u);
  EXPECT_EQ(store.snapshot()->endpoints.size(), 1999u % 8 + 1) << "the last round's set";
}

}  // namespace
}  // namespace infergate::datastore
