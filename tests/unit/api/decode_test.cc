#include "api/decode.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "api/legacy.h"

namespace infergate::api {
namespace {

using nlohmann::json;

struct ValidCase {
  const char* description;
  std::string input;
  Resource expected;
};

ObjectMeta meta(std::string name, std::string namespace_name = "") {
  ObjectMeta result;
  result.name = std::move(name);
  result.namespace_name = std::move(namespace_name);
  return result;
}

InferencePool pool_v1_full() {
  InferencePool pool;
  pool.api_version = "inference.networking.k8s.io/v1";
  pool.metadata = meta("vllm-llama3-8b", "inference");
  pool.metadata.labels = {{"app.kubernetes.io/name", "llama"}};
  pool.spec.match_labels = {{"app", "vllm-llama3-8b"}, {"tier", "gpu"}};
  pool.spec.target_ports = {8000, 8001};
  pool.spec.app_protocol = AppProtocol::kH2c;
  pool.spec.endpoint_picker_ref =
      EndpointPickerRef{"", "Service", "vllm-llama3-8b-epp", 9002, FailureMode::kFailOpen};
  pool.status = json{{"parents", json::array()}};
  return pool;
}

InferencePool pool_v1_minimal() {
  InferencePool pool;
  pool.api_version = "inference.networking.k8s.io/v1";
  pool.metadata = meta("p");
  pool.spec.match_labels = {{"app", "x"}};
  pool.spec.target_ports = {8000};
  return pool;
}

InferencePool pool_converted(std::optional<int32_t> port, FailureMode mode) {
  InferencePool pool;
  pool.api_version = "inference.networking.x-k8s.io/v1alpha2";
  pool.metadata = meta("old-pool");
  pool.spec.match_labels = {{"app", "old"}};
  pool.spec.target_ports = {8080};
  pool.spec.endpoint_picker_ref = EndpointPickerRef{"", "Service", "old-epp", port, mode};
  return pool;
}

InferenceObjective objective(std::string api_version, int64_t priority) {
  InferenceObjective result;
  result.api_version = std::move(api_version);
  result.metadata = meta("critical");
  result.priority = priority;
  result.pool_ref = PoolRef{"inference.networking.k8s.io", "InferencePool", "p"};
  return result;
}

InferenceModelRewrite rewrite() {
  InferenceModelRewrite result;
  result.api_version = "inference.networking.x-k8s.io/v1alpha2";
  result.metadata = meta("canary");
  result.metadata.creation_timestamp = "2025-10-01T00:00:00Z";
  result.pool_ref = PoolRef{"inference.networking.k8s.io", "InferencePool", "p"};
  result.rules = {
      RewriteRule{{ModelMatch{ModelMatchType::kExact, "food-review"},
                   ModelMatch{ModelMatchType::kExact, "food"}},
                  {RewriteTarget{"food-review-v1", 90}, RewriteTarget{"food-review-v2", 10}}},
      RewriteRule{{}, {RewriteTarget{"base", std::nullopt}}},
  };
  return result;
}

InferenceModel model() {
  InferenceModel result;
  result.api_version = "inference.networking.x-k8s.io/v1alpha2";
  result.metadata = meta("food-review");
  result.model_name = "food-review";
  result.criticality = Criticality::kCritical;
  result.target_models = {TargetModel{"food-review-1", 70}, TargetModel{"food-review-2", 30}};
  result.pool_ref = PoolRef{"inference.networking.x-k8s.io", "InferencePool", "old-pool"};
  return result;
}

EndpointPickerConfig small_config(std::string api_version) {
  EndpointPickerConfig config;
  config.api_version = std::move(api_version);
  config.plugins = {PluginSpec{"queue-scorer", "queue-scorer", json()},
                    PluginSpec{"picker", "max-score-picker", json{{"maxNumOfEndpoints", 2}}}};
  config.scheduling_profiles = {
      SchedulingProfile{"default", {{"queue-scorer", 2.5}, {"picker", std::nullopt}}}};
  return config;
}

TEST(DecodeTest, DecodesEveryKindAndVersion) {
  const std::vector<ValidCase> cases = {
      {"InferencePool v1 with every field",
       R"(apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: vllm-llama3-8b
  namespace: inference
  labels: {app.kubernetes.io/name: llama}
  uid: 1234            # ObjectMeta fields infergate does not use are accepted
spec:
  selector:
    matchLabels: {app: vllm-llama3-8b, tier: gpu}
  targetPorts: [{number: 8000}, {number: 8001}]
  appProtocol: kubernetes.io/h2c
  endpointPickerRef:
    name: vllm-llama3-8b-epp
    port: {number: 9002}
    failureMode: FailOpen
status:
  parents: []
)",
       pool_v1_full()},
      {"InferencePool v1 minimal: defaults, no endpointPickerRef",
       R"({"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
           "metadata": {"name": "p"},
           "spec": {"selector": {"matchLabels": {"app": "x"}}, "targetPorts": [{"number": 8000}]}})",
       pool_v1_minimal()},
      {"InferencePool v1alpha2 converted: port and failure mode carried over",
       R"(apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: old-pool}
spec:
  selector: {app: old}
  targetPortNumber: 8080
  extensionRef: {name: old-epp, portNumber: 9100, failureMode: FailOpen}
)",
       pool_converted(9100, FailureMode::kFailOpen)},
      {"InferencePool v1alpha2 Service without portNumber assumes 9002",
       R"(apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: old-pool}
spec:
  selector: {app: old}
  targetPortNumber: 8080
  extensionRef: {name: old-epp}
)",
       pool_converted(9002, FailureMode::kFailClose)},
      {"InferenceObjective x-k8s.io with negative priority",
       R"(apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: critical}
spec: {priority: -3, poolRef: {name: p}}
)",
       objective("inference.networking.x-k8s.io/v1alpha2", -3)},
      {"InferenceObjective llm-d.ai without priority defaults to 0",
       R"(apiVersion: llm-d.ai/v1alpha2
kind: InferenceObjective
metadata: {name: critical}
spec: {poolRef: {name: p}}
)",
       objective("llm-d.ai/v1alpha2", 0)},
      {"InferenceModelRewrite with exact and generic rules",
       R"(apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: canary, creationTimestamp: "2025-10-01T00:00:00Z"}
spec:
  poolRef: {name: p}
  rules:
  - matches:
    - model: {type: Exact, value: food-review}
    - model: {value: food}
    targets:
    - {modelRewrite: food-review-v1, weight: 90}
    - {modelRewrite: food-review-v2, weight: 10}
  - targets: [{modelRewrite: base}]
)",
       rewrite()},
      {"legacy InferenceModel",
       R"(apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: food-review}
spec:
  modelName: food-review
  criticality: Critical
  targetModels: [{name: food-review-1, weight: 70}, {name: food-review-2, weight: 30}]
  poolRef: {name: old-pool}
)",
       model()},
      {"EndpointPickerConfig x-k8s.io",
       R"(apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- {name: picker, type: max-score-picker, parameters: {maxNumOfEndpoints: 2}}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: queue-scorer, weight: 2.5}, {pluginRef: picker}]
)",
       small_config("inference.networking.x-k8s.io/v1alpha1")},
      {"EndpointPickerConfig llm-d.ai as JSON",
       R"({"apiVersion": "llm-d.ai/v1alpha1", "kind": "EndpointPickerConfig",
           "plugins": [{"type": "queue-scorer"},
                       {"name": "picker", "type": "max-score-picker",
                        "parameters": {"maxNumOfEndpoints": 2}}],
           "schedulingProfiles": [{"name": "default", "plugins": [
               {"pluginRef": "queue-scorer", "weight": 2.5}, {"pluginRef": "picker"}]}]})",
       small_config("llm-d.ai/v1alpha1")},
  };
  for (const ValidCase& test_case : cases) {
    DecodeReport report = decode_documents_report(test_case.input, "test.yaml");
    ASSERT_TRUE(report.ok()) << test_case.description << ": " << report.errors.front();
    ASSERT_EQ(report.resources.size(), 1u) << test_case.description;
    EXPECT_EQ(kind_of(report.resources[0]), kind_of(test_case.expected)) << test_case.description;
    EXPECT_TRUE(report.resources[0] == test_case.expected) << test_case.description;
  }
}

