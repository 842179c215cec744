// `infergate serve` end to end on loopback: the gateway in front of three simulated vLLM servers
// (and, for single tests, a closed port or a server whose stream stalls). Routing follows load and
// prefixes, streams are relayed event by event, model names are rewritten both ways, dead endpoints
// and server errors are retried around and ejected (the server's own error relayed when every
// attempt fails), departed clients and timed-out requests free the model server's work, a stalled
// stream is cut after the idle timeout, sheddable requests get 429 while the pool is saturated, bad
// input gets OpenAI-style errors, and a drain lets a stream finish.
#include "gateway/gateway.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/verb.hpp>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "datastore/datastore.h"
#include "datastore/model_policies.h"
#include "http/client.h"
#include "http/server.h"
#include "http/sse.h"
#include "integration/support.h"
#include "request/tokenizer.h"
#include "sim/server.h"

namespace infergate {
namespace {

using test_support::eventually;
using test_support::LineSink;

namespace asio = boost::asio;
using boost::beast::http::verb;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::string_view kModel = "meta-llama/Llama-3.1-8B-Instruct";
constexpr milliseconds kTimeout{10000};

// Runs `body` (a coroutine taking the executor) on a fresh io_context until it finishes.
template <typename Body>
void run_client(Body body) {
  asio::io_context io;
  asio::co_spawn(io, body(io.get_executor()), [](const std::exception_ptr& error) {
    if (error) std::rethrow_exception(error);
  });
  io.run();
}

std::string completion_body(std::string_view model, std::string_view prompt, int max_tokens,
                            bool stream = false) {
  // ignore_eos: exactly max_tokens tokens (the sim stops at a random length otherwise).
  json body = {
      {"model", model}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"ignore_eos", true}};
  if (stream) {
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
  }
  return body.dump();
}

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int sim_idx = 0; sim_idx < 3; ++sim_idx) {
      sim::SimOptions options;
      options.port = 0;
      options.time_scale = 1;  // real time: queues stay visible in the metrics
      options.seed = static_cast<std::uint64_t>(sim_idx + 1);
      options.engine.num_gpu_blocks = 4000;
      options.engine.max_num_seqs = 2;
      options.engine.max_model_len = 8192;
      options.engine.step_time.fixed_ms = 5;  // ~11 ms per decode step
      options.engine.step_time.frontend_ms = 2;
      if (sim_idx == 0) options.failure_rate_percent = first_sim_failure_rate_percent_;
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
    sims_.clear();
  }

  std::string sim_endpoint(std::size_t sim_idx) const {
    return "127.0.0.1:" + std::to_string(sims_[sim_idx]->port());
  }

  gateway::GatewayOptions default_options() {
    gateway::GatewayOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = 2;
    options.refresh_metrics_interval = milliseconds(5);
    options.proxy.emit_endpoint_scores = true;
    options.access_logger = std::make_shared<spdlog::logger>("access", access_sink_);
    options.access_logger->set_pattern("%v");
    options.seed = 7;
    for (std::size_t sim_idx = 0; sim_idx < sims_.size(); ++sim_idx) {
      options.endpoints.push_back({.pod_name = "sim-" + std::to_string(sim_idx),
                                   .namespace_name = "default",
                                   .address = "127.0.0.1",
                                   .port = sims_[sim_idx]->port()});
    }
    return options;
  }

  // Starts the gateway and waits (bounded) until every live endpoint has been scraped.
  void start_gateway(gateway::GatewayOptions options, std::size_t live_endpoints = 3) {
    gateway_ = std::make_unique<gateway::Gateway>(std::move(options));
    gateway_->start();
    ASSERT_TRUE(eventually([&] {
      std::size_t scraped = 0;
      for (const auto& endpoint : gateway_->datastore().snapshot()->endpoints) {
        if (endpoint.state->metrics()) ++scraped;
      }
      return scraped >= live_endpoints;
    })) << "the collectors scraped the sims";
  }

  Result<http::ClientResponse> send(verb method, std::string_view target, std::string body = {},
                                    const http::Headers& headers = {}) {
    http::Request request = http::make_request(method, target, std::move(body));
    for (const auto& [name, value] : headers) request.set(name, value);
    return http::fetch_blocking("127.0.0.1", gateway_->port(), std::move(request), kTimeout);
  }

  Result<http::ClientResponse> complete(std::string_view prompt, int max_tokens = 1) {
    return send(verb::post, "/v1/completions", completion_body(kModel, prompt, max_tokens));
  }

  static std::string served_by(const http::ClientResponse& response) {
    return std::string(
        http::find_header(response.headers, "x-gateway-destination-endpoint-served").value_or(""));
  }

  // Requests the sims' engines hold (running + waiting), read on the sims' thread.
  int sim_requests_in_engines() {
    std::promise<int> total;
    asio::post(sim_io_, [&] {
      int sum = 0;
      for (const auto& sim : sims_)
        sum += sim->engine().num_running() + sim->engine().num_waiting();
      total.set_value(sum);
    });
    return total.get_future().get();
  }

  // The access log once it has `expected` lines (a line is written just after its response).
  std::vector<json> access_log(std::size_t expected) {
    eventually([&] { return access_sink_->lines().size() >= expected; });
    std::vector<json> entries;
    for (const auto& line : access_sink_->lines()) entries.push_back(json::parse(line));
    return entries;
  }

  // Share of sim-0's requests it answers with a 503 (set before SetUp).
  double first_sim_failure_rate_percent_ = 0;
  asio::io_context sim_io_{1};
  std::vector<std::unique_ptr<sim::SimServer>> sims_;
  std::thread sim_thread_;
  std::shared_ptr<LineSink> access_sink_ = std::make_shared<LineSink>();
  std::unique_ptr<gateway::Gateway> gateway_;
};

