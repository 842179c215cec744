// The gateway's ext_proc client against the real `infergate epp` on loopback: three simulated
// vLLM servers, the EPP runner in-process (ports 0), and ExtProcClient exchanges run as
// coroutines on a client io_context, exactly as the gateway's proxy would run them: route through
// the EPP, send the rewritten body to the chosen simulator, play its response back through the
// EPP. Also: local replies, an EPP that is down or silent, cancellation, TLS, concurrency.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "datastore/datastore.h"
#include "director/protocol.h"
#include "extproc/client.h"
#include "extproc/epp.h"
#include "extproc/server.h"
#include "extproc/tls.h"
#include "http/client.h"
#include "integration/support.h"
#include "prom/registry.h"
#include "sim/server.h"

namespace infergate {
namespace {

using test_support::eventually;
using test_support::TempFile;

namespace asio = boost::asio;
using extproc::BodyPiece;
using extproc::ExtProcClient;
using extproc::ExtProcClientOptions;
using extproc::ExtProcErrorKind;
using extproc::ExtProcExchange;

constexpr std::string_view kTargetModel = "meta-llama/Llama-3.1-8B-Instruct";
constexpr std::string_view kClientModel = "food-review";
constexpr auto kTimeout = std::chrono::seconds(20);
// Named constants: GCC 12 miscompiles string literals passed straight into co_await expressions.
const std::string kChatPath = "/v1/chat/completions";
const std::string kModelsPath = "/v1/models";
const std::string kLoopback = "127.0.0.1";
const director::Headers kSseHead = {{":status", "200"}, {"content-type", "text/event-stream"}};
const director::Headers kJsonHead = {{":status", "200"}, {"content-type", "application/json"}};
const director::Headers kEmptyHead = {{":status", "200"}, {"content-length", "0"}};

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

std::string restored(const std::string& upstream_body) {
  return replace_all(upstream_body, fmt::format("\"model\":\"{}\"", kTargetModel),
                     fmt::format("\"model\":\"{}\"", kClientModel));
}

std::string header(const director::Headers& headers, std::string_view name) {
  auto value = director::find_header(headers, name);
  return value ? std::string(*value) : std::string();
}

director::Headers request_headers(std::string_view path, std::size_t body_bytes) {
  director::Headers headers = {{":method", body_bytes > 0 ? "POST" : "GET"},
                               {":path", std::string(path)},
                               {":authority", "gateway.example.com"},
                               {":scheme", "http"},
                               {"x-request-id", "req-1"}};
  if (body_bytes > 0) {
    headers.emplace_back("content-type", "application/json");
    headers.emplace_back("content-length", std::to_string(body_bytes));
  }
  return headers;
}

std::string chat_body(std::string_view model, std::string_view prompt, bool stream) {
  nlohmann::json body = {{"model", model},
                         {"messages", {{{"role", "user"}, {"content", prompt}}}},
                         {"max_tokens", 6},
                         {"ignore_eos", true},
                         {"stream", stream}};
  if (stream) body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

// The upstream's response head as the client sends it: ":status" first, names lower-cased.
director::Headers response_headers(const http::ClientResponse& response) {
  director::Headers headers = {{":status", std::to_string(response.status)}};
  for (const auto& [name, value] : response.headers) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    headers.emplace_back(std::move(lower), value);
  }
  return headers;
}

// Plays `body` through the exchange in pieces cut at `cuts`, the way a relay does: one loop sends
// upstream pieces, another hands the EPP's answers on as they come. Returns the bytes relayed.
asio::awaitable<extproc::ExtProcResult<std::string>> relay_body(ExtProcExchange& exchange,
                                                                const std::string& body,
                                                                std::vector<std::size_t> cuts) {
  using namespace asio::experimental::awaitable_operators;
  cuts.push_back(body.size());
  auto upstream_to_epp = [&]() -> asio::awaitable<void> {
    std::size_t start = 0;
    for (std::size_t piece = 0; piece < cuts.size(); ++piece) {
      if (!exchange.send_response_body(std::string_view(body).substr(start, cuts[piece] - start),
                                       piece + 1 == cuts.size())) {
        co_return;
      }
      start = cuts[piece];
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    }
  };
  std::optional<extproc::ExtProcError> error;
  std::string relayed;
  auto epp_to_client = [&]() -> asio::awaitable<void> {
    for (;;) {
      auto piece = co_await exchange.next_response_body();
      if (!piece) {
        error = piece.error();
        co_return;
      }
      relayed += piece->bytes;
      if (piece->end_of_stream) co_return;
    }
  };
  co_await (upstream_to_epp() && epp_to_client());
  if (error) co_return *error;
  co_return relayed;
}

class ExtProcClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      sim::SimOptions options;
      options.port = 0;
      options.time_scale = 20;
      options.engine.max_model_len = 4096;
      sims_.push_back(std::make_unique<sim::SimServer>(sim_io_, options));
      sims_.back()->start();
    }
    sim_thread_ = std::thread([this] { sim_io_.run(); });
    for (int i = 0; i < 2; ++i) client_threads_.emplace_back([this] { client_io_.run(); });
    resources_ = std::make_unique<TempFile>("resources.yaml", test_support::kSimPoolResources);
  }

  void TearDown() override {
    // Streams end in the background after their exchange is gone; they update the registry.
    EXPECT_TRUE(eventually([&] {
      const std::string text = registry_.expose();
      return text.find("infergate_extproc_client_active_streams") == std::string::npos ||
             text.find("infergate_extproc_client_active_streams 0.0") != std::string::npos;
    }));
    clients_.clear();
    if (runner_) runner_->stop();
    runner_.reset();
    work_.reset();
    for (auto& thread : client_threads_) thread.join();
    asio::post(sim_io_, [this] {
      for (auto& sim : sims_) sim->stop();
    });
    sim_io_.stop();
    sim_thread_.join();
    sims_.clear();
  }

  extproc::EppOptions epp_options() {
    extproc::EppOptions options;
    options.bind_address = "127.0.0.1";
    options.grpc_port = 0;
    options.grpc_health_port = 0;
    options.metrics_port = 0;
    options.secure_serving = false;
    options.refresh_metrics_interval = std::chrono::milliseconds(10);
    options.resources_file = resources_->path();
    options.conformance_test_hooks = true;  // x-conformance-test-served-endpoint
    options.max_request_body_bytes = 64 * 1024;
    for (const auto& sim : sims_) {
      options.endpoints.push_back(fmt::format("127.0.0.1:{}", sim->port()));
    }
    options.seed = 7;
    options.shutdown_grace = std::chrono::milliseconds(500);
    return options;
  }

  void start_epp(extproc::EppOptions options) {
    runner_ = std::make_unique<extproc::EppRunner>(std::move(options));
    runner_->start();
  }

  ExtProcClient& make_client(ExtProcClientOptions options = {}) {
    if (options.target.empty()) options.target = fmt::format("127.0.0.1:{}", runner_->grpc_port());
    clients_.push_back(std::make_unique<ExtProcClient>(std::move(options), registry_));
    return *clients_.back();
  }

  // Runs `coroutine` on a strand of the client io_context and waits for its result.
  template <typename T>
  T run(asio::awaitable<T> coroutine) {
    std::optional<T> out;  // results need not be default-constructible, as co_spawn wants
    std::future<void> done = asio::co_spawn(
        asio::make_strand(client_io_),
        [&]() -> asio::awaitable<void> { out.emplace(co_await std::move(coroutine)); },
        asio::use_future);
    EXPECT_EQ(done.wait_for(kTimeout), std::future_status::ready);
    done.get();
    return std::move(*out);
  }

  int sim_index(const std::string& host_port) const {
    for (std::size_t i = 0; i < sims_.size(); ++i) {
      if (host_port == fmt::format("127.0.0.1:{}", sims_[i]->port())) return static_cast<int>(i);
    }
    return -1;
  }

  std::int64_t inflight(const std::string& host_port) {
    for (const auto& endpoint : runner_->datastore().snapshot()->endpoints) {
      if (endpoint.info->host_port == host_port) return endpoint.state->inflight_requests.load();
    }
    return -1;
  }

  bool all_released() {
    if (runner_->extproc_stats().active_streams.load() != 0) return false;
    for (const auto& endpoint : runner_->datastore().snapshot()->endpoints) {
      if (endpoint.state->inflight_requests.load() != 0) return false;
    }
    return true;
  }

  // Everything an exchange saw, for the assertions.
  struct Outcome {
    extproc::RequestDecision decision;
    std::string upstream_body;
    director::Headers response_headers;
    std::string relayed;
    std::optional<extproc::ExtProcError> error;
  };

  // One whole exchange as the gateway would run it, with the simulator as the upstream.
  asio::awaitable<Outcome> exchange_through_sim(ExtProcClient& client, std::string body,
                                                std::size_t cut_every) {
    Outcome outcome;
    auto exchange = client.start_exchange();
    director::Headers headers = request_headers(kChatPath, body.size());
    headers.emplace_back("x-gateway-destination-endpoint", "10.9.9.9:1");  // a client's attempt
    auto decision = co_await exchange->process_request(std::move(headers), body);
    if (!decision) {
      outcome.error = decision.error();
      co_return outcome;
    }
    outcome.decision = std::move(*decision);
    if (outcome.decision.immediate || outcome.decision.destinations.empty()) co_return outcome;
    const int index = sim_index(outcome.decision.destinations.front());
    if (index < 0) co_return outcome;
    auto upstream =
        co_await http::fetch(co_await asio::this_coro::executor, kLoopback,
                             sims_[static_cast<std::size_t>(index)]->port(),
                             http::make_request(boost::beast::http::verb::post,
                                                "/v1/chat/completions", outcome.decision.body),
                             kTimeout);
    if (!upstream.ok()) co_return outcome;
    outcome.upstream_body = upstream->body;
    auto head = co_await exchange->process_response_headers(response_headers(*upstream),
                                                            outcome.decision.destinations.front());
    if (!head) {
      outcome.error = head.error();
      co_return outcome;
    }
    outcome.response_headers = std::move(head->headers);
    std::vector<std::size_t> cuts;
    for (std::size_t at = cut_every; at < upstream->body.size(); at += cut_every) {
      cuts.push_back(at);
    }
    auto relayed = co_await relay_body(*exchange, upstream->body, cuts);
    if (!relayed) {
      outcome.error = relayed.error();
      co_return outcome;
    }
    outcome.relayed = std::move(*relayed);
    co_return outcome;
  }

  asio::io_context sim_io_{1};
  std::vector<std::unique_ptr<sim::SimServer>> sims_;
  std::thread sim_thread_;
  asio::io_context client_io_{2};
  asio::executor_work_guard<asio::io_context::executor_type> work_ =
      asio::make_work_guard(client_io_);
  std::vector<std::thread> client_threads_;
  std::unique_ptr<TempFile> resources_;
  std::unique_ptr<extproc::EppRunner> runner_;
  prom::Registry registry_;
  std::vector<std::unique_ptr<ExtProcClient>> clients_;
};

