// The static-pool start-up rules shared by `infergate epp` and `infergate serve`.
#include "datastore/static_pool.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/decode.h"

namespace infergate::datastore {
namespace {

StaticResources resources_from(const std::string& yaml) {
  auto decoded = api::decode_documents(yaml, "pools.yaml");
  EXPECT_TRUE(decoded.ok()) << decoded.status().message();
  StaticResources resources;
  if (decoded.ok()) resources.add(std::move(*decoded), "pools.yaml");
  return resources;
}

TEST(StaticPoolTest, EndpointListAcrossArgumentsNamedAfterThePool) {
  auto pool = static_pool_from_endpoints({"127.0.0.1:8001, 127.0.0.1:8002", "[::1]:9000"}, "pool",
                                         "default");
  ASSERT_TRUE(pool.ok()) << pool.status().message();
  const auto& endpoints = pool->endpoints;
  ASSERT_EQ(endpoints.size(), 3u);
  EXPECT_EQ(endpoints[0].pod_name, "pool-0");
  EXPECT_EQ(endpoints[0].namespace_name, "default");
  EXPECT_EQ(endpoints[0].address, "127.0.0.1");
  EXPECT_EQ(endpoints[0].port, 8001);
  EXPECT_EQ(endpoints[0].rank, 0);
  EXPECT_EQ(endpoints[1].pod_name, "pool-1");
  EXPECT_EQ(endpoints[2].address, "::1");
  EXPECT_EQ(endpoints[2].port, 9000);
  EXPECT_EQ(pool->pool.metadata.name, "pool");
  EXPECT_EQ(pool->pool.spec.target_ports, (std::vector<int32_t>{8001, 8002, 9000}));
}

TEST(StaticPoolTest, EndpointListErrors) {
  struct Case {
    std::string description;
    std::vector<std::string> entries;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"no port",
       {"127.0.0.1"},
       R"(--endpoints: entry "127.0.0.1" is not host:port: it has no port)"},
      {"port 0", {"127.0.0.1:0"}, "the port is not a number 1-65535"},
      {"port too large", {"127.0.0.1:70000"}, "the port is not a number 1-65535"},
      {"IPv6 needs brackets for a port", {"::1:8000"}, "is not host:port"},
      {"duplicate", {"a:1,a:1"}, "--endpoints: endpoint a:1 is listed twice"},
      {"nothing", {" , "}, "--endpoints: no endpoint given"},
  };
  for (const Case& c : cases) {
    auto pool = static_pool_from_endpoints(c.entries, "pool", "default");
    ASSERT_FALSE(pool.ok()) << c.description;
    EXPECT_EQ(pool.status().http_status(), 400);
    EXPECT_NE(pool.status().message().find(c.expected), std::string::npos)
        << c.description << ": " << pool.status().message();
  }
}

constexpr const char* kTwoPools = R"(
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: dp
  annotations:
    infergate.io/endpoints: "10.0.0.1, 10.0.0.2:3002"
spec:
  selector: {matchLabels: {app: vllm}}
  targetPorts: [{number: 3000}, {number: 3002}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: other
  namespace: ml
  annotations:
    infergate.io/endpoints: |
      10.1.0.1:8000
      10.1.0.2:8000
spec:
  selector: {matchLabels: {app: other}}
  targetPorts: [{number: 8000}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch}
spec: {priority: -1, poolRef: {name: dp}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: adapters, namespace: ml}
spec:
  poolRef: {name: other}
  rules:
  - matches: [{model: {value: support}}]
    targets: [{modelRewrite: support-lora}]
)";

TEST(StaticPoolTest, ResolvesEveryPoolWithItsPolicies) {
  auto pools = resolve_static_pools(resources_from(kTwoPools), "pools.yaml", "default");
  ASSERT_TRUE(pools.ok()) << pools.status().message();
  ASSERT_EQ(pools->size(), 2u);
  const StaticPool& dp = (*pools)[0];
  EXPECT_EQ(dp.pool.metadata.namespace_name, "default");
  ASSERT_EQ(dp.endpoints.size(), 3u) << "a bare host: one endpoint per target port";
  EXPECT_EQ(dp.endpoints[0].endpoint_name(), "dp-0-rank-0");
  EXPECT_EQ(dp.endpoints[1].endpoint_name(), "dp-0-rank-1");
  EXPECT_EQ(dp.endpoints[2].endpoint_name(), "dp-1-rank-1") << "host:port keeps its rank";
  ASSERT_EQ(dp.objectives.size(), 1u);
  EXPECT_TRUE(dp.rewrites.empty());
  const StaticPool& other = (*pools)[1];
  EXPECT_EQ(other.endpoints.size(), 2u) << "one entry per line works too";
  EXPECT_TRUE(other.objectives.empty());
  ASSERT_EQ(other.rewrites.size(), 1u);
}

TEST(StaticPoolTest, SelectsOnePoolForTheEpp) {
  const StaticResources resources = resources_from(kTwoPools);
  auto ambiguous = select_static_pool(resources, "pools.yaml", "", "default", {});
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_NE(ambiguous.status().message().find("--pool-name"), std::string::npos);
  auto dp = select_static_pool(resources, "pools.yaml", "dp", "default", {"10.9.9.9:3000"});
  ASSERT_TRUE(dp.ok()) << dp.status().message();
  ASSERT_EQ(dp->endpoints.size(), 1u) << "--endpoints replaces the annotation";
  EXPECT_EQ(dp->endpoints[0].rank, 0);
  auto missing = select_static_pool(resources, "pools.yaml", "nope", "default", {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(R"(no InferencePool "nope")"), std::string::npos);
}

TEST(StaticPoolTest, PickerConfigSources) {
  std::string source;
  auto by_default = load_picker_config("", "", std::nullopt, "", source);
  ASSERT_TRUE(by_default.ok());
  EXPECT_EQ(source, "built-in default");
  EXPECT_FALSE(by_default->plugins.empty());

  const std::string text = R"(apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins: [{type: queue-scorer}, {type: max-score-picker}]
)";
  auto from_text = load_picker_config("", text, std::nullopt, "", source);
  ASSERT_TRUE(from_text.ok()) << from_text.status().message();
  EXPECT_EQ(source, "--config-text");
  EXPECT_EQ(from_text->plugins.size(), 2u);

  auto from_resources = load_picker_config("", "", *from_text, "gw.yaml", source);
  ASSERT_TRUE(from_resources.ok());
  EXPECT_EQ(source, "gw.yaml");

  struct Case {
    std::string description, file, text;
    bool in_resources;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"both flags", "a.yaml", "kind: x", false, "mutually exclusive"},
      {"unreadable file", "/nonexistent/picker.yaml", "", false, "cannot be read"},
      {"given twice", "", text, true, "given twice"},
      {"another kind", "", R"(apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: p}
spec: {selector: {matchLabels: {a: b}}, targetPorts: [{number: 1}]}
)",
       false, "expected an EndpointPickerConfig, found a InferencePool"},
  };
  for (const Case& c : cases) {
    auto config = load_picker_config(
        c.file, c.text,
        c.in_resources ? std::optional<api::EndpointPickerConfig>(*from_text) : std::nullopt,
        "gw.yaml", source);
    ASSERT_FALSE(config.ok()) << c.description;
    EXPECT_NE(config.status().message().find(c.expected), std::string::npos)
        << c.description << ": " << config.status().message();
  }
}

}  // namespace
}  // namespace infergate::datastore
