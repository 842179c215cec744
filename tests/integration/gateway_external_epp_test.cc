// `infergate serve --epp`: the gateway picking through the real `infergate epp` (EppRunner
// in-process, plaintext, port 0) over ext_proc, in front of three simulated vLLM servers, as Envoy
// would. Requests go where the EPP says (test-epp-endpoint-selection), the served endpoint comes
// back to the EPP, model names are rewritten both ways by the EPP, streams stay streams, a dead
// primary falls to the listed fallback, a client's own destination header is ignored, the EPP's
// local replies reach the client, FailClose / FailOpen apply when the EPP is down, and a client
// that leaves cancels both the upstream and the ext_proc stream.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/verb.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "datastore/datastore.h"
#include "extproc/epp.h"
#include "extproc/server.h"
#include "gateway/gateway.h"
#include "http/client.h"
#include "http/sse.h"
#include "integration/support.h"
#include "sim/server.h"

namespace infergate {
namespace {

using test_support::eventually;
using test_support::LineSink;
using test_support::TempFile;

namespace asio = boost::asio;
using boost::beast::http::verb;
using nlohmann::json;
using std::chrono::milliseconds;

constexpr std::string_view kTargetModel = "meta-llama/Llama-3.1-8B-Instruct";
constexpr std::string_view kClientModel = "food-review";
constexpr milliseconds kTimeout{10000};
constexpr std::string_view kSelectionHeader = "test-epp-endpoint-selection";
constexpr std::string_view kServedTestHeader = "x-conformance-test-served-endpoint";

// Two endpoints per decision (primary, fallback), taken in turn.
constexpr std::string_view kTwoInTurnConfig = R"(
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- name: picker
  type: round-robin-picker
  parameters:
    maxNumOfEndpoints: 2
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: picker
)";

// Requests without test-epp-endpoint-selection are filtered down to nothing: the EPP's 429.
constexpr std::string_view kHeaderFilterConfig = R"(
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: header-based-testing-filter
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: header-based-testing-filter
  - pluginRef: max-score-picker
)";

std::string completion_body(std::string_view model, int max_tokens) {
  return json{{"model", model},
              {"prompt", "Tell me about food."},
              {"max_tokens", max_tokens},
              {"ignore_eos", true}}
      .dump();
}