TEST_F(GatewayTest, RequestsAvoidAnEndpointWhoseQueueShowsInItsMetrics) {
  start_gateway(default_options());
  // Queue work on sim-0 directly (2 run, the rest waits), without reading the answers.
  asio::io_context load_io;
  std::vector<std::unique_ptr<http::ClientConnection>> load;
  const std::string body = R"({"model":"meta-llama/Llama-3.1-8B-Instruct","prompt":"busy",)"
                           R"("max_tokens":2000,"ignore_eos":true,"stream":true})";
  for (int load_idx = 0; load_idx < 8; ++load_idx) {
    load.push_back(std::make_unique<http::ClientConnection>(load_io.get_executor()));
    asio::co_spawn(
        load_io,
        [&, connection = load.back().get()]() -> asio::awaitable<void> {
          const std::string host = "127.0.0.1";
          if (!(co_await connection->connect(host, sims_[0]->port(), kTimeout)).is_ok()) co_return;
          auto request = http::make_request(verb::post, "/v1/completions", body);
          co_await connection->send_request(std::move(request), kTimeout);
        },
        asio::detached);
  }
  load_io.run();
  const std::string busy = sim_endpoint(0);
  ASSERT_TRUE(eventually([&] {
    auto metrics = gateway_->datastore().snapshot()->find("sim-0-rank-0")->state->metrics();
    return metrics && metrics->waiting_requests >= 4;
  })) << "sim-0's queue reached the gateway's datastore";

  std::set<std::string> served;
  for (int request_idx = 0; request_idx < 10; ++request_idx) {
    auto response = complete("question number " + std::to_string(request_idx));
    ASSERT_TRUE(response.ok()) << response.status().message();
    EXPECT_EQ(response->status, 200u) << response->body;
    served.insert(served_by(*response));
  }
  EXPECT_EQ(served.count(busy), 0u) << "a request went to the loaded endpoint";
  EXPECT_EQ(served.size(), 2u) << "the two idle endpoints share the requests";
}

TEST_F(GatewayTest, RequestsSharingALongPrefixStayOnOneEndpoint) {
  start_gateway(default_options());
  const std::string prefix = request::make_text_with_tokens(800, 42);
  std::set<std::string> served;
  for (int request_idx = 0; request_idx < 6; ++request_idx) {
    auto response = complete(prefix + " follow-up " + std::to_string(request_idx));
    ASSERT_TRUE(response.ok()) << response.status().message();
    ASSERT_EQ(response->status, 200u) << response->body;
    served.insert(served_by(*response));
  }
  EXPECT_EQ(served.size(), 1u) << "the prefix-cache scorer keeps the prefix on one endpoint";
  // Different prompts are free to spread.
  const std::string scores = [&] {
    auto response = complete(prefix + " last");
    return std::string(
        http::find_header(response->headers, "x-gateway-destination-endpoint-scores").value_or(""));
  }();
  const json parsed = json::parse(scores);
  EXPECT_EQ(parsed.size(), 3u);
  EXPECT_GT(parsed[*served.begin()]["prefix-cache-scorer"].get<double>(), 0.5) << scores;
}