TEST(DecodeTest, KeepsStatusAndQuotedScalarsAsStrings) {
  auto result = decode_documents(R"(apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: p, labels: {version: "1", enabled: "true"}}
spec:
  selector: {matchLabels: {app: x}}
  targetPorts: [{number: 8000}]
status: {parents: [{parentRef: {name: gw}}]}
)",
                                 "p.yaml");
  ASSERT_TRUE(result.ok()) << result.status().message();
  const auto& pool = std::get<InferencePool>(result->at(0));
  EXPECT_EQ(pool.metadata.labels.at("version"), "1");
  EXPECT_EQ(pool.metadata.labels.at("enabled"), "true");
  EXPECT_EQ(pool.status["parents"][0]["parentRef"]["name"], "gw");
}

TEST(DecodeTest, DecodesMultiDocumentFilesInOrder) {
  const std::string text = R"(---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: p}
spec: {selector: {matchLabels: {app: x}}, targetPorts: [{number: 8000}]}
---
# an empty document is skipped
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: critical}
spec: {priority: 5, poolRef: {name: p}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: chat}
spec: {modelName: chat, poolRef: {name: p}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins: [{type: random-picker}]
)";
  auto result = decode_documents(text, "all.yaml");
  ASSERT_TRUE(result.ok()) << result.status().message();
  std::vector<std::string_view> kinds;
  for (const Resource& resource : *result) kinds.push_back(kind_of(resource));
  EXPECT_EQ(kinds, (std::vector<std::string_view>{"InferencePool", "InferenceObjective",
                                                  "InferenceModel", "EndpointPickerConfig"}));
}