TEST_F(ExtProcClientTest, StreamedChatIsRoutedRewrittenAndRestored) {
  start_epp(epp_options());
  ExtProcClient& client = make_client();
  const std::string body = chat_body(kClientModel, "Tell me about food.", true);
  Outcome outcome = run(exchange_through_sim(client, body, 17));
  ASSERT_FALSE(outcome.error) << outcome.error->message;
  const extproc::RequestDecision& decision = outcome.decision;
  ASSERT_FALSE(decision.immediate) << decision.immediate->body;
  ASSERT_EQ(decision.destinations.size(), 1u);
  EXPECT_GE(sim_index(decision.destinations[0]), 0) << decision.destination;
  EXPECT_EQ(decision.destination, decision.destinations[0]);
  EXPECT_TRUE(decision.clear_route_cache);
  EXPECT_EQ(decision.body, replace_all(body, kClientModel, kTargetModel));
  EXPECT_EQ(header(decision.headers, "content-length"), std::to_string(decision.body.size()));
  EXPECT_EQ(header(decision.headers, "x-gateway-destination-endpoint"), decision.destination)
      << "the client's own destination header was stripped and the EPP's applied";
  EXPECT_EQ(header(decision.headers, "x-request-id"), "req-1");
  EXPECT_EQ(header(decision.headers, ":path"), "/v1/chat/completions");
  const auto lb = std::find_if(
      decision.lb_metadata.begin(), decision.lb_metadata.end(),
      [](const auto& entry) { return entry.first == director::protocol::kDestinationHeader; });
  ASSERT_NE(lb, decision.lb_metadata.end());
  EXPECT_EQ(lb->second, decision.destination);

  EXPECT_EQ(header(outcome.response_headers, "x-conformance-test-served-endpoint"),
            decision.destinations[0])
      << "the served endpoint reached the EPP in the envoy.lb metadata";
  EXPECT_EQ(header(outcome.response_headers, ":status"), "200");
  EXPECT_NE(outcome.upstream_body.find(fmt::format("\"model\":\"{}\"", kTargetModel)),
            std::string::npos);
  EXPECT_EQ(outcome.relayed, restored(outcome.upstream_body));
  EXPECT_NE(outcome.relayed.find("data: [DONE]"), std::string::npos);
  EXPECT_TRUE(eventually([&] { return all_released(); }));
}

