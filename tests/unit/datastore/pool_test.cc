#include "datastore/pool.h"

#include <gtest/gtest.h>

namespace infergate::datastore {
namespace {

api::InferencePool make_pool() {
  api::InferencePool pool;
  pool.metadata.name = "llama";
  pool.metadata.namespace_name = "serving";
  pool.spec.match_labels = {{"app", "vllm"}};
  pool.spec.target_ports = {8000, 8001};
  return pool;
}

TEST(PoolTest, SelectsReadyPodsByLabelsOncePerTargetPort) {
  const std::vector<Pod> pods = {
      {"vllm-a", "serving", "10.0.0.1", {{"app", "vllm"}, {"zone", "a"}}, true},
      {"vllm-b", "serving", "10.0.0.2", {{"app", "vllm"}}, false},   // not ready
      {"sglang", "serving", "10.0.0.3", {{"app", "sglang"}}, true},  // other labels
      {"vllm-c", "elsewhere", "10.0.0.4", {{"app", "vllm"}}, true},  // other namespace
      {"vllm-d", "serving", "", {{"app", "vllm"}}, true},            // no IP yet
  };
  const auto endpoints = pool_endpoints(make_pool(), pods);
  ASSERT_EQ(endpoints.size(), 2u);
  EXPECT_EQ(endpoints[0].endpoint_name(), "vllm-a-rank-0");
  EXPECT_EQ(endpoints[0].port, 8000);
  EXPECT_EQ(endpoints[1].endpoint_name(), "vllm-a-rank-1");
  EXPECT_EQ(endpoints[1].port, 8001);
  EXPECT_EQ(endpoints[1].labels.at("zone"), "a");
}

}  // namespace
}  // namespace infergate::datastore
