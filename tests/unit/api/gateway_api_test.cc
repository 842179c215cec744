// Decoding of the Gateway API objects `infergate serve --config` reads: Gateway and HTTPRoute.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/decode.h"

namespace infergate::api {
namespace {

TEST(GatewayApiDecodeTest, DecodesGatewayAndRouteWithDefaults) {
  auto resources = decode_documents(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: infergate
  listeners:
  - name: http
    protocol: HTTP
    port: 8080
    allowedRoutes: {namespaces: {from: Same}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: http}]
  hostnames: [api.example.com]
  rules:
  - matches:
    - path: {type: Exact, value: /v1/completions}
      method: POST
      headers: [{name: X-Gateway-Model-Name, value: llama}]
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: a, weight: 70, port: 8000}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: b}
    timeouts: {request: 1m30s, backendRequest: 500ms}
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: c}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catch-all}
spec: {}
)",
                                    "gw.yaml");
  ASSERT_TRUE(resources.ok()) << resources.status().message();
  ASSERT_EQ(resources->size(), 3u);
  const auto& gateway = std::get<Gateway>((*resources)[0]);
  EXPECT_EQ(gateway.gateway_class_name, "infergate");
  ASSERT_EQ(gateway.listeners.size(), 1u);
  EXPECT_EQ(gateway.listeners[0].port, 8080);
  EXPECT_EQ(gateway.listeners[0].protocol, "HTTP");

  const auto& route = std::get<HTTPRoute>((*resources)[1]);
  ASSERT_EQ(route.parent_refs.size(), 1u);
  EXPECT_EQ(route.parent_refs[0].kind, "Gateway");
  EXPECT_EQ(route.parent_refs[0].section_name, "http");
  EXPECT_EQ(route.hostnames, std::vector<std::string>{"api.example.com"});
  ASSERT_EQ(route.rules.size(), 2u);
  const HTTPRouteRule& first = route.rules[0];
  ASSERT_EQ(first.matches.size(), 1u);
  EXPECT_EQ(first.matches[0].path.type, PathMatchType::kExact);
  EXPECT_EQ(first.matches[0].method, "POST");
  ASSERT_EQ(first.matches[0].headers.size(), 1u);
  EXPECT_EQ(first.matches[0].headers[0].type, HeaderMatchType::kExact);
  ASSERT_EQ(first.backend_refs.size(), 2u);
  EXPECT_EQ(first.backend_refs[0].weight, 70);
  EXPECT_EQ(first.backend_refs[1].weight, 1) << "the Gateway API default weight";
  EXPECT_EQ(first.timeouts.request, std::chrono::seconds(90));
  EXPECT_EQ(first.timeouts.backend_request, std::chrono::milliseconds(500));
  ASSERT_EQ(route.rules[1].matches.size(), 1u) << "no matches: one match of PathPrefix /";
  EXPECT_EQ(route.rules[1].matches[0].path.type, PathMatchType::kPathPrefix);
  EXPECT_EQ(route.rules[1].matches[0].path.value, "/");

  const auto& catch_all = std::get<HTTPRoute>((*resources)[2]);
  ASSERT_EQ(catch_all.rules.size(), 1u) << "no rules: one rule matching every path";
  EXPECT_TRUE(catch_all.rules[0].backend_refs.empty());
}

constexpr const char* kRouteHeader = R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
)";

std::string rule(const std::string& body) { return kRouteHeader + body; }

constexpr const char* kPrefix = R"(r.yaml: HTTPRoute "r" (document 1): )";