TEST_F(ExtProcClientTest, JsonResponseIsRestoredWhenSplitAnywhere) {
  start_epp(epp_options());
  ExtProcClient& client = make_client({.body_chunk_bytes = 100});
  const std::string body = chat_body(kClientModel, std::string(1500, 'x'), false);
  for (std::size_t cut : {7u, 64u, 1000u}) {
    Outcome outcome = run(exchange_through_sim(client, body, cut));
    ASSERT_FALSE(outcome.error) << outcome.error->message;
    ASSERT_FALSE(outcome.decision.immediate);
    EXPECT_EQ(outcome.decision.body, replace_all(body, kClientModel, kTargetModel))
        << "a body sent in 100-byte chunks comes back whole";
    EXPECT_EQ(outcome.relayed, restored(outcome.upstream_body)) << "cut every " << cut;
    EXPECT_NE(outcome.relayed.find("\"usage\""), std::string::npos);
  }
  EXPECT_TRUE(eventually([&] { return all_released(); }));
}

TEST_F(ExtProcClientTest, SseChunksComeBackBeforeTheResponseEnds) {
  start_epp(epp_options());
  ExtProcClient& client = make_client();
  const std::string first_event = fmt::format(
      "data: {{\"id\":\"c\",\"model\":\"{}\",\"choices\":[{{\"delta\":{{\"content\":\"hi\"}}}}]}}"
      "\n\n",
      kTargetModel);
  auto exchange = client.start_exchange();
  const std::string body = chat_body(kClientModel, "hello", true);
  auto flow = [&]() -> asio::awaitable<std::string> {
    auto decision =
        co_await exchange->process_request(request_headers(kChatPath, body.size()), body);
    if (!decision || decision->immediate) co_return std::string("not routed");
    auto head =
        co_await exchange->process_response_headers(kSseHead, decision->destinations.front());
    if (!head) co_return head.error().message;
    if (!exchange->send_response_body(first_event, false)) co_return std::string("send failed");
    // The end of the response has not been sent: the answer must come anyway.
    auto piece = co_await exchange->next_response_body();
    if (!piece) co_return piece.error().message;
    std::string out = piece->bytes;
    if (piece->end_of_stream) co_return std::string("early end");
    if (!exchange->send_response_body("data: [DONE]\n\n", true))
      co_return std::string("send failed");
    for (;;) {
      piece = co_await exchange->next_response_body();
      if (!piece) co_return piece.error().message;
      out += "|" + piece->bytes;
      if (piece->end_of_stream) break;
    }
    co_return out;
  };
  EXPECT_EQ(run(flow()), restored(first_event) + "|data: [DONE]\n\n");
  EXPECT_TRUE(exchange->done());
  EXPECT_TRUE(eventually([&] { return all_released(); }));
}

