// Gateway API route matching: precedence, match kinds, weights, and the --config resolution
// errors (golden tables).
#include "gateway/routes.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/decode.h"
#include "common/random.h"
#include "datastore/static_pool.h"
#include "gateway/config_file.h"

namespace infergate::gateway {
namespace {

const std::vector<std::string> kPools = {"default/a", "default/b", "default/c"};

// Decodes HTTPRoutes from YAML (every document must be one).
std::vector<api::HTTPRoute> routes_from(const std::string& yaml) {
  auto resources = api::decode_documents(yaml, "routes.yaml");
  EXPECT_TRUE(resources.ok()) << resources.status().message();
  std::vector<api::HTTPRoute> routes;
  if (!resources.ok()) return routes;
  for (auto& resource : *resources) routes.push_back(std::get<api::HTTPRoute>(resource));
  return routes;
}

// "route#rule" of the match, or "none".
std::string matched(const RouteTable& table, std::string_view method, std::string_view path,
                    const director::Headers& headers, std::string_view host = "gw.local") {
  const RouteRule* rule =
      table.match({.method = method, .path = path, .host = host, .headers = headers});
  if (rule == nullptr) return "none";
  return rule->route + "#" + std::to_string(rule->rule_index);
}

constexpr const char* kPrecedenceRoutes = R"yaml(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r1, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1}}]                                   # 0
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: a}]
  - matches: [{path: {type: PathPrefix, value: /v1/chat/}}]                             # 1
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: a}]
  - matches: [{path: {type: Exact, value: /v1/chat/completions}}]                       # 2
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: a}]
  - matches: [{path: {type: PathPrefix, value: /v1}, method: GET}]                      # 3
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: a}]
  - matches:                                                                            # 4
    - path: {type: PathPrefix, value: /v1}
      headers: [{name: X-Gateway-Model-Name, value: llama}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: b}]
  - matches:                                                                            # 5
    - path: {type: PathPrefix, value: /v1}
      headers:
      - {name: x-gateway-model-name, value: llama}
      - {name: x-tier, type: RegularExpression, value: "gold|platinum"}
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: c}]
  - matches: [{path: {type: RegularExpression, value: "/v1/(embeddings|responses)"
}
}]  # 6
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: c}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r0-newer, creationTimestamp: "2026-03-01T00:00:00Z"}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/}}]      # ties with r1#0; r1 is older
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: b}]
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: b}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: hosts}
spec:
  hostnames: ["*.example.com", "api.local"]
  rules:
  - matches: [{path: {type: Exact, value: /v3}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: a}]
)yaml";

TEST(RouteTableTest, FollowsGatewayApiPrecedence) {
  auto table = RouteTable::build(routes_from(kPrecedenceRoutes), kPools, "default");
  ASSERT_TRUE(table.ok()) << table.status().message();
  struct Case {
    std::string description;
    std::string method, path;
    director::Headers headers;
    std::string host;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"exact path beats every prefix", "POST", "/v1/chat/completions", {}, "", "default/r1#2"},
      {"longest prefix wins", "POST", "/v1/chat/other", {}, "", "default/r1#1"},
      {"prefix matches whole segments only", "POST", "/v1chat", {}, "", "none"},
      {"a trailing slash of the prefix is ignored", "POST", "/v1/chat", {}, "", "default/r1#1"},
      {"method match beats no method", "GET", "/v1/models", {}, "", "default/r1#3"},
      {"a header match beats none",
       "POST",
       "/v1/completions",
       {{"x-gateway-model-name", "llama"}},
       "",
       "default/r1#4"},
      {"more header matches win",
       "POST",
       "/v1/completions",
       {{"x-gateway-model-name", "llama"}, {"x-tier", "gold"}},
       "",
       "default/r1#5"},
      {"a header regex must match the whole value",
       "POST",
       "/v1/completions",
       {{"x-gateway-model-name", "llama"}, {"x-tier", "golden"}},
       "",
       "default/r1#4"},
      {"header values are case-sensitive",
       "POST",
       "/v1/completions",
       {{"x-gateway-model-name", "Llama"}},
       "",
       "default/r1#0"},
      {"regex path beats prefixes", "POST", "/v1/embeddings", {}, "", "default/r1#6"},
      {"regex path must match the whole path", "POST", "/v1/embeddingsx", {}, "", "default/r1#0"},
      {"equal prefixes: the older route wins", "POST", "/v1/x", {}, "", "default/r1#0"},
      {"another route's own prefix", "POST", "/v2/completions", {}, "", "default/r0-newer#1"},
      {"nothing matches", "POST", "/other", {}, "", "none"},
      {"hostname wildcard", "GET", "/v3", {}, "a.example.com:8080", "default/hosts#0"},
      {"hostname exact, any case", "GET", "/v3", {}, "API.local", "default/hosts#0"},
      {"wildcard needs a subdomain", "GET", "/v3", {}, "example.com", "none"},
      {"other host", "GET", "/v3", {}, "other.local", "none"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(matched(*table, c.method, c.path, c.headers, c.host), c.expected) << c.description;
  }
}

