#include "datastore/model_policies.h"

#include <gtest/gtest.h>

#include <map>

#include "api/decode.h"

namespace infergate::datastore {
namespace {

struct Resources {
  std::vector<api::InferenceObjective> objectives;
  std::vector<api::InferenceModelRewrite> rewrites;
  std::vector<api::InferenceModel> models;
};

Resources decode(std::string_view yaml) {
  Resources out;
  auto resources = api::decode_documents(yaml, "resources.yaml");
  EXPECT_TRUE(resources.ok()) << (resources.ok() ? "" : resources.status().message());
  if (!resources.ok()) return out;
  for (const auto& resource : *resources) {
    if (auto* objective = std::get_if<api::InferenceObjective>(&resource)) {
      out.objectives.push_back(*objective);
    } else if (auto* rewrite = std::get_if<api::InferenceModelRewrite>(&resource)) {
      out.rewrites.push_back(*rewrite);
    } else if (auto* model = std::get_if<api::InferenceModel>(&resource)) {
      out.models.push_back(*model);
    }
  }
  return out;
}

constexpr std::string_view kResources = R"(
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata:
  name: batch
spec:
  priority: -1
  poolRef:
    name: pool
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata:
  name: newer
  creationTimestamp: "2026-02-01T00:00:00Z"
spec:
  poolRef:
    name: pool
  rules:
  - matches:
    - model:
        value: chat
    targets:
    - modelRewrite: chat-newer
  - targets:
    - modelRewrite: generic-newer
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata:
  name: older
  creationTimestamp: "2026-01-01T00:00:00Z"
spec:
  poolRef:
    name: pool
  rules:
  - matches:
    - model:
        value: chat
    - model:
        value: talk
    targets:
    - modelRewrite: chat-lora-a
      weight: 90
    - modelRewrite: chat-lora-b
      weight: 10
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata:
  name: legacy
spec:
  modelName: legacy-model
  criticality: Sheddable
  poolRef:
    name: pool
)";

TEST(ModelPoliciesTest, PriorityComesFromTheNamedObjectiveOrALegacyModel) {
  const Resources resources = decode(kResources);
  ModelPolicies policies(resources.objectives, resources.rewrites, resources.models);
  EXPECT_EQ(policies.priority("batch", "chat"), -1);
  EXPECT_EQ(policies.priority("", "legacy-model"), -1);
  EXPECT_EQ(policies.priority("unknown", "chat"), 0);
  EXPECT_EQ(policies.priority("", "chat"), 0);
}

TEST(ModelPoliciesTest, ExactRulesOfTheOldestResourceWinThenGenericRules) {
  const Resources resources = decode(kResources);
  ModelPolicies policies(resources.objectives, resources.rewrites, resources.models);
  auto chat = policies.rewrite("chat", 0.5);
  ASSERT_TRUE(chat.has_value());
  EXPECT_EQ(chat->target_model, "chat-lora-a");
  EXPECT_EQ(chat->rewrite_name, "older");
  EXPECT_EQ(policies.rewrite("talk", 0.95)->target_model, "chat-lora-b");
  auto other = policies.rewrite("anything", 0.0);
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->target_model, "generic-newer");
}

TEST(ModelPoliciesTest, WeightedTargetsSplitTrafficByWeight) {
  const Resources resources = decode(kResources);
  ModelPolicies policies(resources.objectives, resources.rewrites);
  std::map<std::string, int> counts;
  for (int i = 0; i < 1000; ++i) ++counts[policies.rewrite("chat", (i + 0.5) / 1000)->target_model];
  EXPECT_EQ(counts["chat-lora-a"], 900);
  EXPECT_EQ(counts["chat-lora-b"], 100);
}

TEST(ModelPoliciesTest, NoRulesMeansNoRewrite) {
  ModelPolicies policies;
  EXPECT_FALSE(policies.rewrite("chat", 0.3).has_value());
  EXPECT_EQ(policies.priority("x", "y"), 0);
}

}  // namespace
}  // namespace infergate::datastore