TEST_F(ExtProcClientTest, BodylessRequestGetsADestination) {
  start_epp(epp_options());
  ExtProcClient& client = make_client();
  auto exchange = client.start_exchange();
  auto flow = [&]() -> asio::awaitable<std::string> {
    auto decision =
        co_await exchange->process_request(request_headers(kModelsPath, 0), std::string());
    if (!decision || decision->immediate || decision->destinations.empty())
      co_return std::string("not routed");
    if (sim_index(decision->destinations.front()) < 0) co_return std::string("not in the pool");
    if (!decision->body.empty() || director::find_header(decision->headers, "content-length")) {
      co_return std::string("a body-less request stays body-less");
    }
    auto head =
        co_await exchange->process_response_headers(kEmptyHead, decision->destinations.front(),
                                                    /*end_of_stream=*/true);
    if (!head) co_return head.error().message;
    co_return header(head->headers, "x-conformance-test-served-endpoint") ==
            decision->destinations.front()
        ? std::string("ok")
        : "served endpoint not reported";
  };
  EXPECT_EQ(run(flow()), "ok");
  EXPECT_TRUE(exchange->done());
  EXPECT_TRUE(eventually([&] { return all_released(); }));
}

TEST_F(ExtProcClientTest, LocalRepliesPassThrough) {
  start_epp(epp_options());
  ExtProcClient& client = make_client({.body_chunk_bytes = 4096});
  struct Case {
    std::string description;
    std::string body;
    int status;
    std::string body_contains;
  };
  const std::vector<Case> cases = {
      {"unreadable body", "not json", 400, "BadRequest"},
      {"body over the EPP's limit", chat_body(kClientModel, std::string(70000, 'y'), false), 413,
       "PayloadTooLarge"},
  };
  for (const Case& c : cases) {
    auto exchange = client.start_exchange();
    auto decision = run(
        exchange->process_request(request_headers("/v1/chat/completions", c.body.size()), c.body));
    ASSERT_TRUE(decision.ok()) << c.description << ": " << decision.error().message;
    ASSERT_TRUE(decision->immediate) << c.description;
    EXPECT_EQ(decision->immediate->status, c.status) << c.description;
    EXPECT_NE(decision->immediate->body.find(c.body_contains), std::string::npos)
        << c.description << ": " << decision->immediate->body;
    EXPECT_EQ(header(decision->immediate->headers, "content-type"), "text/plain; charset=utf-8");
    EXPECT_FALSE(decision->immediate->details.empty());
    EXPECT_TRUE(exchange->done());
  }
  EXPECT_NE(registry_.expose().find(
                "infergate_extproc_client_immediate_responses_total{code=\"413\"} 1.0"),
            std::string::npos);
  EXPECT_TRUE(eventually([&] { return all_released(); }));
}

