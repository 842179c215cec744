#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/decode.h"

namespace infergate::api {
namespace {

struct ErrorCase {
  const char* description;
  std::string input;
  std::vector<std::string> expected;
};

constexpr const char* kPoolHeader = R"(apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: my-pool}
)";

std::string pool_with_spec(const std::string& spec) { return kPoolHeader + spec; }

constexpr const char* kConfigHeader = R"(apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
)";

std::string config(const std::string& body) { return kConfigHeader + body; }

TEST(DecodeErrorsTest, ReportsEveryProblemWithFileObjectAndField) {
  const std::vector<ErrorCase> cases = {
      {"unknown key under spec",
       pool_with_spec("spec:\n  selectr: {matchLabels: {app: x}}\n"
                      "  selector: {matchLabels: {app: x}}\n  targetPorts: [{number: 8000}]\n"),
       {R"(pool.yaml: InferencePool "my-pool" (document 1): unknown field "spec.selectr")"}},
      {"unknown keys at the top, in metadata and deep in a list",
       R"(apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: my-pool, nmespace: x}
spec:
  selector: {matchLabels: {app: x}}
  targetPorts: [{number: 8000, protocol: TCP}]
  endpointPickerRef: {name: epp, port: {number: 9002, name: grpc}}
specs: {}
)",
       {R"(pool.yaml: InferencePool "my-pool" (document 1): unknown field "metadata.nmespace")",
        R"(pool.yaml: InferencePool "my-pool" (document 1): unknown field "spec.targetPorts[0].protocol")",
        R"(pool.yaml: InferencePool "my-pool" (document 1): unknown field "spec.endpointPickerRef.port.name")",
        R"(pool.yaml: InferencePool "my-pool" (document 1): unknown field "specs")"}},
      {"matchExpressions is not supported",
       pool_with_spec("spec:\n  selector: {matchLabels: {app: x}, matchExpressions: []}\n"
                      "  targetPorts: [{number: 8000}]\n"),
       {R"(pool.yaml: InferencePool "my-pool" (document 1): unknown field "spec.selector.matchExpressions")"}},
      {"wrong types",
       pool_with_spec("spec:\n  selector: {matchLabels: {app: 3}}\n"
                      "  targetPorts: [{number: \"8000\"}, {number: 80.5}]\n"
                      "  endpointPickerRef: [epp]\n"),
       {R"(pool.yaml: InferencePool "my-pool" (document 1): field "spec.selector.matchLabels[app]": expected a string, got an integer)",
        R"(pool.yaml: InferencePool "my-pool" (document 1): field "spec.targetPorts[0].number": expected an integer, got a string)",
        R"(pool.yaml: InferencePool "my-pool" (document 1): field "spec.targetPorts[1].number": expected an integer, got a number)",
        R"(pool.yaml: InferencePool "my-pool" (document 1): field "spec.endpointPickerRef": expected an object, got a list)"}},
      {"missing required fields",
       pool_with_spec("spec:\n  selector: {}\n  endpointPickerRef: {kind: Service}\n"),
       {R"(pool.yaml: InferencePool "my-pool" (document 1): missing required field "spec.selector.matchLabels")",
        R"(pool.yaml: InferencePool "my-pool" (document 1): missing required field "spec.targetPorts")",
        R"(pool.yaml: InferencePool "my-pool" (document 1): missing required field "spec.endpointPickerRef.name")",
        R"(pool.yaml: InferencePool "my-pool" (document 1): missing required field "spec.endpointPickerRef.port" (required when kind is Service))"}},
      {"invalid ports, enums and counts",
       pool_with_spec("spec:\n  selector: {matchLabels: {app: x}}\n"
                      "  targetPorts: [{number: 0}, {number: 8000}, {number: 8000}, {number: "
                      "70000}, {number: 1}, {number: 2}, {number: 3}, {number: 4}, {number: 5}]\n"
                      "  appProtocol: grpc\n"
                      "  endpointPickerRef: {name: epp, port: {number: 9002}, failureMode: "
                      "Open}\n"),
       {R"(pool.yaml: InferencePool "my-pool" (document 1): field "spec.targetPorts": must have 1 to 8 items, got 9)",
        R"(pool.yaml: InferencePool "my-pool" (document 1): field "spec.targetPorts[0].number": must be between 1 and 65535, got 0)",
        R"(pool.yaml: InferencePool "my-pool" (document 1): field "spec.targetPorts[2].number": duplicate port 8000)",
        R"(pool.yaml: InferencePool "my-pool" (document 1): field "spec.targetPorts[3].number": must be between 1 and 65535, got 70000)",
        R"(pool.yaml: InferencePool "my-pool" (document 1): field "spec.appProtocol": must be one of "http", "kubernetes.io/h2c", got "grpc")",
        R"(pool.yaml: InferencePool "my-pool" (document 1): field "spec.endpointPickerRef.failureMode": must be one of "FailOpen", "FailClose", got "Open")"}},
      {"invalid names and labels",
       R"(apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: My_Pool, labels: {"bad key": x}}
spec:
  selector: {matchLabels: {app: "-x"}}
  targetPorts: [{number: 8000}]
)",
       {R"(pool.yaml: InferencePool "My_Pool" (document 1): field "metadata.name": must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'), got "My_Pool")",
        R"(pool.yaml: InferencePool "My_Pool" (document 1): field "metadata.labels[bad key]": invalid label key: name part of "bad key" must consist of alphanumeric characters, '-', '_' or '.')",
        R"(pool.yaml: InferencePool "My_Pool" (document 1): field "spec.selector.matchLabels[app]": invalid label value "-x": must start and end with an alphanumeric character)"}},
      {"duplicate key",
       pool_with_spec(
           "spec:\n  selector: {matchLabels: {app: x}}\n  targetPorts: [{number: 8000}]\n"
           "  targetPorts: [{number: 8001}]\n"),
       {R"(pool.yaml: InferencePool "my-pool" (document 1): duplicate field "spec.targetPorts")"}},
      {"v1alpha2 pool: missing port, bad extensionRef, v1 keys rejected",
       R"(apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: old}
spec:
  selector: {app: x}
  targetPorts: [{number: 8000}]
  extensionRef: {name: epp, portNumber: 99999}
)",
       {R"(pool.yaml: InferencePool "old" (document 1): missing required field "spec.targetPortNumber")",
        R"(pool.yaml: InferencePool "old" (document 1): field "spec.extensionRef.portNumber": must be between 1 and 65535, got 99999)",
        R"(pool.yaml: InferencePool "old" (document 1): unknown field "spec.targetPorts")"}},
      {"missing metadata and spec",
       "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\n",
       {R"(pool.yaml: InferenceObjective (document 1): missing required field "metadata")",
        R"(pool.yaml: InferenceObjective (document 1): missing required field "spec")"}},
      {"objective: missing poolRef name, non-integer priority",
       R"(apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: o}
spec: {priority: high, poolRef: {kind: InferencePool}}
)",
       {R"(pool.yaml: InferenceObjective "o" (document 1): field "spec.priority": expected an integer, got a string)",
        R"(pool.yaml: InferenceObjective "o" (document 1): missing required field "spec.poolRef.name")"}},
      {"rewrite: invalid weights, empty targets, bad match type",
       R"(apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: r}
spec:
  poolRef: {name: p}
  rules:
  - matches: [{model: {type: Prefix, value: a}}, {model: {value: ""}}]
    targets: [{modelRewrite: b, weight: 0}, {modelRewrite: c, weight: 1000001}]
  - targets: []
)",
       {R"(pool.yaml: InferenceModelRewrite "r" (document 1): field "spec.rules[0].matches[0].model.type": must be one of "Exact", got "Prefix")",
        R"(pool.yaml: InferenceModelRewrite "r" (document 1): field "spec.rules[0].matches[1].model.value": must not be empty)",
        R"(pool.yaml: InferenceModelRewrite "r" (document 1): field "spec.rules[0].targets[0].weight": must be between 1 and 1000000, got 0)",
        R"(pool.yaml: InferenceModelRewrite "r" (document 1): field "spec.rules[0].targets[1].weight": must be between 1 and 1000000, got 1000001)",
        R"(pool.yaml: InferenceModelRewrite "r" (document 1): field "spec.rules[1].targets": must have at least 1 item)"}},
      {"legacy model: weights all or none, bad criticality",
       R"(apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: m}
spec:
  modelName: m
  criticality: Important
  targetModels: [{name: a, weight: 1}, {name: b}]
  poolRef: {name: p}
)",
       {R"(pool.yaml: InferenceModel "m" (document 1): field "spec.criticality": must be one of "Critical", "Standard", "Sheddable", got "Important")",
        R"(pool.yaml: InferenceModel "m" (document 1): field "spec.targetModels": either all or none of the target models must have a weight)"}},
      {"unknown apiVersion for a known kind",
       "apiVersion: inference.networking.k8s.io/v2\nkind: InferencePool\nmetadata: {name: p}\n",
       {R"(pool.yaml: InferencePool "p" (document 1): unsupported apiVersion "inference.networking.k8s.io/v2" for kind InferencePool (supported: inference.networking.k8s.io/v1, inference.networking.x-k8s.io/v1alpha2))"}},
      {"InferenceModel only exists in v1alpha2",
       "apiVersion: inference.networking.k8s.io/v1\nkind: InferenceModel\nmetadata: {name: m}\n",
       {R"(pool.yaml: InferenceModel "m" (document 1): unsupported apiVersion "inference.networking.k8s.io/v1" for kind InferenceModel (supported: inference.networking.x-k8s.io/v1alpha2))"}},
      {"unknown kind",
       "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
       {R"(pool.yaml: Service "s" (document 1): unknown kind "Service" (apiVersion "v1"); supported kinds: InferencePool, InferenceObjective, InferenceModelRewrite, InferenceModel, EndpointPickerConfig, Gateway, HTTPRoute)"}},
      {"missing apiVersion and kind",
       "metadata: {name: x}\n",
       {R"(pool.yaml: document 1: missing required field "apiVersion")",
        R"(pool.yaml: document 1: missing required field "kind")"}},
      {"document that is not a mapping",
       "- a\n- b\n",
       {R"(pool.yaml: document 1: expected a mapping with apiVersion and kind, got a list)"}},
      {"YAML syntax error",
       "a: [1, 2\n",
       {"pool.yaml: invalid YAML at line 2, column 1: end of sequence flow not found"}},
      {"errors in several documents are all reported with their numbers",
       pool_with_spec(
           "spec: {selector: {matchLabels: {app: x}}, targetPorts: [{number: 8000}]}\n") +
           "---\n" +
           pool_with_spec("spec: {selectr: {}, selector: {matchLabels: {app: x}}, targetPorts: "
                          "[{number: 8000}]}\n") +
           "---\nkind: InferenceObjective\napiVersion: inference.networking.x-k8s.io/v1alpha2\n"
           "metadata: {name: o}\nspec: {poolRef: {name: p}, priorty: 1}\n",
       {R"(pool.yaml: InferencePool "my-pool" (document 2): unknown field "spec.selectr")",
        R"(pool.yaml: InferenceObjective "o" (document 3): unknown field "spec.priorty")"}},
  };
  for (const ErrorCase& test_case : cases) {
    DecodeReport report = decode_documents_report(test_case.input, "pool.yaml");
    EXPECT_EQ(report.errors, test_case.expected) << test_case.description;
  }
}

