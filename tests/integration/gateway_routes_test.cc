// `infergate serve --config` end to end on loopback: a Gateway, HTTPRoutes and four
// InferencePools of simulated vLLM servers. Requests go to the pool of the model they name
// (X-Gateway-Model-Name from the body), a path rule outranks model rules, a 70/30 split stays
// within its pools and near its weights, /v1/models lists what the routes serve, an unknown model
// is a 404, and oversize headers get 431.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "datastore/datastore.h"
#include "gateway/config_file.h"
#include "gateway/gateway.h"
#include "http/client.h"
#include "integration/support.h"
#include "sim/server.h"

namespace infergate {
namespace {

using test_support::eventually;

namespace asio = boost::asio;
using boost::beast::http::verb;
using nlohmann::json;
using std::chrono::milliseconds;

constexpr milliseconds kTimeout{10000};

// Pools and the sims serving them (sim index → pool).
const std::vector<std::string> kSimPools = {"llama", "llama", "llama-canary", "qwen", "chat"};

class GatewayRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (std::size_t sim_idx = 0; sim_idx < kSimPools.size(); ++sim_idx) {
      sim::SimOptions options;
      options.port = 0;
      options.time_scale = 20;  // quick answers
      options.seed = sim_idx + 1;
      options.model = kSimPools[sim_idx] == "qwen" ? "qwen" : "llama";
      if (kSimPools[sim_idx] == "chat") options.served_model_names = {"llama", "qwen"};
      options.engine.num_gpu_blocks = 2000;
      options.engine.max_model_len = 4096;
      sims_.push_back(std::make_unique<sim::SimServer>(sim_io_, options));
      sims_.back()->start();
    }
    sim_thread_ = std::thread([this] { sim_io_.run(); });
  }

  void TearDown() override {
    if (gateway_) gateway_->stop();
    gateway_.reset();
    asio::post(sim_io_, [this] {
      for (auto& sim : sims_) sim->stop();
    });
    sim_io_.stop();
    sim_thread_.join();
    std::remove(config_path_.c_str());
  }

  std::string endpoints_of(std::string_view pool) const {
    std::string list;
    for (std::size_t sim_idx = 0; sim_idx < sims_.size(); ++sim_idx) {
      if (kSimPools[sim_idx] != pool) continue;
      list += (list.empty() ? "" : ",") + std::string("127.0.0.1:") +
              std::to_string(sims_[sim_idx]->port());
    }
    return list;
  }

  std::string pool_of_endpoint(std::string_view host_port) const {
    for (std::size_t sim_idx = 0; sim_idx < sims_.size(); ++sim_idx) {
      if (host_port == "127.0.0.1:" + std::to_string(sims_[sim_idx]->port())) {
        return kSimPools[sim_idx];
      }
    }
    return "?";
  }

  // The configuration as a user writes it, with the sims' ports.
  std::string config_yaml() const {
    std::string yaml = R"(
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: infergate
  listeners: [{name: http, protocol: HTTP, port: 18080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: by-model}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{headers: [{name: X-Gateway-Model-Name, value: llama}]}]
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: llama, weight: 70}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: llama-canary, weight: 30}
  - matches:
    - headers: [{name: X-Gateway-Model-Name, value: qwen}]
    - headers: [{name: X-Gateway-Model-Name, type: RegularExpression, value: "qwen-.*"}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: qwen}]
    timeouts: {request: 30s}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: by-path}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/chat}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: chat}]
)";
    for (const std::string pool : {"llama", "llama-canary", "qwen", "chat"}) {
      yaml += R"(---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: )" + pool +
              R"(
  annotations: {infergate.io/endpoints: ")" +
              endpoints_of(pool) + R"("}
spec:
  selector: {matchLabels: {app: )" +
              pool + R"(}}
  targetPorts: [{number: 8000}]
)";
    }
    yaml += R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: qwen-alias}