TEST_F(GatewayTest, StreamIsRelayedEventByEventAsItIsGenerated) {
  start_gateway(default_options());
  struct Read {
    std::chrono::steady_clock::time_point at;
    std::size_t events;
  };
  std::vector<Read> reads;
  std::vector<std::string> events;
  unsigned status = 0;
  std::string content_type;
  run_client([&](asio::any_io_executor executor) -> asio::awaitable<void> {
    http::ClientConnection connection(executor);
    const std::string host = "127.0.0.1";
    if (!(co_await connection.connect(host, gateway_->port(), kTimeout)).is_ok()) co_return;
    auto request = http::make_request(verb::post, "/v1/completions",
                                      completion_body(kModel, "tell me a story", 20, true));
    if (!(co_await connection.send_request(std::move(request), kTimeout)).is_ok()) co_return;
    auto head = co_await connection.read_response_head(kTimeout);
    if (!head.ok()) co_return;
    status = head->status;
    content_type = std::string(http::find_header(head->headers, "content-type").value_or(""));
    http::SseParser parser;
    while (true) {
      std::string chunk;
      auto read = co_await connection.read_body_some(chunk, kTimeout);
      if (!read.ok() || *read == 0) break;
      std::size_t count = 0;
      parser.feed(chunk, [&](std::string_view data) {
        events.emplace_back(data);
        ++count;
      });
      reads.push_back({std::chrono::steady_clock::now(), count});
    }
  });
  ASSERT_EQ(status, 200u);
  EXPECT_EQ(content_type, "text/event-stream");
  ASSERT_GE(events.size(), 22u);  // 20 tokens + the finish + usage + [DONE]
  EXPECT_EQ(events.back(), "[DONE]");
  // The events came in many pieces spread over the generation, not as one buffered body.
  std::size_t reads_with_events = 0;
  for (const auto& read : reads) reads_with_events += read.events > 0 ? 1 : 0;
  EXPECT_GE(reads_with_events, 5u);
  EXPECT_GE(reads.back().at - reads.front().at, milliseconds(80))
      << "20 decode steps of ~11 ms each";
  const json usage = json::parse(events[events.size() - 2]);
  EXPECT_EQ(usage["usage"]["completion_tokens"], 20);
  for (std::size_t event_idx = 0; event_idx + 1 < events.size(); ++event_idx) {
    EXPECT_EQ(json::parse(events[event_idx])["model"], kModel);
  }
}

TEST_F(GatewayTest, ModelNamesAreRewrittenForTheServerAndRestoredForTheClient) {
  gateway::GatewayOptions options = default_options();
  api::InferenceModelRewrite rewrite;
  rewrite.metadata.name = "alias";
  rewrite.metadata.namespace_name = "default";
  rewrite.rules.push_back({.matches = {{.value = "my-alias"}},
                           .targets = {{.model_rewrite = std::string(kModel), .weight = 1}}});
  options.policies = std::make_shared<const datastore::ModelPolicies>(
      std::vector<api::InferenceObjective>{}, std::vector<api::InferenceModelRewrite>{rewrite});
  start_gateway(std::move(options));

  // InferenceModelRewrite, whole JSON response. The sim answers 404 for any name but its own, so
  // a 200 means it saw the target name.
  auto whole = send(verb::post, "/v1/completions", completion_body("my-alias", "hi", 3));
  ASSERT_TRUE(whole.ok());
  ASSERT_EQ(whole->status, 200u) << whole->body;
  EXPECT_EQ(json::parse(whole->body)["model"], "my-alias");
  EXPECT_EQ(whole->body.find(kModel), std::string::npos);

  // InferenceModelRewrite, streamed chat: every event carries the client's name.
  const std::string chat = json{
      {"model", "my-alias"},
      {"messages", {{{"role", "user"}, {"content", "hello"}}}},
      {"max_tokens", 4},
      {"stream", true}}.dump();
  auto streamed = send(verb::post, "/v1/chat/completions", chat);
  ASSERT_TRUE(streamed.ok());
  ASSERT_EQ(streamed->status, 200u) << streamed->body;
  EXPECT_EQ(streamed->body.find(kModel), std::string::npos);
  std::size_t events = 0;
  http::SseParser parser;
  parser.feed(streamed->body, [&](std::string_view data) {
    if (data == "[DONE]") return;
    EXPECT_EQ(json::parse(data)["model"], "my-alias");
    ++events;
  });
  EXPECT_GE(events, 5u);

  // The rewrite header, without any InferenceModelRewrite for the name.
  const http::Headers rewrite_header = {{"X-Gateway-Model-Name-Rewrite", std::string(kModel)}};
  auto by_header =
      send(verb::post, "/v1/completions", completion_body("client-name", "hi", 2), rewrite_header);
  ASSERT_TRUE(by_header.ok());
  ASSERT_EQ(by_header->status, 200u) << by_header->body;
  EXPECT_EQ(json::parse(by_header->body)["model"], "client-name");

  const auto log = access_log(3);
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0]["model"], "my-alias");
  EXPECT_EQ(log[0]["target_model"], kModel);
  EXPECT_EQ(log[2]["model"], "client-name");
  EXPECT_EQ(log[2]["target_model"], kModel);
}

