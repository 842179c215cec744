#include "scheduling/config_loader.h"

#include <gtest/gtest.h>

#include "api/decode.h"
#include "api/endpoint_picker_config.h"

namespace infergate::scheduling {
namespace {

api::EndpointPickerConfig decode_config(std::string_view yaml) {
  auto resources = api::decode_documents(yaml, "config.yaml");
  EXPECT_TRUE(resources.ok()) << (resources.ok() ? "" : resources.status().message());
  return std::get<api::EndpointPickerConfig>(resources->front());
}

TEST(ConfigLoaderTest, TheDefaultConfigurationIsGiesDefaultProfile) {
  auto setup = build_scheduler(api::default_endpoint_picker_config());
  ASSERT_TRUE(setup.ok()) << setup.status().message();
  const auto& profiles = setup->scheduler->profiles();
  ASSERT_EQ(profiles.size(), 1u);
  std::vector<std::pair<std::string, double>> scorers;
  for (const auto& [scorer, weight] : profiles[0].scorers)
    scorers.emplace_back(scorer->type(), weight);
  EXPECT_EQ(
      scorers,
      (std::vector<std::pair<std::string, double>>{
          {"queue-scorer", 2}, {"kv-cache-utilization-scorer", 2}, {"prefix-cache-scorer", 3}}));
  EXPECT_EQ(profiles[0].picker->type(), "max-score-picker");
  EXPECT_EQ(setup->scheduler->handler().type(), "single-profile-handler");
  ASSERT_NE(setup->saturation_detector, nullptr);
}

TEST(ConfigLoaderTest, BuildsProfilesWithWeightsAndParameters) {
  auto setup = build_scheduler(decode_config(R"(
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- name: picker
  type: max-score-picker
  parameters:
    maxNumOfEndpoints: 2
- type: lora-affinity-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 5
  - pluginRef: lora-affinity-scorer
  - pluginRef: picker
)"));
  ASSERT_TRUE(setup.ok()) << setup.status().message();
  const Profile& profile = setup->scheduler->profiles().at(0);
  ASSERT_EQ(profile.scorers.size(), 2u);
  EXPECT_EQ(profile.scorers[0].weight, 5);
  EXPECT_EQ(profile.scorers[1].weight, 1) << "implied weight";
  EXPECT_EQ(profile.picker->name(), "picker");
}

TEST(ConfigLoaderTest, ReportsEveryProblemNamingThePlugin) {
  auto setup = build_scheduler(decode_config(R"(
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- name: picker
  type: max-score-picker
  parameters:
    maxNumOfEndpoints: 0
- name: latency
  type: latency-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: latency
  - pluginRef: picker
)"));
  ASSERT_FALSE(setup.ok());
  const std::string& message = setup.status().message();
  EXPECT_NE(message.find("plugin 'picker': parameter 'maxNumOfEndpoints' must be an integer >= 1"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("plugin 'latency' of type 'latency-scorer' is not a filter, scorer or "
                         "picker infergate implements"),
            std::string::npos)
      << message;
}

TEST(ConfigLoaderTest, DescribeListsProfilesWeightsAndParameters) {
  const auto config = api::default_endpoint_picker_config();
  auto setup = build_scheduler(config);
  ASSERT_TRUE(setup.ok());
  const std::string text = describe(api::resolve_endpoint_picker_config(config), *setup);
  EXPECT_NE(text.find("profile default:"), std::string::npos) << text;
  EXPECT_NE(text.find("scorer  prefix-cache-scorer (prefix-cache-scorer) weight 3"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("picker  max-score-picker (max-score-picker)"), std::string::npos) << text;
}

}  // namespace
}  // namespace infergate::scheduling
