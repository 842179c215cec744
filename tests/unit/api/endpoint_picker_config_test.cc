#include "api/endpoint_picker_config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/decode.h"

namespace infergate::api {
namespace {

std::vector<std::string> plugin_names(const EndpointPickerConfig& config) {
  std::vector<std::string> names;
  for (const PluginSpec& plugin : config.plugins) names.push_back(plugin.name);
  return names;
}

EndpointPickerConfig decode_config(const std::string& body) {
  auto result = decode_documents(
      "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n" + body,
      "epp.yaml");
  EXPECT_TRUE(result.ok()) << result.status().message();
  return result.ok() ? std::get<EndpointPickerConfig>(result->at(0)) : EndpointPickerConfig{};
}

TEST(EndpointPickerConfigTest, BuiltInDefaultIsGieDefault) {
  const EndpointPickerConfig base = default_endpoint_picker_config();
  EXPECT_EQ(plugin_names(base),
            (std::vector<std::string>{"queue-scorer", "kv-cache-utilization-scorer",
                                      "prefix-cache-scorer", "metrics-data-source",
                                      "core-metrics-extractor"}));
  EXPECT_EQ(base.scheduling_profiles,
            (std::vector<SchedulingProfile>{SchedulingProfile{"default",
                                                              {{"queue-scorer", 2.0},
                                                               {"kv-cache-utilization-scorer", 2.0},
                                                               {"prefix-cache-scorer", 3.0}}}}));
  EXPECT_TRUE(validate_endpoint_picker_config(base).empty());

  for (const std::optional<EndpointPickerConfig>& input :
       {std::optional<EndpointPickerConfig>(),
        std::optional(decode_config("featureGates: []\n"))}) {
    const EndpointPickerConfig resolved = resolve_endpoint_picker_config(input);
    EXPECT_EQ(plugin_names(resolved),
              (std::vector<std::string>{"queue-scorer", "kv-cache-utilization-scorer",
                                        "prefix-cache-scorer", "metrics-data-source",
                                        "core-metrics-extractor", "max-score-picker",
                                        "single-profile-handler", "openai-parser",
                                        "utilization-detector", "approx-prefix-cache-producer"}));
    EXPECT_EQ(resolved.scheduling_profiles[0].plugins.back(),
              (ProfilePluginRef{"max-score-picker", std::nullopt}));
    EXPECT_EQ(resolved.parser_ref, "openai-parser");
    EXPECT_EQ(resolved.saturation_detector_ref, "utilization-detector");
    EXPECT_TRUE(validate_endpoint_picker_config(resolved).empty());
  }
}

struct FillCase {
  const char* description;
  std::string body;
  std::vector<std::string> expected_plugins;
  std::vector<SchedulingProfile> expected_profiles;
};

TEST(EndpointPickerConfigTest, FillsImpliedDefaults) {
  const std::vector<FillCase> cases = {
      {"no profiles: default profile of filters, scorers, pickers; scorer weight 1",
       "plugins: [{type: header-based-testing-filter}, {type: "
       "destination-endpoint-served-verifier},"
       " {type: queue-scorer}, {type: random-picker}]\n",
       {"header-based-testing-filter", "destination-endpoint-served-verifier", "queue-scorer",
        "random-picker", "single-profile-handler", "openai-parser", "utilization-detector"},
       {SchedulingProfile{"default",
                          {{"header-based-testing-filter", std::nullopt},
                           {"queue-scorer", 1.0},
                           {"random-picker", std::nullopt}}}}},
      {"missing picker gets max-score-picker; explicit weights kept",
       "plugins: [{type: queue-scorer}, {type: lora-affinity-scorer}]\n"
       "schedulingProfiles: [{name: p, plugins: [{pluginRef: queue-scorer, weight: 0.5},"
       " {pluginRef: lora-affinity-scorer}]}]\n",
       {"queue-scorer", "lora-affinity-scorer", "max-score-picker", "single-profile-handler",
        "openai-parser", "utilization-detector"},
       {SchedulingProfile{"p",
                          {{"queue-scorer", 0.5},
                           {"lora-affinity-scorer", 1.0},
                           {"max-score-picker", std::nullopt}}}}},
      {"two profiles: no handler is implied; declared parser and detector are used",
       "plugins: [{type: random-picker}, {name: d, type: concurrency-detector},"
       " {type: passthrough-parser}]\n"
       "schedulingProfiles: [{name: a, plugins: [{pluginRef: random-picker}]},"
       " {name: b, plugins: [{pluginRef: random-picker}]}]\n",
       {"random-picker", "d", "passthrough-parser"},
       {SchedulingProfile{"a", {{"random-picker", std::nullopt}}},
        SchedulingProfile{"b", {{"random-picker", std::nullopt}}}}},
  };
  for (const FillCase& test_case : cases) {
    const EndpointPickerConfig filled = fill_implied_defaults(decode_config(test_case.body));
    EXPECT_EQ(plugin_names(filled), test_case.expected_plugins) << test_case.description;
    EXPECT_EQ(filled.scheduling_profiles, test_case.expected_profiles) << test_case.description;
    EXPECT_EQ(fill_implied_defaults(filled), filled) << test_case.description << " (idempotent)";
    EXPECT_TRUE(validate_endpoint_picker_config(filled).empty()) << test_case.description;
  }
}

TEST(EndpointPickerConfigTest, FillsFlowControlPolicies) {
  const EndpointPickerConfig filled = fill_implied_defaults(
      decode_config("featureGates: [flowControl]\nplugins: [{type: queue-scorer}]\n"
                    "flowControl: {priorityBands: [{priority: 1, orderingPolicyRef: "
                    "edf-ordering-policy}]}\n"));
  const FlowControlConfig& flow = *filled.flow_control;
  EXPECT_EQ(flow.priority_bands[0].fairness_policy_ref, "global-strict-fairness-policy");
  EXPECT_EQ(flow.priority_bands[0].ordering_policy_ref, "edf-ordering-policy");
  EXPECT_EQ(flow.usage_limit_policy_plugin_ref, "static-usage-limit-policy");
  for (const char* policy : {"global-strict-fairness-policy", "edf-ordering-policy",
                             "static-usage-limit-policy", "fcfs-ordering-policy"}) {
    const PluginSpec* plugin = filled.find_plugin(policy);
    ASSERT_NE(plugin, nullptr) << policy;
    EXPECT_EQ(plugin->type, policy);
  }
  EXPECT_TRUE(validate_endpoint_picker_config(filled).empty());

  // Without the gate or a section, no flow-control plugins appear.
  const EndpointPickerConfig plain =
      fill_implied_defaults(decode_config("plugins: [{type: queue-scorer}]\n"));
  EXPECT_FALSE(plain.flow_control.has_value());
  EXPECT_EQ(plain.find_plugin("fcfs-ordering-policy"), nullptr);
}

TEST(EndpointPickerConfigTest, ClassifiesBuiltInPlugins) {
  EXPECT_TRUE(builtin_plugin_roles("queue-scorer").scorer);
  EXPECT_TRUE(builtin_plugin_roles("max-score-picker").picker);
  EXPECT_TRUE(builtin_plugin_roles("single-profile-handler").profile_handler);
  const PluginRoles detector = builtin_plugin_roles("concurrency-detector");
  EXPECT_TRUE(detector.saturation_detector && detector.filter);
  EXPECT_EQ(builtin_plugin_roles("metrics-data-source"), PluginRoles{});
  EXPECT_EQ(builtin_plugin_roles("no-such-plugin"), PluginRoles{});
}

}  // namespace
}  // namespace infergate::api