std::string chat_body(std::string_view model, int max_tokens, bool stream) {
  json body = {{"model", model},
               {"messages", {{{"role", "user"}, {"content", "What is good to eat?"}}}},
               {"max_tokens", max_tokens},
               {"ignore_eos", true},
               {"stream", stream}};
  if (stream) body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

std::string header(const http::ClientResponse& response, std::string_view name) {
  return std::string(http::find_header(response.headers, name).value_or(""));
}

// A port nothing listens on.
std::uint16_t closed_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

class ExternalEppGatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int sim_idx = 0; sim_idx < 3; ++sim_idx) {
      sim::SimOptions options;
      options.port = 0;
      options.time_scale = 1;  // real time: streams take a few decode steps
      options.seed = static_cast<std::uint64_t>(sim_idx + 1);
      options.engine.max_model_len = 8192;
      options.engine.step_time.fixed_ms = 5;  // ~11 ms per decode step
      options.engine.step_time.frontend_ms = 2;
      sims_.push_back(std::make_unique<sim::SimServer>(sim_io_, options));
      sims_.back()->start();
    }
    sim_thread_ = std::thread([this] { sim_io_.run(); });
    resources_ = std::make_unique<TempFile>("resources.yaml", test_support::kSimPoolResources);
    dead_endpoint_ = fmt::format("127.0.0.1:{}", closed_port());
  }

  void TearDown() override {
    if (gateway_) gateway_->stop();
    gateway_.reset();
    if (runner_) runner_->stop();
    runner_.reset();
    asio::post(sim_io_, [this] {
      for (auto& sim : sims_) sim->stop();
    });
    sim_io_.stop();
    sim_thread_.join();
    sims_.clear();
  }

  std::string sim_endpoint(std::size_t sim_idx) const {
    return fmt::format("127.0.0.1:{}", sims_[sim_idx]->port());
  }

  // The EPP over the three sims (and `extra` endpoints first), with `config_text` (empty: GIE's
  // default profile).
  void start_epp(std::string_view config_text = {}, std::vector<std::string> extra = {}) {
    extproc::EppOptions options;
    options.bind_address = "127.0.0.1";
    options.grpc_port = 0;
    options.grpc_health_port = 0;
    options.metrics_port = 0;
    options.secure_serving = false;
    options.refresh_metrics_interval = milliseconds(10);
    options.resources_file = resources_->path();
    options.config_text = std::string(config_text);
    options.conformance_test_hooks = true;  // test-epp-endpoint-selection, served header
    options.endpoints = std::move(extra);
    for (std::size_t sim_idx = 0; sim_idx < sims_.size(); ++sim_idx) {
      options.endpoints.push_back(sim_endpoint(sim_idx));
    }
    options.seed = 7;
    options.shutdown_grace = milliseconds(500);
    runner_ = std::make_unique<extproc::EppRunner>(std::move(options));
    runner_->start();
  }

  // The gateway picking through the EPP (or `epp_target`); `fallback_endpoints`: the sims as
  // --endpoints (what FailOpen falls back on).
  void start_gateway(extproc::FailureMode mode = extproc::FailureMode::kFailClose,
                     bool fallback_endpoints = false, std::string epp_target = {}) {
    gateway::GatewayOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = 2;
    options.refresh_metrics_interval = milliseconds(10);
    options.access_logger = std::make_shared<spdlog::logger>("access", access_sink_);
    options.access_logger->set_pattern("%v");
    options.seed = 7;
    options.ejection.consecutive_failures = 100;  // a test's dead endpoint stays listed
    if (epp_target.empty()) epp_target = fmt::format("127.0.0.1:{}", runner_->grpc_port());
    options.epp = extproc::ExtProcClientOptions{
        .target = epp_target, .message_timeout = milliseconds(5000), .failure_mode = mode};
    if (fallback_endpoints) {
      for (std::size_t sim_idx = 0; sim_idx < sims_.size(); ++sim_idx) {
        options.endpoints.push_back({.pod_name = "sim-" + std::to_string(sim_idx),
                                     .namespace_name = "default",
                                     .address = "127.0.0.1",
                                     .port = sims_[sim_idx]->port()});
      }
    }
    gateway_ = std::make_unique<gateway::Gateway>(std::move(options));
    gateway_->start();
  }

  Result<http::ClientResponse> send(verb method, std::string_view target, std::string body = {},
                                    const http::Headers& headers = {}) {
    http::Request request = http::make_request(method, target, std::move(body));
    for (const auto& [name, value] : headers) request.set(name, value);
    return http::fetch_blocking("127.0.0.1", gateway_->port(), std::move(request), kTimeout);
  }

  // Requests the sims' engines hold (running + waiting), read on the sims' thread.
  int sim_requests_in_engines() {
    std::promise<int> total;
    asio::post(sim_io_, [&] {
      int sum = 0;
      for (const auto& sim : sims_) {
        sum += sim->engine().num_running() + sim->engine().num_waiting();
      }
      total.set_value(sum);
    });
    return total.get_future().get();
  }

  bool epp_released() {
    if (runner_->extproc_stats().active_streams.load() != 0) return false;
    for (const auto& endpoint : runner_->datastore().snapshot()->endpoints) {
      if (endpoint.state->inflight_requests.load() != 0) return false;
    }
    return true;
  }

  std::vector<json> access_log(std::size_t expected) {
    eventually([&] { return access_sink_->lines().size() >= expected; });
    std::vector<json> entries;
    for (const auto& line : access_sink_->lines()) entries.push_back(json::parse(line));
    return entries;
  }

  asio::io_context sim_io_{1};
  std::vector<std::unique_ptr<sim::SimServer>> sims_;
  std::thread sim_thread_;
  std::unique_ptr<TempFile> resources_;
  std::string dead_endpoint_;
  std::unique_ptr<extproc::EppRunner> runner_;
  std::shared_ptr<LineSink> access_sink_ = std::make_shared<LineSink>();
  std::unique_ptr<gateway::Gateway> gateway_;
};