TEST_F(ExtProcClientTest, EppDownIsUnavailableAndMapsToTheFailureMode) {
  std::uint16_t closed_port = 0;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    closed_port = acceptor.local_endpoint().port();
  }
  const std::string body = chat_body(kClientModel, "hello", false);
  for (auto mode : {extproc::FailureMode::kFailOpen, extproc::FailureMode::kFailClose}) {
    ExtProcClient client({.target = fmt::format("127.0.0.1:{}", closed_port),
                          .message_timeout = std::chrono::milliseconds(5000),
                          .failure_mode = mode},
                         registry_);
    auto exchange = client.start_exchange();
    auto decision = run(exchange->process_request(request_headers(kChatPath, body.size()), body));
    ASSERT_FALSE(decision.ok());
    EXPECT_EQ(decision.error().kind, ExtProcErrorKind::kUnavailable) << decision.error().message;
    EXPECT_TRUE(exchange->done());
    std::optional<Status> reply = client.on_failure(decision.error());
    if (mode == extproc::FailureMode::kFailOpen) {
      EXPECT_FALSE(reply) << "FailOpen: the gateway continues without the EPP";
    } else {
      ASSERT_TRUE(reply);
      EXPECT_EQ(reply->http_status(), 503);
      EXPECT_NE(reply->to_openai_json().find("endpoint picker unavailable"), std::string::npos);
    }
  }
  const std::string metrics = registry_.expose();
  EXPECT_NE(metrics.find("infergate_extproc_client_errors_total{kind=\"unavailable\"} 2.0"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("infergate_extproc_client_failures_total{mode=\"fail_open\"} 1.0"),
            std::string::npos);
  EXPECT_NE(metrics.find("infergate_extproc_client_failures_total{mode=\"fail_close\"} 1.0"),
            std::string::npos);
}

// An ext_proc server that reads everything and never answers.
class SilentProcessor final : public extproc::pb::ExternalProcessor::CallbackService {
 public:
  ::grpc::ServerBidiReactor<extproc::pb::ProcessingRequest, extproc::pb::ProcessingResponse>*
  Process(::grpc::CallbackServerContext* /*context*/) override {
    return new Reactor();
  }

 private:
  class Reactor final : public ::grpc::ServerBidiReactor<extproc::pb::ProcessingRequest,
                                                         extproc::pb::ProcessingResponse> {
   public:
    Reactor() { StartRead(&request_); }
    void OnReadDone(bool ok) override {
      if (ok) {
        StartRead(&request_);
      } else {
        Finish(::grpc::Status::OK);  // the client half-closed or cancelled
      }
    }
    void OnDone() override { delete this; }

   private:
    extproc::pb::ProcessingRequest request_;
  };
};

TEST_F(ExtProcClientTest, SilentEppTimesOut) {
  SilentProcessor service;
  extproc::GrpcServer server({.address = kLoopback}, {&service});
  ExtProcClient client({.target = fmt::format("127.0.0.1:{}", server.port()),
                        .message_timeout = std::chrono::milliseconds(200)},
                       registry_);
  auto exchange = client.start_exchange();
  const std::string body = chat_body(kClientModel, "hello", false);
  const auto started = std::chrono::steady_clock::now();
  auto decision = run(exchange->process_request(request_headers(kChatPath, body.size()), body));
  ASSERT_FALSE(decision.ok());
  EXPECT_EQ(decision.error().kind, ExtProcErrorKind::kTimeout) << decision.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  EXPECT_NE(registry_.expose().find("infergate_extproc_client_errors_total{kind=\"timeout\"} 1.0"),
            std::string::npos);
}