spec:
  poolRef: {name: qwen}
  rules:
  - matches: [{model: {value: qwen-latest}}]
    targets: [{modelRewrite: qwen}]
)";
    return yaml;
  }

  void start_gateway(std::size_t max_headers = 100, std::size_t max_header_bytes = 64 << 10) {
    config_path_ = ::testing::TempDir() + "gateway-routes-" + std::to_string(::getpid()) + ".yaml";
    std::ofstream(config_path_) << config_yaml();
    auto config = gateway::load_gateway_config({config_path_});
    ASSERT_TRUE(config.ok()) << config.status().message();
    ASSERT_EQ(config->listener_port, 18080);
    gateway::GatewayOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    gateway::apply_gateway_config(*config, /*port_given=*/true, options);
    ASSERT_EQ(options.pools.size(), 4u);
    options.workers = 2;
    options.refresh_metrics_interval = milliseconds(5);
    options.proxy.emit_endpoint_scores = true;
    options.access_log = false;
    options.max_request_headers = max_headers;
    options.max_request_header_bytes = max_header_bytes;
    options.seed = 11;
    gateway_ = std::make_unique<gateway::Gateway>(std::move(options));
    gateway_->start();
    ASSERT_TRUE(eventually([&] {
      for (std::size_t pool = 0; pool < gateway_->pool_count(); ++pool) {
        for (const auto& endpoint : gateway_->datastore(pool).snapshot()->endpoints) {
          if (!endpoint.state->metrics()) return false;
        }
      }
      return true;
    })) << "every pool's endpoints were scraped";
  }

  Result<http::ClientResponse> send(verb method, std::string_view target, std::string body = {},
                                    const http::Headers& headers = {}) {
    http::Request request = http::make_request(method, target, std::move(body));
    for (const auto& [name, value] : headers) request.set(name, value);
    return http::fetch_blocking("127.0.0.1", gateway_->port(), std::move(request), kTimeout);
  }

  static std::string completion(std::string_view model) {
    return json{{"model", model}, {"prompt", "Hello"}, {"max_tokens", 1}, {"ignore_eos", true}}
        .dump();
  }
  static std::string chat(std::string_view model) {
    return json{{"model", model},
                {"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})},
                {"max_tokens", 1},
                {"ignore_eos", true}}
        .dump();
  }

  // The pool that served a response (from the served-endpoint header).
  std::string served_pool(const http::ClientResponse& response) const {
    return pool_of_endpoint(
        http::find_header(response.headers, "x-gateway-destination-endpoint-served").value_or(""));
  }

  double metric(std::string_view series) {
    const std::string text = gateway_->registry().expose();
    const auto at = text.find(std::string(series) + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + series.size() + 1));
  }

  asio::io_context sim_io_{1};
  std::vector<std::unique_ptr<sim::SimServer>> sims_;
  std::thread sim_thread_;
  std::string config_path_;
  std::unique_ptr<gateway::Gateway> gateway_;
};

TEST_F(GatewayRoutesTest, RoutesByModelNameAndByPath) {
  start_gateway();
  auto qwen = send(verb::post, "/v1/completions", completion("qwen"));
  ASSERT_TRUE(qwen.ok()) << qwen.status().message();
  EXPECT_EQ(qwen->status, 200u) << qwen->body;
  EXPECT_EQ(served_pool(*qwen), "qwen");
  EXPECT_EQ(json::parse(qwen->body)["model"], "qwen");

  // A client's own X-Gateway-Model-Name never counts: the body decides.
  auto spoofed =
      send(verb::post, "/v1/completions", completion("qwen"), {{"X-Gateway-Model-Name", "llama"}});
  ASSERT_TRUE(spoofed.ok());
  EXPECT_EQ(spoofed->status, 200u);
  EXPECT_EQ(served_pool(*spoofed), "qwen");

  // The longer path prefix outranks the model rules.
  for (std::string_view model : {"llama", "qwen"}) {
    auto routed = send(verb::post, "/v1/chat/completions", chat(model));
    ASSERT_TRUE(routed.ok());
    EXPECT_EQ(routed->status, 200u) << routed->body;
    EXPECT_EQ(served_pool(*routed), "chat") << model;
  }
}

