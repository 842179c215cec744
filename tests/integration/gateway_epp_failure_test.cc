// `infergate serve --epp`: the gateway's answers when the external EPP fails on the response path,
// against a scripted ext_proc server (fake_epp.h) that routes to a simulated vLLM server and then
// fails at the response headers, part-way through the response body, or not at all, or hangs.
// Before any byte went to the client FailOpen relays the upstream's response unchanged and
// FailClose answers the OpenAI-style error; after bytes went out the response is cut off
// (outcome "truncated"). In every case the model server's request is released.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/verb.hpp>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "gateway/gateway.h"
#include "http/client.h"
#include "http/sse.h"
#include "integration/fake_epp.h"
#include "integration/support.h"
#include "sim/server.h"

namespace infergate {
namespace {

using test_support::eventually;
using test_support::FakeEpp;
using test_support::FakeEppScript;
using test_support::LineSink;

namespace asio = boost::asio;
using boost::beast::http::verb;
using nlohmann::json;
using std::chrono::milliseconds;
using Response = FakeEppScript::Response;

constexpr std::string_view kTargetModel = "meta-llama/Llama-3.1-8B-Instruct";
constexpr std::string_view kClientModel = "food-review";
constexpr milliseconds kTimeout{10000};

std::string completion_body(int max_tokens) {
  return json{{"model", kClientModel},
              {"prompt", "Tell me about food."},
              {"max_tokens", max_tokens},
              {"ignore_eos", true}}
      .dump();
}

std::string chat_stream_body(int max_tokens) {
  return json{{"model", kClientModel},
              {"messages", {{{"role", "user"}, {"content", "What is good to eat?"}}}},
              {"max_tokens", max_tokens},
              {"ignore_eos", true},
              {"stream", true}}
      .dump();
}

// What a streaming client saw.
struct StreamSeen {
  unsigned status = 0;
  std::string content_type;
  std::vector<std::string> events;  // SSE data fields
  bool complete = false;            // the body ended properly (terminating chunk)
  bool broke = false;               // the body broke off (connection closed mid-body)
};

class EppFailureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sim::SimOptions options;
    options.port = 0;
    options.time_scale = 1;  // real time: a stream takes several decode steps
    options.seed = 1;
    options.engine.max_model_len = 8192;
    options.engine.step_time.fixed_ms = 10;
    options.engine.step_time.frontend_ms = 2;
    sim_ = std::make_unique<sim::SimServer>(sim_io_, options);
    sim_->start();
    sim_thread_ = std::thread([this] { sim_io_.run(); });
  }

  void TearDown() override {
    if (gateway_) gateway_->stop();
    gateway_.reset();
    epp_.reset();
    asio::post(sim_io_, [this] { sim_->stop(); });
    sim_io_.stop();
    sim_thread_.join();
    sim_.reset();
  }

  std::string sim_endpoint() const { return fmt::format("127.0.0.1:{}", sim_->port()); }

  // The fake EPP naming the sim, rewriting the client's model to the sim's (and back when it
  // passes the response through), then acting on the response path as `response` says.
  void script(Response response, int body_messages_passed = 0, std::size_t partial_bytes = 0) {
    epp_->set_script(
        {.destination = sim_endpoint(),
         .response = response,
         .body_messages_passed = body_messages_passed,
         .partial_bytes = partial_bytes,
         .model_rewrite = std::pair(std::string(kClientModel), std::string(kTargetModel))});
  }

  void start_gateway(extproc::FailureMode mode, milliseconds message_timeout = milliseconds(5000)) {
    gateway::GatewayOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = 1;
    options.refresh_metrics_interval = milliseconds(10);
    options.access_logger = std::make_shared<spdlog::logger>("access", access_sink_);
    options.access_logger->set_pattern("%v");
    options.seed = 7;
    options.epp = extproc::ExtProcClientOptions{
        .target = epp_->target(), .message_timeout = message_timeout, .failure_mode = mode};
    gateway_ = std::make_unique<gateway::Gateway>(std::move(options));
    gateway_->start();
  }

  Result<http::ClientResponse> complete(int max_tokens) {
    http::Request request =
        http::make_request(verb::post, "/v1/completions", completion_body(max_tokens));
    return http::fetch_blocking("127.0.0.1", gateway_->port(), std::move(request), kTimeout);
  }