// An ext_proc server answering each message with what `script` returns for it, in order: the
// misbehaving and the lightweight EPPs a gateway must cope with.
class ScriptedProcessor final : public extproc::pb::ExternalProcessor::CallbackService {
 public:
  using Script = std::function<std::vector<extproc::pb::ProcessingResponse>(
      const extproc::pb::ProcessingRequest&)>;
  explicit ScriptedProcessor(Script script) : script_(std::move(script)) {}

  ::grpc::ServerBidiReactor<extproc::pb::ProcessingRequest, extproc::pb::ProcessingResponse>*
  Process(::grpc::CallbackServerContext* /*context*/) override {
    return new Reactor(script_);
  }

 private:
  class Reactor final : public ::grpc::ServerBidiReactor<extproc::pb::ProcessingRequest,
                                                         extproc::pb::ProcessingResponse> {
   public:
    explicit Reactor(const Script& script) : script_(script) { StartRead(&request_); }
    void OnReadDone(bool ok) override {
      {
        std::lock_guard lock(mutex_);
        if (ok) {
          for (auto& answer : script_(request_)) queue_.push_back(std::move(answer));
        } else {
          reading_ = false;
        }
      }
      if (ok) StartRead(&request_);
      pump();
    }
    void OnWriteDone(bool ok) override {
      {
        std::lock_guard lock(mutex_);
        writing_ = false;
        if (!ok) queue_.clear();
      }
      pump();
    }
    void OnDone() override { delete this; }

   private:
    void pump() {
      bool finish = false;
      {
        std::lock_guard lock(mutex_);
        if (writing_ || finished_) return;
        if (!queue_.empty()) {
          current_ = std::move(queue_.front());
          queue_.pop_front();
          writing_ = true;
        } else if (!reading_) {
          finished_ = finish = true;
        } else {
          return;
        }
      }
      if (finish) {
        Finish(::grpc::Status::OK);
      } else {
        StartWrite(&current_);
      }
    }

    const Script& script_;
    extproc::pb::ProcessingRequest request_;
    std::mutex mutex_;
    std::deque<extproc::pb::ProcessingResponse> queue_;
    extproc::pb::ProcessingResponse current_;
    bool writing_ = false;
    bool reading_ = true;
    bool finished_ = false;
  };

  Script script_;
};

extproc::pb::ProcessingResponse headers_answer(bool request, const std::string& header_value,
                                               const std::string& metadata_value) {
  extproc::pb::ProcessingResponse answer;
  auto* common = request ? answer.mutable_request_headers()->mutable_response()
                         : answer.mutable_response_headers()->mutable_response();
  if (!header_value.empty()) {
    auto* header = common->mutable_header_mutation()->add_set_headers()->mutable_header();
    header->set_key(std::string(director::protocol::kDestinationHeader));
    header->set_raw_value(header_value);
  }
  if (!metadata_value.empty()) {
    auto& lb = *(*answer.mutable_dynamic_metadata()->mutable_fields())["envoy.lb"]
                    .mutable_struct_value()
                    ->mutable_fields();
    lb[std::string(director::protocol::kDestinationHeader)].set_string_value(metadata_value);
  }
  return answer;
}