TEST(GatewayApiDecodeTest, ReportsEveryProblemWithObjectAndField) {
  struct Case {
    std::string description;
    std::string input;
    std::vector<std::string> expected;
  };
  const std::string backend =
      "    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: a}]\n";
  const std::vector<Case> cases = {
      {"unknown kind of the Gateway API",
       "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\n",
       {R"(r.yaml: GRPCRoute "g" (document 1): unknown kind "GRPCRoute" (apiVersion "gateway.networking.k8s.io/v1"); supported kinds: InferencePool, InferenceObjective, InferenceModelRewrite, InferenceModel, EndpointPickerConfig, Gateway, HTTPRoute)"}},
      {"path not absolute",
       rule("  - matches: [{path: {type: PathPrefix, value: v1}}]\n" + backend),
       {std::string(kPrefix) +
        R"(field "spec.rules[0].matches[0].path.value": must be an absolute path starting with "/", got "v1")"}},
      {"bad path type and method",
       rule("  - matches: [{path: {type: Prefix, value: /v1}, method: FETCH}]\n" + backend),
       {std::string(kPrefix) +
            R"(field "spec.rules[0].matches[0].path.type": must be one of "Exact", "PathPrefix", "RegularExpression", got "Prefix")",
        std::string(kPrefix) +
            R"(field "spec.rules[0].matches[0].method": must be one of "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", got "FETCH")"}},
      {"bad regular expression",
       rule("  - matches: [{headers: [{name: x-a, type: RegularExpression, value: \"(a\"}]}]\n" +
            backend),
       {std::string(kPrefix) +
        R"(field "spec.rules[0].matches[0].headers[0].value": invalid regular expression "(a": )"}},
      {"header matched twice, bad header name",
       rule("  - matches: [{headers: [{name: X-A, value: \"1\"}, {name: x-a, value: \"2\"}, "
            "{name: \"bad name\", value: \"3\"}]}]\n" +
            backend),
       {std::string(kPrefix) +
            R"(field "spec.rules[0].matches[0].headers[1].name": header "x-a" is matched twice in one match)",
        std::string(kPrefix) +
            R"(field "spec.rules[0].matches[0].headers[2].name": "bad name" is not a valid HTTP header name)"}},
      {"query parameters are not supported",
       rule("  - matches: [{queryParams: [{name: a, value: b}]}]\n" + backend),
       {std::string(kPrefix) +
        R"(field "spec.rules[0].matches[0].queryParams": not supported by infergate (match on the path, headers and method))"}},
      {"bad durations",
       rule("  - timeouts: {request: 1.5s, backendRequest: 10us}\n" + backend),
       {std::string(kPrefix) +
            R"(field "spec.rules[0].timeouts.request": "1.5s" is not a Gateway API duration (1 to 4 groups of up to 5 digits and a unit h, m, s or ms, e.g. "10s", "1m30s", "500ms"))",
        std::string(kPrefix) +
            R"(field "spec.rules[0].timeouts.backendRequest": "10us" is not a Gateway API duration (1 to 4 groups of up to 5 digits and a unit h, m, s or ms, e.g. "10s", "1m30s", "500ms"))"}},
      {"backend timeout longer than the request's",
       rule("  - timeouts: {request: 10s, backendRequest: 1m}\n" + backend),
       {std::string(kPrefix) +
        R"(field "spec.rules[0].timeouts.backendRequest": must not be longer than timeouts.request)"}},
      {"duplicate rule names",
       rule("  - name: x\n" + backend + "  - name: x\n" + backend),
       {std::string(kPrefix) + R"(field "spec.rules[1].name": duplicate rule name "x")"}},
      {"a Service backend, a negative weight, filters",
       rule("  - backendRefs: [{name: svc, port: 80, weight: -1}]\n    filters: []\n"),
       {std::string(kPrefix) +
            R"(field "spec.rules[0].backendRefs[0].weight": must be between 0 and 1000000, got -1)",
        std::string(kPrefix) +
            R"(field "spec.rules[0].backendRefs[0]": infergate routes to InferencePools only: give group: inference.networking.k8s.io and kind: InferencePool (got kind "Service" of group ""))",
        std::string(kPrefix) +
            R"(field "spec.rules[0].filters": not supported by infergate (request/response filters))"}},
      {"unknown field in a rule",
       rule("  - backendRef: []\n"),
       {std::string(kPrefix) + R"(unknown field "spec.rules[0].backendRef")"}},
      {"Gateway without listeners, duplicate listener names",
       R"(apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  listeners: [{name: a, protocol: HTTP, port: 80}, {name: a, protocol: HTTP, port: 0}]
)",
       {R"(r.yaml: Gateway "gw" (document 1): missing required field "spec.gatewayClassName")",
        R"(r.yaml: Gateway "gw" (document 1): field "spec.listeners[1].name": duplicate listener name "a")",
        R"(r.yaml: Gateway "gw" (document 1): field "spec.listeners[1].port": must be between 1 and 65535, got 0)"}},
  };
  for (const Case& c : cases) {
    DecodeReport report = decode_documents_report(c.input, "r.yaml");
    ASSERT_EQ(report.errors.size(), c.expected.size())
        << c.description << ": " << ::testing::PrintToString(report.errors);
    for (std::size_t index = 0; index < c.expected.size(); ++index) {
      // Regex errors carry the library's own wording after the prefix.
      EXPECT_EQ(report.errors[index].substr(0, c.expected[index].size()), c.expected[index])
          << c.description;
    }
  }
}

}  // namespace
}  // namespace infergate::api