  StreamSeen stream(int max_tokens) {
    StreamSeen seen;
    asio::io_context io;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          http::ClientConnection connection(io.get_executor());
          const std::string host = "127.0.0.1";
          if (!(co_await connection.connect(host, gateway_->port(), kTimeout)).is_ok()) co_return;
          http::Request request =
              http::make_request(verb::post, "/v1/chat/completions", chat_stream_body(max_tokens));
          if (!(co_await connection.send_request(std::move(request), kTimeout)).is_ok()) {
            co_return;
          }
          auto head = co_await connection.read_response_head(kTimeout);
          if (!head.ok()) co_return;
          seen.status = head->status;
          seen.content_type =
              std::string(http::find_header(head->headers, "content-type").value_or(""));
          http::SseParser parser;
          for (;;) {
            std::string chunk;
            auto read = co_await connection.read_body_some(chunk, kTimeout);
            parser.feed(chunk, [&](std::string_view data) { seen.events.emplace_back(data); });
            if (!read.ok()) {
              seen.broke = true;
              break;
            }
            if (*read == 0) {
              seen.complete = true;
              break;
            }
          }
        },
        [](const std::exception_ptr& error) {
          if (error) std::rethrow_exception(error);
        });
    io.run();
    return seen;
  }

  // Sends requests the EPP answers in full until one succeeds (the channel to the EPP is open
  // then); how many were sent.
  int warm_up() {
    script(Response::kPass);
    int sent = 0;
    const bool succeeded = eventually([&] {
      ++sent;
      auto response = complete(1);
      return response.ok() && response->status == 200u;
    });
    EXPECT_TRUE(succeeded);
    return sent;
  }

  // Requests the sim's engine holds (running + waiting), read on the sim's thread.
  int sim_requests_in_engine() {
    std::promise<int> total;
    asio::post(sim_io_, [&] {
      total.set_value(sim_->engine().num_running() + sim_->engine().num_waiting());
    });
    return total.get_future().get();
  }

  // Nothing held anywhere: the gateway's request, the sim's, the ext_proc stream.
  // A stream whose EPP fails after passing its first events, in `mode` (defined below).
  void expect_truncated_mid_stream(extproc::FailureMode mode);

  void expect_released() {
    EXPECT_TRUE(eventually([&] { return gateway_->in_flight() == 0; }));
    EXPECT_TRUE(eventually([&] { return sim_requests_in_engine() == 0; }))
        << "the model server's request was released";
    EXPECT_TRUE(eventually([&] { return epp_->active_streams() == 0; }))
        << "the ext_proc stream ended";
  }

  // The last of `expected` access-log lines.
  json access_log_entry(std::size_t expected = 1) {
    eventually([&] { return access_sink_->lines().size() >= expected; });
    const std::vector<std::string> lines = access_sink_->lines();
    EXPECT_EQ(lines.size(), expected);
    return lines.empty() ? json() : json::parse(lines.back());
  }

  // infergate_gateway_epp_failures_total{kind,outcome} as exposed (0 when absent).
  double epp_failures(std::string_view kind, std::string_view outcome) {
    const std::string exposed = gateway_->registry().expose();
    const std::string series = fmt::format(
        R"(infergate_gateway_epp_failures_total{{kind="{}",outcome="{}"}} )", kind, outcome);
    const std::size_t at = exposed.find(series);
    if (at == std::string::npos) return 0;
    return std::stod(exposed.substr(at + series.size()));
  }

  asio::io_context sim_io_{1};
  std::unique_ptr<sim::SimServer> sim_;
  std::thread sim_thread_;
  std::unique_ptr<FakeEpp> epp_ = std::make_unique<FakeEpp>();
  std::shared_ptr<LineSink> access_sink_ = std::make_shared<LineSink>();
  std::unique_ptr<gateway::Gateway> gateway_;
};

// The baseline: the fake EPP passing everything through restores the client's model name.
TEST_F(EppFailureTest, AnEppThatAnswersRestoresTheModelName) {
  script(Response::kPass);
  start_gateway(extproc::FailureMode::kFailClose);
  auto response = complete(3);
  ASSERT_TRUE(response.ok()) << response.status().message();
  ASSERT_EQ(response->status, 200u) << response->body;
  EXPECT_EQ(json::parse(response->body)["model"], kClientModel);
  EXPECT_EQ(epp_->last_served(), sim_endpoint());
  EXPECT_EQ(access_log_entry()["endpoint"], sim_endpoint());
  expect_released();
}

TEST_F(EppFailureTest, FailOpenAtTheResponseHeadersRelaysTheUpstreamResponseUnchanged) {
  script(Response::kFailAtHeaders);
  start_gateway(extproc::FailureMode::kFailOpen);
  auto response = complete(3);
  ASSERT_TRUE(response.ok()) << response.status().message();
  ASSERT_EQ(response->status, 200u) << response->body;
  const json body = json::parse(response->body);
  EXPECT_EQ(body["model"], kTargetModel) << "as the model server sent it (no EPP to restore it)";
  EXPECT_EQ(body["usage"]["completion_tokens"], 3);
  EXPECT_EQ(epp_failures("stream_broken", "fail_open"), 1.0);
  EXPECT_EQ(gateway_->metrics().errors("epp_failure"), 0.0);
  const json entry = access_log_entry();
  EXPECT_EQ(entry["status"], 200);
  EXPECT_EQ(entry["endpoint"], sim_endpoint());
  EXPECT_EQ(entry["error"], "");
  expect_released();
}