TEST_F(ExtProcClientTest, ToleratesEmptyBodyAnswersAndPrefersTheMetadata) {
  // GIE's lightweight EPP answers each body chunk with an empty CommonResponse (pass-through);
  // this one also sends a header that disagrees with the metadata.
  ScriptedProcessor service([](const extproc::pb::ProcessingRequest& request) {
    std::vector<extproc::pb::ProcessingResponse> answers;
    if (request.has_request_headers()) {
      answers.push_back(headers_answer(true, "10.0.0.9:8000", "10.0.0.1:8000,10.0.0.2:8000"));
    } else if (request.has_request_body()) {
      answers.emplace_back().mutable_request_body();
    } else if (request.has_response_headers()) {
      answers.push_back(headers_answer(false, {}, {}));
    } else if (request.has_response_body()) {
      answers.emplace_back().mutable_response_body();
    }
    return answers;
  });
  extproc::GrpcServer server({.address = kLoopback}, {&service});
  ExtProcClient client(
      {.target = fmt::format("127.0.0.1:{}", server.port()), .body_chunk_bytes = 10}, registry_);
  auto exchange = client.start_exchange();
  const std::string body = chat_body(kClientModel, "hello", false);
  auto decision = run(exchange->process_request(request_headers(kChatPath, body.size()), body));
  ASSERT_TRUE(decision.ok()) << decision.error().message;
  EXPECT_EQ(decision->destinations, (std::vector<std::string>{"10.0.0.1:8000", "10.0.0.2:8000"}))
      << "the metadata wins, as with an override-host policy listing it first";
  EXPECT_EQ(decision->body, body) << "empty answers pass each chunk on unchanged";
  auto head = run(exchange->process_response_headers(kJsonHead, "10.0.0.1:8000"));
  ASSERT_TRUE(head.ok()) << head.error().message;
  const std::string upstream = R"({"model":"m","choices":[]})";
  const std::vector<std::size_t> cuts = {4, 9};
  auto relayed = run(relay_body(*exchange, upstream, cuts));
  ASSERT_TRUE(relayed.ok()) << relayed.error().message;
  EXPECT_EQ(*relayed, upstream);
  EXPECT_TRUE(exchange->done());
  const std::string metrics = registry_.expose();
  EXPECT_NE(metrics.find("infergate_extproc_client_protocol_errors_total{reason=\"destination_"
                         "mismatch\"} 1.0"),
            std::string::npos)
      << metrics;
}

TEST_F(ExtProcClientTest, SpuriousAnswerIsAProtocolError) {
  ScriptedProcessor service([](const extproc::pb::ProcessingRequest& request) {
    std::vector<extproc::pb::ProcessingResponse> answers;
    if (request.has_request_headers()) answers.emplace_back().mutable_response_body();
    return answers;
  });
  extproc::GrpcServer server({.address = kLoopback}, {&service});
  ExtProcClient client({.target = fmt::format("127.0.0.1:{}", server.port()),
                        .failure_mode = extproc::FailureMode::kFailOpen},
                       registry_);
  auto exchange = client.start_exchange();
  const std::string body = chat_body(kClientModel, "hello", false);
  auto decision = run(exchange->process_request(request_headers(kChatPath, body.size()), body));
  ASSERT_FALSE(decision.ok());
  EXPECT_EQ(decision.error().kind, ExtProcErrorKind::kProtocol) << decision.error().message;
  EXPECT_FALSE(client.on_failure(decision.error())) << "FailOpen: continue without the EPP";
  // Every later call reports the same error.
  auto head = run(exchange->process_response_headers(kJsonHead, "10.0.0.1:8000"));
  ASSERT_FALSE(head.ok());
  EXPECT_EQ(head.error().kind, ExtProcErrorKind::kProtocol);
}

TEST_F(ExtProcClientTest, CancelMidStreamReleasesTheEndpoint) {
  start_epp(epp_options());
  ExtProcClient& client = make_client();
  const std::string body = chat_body(kClientModel, "hello", true);
  for (bool destroy_instead : {false, true}) {
    auto exchange = client.start_exchange();
    auto routed = run(exchange->process_request(request_headers(kChatPath, body.size()), body));
    ASSERT_TRUE(routed.ok() && !routed->immediate && !routed->destinations.empty());
    const std::string chosen = routed->destinations.front();
    EXPECT_EQ(inflight(chosen), 1) << "routed, response not yet complete";
    auto head = run(exchange->process_response_headers(
        {{":status", "200"}, {"content-type", "text/event-stream"}}, chosen));
    ASSERT_TRUE(head.ok());
    ASSERT_TRUE(exchange->send_response_body("data: {}\n\n", false).ok());
    if (destroy_instead) {
      exchange.reset();  // the proxy's request ended without a cancel()
    } else {
      // A waiting relay is woken by cancel() from another thread (the client went away).
      std::optional<extproc::ExtProcResult<BodyPiece>> piece;
      auto waiting = asio::co_spawn(
          asio::make_strand(client_io_),
          [&]() -> asio::awaitable<void> {
            auto first = co_await exchange->next_response_body();  // the echoed "data: {}"
            if (!first) {
              piece.emplace(std::move(first));
              co_return;
            }
            piece.emplace(co_await exchange->next_response_body());  // nothing more was sent
          },
          asio::use_future);
      EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
      exchange->cancel();
      ASSERT_EQ(waiting.wait_for(kTimeout), std::future_status::ready);
      waiting.get();
      ASSERT_TRUE(piece);
      ASSERT_FALSE(piece->ok());
      EXPECT_EQ(piece->error().kind, ExtProcErrorKind::kCancelled);
      EXPECT_FALSE(exchange->send_response_body("more", true).ok());
    }
    EXPECT_TRUE(eventually([&] { return inflight(chosen) == 0; }))
        << "the EPP releases its in-flight accounting when the stream is cancelled";
    EXPECT_TRUE(eventually([&] { return runner_->extproc_stats().active_streams.load() == 0; }));
  }
}