TEST_F(ExternalEppGatewayTest, RequestsGoWhereTheEppSaysNotWhereTheClientSays) {
  start_epp();
  start_gateway();
  for (std::size_t sim_idx = 0; sim_idx < sims_.size(); ++sim_idx) {
    const std::string chosen = sim_endpoint(sim_idx);
    const http::Headers headers = {
        {std::string(kSelectionHeader), chosen},
        // A client's attempt to steer the request is removed before the EPP sees it.
        {"x-gateway-destination-endpoint", sim_endpoint((sim_idx + 1) % sims_.size())}};
    auto response = send(verb::post, "/v1/completions", completion_body(kClientModel, 3), headers);
    ASSERT_TRUE(response.ok()) << response.status().message();
    ASSERT_EQ(response->status, 200u) << response->body;
    EXPECT_EQ(header(*response, kServedTestHeader), chosen)
        << "the served endpoint reached the EPP on the response path";
    // The sims know only the target model: the EPP rewrote the body, and restored the name.
    const json body = json::parse(response->body);
    EXPECT_EQ(body["model"], kClientModel);
    EXPECT_EQ(response->body.find(kTargetModel), std::string::npos);
  }
  const std::vector<json> log = access_log(3);
  ASSERT_EQ(log.size(), 3u);
  for (std::size_t sim_idx = 0; sim_idx < sims_.size(); ++sim_idx) {
    EXPECT_EQ(log[sim_idx]["endpoint"], sim_endpoint(sim_idx));
    EXPECT_EQ(log[sim_idx]["status"], 200);
    EXPECT_EQ(log[sim_idx]["attempts"], 1);
  }
  // A body-less request gets a destination too.
  auto models = send(verb::get, "/v1/models");
  ASSERT_TRUE(models.ok());
  EXPECT_EQ(models->status, 200u) << models->body;
  EXPECT_NE(models->body.find(kTargetModel), std::string::npos) << models->body;
  EXPECT_TRUE(eventually([&] { return epp_released(); }));
}

TEST_F(ExternalEppGatewayTest, StreamIsRelayedChunkByChunkWithTheModelRestored) {
  start_epp();
  start_gateway();
  std::size_t pieces = 0;
  std::vector<std::string> events;
  std::string content_type;
  asio::io_context io;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        http::ClientConnection connection(io.get_executor());
        const std::string host = "127.0.0.1";
        if (!(co_await connection.connect(host, gateway_->port(), kTimeout)).is_ok()) co_return;
        http::Request request = http::make_request(verb::post, "/v1/chat/completions",
                                                   chat_body(kClientModel, 8, true));
        request.set(std::string(kSelectionHeader), sim_endpoint(1));
        if (!(co_await connection.send_request(std::move(request), kTimeout)).is_ok()) co_return;
        auto head = co_await connection.read_response_head(kTimeout);
        if (!head.ok()) co_return;
        content_type = std::string(http::find_header(head->headers, "content-type").value_or(""));
        http::SseParser parser;
        for (;;) {
          std::string chunk;
          auto read = co_await connection.read_body_some(chunk, kTimeout);
          if (!read.ok() || *read == 0) break;
          ++pieces;
          parser.feed(chunk, [&](std::string_view data) { events.emplace_back(data); });
        }
      },
      [](const std::exception_ptr& error) {
        if (error) std::rethrow_exception(error);
      });
  io.run();
  EXPECT_EQ(content_type, "text/event-stream");
  ASSERT_GE(events.size(), 9u) << "8 tokens, the usage and [DONE]";
  EXPECT_GE(pieces, 4u) << "the events arrived as they were generated, not all at once";
  EXPECT_EQ(events.back(), "[DONE]");
  for (std::size_t event_idx = 0; event_idx + 1 < events.size(); ++event_idx) {
    EXPECT_EQ(json::parse(events[event_idx])["model"], kClientModel) << events[event_idx];
  }
  EXPECT_TRUE(eventually([&] { return epp_released(); }));
}