TEST_F(GatewayTest, ADeadEndpointIsRetriedAroundAndEjected) {
  gateway::GatewayOptions options = default_options();
  std::uint16_t dead_port = 0;
  {
    asio::io_context probe_io;
    asio::ip::tcp::acceptor probe(probe_io, {asio::ip::make_address("127.0.0.1"), 0});
    dead_port = probe.local_endpoint().port();
  }                              // closed: connecting is refused
  options.endpoints.pop_back();  // two sims and the dead port
  options.endpoints.push_back(
      {.pod_name = "dead", .namespace_name = "default", .address = "127.0.0.1", .port = dead_port});
  options.ejection = {.consecutive_failures = 2, .cooldown = seconds(60)};
  const std::string dead = "127.0.0.1:" + std::to_string(dead_port);
  start_gateway(std::move(options), /*live_endpoints=*/2);

  // Until the dead endpoint is ejected (it has no metrics, so the picker likes it), and a few
  // more after: every request succeeds.
  int sent = 0;
  int after_ejection = 0;
  while (sent < 100 && after_ejection < 5) {
    auto response = complete("request " + std::to_string(sent));
    ASSERT_TRUE(response.ok()) << response.status().message();
    ASSERT_EQ(response->status, 200u) << response->body;
    EXPECT_NE(served_by(*response), dead);
    ++sent;
    if (gateway_->health().is_ejected(dead)) ++after_ejection;
  }
  ASSERT_TRUE(gateway_->health().is_ejected(dead)) << "after " << sent << " requests";
  EXPECT_EQ(gateway_->health().ejected(), std::vector<std::string>{dead});
  EXPECT_GE(gateway_->metrics().errors("upstream_connect"), 2.0);
  // Ejected: the last requests went straight to a live endpoint.
  const auto log = access_log(static_cast<std::size_t>(sent));
  ASSERT_EQ(log.size(), static_cast<std::size_t>(sent));
  for (std::size_t entry_idx = log.size() - 4; entry_idx < log.size(); ++entry_idx) {
    EXPECT_EQ(log[entry_idx]["attempts"], 1) << log[entry_idx].dump();
  }
  const std::string metrics = send(verb::get, "/metrics")->body;
  EXPECT_NE(
      metrics.find("infergate_gateway_endpoint_ejections_total{endpoint=\"" + dead + "\"} 1.0"),
      std::string::npos)
      << metrics;
}

// sim-0 answers every request with a 503.
class GatewayFailingSimTest : public GatewayTest {
 protected:
  GatewayFailingSimTest() { first_sim_failure_rate_percent_ = 100; }
};

TEST_F(GatewayFailingSimTest, AServerErrorIsRetriedOnAnotherEndpoint) {
  gateway::GatewayOptions options = default_options();
  options.ejection = {.consecutive_failures = 2, .cooldown = seconds(60)};
  start_gateway(std::move(options));
  const std::string failing = sim_endpoint(0);

  // sim-0 answers at once, so its queue stays empty and the picker likes it until it is
  // ejected; every request still succeeds elsewhere.
  int sent = 0;
  while (sent < 100 && !gateway_->health().is_ejected(failing)) {
    auto response = complete("request " + std::to_string(sent));
    ASSERT_TRUE(response.ok()) << response.status().message();
    ASSERT_EQ(response->status, 200u) << response->body;
    EXPECT_NE(served_by(*response), failing);
    ++sent;
  }
  ASSERT_TRUE(gateway_->health().is_ejected(failing)) << "after " << sent << " requests";
  EXPECT_EQ(gateway_->metrics().errors("upstream_5xx"), 2.0);
  EXPECT_EQ(gateway_->metrics().errors("all_attempts_failed"), 0.0);
  int attempts = 0;
  for (const json& entry : access_log(static_cast<std::size_t>(sent))) {
    EXPECT_EQ(entry["status"], 200) << entry.dump();
    attempts += entry["attempts"].get<int>();
  }
  EXPECT_EQ(attempts, sent + 2) << "one more attempt for each 503";
}