TEST_F(GatewayRoutesTest, WeightedSplitStaysWithinItsPoolsNearTheWeights) {
  start_gateway();
  constexpr int kRequests = 200;
  std::map<std::string, int> pools;
  std::vector<std::thread> clients;
  std::mutex mutex;
  for (int client = 0; client < 4; ++client) {
    clients.emplace_back([&] {
      for (int request = 0; request < kRequests / 4; ++request) {
        auto response = send(verb::post, "/v1/completions", completion("llama"));
        std::lock_guard lock(mutex);
        ++pools[response.ok() && response->status == 200 ? served_pool(*response) : "failed"];
      }
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_EQ(pools["llama"] + pools["llama-canary"], kRequests)
      << "every request in one of the two pools, and answered";
  // GIE's conformance bound: within max(0.10, 4.5 sigma) of the weight.
  const double share = pools["llama"] / double(kRequests);
  EXPECT_NEAR(share, 0.7, 0.10) << pools["llama"] << " / " << pools["llama-canary"];
  // Each pool's director saw its own requests.
  EXPECT_GT(metric(R"(inference_pool_ready_pods{name="llama"})"), 0);
  EXPECT_EQ(metric(R"(inference_pool_ready_pods{name="llama"})"), 2);
  EXPECT_EQ(metric(R"(inference_pool_ready_pods{name="llama-canary"})"), 1);
  EXPECT_EQ(metric(R"(inference_pool_ready_pods{name="chat"})"), 1);
}

TEST_F(GatewayRoutesTest, ModelsListsWhatTheRoutesServe) {
  start_gateway();
  auto models = send(verb::get, "/v1/models");
  ASSERT_TRUE(models.ok());
  ASSERT_EQ(models->status, 200u) << models->body;
  const json list = json::parse(models->body);
  EXPECT_EQ(list["object"], "list");
  std::map<std::string, std::string> owners;
  for (const auto& entry : list["data"]) {
    EXPECT_EQ(entry["object"], "model");
    owners[entry["id"]] = entry["owned_by"];
  }
  const std::map<std::string, std::string> expected = {
      {"llama", "llama"}, {"qwen", "qwen"}, {"qwen-latest", "qwen"}};
  EXPECT_EQ(owners, expected);

  // qwen-latest: listed from the pool's InferenceModelRewrite because the regex rule reaches the
  // pool; served by the qwen pool under the rewritten name, the client's name restored.
  auto alias = send(verb::post, "/v1/completions", completion("qwen-latest"));
  ASSERT_TRUE(alias.ok());
  EXPECT_EQ(alias->status, 200u) << alias->body;
  EXPECT_EQ(served_pool(*alias), "qwen");
  EXPECT_EQ(json::parse(alias->body)["model"], "qwen-latest");
}

TEST_F(GatewayRoutesTest, UnknownModelIsA404WithACounter) {
  start_gateway();
  auto unknown = send(verb::post, "/v1/completions", completion("mistral"));
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(unknown->status, 404u);
  const json error = json::parse(unknown->body)["error"];
  EXPECT_EQ(error["code"], 404);
  EXPECT_NE(error["message"].get<std::string>().find("mistral"), std::string::npos);
  EXPECT_EQ(gateway_->metrics().errors("no_route"), 1);

  auto bad = send(verb::post, "/v1/completions", "{not json");
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status, 400u) << "an unreadable body is a 400, not a routing miss";
}

TEST_F(GatewayRoutesTest, OversizeHeadersGet431) {
  start_gateway(/*max_headers=*/20, /*max_header_bytes=*/4096);
  http::Headers many;
  for (int header = 0; header < 30; ++header) {
    many.emplace_back("x-extra-" + std::to_string(header), "1");
  }
  auto too_many = send(verb::post, "/v1/completions", completion("qwen"), many);
  ASSERT_TRUE(too_many.ok()) << too_many.status().message();
  EXPECT_EQ(too_many->status, 431u);
  EXPECT_EQ(json::parse(too_many->body)["error"]["code"], 431);

  auto too_large = send(verb::post, "/v1/completions", completion("qwen"),
                        {{"x-large", std::string(8192, 'a')}});
  ASSERT_TRUE(too_large.ok()) << too_large.status().message();
  EXPECT_EQ(too_large->status, 431u);
  EXPECT_EQ(metric(R"(infergate_gateway_errors_total{reason="headers_too_large"})"), 2);

  auto fine = send(verb::post, "/v1/completions", completion("qwen"));
  ASSERT_TRUE(fine.ok());
  EXPECT_EQ(fine->status, 200u);
}

}  // namespace
}  // namespace infergate