TEST(RouteTableTest, FirstRuleWinsTiesWithinARoute) {
  auto table = RouteTable::build(routes_from(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - matches: [{headers: [{name: x-a, value: "1"}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: a}]
  - matches: [{headers: [{name: x-b, value: "1"}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: b}]
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: c}]
)"),
                                 kPools, "default");
  ASSERT_TRUE(table.ok()) << table.status().message();
  EXPECT_EQ(matched(*table, "POST", "/v1/completions", {{"x-b", "1"}, {"x-a", "1"}}),
            "default/r#0");
  EXPECT_EQ(matched(*table, "POST", "/v1/completions", {{"x-b", "1"}}), "default/r#1");
  EXPECT_EQ(matched(*table, "POST", "/anything", {}), "default/r#2")
      << "a rule without matches matches every path";
}

TEST(RouteTableTest, WeightsSplitTrafficAndZeroNeverWins) {
  auto table = RouteTable::build(routes_from(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split}
spec:
  rules:
  - backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: a, weight: 70}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: b, weight: 30}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: c, weight: 0}
)"),
                                 kPools, "default");
  ASSERT_TRUE(table.ok()) << table.status().message();
  const RouteRule* rule = table->match({.method = "POST", .path = "/", .host = "", .headers = {}});
  ASSERT_NE(rule, nullptr);
  EXPECT_EQ(rule->total_weight, 100u);
  std::map<std::size_t, int> counts;
  constexpr int kDraws = 10000;
  for (int draw = 0; draw < kDraws; ++draw) {
    auto backend = RouteTable::pick_backend(*rule, derive_seed(42, 1, draw));
    ASSERT_TRUE(backend.has_value());
    ++counts[backend->pool_index];
  }
  EXPECT_NEAR(counts[0] / double(kDraws), 0.7, 0.02);
  EXPECT_NEAR(counts[1] / double(kDraws), 0.3, 0.02);
  EXPECT_EQ(counts.count(2), 0u) << "weight 0 is never chosen";
  // Deterministic for a given draw.
  EXPECT_EQ(RouteTable::pick_backend(*rule, 69)->pool_index, 0u);
  EXPECT_EQ(RouteTable::pick_backend(*rule, 70)->pool_index, 1u);
}

TEST(RouteTableTest, RuleWithOnlyZeroWeightsHasNoBackend) {
  auto table = RouteTable::build(routes_from(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: off}
spec:
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: a, weight: 0}]
)"),
                                 kPools, "default");
  ASSERT_TRUE(table.ok());
  const RouteRule* rule = table->match({.method = "GET", .path = "/", .host = "", .headers = {}});
  ASSERT_NE(rule, nullptr);
  EXPECT_FALSE(RouteTable::pick_backend(*rule, 1).has_value());
}

TEST(RouteTableTest, ListsExactModelMatchesOnce) {
  auto table = RouteTable::build(routes_from(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: models}
spec:
  rules:
  - matches:
    - headers: [{name: X-Gateway-Model-Name, value: llama}]
    - headers: [{name: X-Gateway-Model-Name, value: qwen}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: b}]
  - matches:
    - headers: [{name: X-Gateway-Model-Name, value: llama}]
      method: GET
    - headers: [{name: X-Gateway-Model-Name, type: RegularExpression, value: "mistral.*"}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: c}]
)"),
                                 kPools, "default");
  ASSERT_TRUE(table.ok());
  const auto models = table->routed_models();
  ASSERT_EQ(models.size(), 2u) << "regex matches cannot be listed; llama once";
  EXPECT_EQ(models[0].model, "llama");
  EXPECT_EQ(models[0].pool_index, 2u) << "the method match has precedence";
  EXPECT_EQ(models[1].model, "qwen");
  EXPECT_EQ(models[1].pool_index, 1u);
}

// ---- --config resolution ------------------------------------------------------------------------

constexpr const char* kPool = R"(
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: a
  annotations: {infergate.io/endpoints: "10.0.0.1:8000"}
spec:
  selector: {matchLabels: {app: a}}
  targetPorts: [{number: 8000}]
)";

constexpr const char* kGateway = R"(
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: infergate
  listeners:
  - {name: tls, protocol: HTTPS, port: 8443}
  - {name: http, protocol: HTTP, port: 8080}
)";

std::string route_to(const std::string& pool, const std::string& parent = "gw") {
  return R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: )" +
         parent + R"(}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: )" +
         pool + "}]\n";
}

Result<GatewayFileConfig> resolve(const std::vector<std::string>& documents) {
  std::string yaml;
  for (const auto& document : documents) yaml += "---\n" + document;
  auto decoded = api::decode_documents(yaml, "gw.yaml");
  if (!decoded) return decoded.status();
  datastore::StaticResources resources;
  resources.add(std::move(*decoded), "gw.yaml");
  return resolve_gateway_config(resources, "gw.yaml");
}

TEST(GatewayConfigTest, ResolvesTheListenerPortPoolsAndRoutes) {
  auto config = resolve({kGateway, kPool, route_to("a")});
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->listener_port, 8080) << "the first HTTP listener";
  ASSERT_EQ(config->pools.size(), 1u);
  EXPECT_EQ(config->pools[0].pool.metadata.namespace_name, "default");
  EXPECT_EQ(config->routes.size(), 1u);
}