TEST(DecodeErrorsTest, ReportsEndpointPickerConfigProblems) {
  const std::vector<ErrorCase> cases = {
      {"unknown top-level key and metadata are rejected",
       config("metadata: {name: x}\nschedulingProfile: []\n"),
       {R"(epp.yaml: EndpointPickerConfig "x" (document 1): unknown field "metadata")",
        R"(epp.yaml: EndpointPickerConfig "x" (document 1): unknown field "schedulingProfile")"}},
      {"the documented data: key is not the code's dataLayer",
       config("data: {sources: []}\n"),
       {R"(epp.yaml: EndpointPickerConfig (document 1): unknown field "data")"}},
      {"unknown keys deep inside",
       config("plugins: [{type: queue-scorer, params: {}}]\n"
              "schedulingProfiles: [{name: d, plugins: [{pluginRef: queue-scorer, weigth: 2}]}]\n"
              "flowControl: {priorityBands: [{priority: 1, fairnessPolicy: x}]}\n"),
       {R"(epp.yaml: EndpointPickerConfig (document 1): unknown field "plugins[0].params")",
        R"(epp.yaml: EndpointPickerConfig (document 1): unknown field "schedulingProfiles[0].plugins[0].weigth")",
        R"(epp.yaml: EndpointPickerConfig (document 1): unknown field "flowControl.priorityBands[0].fairnessPolicy")"}},
      {"wrong types and missing fields",
       config("featureGates: flowControl\n"
              "plugins: [{name: x}, {type: queue-scorer, parameters: [1]}]\n"
              "schedulingProfiles: [{plugins: [{pluginRef: queue-scorer, weight: high}]}]\n"
              "saturationDetector: {}\n"),
       {R"(epp.yaml: EndpointPickerConfig (document 1): field "featureGates": expected a list, got a string)",
        R"(epp.yaml: EndpointPickerConfig (document 1): missing required field "plugins[0].type")",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "plugins[1].parameters": expected an object, got a list)",
        R"(epp.yaml: EndpointPickerConfig (document 1): missing required field "schedulingProfiles[0].name")",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "schedulingProfiles[0].plugins[0].weight": expected a number, got a string)",
        R"(epp.yaml: EndpointPickerConfig (document 1): missing required field "saturationDetector.pluginRef")"}},
      {"quantities and durations",
       config("flowControl: {maxBytes: 10GB, maxRequests: -1, defaultRequestTTL: 30, "
              "priorityBands: [{priority: 1, maxBytes: -1Gi}]}\n"),
       {R"(epp.yaml: EndpointPickerConfig (document 1): field "flowControl.maxBytes": invalid quantity "10GB")",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "flowControl.maxRequests": must be between 0 and 9223372036854775807, got -1)",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "flowControl.defaultRequestTTL": expected a string, got an integer)",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "flowControl.priorityBands[0].maxBytes": must not be negative, got "-1Gi")"}},
      {"dangling references and duplicate names",
       config(
           "plugins:\n- type: queue-scorer\n- {name: queue-scorer, type: "
           "kv-cache-utilization-scorer}\n"
           "- {name: p, type: max-score-picker}\n"
           "schedulingProfiles:\n"
           "- {name: a, plugins: [{pluginRef: queue-scorer}, {pluginRef: prefix-cache-scorer}]}\n"
           "- {name: a, plugins: [{pluginRef: p, weight: -1}]}\n"
           "saturationDetector: {pluginRef: saturation}\n"
           "parser: {pluginRef: openai-parser}\n"
           "dataLayer: {sources: [{pluginRef: scrape, extractors: [{pluginRef: extract}]}]}\n"
           "flowControl:\n  usageLimitPolicyPluginRef: my-limit\n"
           "  priorityBands:\n  - {priority: 1, fairnessPolicyRef: round-robin-fairness-policy}\n"
           "  - {priority: 1, orderingPolicyRef: lifo}\n"),
       {R"(epp.yaml: EndpointPickerConfig (document 1): field "plugins[1].name": duplicate plugin name "queue-scorer")",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "schedulingProfiles[0].plugins[1].pluginRef": no plugin named "prefix-cache-scorer" is declared)",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "schedulingProfiles[1].name": duplicate profile name "a")",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "schedulingProfiles[1].plugins[0].weight": must be a finite number >= 0)",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "saturationDetector.pluginRef": no plugin named "saturation" is declared)",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "parser.pluginRef": no plugin named "openai-parser" is declared)",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "dataLayer.sources[0].pluginRef": no plugin named "scrape" is declared)",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "dataLayer.sources[0].extractors[0].pluginRef": no plugin named "extract" is declared)",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "flowControl.priorityBands[1].priority": duplicate priority band 1)",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "flowControl.priorityBands[1].orderingPolicyRef": no plugin named "lifo" is declared and it is not a built-in policy)",
        R"(epp.yaml: EndpointPickerConfig (document 1): field "flowControl.usageLimitPolicyPluginRef": no plugin named "my-limit" is declared and it is not a built-in policy)"}},
      {"the old config apiVersion from the flow-control guide is rejected",
       "apiVersion: config.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n",
       {R"(epp.yaml: EndpointPickerConfig (document 1): unsupported apiVersion "config.x-k8s.io/v1alpha1" for kind EndpointPickerConfig (supported: inference.networking.x-k8s.io/v1alpha1, llm-d.ai/v1alpha1))"}},
  };
  for (const ErrorCase& test_case : cases) {
    DecodeReport report = decode_documents_report(test_case.input, "epp.yaml");
    EXPECT_EQ(report.errors, test_case.expected) << test_case.description;
  }
}

TEST(DecodeErrorsTest, ResultJoinsAllErrors) {
  auto result = decode_documents("kind: X\n---\nkind: Y\n", "f.yaml");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().http_status(), 400);
  EXPECT_EQ(result.status().message(),
            "f.yaml: X (document 1): missing required field \"apiVersion\"\n"
            "f.yaml: Y (document 2): missing required field \"apiVersion\"");
}

}  // namespace
}  // namespace infergate::api