TEST(DecodeTest, LoadsFilesAndReportsUnreadableOnes) {
  const std::string path = ::testing::TempDir() + "/api_load_file_test.yaml";
  {
    std::ofstream out(path);
    out << "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n";
  }
  auto loaded = load_file(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(kind_of(loaded->at(0)), "EndpointPickerConfig");
  std::remove(path.c_str());

  auto missing = load_file(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), path + ": cannot open file");
}

TEST(DecodeTest, DecodesTheDocumentedExampleConfig) {
  const std::string text = R"(# Prefix-heavy tuning for 8B models on H100 with two priority bands.
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates:
- flowControl
plugins:
- name: prefix-producer            # explicit instance; otherwise auto-added with defaults
  type: approx-prefix-cache-producer
  parameters:
    autoTune: false
    blockSizeTokens: 16
    maxPrefixBlocksToMatch: 128
    lruCapacityPerServer: 27000
- type: prefix-cache-scorer
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: lora-affinity-scorer
- name: picker
  type: weighted-random-picker
  parameters:
    maxNumOfEndpoints: 1
- name: saturation
  type: concurrency-detector
  parameters:
    concurrencyMode: requests
    maxConcurrency: 64
    headroom: 0.1
- name: scrape
  type: metrics-data-source
  parameters:
    scheme: http
    path: /metrics
    insecureSkipVerify: true
- name: extract
  type: core-metrics-extractor
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
    weight: 4
  - pluginRef: queue-scorer
    weight: 1
  - pluginRef: kv-cache-utilization-scorer
    weight: 1
  - pluginRef: lora-affinity-scorer      # no weight given -> 1
  - pluginRef: picker
saturationDetector:
  pluginRef: saturation
dataLayer:
  sources:
  - pluginRef: scrape
    extractors:
    - pluginRef: extract
flowControl:
  maxRequests: 2000
  defaultRequestTTL: 30s
  priorityBands:
  - priority: 10                 # InferenceObjective priority 10
    maxRequests: 500
    fairnessPolicyRef: round-robin-fairness-policy
    orderingPolicyRef: fcfs-ordering-policy
  - priority: 0                  # requests without an objective
    maxBytes: 2Gi
    fairnessPolicyRef: round-robin-fairness-policy
    orderingPolicyRef: edf-ordering-policy
)";
  auto result = decode_documents(text, "epp.yaml");
  ASSERT_TRUE(result.ok()) << result.status().message();
  const auto& config = std::get<EndpointPickerConfig>(result->at(0));
  EXPECT_EQ(config.feature_gates, std::vector<std::string>{"flowControl"});
  ASSERT_EQ(config.plugins.size(), 9u);
  EXPECT_EQ(config.plugins[0].name, "prefix-producer");
  EXPECT_EQ(config.plugins[0].parameters["lruCapacityPerServer"], 27000);
  EXPECT_EQ(config.plugins[0].parameters["autoTune"], false);
  EXPECT_EQ(config.plugins[1].name, "prefix-cache-scorer");
  EXPECT_TRUE(config.plugins[1].parameters.is_null());
  EXPECT_EQ(config.plugins[5].parameters["maxNumOfEndpoints"], 1);
  EXPECT_EQ(config.plugins[6].parameters["headroom"], 0.1);
  EXPECT_EQ(config.plugins[7].parameters["path"], "/metrics");
  ASSERT_EQ(config.scheduling_profiles.size(), 1u);
  const auto& refs = config.scheduling_profiles[0].plugins;
  ASSERT_EQ(refs.size(), 5u);
  EXPECT_EQ(refs[0].weight, 4.0);
  EXPECT_EQ(refs[3].weight, std::nullopt);
  EXPECT_EQ(config.saturation_detector_ref, "saturation");
  ASSERT_TRUE(config.data_layer.has_value());
  EXPECT_EQ(config.data_layer->sources,
            (std::vector<DataLayerSource>{DataLayerSource{"scrape", {"extract"}}}));
  ASSERT_TRUE(config.flow_control.has_value());
  EXPECT_EQ(config.flow_control->max_requests, 2000);
  EXPECT_EQ(config.flow_control->default_request_ttl, std::chrono::seconds(30));
  ASSERT_EQ(config.flow_control->priority_bands.size(), 2u);
  EXPECT_EQ(config.flow_control->priority_bands[0],
            (PriorityBandConfig{10, std::nullopt, 500, "round-robin-fairness-policy",
                                "fcfs-ordering-policy"}));
  EXPECT_EQ(config.flow_control->priority_bands[1],
            (PriorityBandConfig{0, int64_t{2} << 30, std::nullopt, "round-robin-fairness-policy",
                                "edf-ordering-policy"}));
}