TEST_F(ExtProcClientTest, ManyConcurrentExchanges) {
  start_epp(epp_options());
  ExtProcClient& client = make_client({.body_chunk_bytes = 256, .channels = 2});
  constexpr int kExchanges = 48;
  std::vector<std::future<std::string>> results;
  for (int i = 0; i < kExchanges; ++i) {
    results.push_back(asio::co_spawn(
        asio::make_strand(client_io_),
        [&, i]() -> asio::awaitable<std::string> {
          auto exchange = client.start_exchange();
          const std::string body =
              chat_body(kClientModel, fmt::format("prompt {} {}", i, std::string(600, 'z')), false);
          auto decision =
              co_await exchange->process_request(request_headers(kChatPath, body.size()), body);
          if (!decision) co_return decision.error().message;
          if (decision->immediate || sim_index(decision->destinations.front()) < 0) {
            co_return std::string("not routed");
          }
          if (decision->body != replace_all(body, kClientModel, kTargetModel)) {
            co_return std::string("body not rewritten");
          }
          auto head = co_await exchange->process_response_headers(kJsonHead,
                                                                  decision->destinations.front());
          if (!head) co_return head.error().message;
          const std::string upstream =
              fmt::format(R"({{"id":"{}","model":"{}","choices":[]}})", i, kTargetModel);
          const std::vector<std::size_t> cuts = {5, 30};
          auto relayed = co_await relay_body(*exchange, upstream, cuts);
          if (!relayed) co_return relayed.error().message;
          co_return *relayed == restored(upstream) ? "ok" : "not restored: " + *relayed;
        },
        asio::use_future));
  }
  for (auto& result : results) {
    ASSERT_EQ(result.wait_for(kTimeout), std::future_status::ready);
    EXPECT_EQ(result.get(), "ok");
  }
  EXPECT_TRUE(eventually([&] { return all_released(); }));
  // gRPC ends each stream (OnDone) after the exchange has its result: wait for the last ones.
  EXPECT_TRUE(eventually([&] {
    return registry_.expose().find("infergate_extproc_client_active_streams 0.0") !=
           std::string::npos;
  }));
}

TEST_F(ExtProcClientTest, SpeaksTlsWithOrWithoutVerification) {
  auto options = epp_options();
  options.secure_serving = true;  // a self-signed certificate, as the reference EPP
  start_epp(options);
  const std::string target = fmt::format("127.0.0.1:{}", runner_->grpc_port());
  const std::vector<ExtProcClientOptions> variants = {
      {.target = target, .tls = true},
      {.target = target,
       .tls = true,
       .tls_verify = true,
       .tls_root_certs_pem = runner_->certificate_pem(),
       .tls_server_name = "localhost"},
  };
  for (const auto& variant : variants) {
    ExtProcClient& client = make_client(variant);
    auto exchange = client.start_exchange();
    auto decision = run(exchange->process_request(request_headers("/v1/chat/completions", 8),
                                                  std::string("not json")));
    ASSERT_TRUE(decision.ok()) << decision.error().message;
    ASSERT_TRUE(decision->immediate);
    EXPECT_EQ(decision->immediate->status, 400);
  }
  // A client that checks the certificate against other roots does not get through.
  auto other = extproc::generate_self_signed();
  ASSERT_TRUE(other.ok());
  ExtProcClient& wrong = make_client({.target = target,
                                      .tls = true,
                                      .tls_verify = true,
                                      .tls_root_certs_pem = other->certificate_pem,
                                      .tls_server_name = "localhost",
                                      .message_timeout = std::chrono::milliseconds(2000)});
  auto exchange = wrong.start_exchange();
  auto refused = run(exchange->process_request(request_headers("/v1/chat/completions", 8),
                                               std::string("not json")));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().kind, ExtProcErrorKind::kProtocol);
}

}  // namespace
}  // namespace infergate