TEST_F(ExternalEppGatewayTest, ADeadPrimaryFallsToTheListedFallback) {
  start_epp(kTwoInTurnConfig, {dead_endpoint_});
  start_gateway();
  // Candidates dead, sim-0 in turn: one request gets the dead one as its primary.
  const http::Headers headers = {
      {std::string(kSelectionHeader), fmt::format("{},{}", dead_endpoint_, sim_endpoint(0))}};
  for (int request_idx = 0; request_idx < 2; ++request_idx) {
    auto response = send(verb::post, "/v1/completions", completion_body(kTargetModel, 2), headers);
    ASSERT_TRUE(response.ok()) << response.status().message();
    ASSERT_EQ(response->status, 200u) << response->body;
    EXPECT_EQ(header(*response, kServedTestHeader), sim_endpoint(0));
  }
  EXPECT_EQ(gateway_->metrics().errors("upstream_connect"), 1.0);
  const std::string metrics = gateway_->registry().expose();
  EXPECT_NE(metrics.find("infergate_gateway_upstream_retries_total 1.0"), std::string::npos);
  const std::vector<json> log = access_log(2);
  int attempts = 0;
  for (const json& entry : log) {
    EXPECT_EQ(entry["endpoint"], sim_endpoint(0));
    attempts += entry["attempts"].get<int>();
  }
  EXPECT_EQ(attempts, 3);
}

TEST_F(ExternalEppGatewayTest, AServerErrorOnEveryListedEndpointIsRelayedThroughTheEpp) {
  start_epp(kTwoInTurnConfig);
  start_gateway();
  const http::Headers headers = {
      {std::string(kSelectionHeader), fmt::format("{},{}", sim_endpoint(0), sim_endpoint(1))},
      {"x-return-error", "503"}};  // the sims fail on request
  auto response = send(verb::post, "/v1/completions", completion_body(kTargetModel, 2), headers);
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 503u) << response->body;
  EXPECT_NE(response->body.find("overloaded"), std::string::npos) << response->body;
  EXPECT_FALSE(header(*response, kServedTestHeader).empty())
      << "the kept error went through the EPP's response path";
  EXPECT_EQ(gateway_->metrics().errors("upstream_5xx"), 2.0);
  EXPECT_EQ(access_log(1).back()["attempts"], 2);
  EXPECT_TRUE(eventually([&] { return epp_released(); }));
}

TEST_F(ExternalEppGatewayTest, TheEppsLocalRepliesReachTheClient) {
  start_epp(kHeaderFilterConfig);
  start_gateway();
  // Everything filtered out (no test header): the EPP sheds with 429.
  auto shed = send(verb::post, "/v1/completions", completion_body(kTargetModel, 2));
  ASSERT_TRUE(shed.ok());
  EXPECT_EQ(shed->status, 429u) << shed->body;
  EXPECT_EQ(header(*shed, "content-type"), "application/json");
  const json error = json::parse(shed->body);
  EXPECT_EQ(error["error"]["code"], 429);
  EXPECT_NE(error["error"]["message"].get<std::string>().find("inference error"), std::string::npos)
      << shed->body;
  // An unreadable body: the EPP's 400.
  auto bad = send(verb::post, "/v1/completions", "not json",
                  {{std::string(kSelectionHeader), sim_endpoint(0)}});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status, 400u) << bad->body;
  EXPECT_EQ(gateway_->metrics().errors("shed"), 1.0);
  EXPECT_EQ(gateway_->metrics().errors("bad_request"), 1.0);
  EXPECT_TRUE(eventually([&] { return epp_released(); }));
}