TEST_F(GatewayTest, AServerErrorFromEveryAttemptIsRelayedAsTheServerSentIt) {
  gateway::GatewayOptions options = default_options();
  options.proxy.max_retries = 3;  // more than the other endpoints: the last 503 is kept, too
  start_gateway(std::move(options));
  // Every sim fails this request: each of the three gets one attempt and answers 503, and the
  // error kept from an attempt is what the client gets once no endpoint is left to try.
  auto response = send(verb::post, "/v1/completions", completion_body(kModel, "fail", 1),
                       {{"x-return-error", "503"}});
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 503u) << response->body;
  const json error = json::parse(response->body);
  EXPECT_EQ(error["error"]["code"], 503);
  EXPECT_NE(error["error"]["message"].get<std::string>().find("injected failure"),
            std::string::npos)
      << "the model server's own error body: " << response->body;
  EXPECT_EQ(gateway_->metrics().errors("upstream_5xx"), 3.0);
  EXPECT_EQ(gateway_->metrics().errors("all_attempts_failed"), 1.0);
  const json entry = access_log(1).back();
  EXPECT_EQ(entry["status"], 503) << entry.dump();
  EXPECT_EQ(entry["attempts"], 3) << entry.dump();
}

TEST_F(GatewayTest, AClientThatLeavesFreesTheModelServersRequest) {
  start_gateway(default_options());
  bool got_first_event = false;
  run_client([&](asio::any_io_executor executor) -> asio::awaitable<void> {
    http::ClientConnection connection(executor);
    const std::string host = "127.0.0.1";
    if (!(co_await connection.connect(host, gateway_->port(), kTimeout)).is_ok()) co_return;
    json body = {{"model", kModel},
                 {"prompt", "a very long answer please"},
                 {"max_tokens", 3000},
                 {"ignore_eos", true},
                 {"stream", true}};
    auto request = http::make_request(verb::post, "/v1/completions", body.dump());
    if (!(co_await connection.send_request(std::move(request), kTimeout)).is_ok()) co_return;
    if (!(co_await connection.read_response_head(kTimeout)).ok()) co_return;
    std::string chunk;
    auto read = co_await connection.read_body_some(chunk, kTimeout);
    got_first_event = read.ok() && *read > 0;
    connection.close();  // the client goes away mid-stream
  });
  ASSERT_TRUE(got_first_event);
  EXPECT_TRUE(eventually([&] { return sim_requests_in_engines() == 0; }))
      << "the model server aborted the request";
  EXPECT_TRUE(eventually([&] { return gateway_->in_flight() == 0; }));
  EXPECT_TRUE(eventually([&] { return gateway_->metrics().errors("client_disconnected") >= 1; }));
  // The director released its in-flight accounting.
  for (const auto& endpoint : gateway_->datastore().snapshot()->endpoints) {
    EXPECT_EQ(endpoint.state->inflight_requests.load(), 0) << endpoint.info->host_port;
  }
  const auto log = access_log(1);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["status"], 499);
}

TEST_F(GatewayTest, BadInputGetsOpenAiStyleErrors) {
  gateway::GatewayOptions options = default_options();
  options.max_request_body_bytes = 1024;
  start_gateway(std::move(options));
  struct Case {
    std::string description;
    verb method;
    std::string target;
    std::string body;
    unsigned status;
    std::string type;
  };
  const std::vector<Case> cases = {
      {"body is not JSON", verb::post, "/v1/completions", "{not json", 400, "BadRequestError"},
      {"body has no model", verb::post, "/v1/chat/completions", R"({"messages":[]})", 400,
       "BadRequestError"},
      {"unknown path", verb::post, "/v2/generate", "{}", 404, "NotFoundError"},
      {"wrong method", verb::get, "/v1/completions", "", 405, "BadRequestError"},
      {"body over --max-request-body-bytes", verb::post, "/v1/completions",
       completion_body(kModel, std::string(2000, 'x'), 1), 413, "RequestEntityTooLargeError"},
  };
  for (const auto& row : cases) {
    auto response = send(row.method, row.target, row.body);
    ASSERT_TRUE(response.ok()) << row.description << ": " << response.status().message();
    EXPECT_EQ(response->status, row.status) << row.description << ": " << response->body;
    const json error = json::parse(response->body)["error"];
    EXPECT_EQ(error["code"], row.status) << row.description;
    EXPECT_EQ(error["type"], row.type) << row.description;
    EXPECT_FALSE(error["message"].get<std::string>().empty()) << row.description;
    if (row.status == 405) {
      EXPECT_EQ(http::find_header(response->headers, "allow"), "POST") << row.description;
    }
  }
  // The handler's four answers are counted once logged; the 413 is the HTTP server's own.
  EXPECT_EQ(access_log(4).size(), 4u);
  const std::string metrics = send(verb::get, "/metrics")->body;
  for (const std::string expected : {
           R"(infergate_gateway_errors_total{reason="bad_request"} 2.0)",
           R"(infergate_gateway_errors_total{reason="not_found"} 1.0)",
           R"(infergate_gateway_errors_total{reason="method_not_allowed"} 1.0)",
           R"(infergate_gateway_errors_total{reason="body_too_large"} 1.0)",
           R"(infergate_gateway_requests_total{code="400"} 2.0)",
           R"(infergate_gateway_requests_total{code="413"} 1.0)",
       }) {
    EXPECT_NE(metrics.find(expected), std::string::npos) << expected;
  }
  EXPECT_NE(
      metrics.find(R"(inference_objective_request_error_total{error_code="MethodNotAllowed")"),
      std::string::npos);
}