TEST_F(EppFailureTest, FailOpenInTheBodyOfAWholeResponseRelaysItUnchanged) {
  // The EPP returns the body's first bytes, then fails: nothing went to the client yet.
  script(Response::kFailInBody, /*body_messages_passed=*/0, /*partial_bytes=*/16);
  start_gateway(extproc::FailureMode::kFailOpen);
  auto response = complete(3);
  ASSERT_TRUE(response.ok()) << response.status().message();
  ASSERT_EQ(response->status, 200u) << response->body;
  // Exactly the upstream's body, once (not the EPP's partial answer in front of it).
  const json body = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(body.is_discarded()) << response->body;
  EXPECT_EQ(body["model"], kTargetModel);
  EXPECT_EQ(body["usage"]["completion_tokens"], 3);
  EXPECT_EQ(http::find_header(response->headers, "content-length").value_or(""),
            std::to_string(response->body.size()));
  EXPECT_EQ(epp_failures("stream_broken", "fail_open"), 1.0);
  EXPECT_EQ(gateway_->metrics().errors("epp_failure"), 0.0);
  const json entry = access_log_entry();
  EXPECT_EQ(entry["status"], 200);
  EXPECT_EQ(entry["endpoint"], sim_endpoint());
  expect_released();
}

TEST_F(EppFailureTest, FailOpenAtTheHeadersOfAStreamRelaysTheWholeStream) {
  script(Response::kFailAtHeaders);
  start_gateway(extproc::FailureMode::kFailOpen);
  const StreamSeen seen = stream(4);
  EXPECT_EQ(seen.status, 200u);
  EXPECT_EQ(seen.content_type, "text/event-stream");
  EXPECT_TRUE(seen.complete);
  ASSERT_GE(seen.events.size(), 5u) << "the role, 4 tokens and [DONE]";
  EXPECT_EQ(seen.events.back(), "[DONE]");
  for (std::size_t event_idx = 0; event_idx + 1 < seen.events.size(); ++event_idx) {
    EXPECT_EQ(json::parse(seen.events[event_idx])["model"], kTargetModel) << seen.events[event_idx];
  }
  EXPECT_EQ(epp_failures("stream_broken", "fail_open"), 1.0);
  EXPECT_EQ(gateway_->metrics().errors("epp_failure"), 0.0);
  EXPECT_EQ(access_log_entry()["status"], 200);
  expect_released();
}

TEST_F(EppFailureTest, FailCloseAtTheResponseHeadersAnswersTheError) {
  script(Response::kFailAtHeaders);
  start_gateway(extproc::FailureMode::kFailClose);
  auto response = complete(3);
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 503u) << response->body;
  EXPECT_EQ(http::find_header(response->headers, "content-type").value_or(""), "application/json");
  const json error = json::parse(response->body);
  EXPECT_EQ(error["error"]["code"], 503);
  const std::string message = error["error"]["message"];
  EXPECT_NE(message.find("endpoint picker unavailable"), std::string::npos) << message;
  EXPECT_NE(message.find("scripted endpoint picker failure"), std::string::npos) << message;
  EXPECT_EQ(epp_failures("stream_broken", "fail_close"), 1.0);
  EXPECT_EQ(gateway_->metrics().errors("epp_failure"), 1.0);
  const json entry = access_log_entry();
  EXPECT_EQ(entry["status"], 503);
  EXPECT_EQ(entry["endpoint"], sim_endpoint());
  EXPECT_EQ(entry["error"], message);
  expect_released();
}

TEST_F(EppFailureTest, FailCloseInTheBodyOfAWholeResponseAnswersTheError) {
  script(Response::kFailInBody, /*body_messages_passed=*/0, /*partial_bytes=*/16);
  start_gateway(extproc::FailureMode::kFailClose);
  auto response = complete(3);
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 503u) << response->body;
  const json error = json::parse(response->body);
  EXPECT_EQ(error["error"]["code"], 503);
  EXPECT_NE(error["error"]["message"].get<std::string>().find("endpoint picker unavailable"),
            std::string::npos)
      << response->body;
  EXPECT_EQ(epp_failures("stream_broken", "fail_close"), 1.0);
  EXPECT_EQ(gateway_->metrics().errors("epp_failure"), 1.0);
  EXPECT_EQ(access_log_entry()["status"], 503);
  expect_released();
}