TEST(GatewayConfigTest, Errors) {
  struct Case {
    std::string description;
    std::vector<std::string> documents;
    std::string expected;  // part of the message
  };
  const std::string second_gateway =
      std::string(kGateway).replace(std::string(kGateway).find("name: gw"), 8, "name: gw2");
  const std::vector<Case> cases = {
      {"backendRef to a missing pool",
       {kGateway, kPool, route_to("b")},
       R"(HTTPRoute "r": field "spec.rules[0].backendRefs[0].name": no InferencePool "default/b")"},
      {"route attached to another Gateway",
       {kGateway, kPool, route_to("a", "other")},
       R"(HTTPRoute "r": field "spec.parentRefs": does not name the Gateway "gw")"},
      {"two Gateways", {kGateway, second_gateway, kPool}, "infergate serve runs one Gateway"},
      {"duplicate pools",
       {kPool, kPool},
       R"(InferencePool "a" (namespace "default") is defined twice)"},
      {"duplicate routes",
       {kPool, route_to("a"), route_to("a")},
       R"(HTTPRoute "r" (namespace "default") is defined twice)"},
      {"no pool", {kGateway}, "no InferencePool"},
      {"pool without endpoints",
       {R"(
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: bare}
spec:
  selector: {matchLabels: {app: a}}
  targetPorts: [{number: 8000}]
)"},
       R"(InferencePool "bare" has no endpoints)"},
      {"objective naming a missing pool",
       {kPool, R"(
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch}
spec: {priority: -1, poolRef: {name: nope}}
)"},
       R"(InferenceObjective "batch": field "spec.poolRef.name": no InferencePool "nope")"},
      {"no HTTP listener",
       {R"(
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: infergate
  listeners: [{name: tls, protocol: HTTPS, port: 8443}]
)",
        kPool},
       "no listener with protocol HTTP"},
      {"parentRef to a listener that is not HTTP",
       {kGateway, kPool,
        std::string(route_to("a"))
            .replace(route_to("a").find("{name: gw}"), 10, "{name: gw, sectionName: tls}")},
       R"(Gateway "gw" has no HTTP listener named "tls")"},
  };
  for (const Case& c : cases) {
    auto config = resolve(c.documents);
    ASSERT_FALSE(config.ok()) << c.description;
    EXPECT_NE(config.status().message().find(c.expected), std::string::npos)
        << c.description << ": " << config.status().message();
  }
}

TEST(GatewayConfigTest, LoadsTheDocumentedExample) {
  auto config = load_gateway_config({INFERGATE_SOURCE_DIR "/docs/examples/gateway-config.yaml"});
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->listener_port, 8080);
  ASSERT_EQ(config->pools.size(), 3u);
  EXPECT_EQ(config->pools[0].endpoints.size(), 3u);
  EXPECT_TRUE(config->pools[0].pool.spec.endpoint_picker_ref.has_value())
      << "endpointPickerRef is kept";
  EXPECT_EQ(config->pools[2].endpoints.size(), 4u) << "bare hosts: one endpoint per targetPort";
  EXPECT_EQ(config->pools[2].objectives.size(), 1u);
  EXPECT_EQ(config->pools[2].rewrites.size(), 1u);
  EXPECT_EQ(policy_model_names(config->pools[2]), std::vector<std::string>{"qwen-support"});
  ASSERT_TRUE(config->picker_config.has_value());
  auto table = RouteTable::build(config->routes, pool_keys(config->pools), kDefaultNamespace);
  ASSERT_TRUE(table.ok());
  const auto models = table->routed_models();
  ASSERT_EQ(models.size(), 3u);
  EXPECT_EQ(models[0].model, "meta-llama/Llama-3.1-8B-Instruct");
  EXPECT_EQ(models[0].pool_index, 0u);
  const director::Headers llama = {{"x-gateway-model-name", "meta-llama/Llama-3.1-8B-Instruct"}};
  const RouteRule* rule = table->match(
      {.method = "POST", .path = "/v1/chat/completions", .host = "", .headers = llama});
  ASSERT_NE(rule, nullptr);
  EXPECT_EQ(rule->total_weight, 100u);
  EXPECT_EQ(rule->request_timeout, std::chrono::milliseconds(300000));
  EXPECT_EQ(rule->backend_request_timeout, std::chrono::milliseconds(120000));
}

TEST(GatewayConfigTest, TheDocsShowTheExampleFileAsItIs) {
  const auto read = [](const std::string& path) {
    std::ifstream file(path);
    return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  };
  const std::string example = read(INFERGATE_SOURCE_DIR "/docs/examples/gateway-config.yaml");
  ASSERT_FALSE(example.empty());
  EXPECT_NE(read(INFERGATE_SOURCE_DIR "/docs/gateway.md").find(example), std::string::npos)
      << "docs/gateway.md quotes docs/examples/gateway-config.yaml";
}

}  // namespace
}  // namespace infergate::gateway