TEST_F(GatewayTest, SheddableRequestsGet429WhileThePoolIsSaturated) {
  gateway::GatewayOptions options = default_options();
  options.endpoints.resize(1);  // sim-0 alone
  api::InferenceObjective batch;
  batch.metadata.name = "batch";
  batch.metadata.namespace_name = "default";
  batch.priority = -1;
  options.policies = std::make_shared<const datastore::ModelPolicies>(
      std::vector<api::InferenceObjective>{batch}, std::vector<api::InferenceModelRewrite>{});
  // Saturated from one request in flight on.
  options.picker_config.plugins.push_back({.name = "saturation",
                                           .type = "concurrency-detector",
                                           .parameters = json{{"maxConcurrency", 1}}});
  options.picker_config.saturation_detector_ref = "saturation";
  start_gateway(std::move(options), /*live_endpoints=*/1);

  // ~11 ms per token: 60 tokens hold the pool saturated for ~700 ms.
  std::future<Result<http::ClientResponse>> long_request =
      std::async(std::launch::async, [this] { return complete("a longer answer", 60); });
  // Charged to sim-0 once routed (the gateway counts it in flight a little earlier).
  const auto snapshot = gateway_->datastore().snapshot();
  const datastore::Endpoint& sim0 = snapshot->endpoints.front();
  ASSERT_TRUE(eventually([&] { return sim0.state->inflight_requests.load() == 1; }));
  const http::Headers sheddable = {{"x-gateway-inference-objective", "batch"}};
  auto shed = send(verb::post, "/v1/completions", completion_body(kModel, "hi", 1), sheddable);
  ASSERT_TRUE(shed.ok()) << shed.status().message();
  EXPECT_EQ(shed->status, 429u) << shed->body;
  const json error = json::parse(shed->body)["error"];
  EXPECT_EQ(error["code"], 429);
  EXPECT_EQ(error["type"], "RateLimitError");
  // Priority 0 (no objective named) is never shed.
  auto kept = complete("hi");
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  EXPECT_EQ(kept->status, 200u) << kept->body;
  auto held = long_request.get();
  ASSERT_TRUE(held.ok()) << held.status().message();
  EXPECT_EQ(held->status, 200u) << held->body;
  EXPECT_EQ(gateway_->metrics().errors("shed"), 1.0);
  // Idle again: the sheddable request goes through.
  auto later = send(verb::post, "/v1/completions", completion_body(kModel, "hi", 1), sheddable);
  ASSERT_TRUE(later.ok()) << later.status().message();
  EXPECT_EQ(later->status, 200u) << later->body;
  int shed_lines = 0;
  for (const json& entry : access_log(4)) shed_lines += entry["status"] == 429 ? 1 : 0;
  EXPECT_EQ(shed_lines, 1);
}

TEST_F(GatewayTest, ARequestOverItsTimeoutIs504AndFreesTheModelServersRequest) {
  gateway::GatewayOptions options = default_options();
  options.proxy.request_timeout = milliseconds(300);
  start_gateway(std::move(options));
  // ~11 ms per token: 200 tokens take over 2 s, and a whole response has no byte before its end.
  auto late = complete("a long answer", 200);
  ASSERT_TRUE(late.ok()) << late.status().message();
  EXPECT_EQ(late->status, 504u) << late->body;
  const json error = json::parse(late->body)["error"];
  EXPECT_EQ(error["code"], 504);
  EXPECT_EQ(gateway_->metrics().errors("upstream_timeout"), 1.0);
  EXPECT_NE(send(verb::get, "/metrics")->body.find(R"(error_code="GatewayTimeout")"),
            std::string::npos);
  EXPECT_EQ(access_log(1).back()["status"], 504);
  EXPECT_TRUE(eventually([&] { return sim_requests_in_engines() == 0; }))
      << "the upstream connection was closed, and the sim dropped the request";
  // A request within its time still succeeds.
  auto quick = complete("a short answer", 1);
  ASSERT_TRUE(quick.ok()) << quick.status().message();
  EXPECT_EQ(quick->status, 200u) << quick->body;
}