TEST_F(ExternalEppGatewayTest, FailCloseAnswers503WhenTheEppIsDown) {
  start_gateway(extproc::FailureMode::kFailClose, /*fallback_endpoints=*/true, dead_endpoint_);
  auto response = send(verb::post, "/v1/completions", completion_body(kTargetModel, 2));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 503u) << response->body;
  EXPECT_NE(response->body.find("endpoint picker unavailable"), std::string::npos)
      << response->body;
  EXPECT_EQ(gateway_->metrics().errors("epp_failure"), 1.0);
  const std::string metrics = gateway_->registry().expose();
  EXPECT_NE(metrics.find(R"(infergate_gateway_epp_failures_total{kind="unavailable",)"
                         R"(outcome="fail_close"} 1.0)"),
            std::string::npos)
      << metrics;
}

TEST_F(ExternalEppGatewayTest, FailOpenServesFromTheEndpointsWhenTheEppIsDown) {
  start_gateway(extproc::FailureMode::kFailOpen, /*fallback_endpoints=*/true, dead_endpoint_);
  // Even now a client cannot pick its endpoint.
  const http::Headers headers = {{"x-gateway-destination-endpoint", dead_endpoint_}};
  auto response = send(verb::post, "/v1/completions", completion_body(kTargetModel, 2), headers);
  ASSERT_TRUE(response.ok());
  ASSERT_EQ(response->status, 200u) << response->body;
  const std::string served = access_log(1).back()["endpoint"];
  EXPECT_TRUE(served == sim_endpoint(0) || served == sim_endpoint(1) || served == sim_endpoint(2))
      << served;
  EXPECT_EQ(gateway_->metrics().errors("upstream_connect"), 0.0);
  const std::string metrics = gateway_->registry().expose();
  EXPECT_NE(metrics.find(R"(infergate_gateway_epp_failures_total{kind="unavailable",)"
                         R"(outcome="fail_open"} 1.0)"),
            std::string::npos)
      << metrics;
}

TEST_F(ExternalEppGatewayTest, FailOpenWithoutEndpointsHasNowhereToGo) {
  start_gateway(extproc::FailureMode::kFailOpen, /*fallback_endpoints=*/false, dead_endpoint_);
  auto response = send(verb::post, "/v1/completions", completion_body(kTargetModel, 2));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 503u) << response->body;
  EXPECT_NE(response->body.find("no --endpoints to fall back on"), std::string::npos);
  auto ready = send(verb::get, "/readyz");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 200u) << "no endpoint state of its own to wait for";
}

TEST_F(ExternalEppGatewayTest, AClientThatLeavesCancelsTheUpstreamAndTheEppStream) {
  start_epp();
  start_gateway();
  asio::io_context io;
  bool got_bytes = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        http::ClientConnection connection(io.get_executor());
        const std::string host = "127.0.0.1";
        if (!(co_await connection.connect(host, gateway_->port(), kTimeout)).is_ok()) co_return;
        http::Request request = http::make_request(verb::post, "/v1/chat/completions",
                                                   chat_body(kClientModel, 4000, true));
        request.set(std::string(kSelectionHeader), sim_endpoint(2));
        if (!(co_await connection.send_request(std::move(request), kTimeout)).is_ok()) co_return;
        if (!(co_await connection.read_response_head(kTimeout)).ok()) co_return;
        std::string chunk;
        auto read = co_await connection.read_body_some(chunk, kTimeout);
        got_bytes = read.ok() && *read > 0;
        connection.close();  // the client goes away mid-stream
      },
      [](const std::exception_ptr& error) {
        if (error) std::rethrow_exception(error);
      });
  io.run();
  ASSERT_TRUE(got_bytes);
  EXPECT_TRUE(eventually([&] { return sim_requests_in_engines() == 0; }))
      << "the model server's request was cancelled";
  EXPECT_TRUE(eventually([&] { return epp_released(); }))
      << "the ext_proc stream ended and the EPP released its accounting";
  EXPECT_TRUE(eventually([&] { return gateway_->in_flight() == 0; }));
  EXPECT_EQ(access_log(1).back()["status"], 499);
}

}  // namespace
}  // namespace infergate