// After the first events went out, an EPP failure can only cut the stream off, whatever the mode.
void EppFailureTest::expect_truncated_mid_stream(extproc::FailureMode mode) {
  script(Response::kFailInBody, /*body_messages_passed=*/1);
  start_gateway(mode);
  const StreamSeen seen = stream(8);
  EXPECT_EQ(seen.status, 200u);
  EXPECT_EQ(seen.content_type, "text/event-stream");
  EXPECT_FALSE(seen.events.empty()) << "the events the EPP passed reached the client";
  for (const std::string& event : seen.events) {
    EXPECT_NE(event, "[DONE]");
    EXPECT_EQ(json::parse(event)["model"], kClientModel) << event;
  }
  EXPECT_TRUE(seen.broke) << "the chunked body is not terminated";
  EXPECT_FALSE(seen.complete);
  EXPECT_EQ(epp_failures("stream_broken", "truncated"), 1.0);
  EXPECT_EQ(epp_failures("stream_broken", "fail_open"), 0.0);
  EXPECT_EQ(epp_failures("stream_broken", "fail_close"), 0.0);
  EXPECT_EQ(gateway_->metrics().errors("epp_failure"), 1.0);
  const json entry = access_log_entry();
  EXPECT_EQ(entry["status"], 200);
  EXPECT_NE(entry["error"].get<std::string>().find("scripted endpoint picker failure"),
            std::string::npos)
      << entry;
  expect_released();
}

TEST_F(EppFailureTest, FailOpenMidStreamTruncatesTheResponse) {
  expect_truncated_mid_stream(extproc::FailureMode::kFailOpen);
}

TEST_F(EppFailureTest, FailCloseMidStreamTruncatesTheResponse) {
  expect_truncated_mid_stream(extproc::FailureMode::kFailClose);
}

// The message timeout bounds every expected answer, the request path's too (and the stream's
// connection attempt): requests are answered in full until one succeeds, the channel is open
// then, so that only the response headers can time out. Counts are taken across that.
constexpr milliseconds kShortMessageTimeout{500};

TEST_F(EppFailureTest, AnEppHangingAtTheResponseHeadersTimesOutIntoFailOpen) {
  start_gateway(extproc::FailureMode::kFailOpen, kShortMessageTimeout);
  const int warm_ups = warm_up();
  const double failures_before = epp_failures("timeout", "fail_open");
  const int heads_before = epp_->response_heads();
  script(Response::kHang);
  auto response = complete(3);
  ASSERT_TRUE(response.ok()) << response.status().message();
  ASSERT_EQ(response->status, 200u) << response->body;
  EXPECT_EQ(json::parse(response->body)["model"], kTargetModel);
  EXPECT_EQ(epp_->response_heads(), heads_before + 1) << "the response headers reached the EPP";
  EXPECT_EQ(epp_failures("timeout", "fail_open"), failures_before + 1);
  EXPECT_EQ(gateway_->metrics().errors("epp_failure"), 0.0);
  const json entry = access_log_entry(static_cast<std::size_t>(warm_ups) + 1);
  EXPECT_EQ(entry["status"], 200);
  EXPECT_EQ(entry["endpoint"], sim_endpoint());
  expect_released();
}

TEST_F(EppFailureTest, AnEppHangingAtTheResponseHeadersTimesOutIntoFailClose) {
  start_gateway(extproc::FailureMode::kFailClose, kShortMessageTimeout);
  const int warm_ups = warm_up();
  const double failures_before = epp_failures("timeout", "fail_close");
  const double errors_before = gateway_->metrics().errors("epp_failure");
  const int heads_before = epp_->response_heads();
  script(Response::kHang);
  auto response = complete(3);
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 503u) << response->body;
  EXPECT_NE(response->body.find(fmt::format("no answer from the endpoint picker within {} ms",
                                            kShortMessageTimeout.count())),
            std::string::npos)
      << response->body;
  EXPECT_EQ(epp_->response_heads(), heads_before + 1) << "the response headers reached the EPP";
  EXPECT_EQ(epp_failures("timeout", "fail_close"), failures_before + 1);
  EXPECT_EQ(gateway_->metrics().errors("epp_failure"), errors_before + 1);
  const json entry = access_log_entry(static_cast<std::size_t>(warm_ups) + 1);
  EXPECT_EQ(entry["status"], 503);
  EXPECT_EQ(entry["endpoint"], sim_endpoint()) << "the upstream had answered";
  expect_released();
}

}  // namespace
}  // namespace infergate