TEST_F(GatewayTest, AStreamThatStallsIsCutAfterTheIdleTimeout) {
  // A model server that answers a stream's head and first event, then nothing more.
  asio::io_context stall_io{1};
  asio::steady_timer hold(stall_io, std::chrono::hours(1));
  http::Server stalling(
      stall_io, http::ServerOptions{},
      [&hold](http::Request& request, http::ResponseWriter& writer) -> asio::awaitable<void> {
        if (request.target() == "/metrics") {
          co_await writer.send(200, "text/plain", "");
          co_return;
        }
        const json event = {{"id", "cmpl-1"},
                            {"object", "text_completion"},
                            {"model", kModel},
                            {"choices", {{{"index", 0}, {"text", "one"}}}}};
        co_await writer.begin_stream(200, "text/event-stream", {});
        co_await writer.write_chunk("data: " + event.dump() + "\n\n");
        co_await hold.async_wait(asio::as_tuple(asio::use_awaitable));  // until the test ends
      });
  stalling.start();
  std::thread stall_thread([&stall_io] { stall_io.run(); });
  // Stops the server and its thread however the test ends.
  struct StopStalling {
    asio::io_context& io;
    asio::steady_timer& hold;
    http::Server& server;
    std::thread& thread;
    ~StopStalling() {
      asio::post(io, [this] {
        hold.cancel();
        server.stop();
      });
      thread.join();
    }
  } stop_stalling{stall_io, hold, stalling, stall_thread};

  gateway::GatewayOptions options = default_options();
  options.endpoints = {{.pod_name = "stalling",
                        .namespace_name = "default",
                        .address = "127.0.0.1",
                        .port = stalling.port()}};
  options.proxy.idle_timeout = milliseconds(300);
  start_gateway(std::move(options), /*live_endpoints=*/0);
  auto cut = send(verb::post, "/v1/completions", completion_body(kModel, "hi", 8, true));
  EXPECT_FALSE(cut.ok()) << "the stream ends without its last chunk: " << cut->body;
  EXPECT_EQ(gateway_->metrics().errors("upstream_timeout"), 1.0);
  const json entry = access_log(1).back();
  EXPECT_EQ(entry["status"], 200) << entry.dump();
  EXPECT_NE(entry["error"].get<std::string>().find("broke off"), std::string::npos) << entry.dump();
  // Other requests are undisturbed.
  auto health = send(verb::get, "/healthz");
  ASSERT_TRUE(health.ok()) << health.status().message();
  EXPECT_EQ(health->status, 200u);
}

TEST_F(GatewayTest, ProbesModelsMetricsAndAccessLog) {
  start_gateway(default_options());
  auto health = send(verb::get, "/healthz");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200u);
  auto ready = send(verb::get, "/readyz");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 200u) << ready->body;
  EXPECT_EQ(json::parse(ready->body)["endpoints_ready"], 3);

  auto models = send(verb::get, "/v1/models");
  ASSERT_TRUE(models.ok());
  ASSERT_EQ(models->status, 200u) << models->body;
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], kModel);

  auto answer = complete("hello there", 3);
  ASSERT_TRUE(answer.ok());
  ASSERT_EQ(answer->status, 200u);
  // A request is counted and logged just after its response went out.
  const auto log = access_log(2);  // probes and scrapes are not logged
  const std::string metrics = send(verb::get, "/metrics")->body;
  for (const std::string name :
       {"infergate_gateway_requests_total{code=\"200\"} 2.0",
        "infergate_gateway_request_duration_seconds_count 2.0",
        "infergate_gateway_ttft_seconds_count 2.0", "inference_objective_request_total{",
        "inference_pool_ready_pods", "infergate_gateway_upstream_connections_total"}) {
    EXPECT_NE(metrics.find(name), std::string::npos) << name;
  }
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0]["path"], "/v1/models");
  const json& entry = log[1];
  EXPECT_EQ(entry["method"], "POST");
  EXPECT_EQ(entry["path"], "/v1/completions");
  EXPECT_EQ(entry["status"], 200);
  EXPECT_EQ(entry["model"], kModel);
  EXPECT_EQ(entry["target_model"], kModel);
  EXPECT_EQ(entry["endpoint"], served_by(*answer));
  EXPECT_EQ(entry["attempts"], 1);
  EXPECT_EQ(entry["completion_tokens"], 3);
  EXPECT_GT(entry["prompt_tokens"].get<int>(), 0);
  EXPECT_GT(entry["ttft_ms"].get<double>(), 0);
  EXPECT_GE(entry["duration_ms"].get<double>(), entry["ttft_ms"].get<double>());
  EXPECT_EQ(entry["request_id"].get<std::string>().size(), 36u);  // a generated UUID
}