TEST(LegacyTest, MapsInferenceModelOntoObjectiveAndRewrite) {
  struct Case {
    const char* description;
    std::optional<Criticality> criticality;
    int64_t expected_priority;
  };
  const std::vector<Case> cases = {
      {"Critical", Criticality::kCritical, 1},
      {"Standard", Criticality::kStandard, 0},
      {"unset is Standard", std::nullopt, 0},
      {"Sheddable is negative", Criticality::kSheddable, -1},
  };
  for (const Case& test_case : cases) {
    InferenceModel legacy = model();
    legacy.criticality = test_case.criticality;
    ConvertedInferenceModel converted = convert_inference_model(legacy);
    EXPECT_EQ(converted.objective.priority, test_case.expected_priority) << test_case.description;
  }

  ConvertedInferenceModel converted = convert_inference_model(model());
  EXPECT_EQ(converted.objective.metadata.name, "food-review");
  EXPECT_EQ(converted.objective.pool_ref,
            (PoolRef{"inference.networking.k8s.io", "InferencePool", "old-pool"}));
  ASSERT_TRUE(converted.rewrite.has_value());
  EXPECT_EQ(converted.rewrite->pool_ref, converted.objective.pool_ref);
  EXPECT_EQ(converted.rewrite->rules,
            (std::vector<RewriteRule>{RewriteRule{
                {ModelMatch{ModelMatchType::kExact, "food-review"}},
                {RewriteTarget{"food-review-1", 70}, RewriteTarget{"food-review-2", 30}}}}));

  InferenceModel unweighted = model();
  unweighted.target_models = {TargetModel{"a", std::nullopt}, TargetModel{"b", std::nullopt}};
  converted = convert_inference_model(unweighted);
  ASSERT_TRUE(converted.rewrite.has_value());
  EXPECT_EQ(converted.rewrite->rules[0].targets,
            (std::vector<RewriteTarget>{RewriteTarget{"a", std::nullopt},
                                        RewriteTarget{"b", std::nullopt}}));

  InferenceModel no_targets = model();
  no_targets.target_models.clear();
  EXPECT_FALSE(convert_inference_model(no_targets).rewrite.has_value());
}

}  // namespace
}  // namespace infergate::api
