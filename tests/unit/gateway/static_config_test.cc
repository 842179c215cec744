#include "gateway/static_config.h"

#include <gtest/gtest.h>

#include "gateway/upstream_pool.h"

namespace infergate::gateway {
namespace {

TEST(ParseEndpointList, CommaListsAcrossArgumentsNamedAfterThePool) {
  auto endpoints = parse_endpoint_list({"127.0.0.1:8001, 127.0.0.1:8002", "[::1]:9000"}, "pool");
  ASSERT_TRUE(endpoints.ok()) << endpoints.status().message();
  ASSERT_EQ(endpoints->size(), 3u);
  EXPECT_EQ((*endpoints)[0].pod_name, "pool-0");
  EXPECT_EQ((*endpoints)[0].namespace_name, "default");
  EXPECT_EQ((*endpoints)[0].address, "127.0.0.1");
  EXPECT_EQ((*endpoints)[0].port, 8001);
  EXPECT_EQ((*endpoints)[1].pod_name, "pool-1");
  EXPECT_EQ((*endpoints)[1].port, 8002);
  EXPECT_EQ((*endpoints)[2].address, "::1");
  EXPECT_EQ((*endpoints)[2].port, 9000);
}

TEST(ParseEndpointList, Errors) {
  struct Row {
    std::vector<std::string> entries;
    std::string message_part;
  };
  const std::vector<Row> rows = {
      {{"127.0.0.1"}, "\"127.0.0.1\" is not host:port"},
      {{"127.0.0.1:0"}, "is not host:port"},
      {{"127.0.0.1:70000"}, "is not host:port"},
      {{"::1:8000"}, "is not host:port"},  // IPv6 needs brackets
      {{"a:1,a:1"}, "endpoint a:1 is listed twice"},
      {{" , "}, "no endpoint given"},
  };
  for (const auto& row : rows) {
    auto endpoints = parse_endpoint_list(row.entries, "pool");
    ASSERT_FALSE(endpoints.ok()) << row.entries.front();
    EXPECT_EQ(endpoints.status().http_status(), 400);
    EXPECT_NE(endpoints.status().message().find(row.message_part), std::string::npos)
        << endpoints.status().message();
  }
}

TEST(ParseUpstreamEndpoint, Shapes) {
  auto v4 = parse_upstream_endpoint("10.0.0.1:8000");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->host, "10.0.0.1");
  EXPECT_EQ(v4->port, 8000);
  EXPECT_EQ(v4->host_port, "10.0.0.1:8000");
  auto v6 = parse_upstream_endpoint("[fd00::1]:8000");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "fd00::1");
  EXPECT_EQ(v6->port, 8000);
  auto name = parse_upstream_endpoint("vllm-0.vllm:8000");
  ASSERT_TRUE(name);
  EXPECT_EQ(name->host, "vllm-0.vllm");
  for (std::string_view bad : {"", "host", "host:", ":80", "[::1]", "[::1]8000", "h:8x", "h:-1"}) {
    EXPECT_FALSE(parse_upstream_endpoint(bad)) << bad;
  }
}

TEST(LoadPickerConfig, DefaultWhenNothingGiven) {
  std::string source;
  auto config = load_picker_config("", "", source);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(source, "built-in default");
  EXPECT_FALSE(config->plugins.empty());
}

TEST(LoadPickerConfig, TextWithOneConfig) {
  std::string source;
  const std::string text = R"(apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
  - pluginRef: max-score-picker
)";
  auto config = load_picker_config("", text, source);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(source, "--config-text");
  EXPECT_EQ(config->plugins.size(), 2u);
}

TEST(LoadPickerConfig, Errors) {
  std::string source;
  auto both = load_picker_config("a.yaml", "kind: x", source);
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.status().message().find("mutually exclusive"), std::string::npos);
  auto missing = load_picker_config("/nonexistent/picker.yaml", "", source);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/picker.yaml: cannot be read"),
            std::string::npos);
  const std::string pool = R"(apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: p
spec:
  targetPorts:
  - number: 8000
  selector:
    matchLabels:
      app: vllm
  endpointPickerRef:
    name: epp
    port:
      number: 9002
)";
  auto wrong_kind = load_picker_config("", pool, source);
  ASSERT_FALSE(wrong_kind.ok());
  EXPECT_NE(wrong_kind.status().message().find("expected an EndpointPickerConfig"),
            std::string::npos)
      << wrong_kind.status().message();
}

}  // namespace
}  // namespace infergate::gateway