TEST_F(GatewayTest, StopDrainsAStreamInFlight) {
  start_gateway(default_options());
  const std::uint16_t port = gateway_->port();
  std::vector<std::string> events;
  std::thread stopper;
  run_client([&](asio::any_io_executor executor) -> asio::awaitable<void> {
    http::ClientConnection connection(executor);
    const std::string host = "127.0.0.1";
    if (!(co_await connection.connect(host, gateway_->port(), kTimeout)).is_ok()) co_return;
    auto request = http::make_request(verb::post, "/v1/completions",
                                      completion_body(kModel, "drain me", 25, true));
    if (!(co_await connection.send_request(std::move(request), kTimeout)).is_ok()) co_return;
    if (!(co_await connection.read_response_head(kTimeout)).ok()) co_return;
    http::SseParser parser;
    while (true) {
      std::string chunk;
      auto read = co_await connection.read_body_some(chunk, kTimeout);
      if (!read.ok() || *read == 0) break;
      parser.feed(chunk, [&](std::string_view data) { events.emplace_back(data); });
      // Shut down as soon as the stream is under way.
      if (!stopper.joinable()) stopper = std::thread([this] { gateway_->stop(); });
    }
  });
  ASSERT_TRUE(stopper.joinable());
  stopper.join();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back(), "[DONE]") << "the stream finished during the drain";
  EXPECT_EQ(gateway_->in_flight(), 0);
  // The listener is closed.
  auto refused = http::fetch_blocking("127.0.0.1", port, http::make_request(verb::get, "/healthz"),
                                      milliseconds(500));
  EXPECT_FALSE(refused.ok());
}

// One io_context per worker: concurrent clients land on both workers' listeners, every request
// succeeds, and each worker reuses its own upstream connections.
TEST_F(GatewayTest, ConcurrentClientsReusePooledUpstreamConnectionsOnEveryWorker) {
  start_gateway(default_options());
  constexpr int kClients = 8;
  constexpr int kRequestsPerClient = 4;
  int answered = 0;
  run_client([&](asio::any_io_executor executor) -> asio::awaitable<void> {
    for (int client_idx = 0; client_idx < kClients; ++client_idx) {
      asio::co_spawn(
          executor,
          [&, executor, client_idx]() -> asio::awaitable<void> {
            http::ClientConnection connection(executor);
            const std::string host = "127.0.0.1";
            if (!(co_await connection.connect(host, gateway_->port(), kTimeout)).is_ok()) co_return;
            for (int request_idx = 0; request_idx < kRequestsPerClient; ++request_idx) {
              const std::string prompt = "client " + std::to_string(client_idx) + " request " +
                                         std::to_string(request_idx);
              auto response = co_await connection.request(
                  http::make_request(verb::post, "/v1/completions",
                                     completion_body(kModel, prompt, 1)),
                  kTimeout);
              if (!response.ok() || response->status != 200u) co_return;
              ++answered;
            }
          },
          asio::detached);
    }
    co_return;
  });
  EXPECT_EQ(answered, kClients * kRequestsPerClient);
  // Each request takes one pooled connection or opens one; a worker needs at most one per
  // endpoint for each of its clients' requests in flight, so 3 endpoints x 8 clients at most.
  const gateway::UpstreamPoolStats& pool = gateway_->upstream_pool().stats();
  EXPECT_EQ(pool.opened.load() + pool.reused.load(),
            static_cast<std::uint64_t>(kClients * kRequestsPerClient));
  EXPECT_LE(pool.opened.load(), static_cast<std::uint64_t>(3 * kClients));
  EXPECT_GT(pool.reused.load(), 0u);
}

// Every worker listens with SO_REUSEPORT; a second gateway on the same port must not quietly
// share it.
TEST_F(GatewayTest, APortInUseFailsToStartWithAClearMessage) {
  start_gateway(default_options());
  gateway::GatewayOptions options = default_options();
  options.port = gateway_->port();
  try {
    gateway::Gateway second(std::move(options));
    ADD_FAILURE() << "a second gateway started on port " << gateway_->port();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("another process is listening on the port"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace infergate
