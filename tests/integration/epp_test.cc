// `infergate epp` end to end on loopback: three simulated vLLM servers, the EPP runner in-process
// (ports 0, plaintext) and a test client playing Envoy's part over ext_proc in
// FULL_DUPLEX_STREAMED mode: request headers and body chunks in, the destination and the rewritten
// body out; the body sent to the chosen simulator over HTTP; its response played back through the
// EPP. Also: gRPC health, /metrics, a malformed body, TLS start-up, the static pool description.
#include "extproc/epp.h"

#include <fmt/format.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "datastore/datastore.h"
#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "extproc/health.h"
#include "extproc/server.h"
#include "extproc/tls.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "http/client.h"
#include "integration/support.h"
#include "request/tokenizer.h"
#include "sim/server.h"

namespace infergate {
namespace {

using test_support::eventually;
using test_support::TempFile;

namespace pb = ::envoy::service::ext_proc::v3;
namespace core = ::envoy::config::core::v3;
namespace health = ::grpc::health::v1;
using BodyMode = ::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;

constexpr std::string_view kTargetModel = "meta-llama/Llama-3.1-8B-Instruct";
constexpr std::string_view kClientModel = "food-review";
constexpr auto kTimeout = std::chrono::seconds(20);

void add_header(core::HeaderMap* map, const std::string& key, const std::string& value) {
  auto* header = map->add_headers();
  header->set_key(key);
  header->set_raw_value(value);
}

// The set_headers of a mutation, by key (values from raw_value, as Envoy reads them).
std::map<std::string, std::string> set_headers(const pb::HeaderMutation& mutation) {
  std::map<std::string, std::string> headers;
  for (const auto& option : mutation.set_headers()) {
    EXPECT_TRUE(option.header().value().empty()) << "values go in raw_value only";
    headers[option.header().key()] = option.header().raw_value();
  }
  return headers;
}

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// What the EPP answered on the request path.
struct RoutedAnswer {
  std::optional<pb::ImmediateResponse> immediate;
  std::map<std::string, std::string> headers;  // set_headers of the request-headers answer
  std::string destination_header;
  std::string destination_metadata;
  std::string scores_metadata;  // envoy.lb x-gateway-destination-endpoint-scores, if any
  bool clear_route_cache = false;
  std::string body;  // the streamed_response chunks, joined
  int body_chunks = 0;
};

// What the EPP answered on the response path.
struct ResponseAnswer {
  std::map<std::string, std::string> headers;
  std::string body;
  int body_answers = 0;
};

// One ext_proc stream, driven as Envoy drives it in FULL_DUPLEX_STREAMED mode.
class EnvoyStream {
 public:
  explicit EnvoyStream(pb::ExternalProcessor::Stub& stub) {
    context_.set_deadline(std::chrono::system_clock::now() + kTimeout);
    stream_ = stub.Process(&context_);
  }

  // Sends the request headers and the body in chunks of `chunk_bytes`, then reads the answers:
  // an ImmediateResponse, or the request-headers answer followed by the body chunks.
  RoutedAnswer send_request(const std::string& body,
                            const std::vector<std::pair<std::string, std::string>>& extra = {},
                            std::size_t chunk_bytes = 1000) {
    pb::ProcessingRequest headers;
    auto* http_headers = headers.mutable_request_headers();
    add_header(http_headers->mutable_headers(), ":method", "POST");
    add_header(http_headers->mutable_headers(), ":path", "/v1/completions");
    add_header(http_headers->mutable_headers(), ":authority", "gateway.example.com");
    add_header(http_headers->mutable_headers(), "content-type", "application/json");
    add_header(http_headers->mutable_headers(), "content-length", std::to_string(body.size()));
    for (const auto& [key, value] : extra) add_header(http_headers->mutable_headers(), key, value);
    http_headers->set_end_of_stream(false);
    headers.mutable_protocol_config()->set_request_body_mode(BodyMode::FULL_DUPLEX_STREAMED);
    headers.mutable_protocol_config()->set_response_body_mode(BodyMode::FULL_DUPLEX_STREAMED);
    EXPECT_TRUE(stream_->Write(headers));
    for (std::size_t offset = 0; offset < body.size() || offset == 0; offset += chunk_bytes) {
      pb::ProcessingRequest chunk;
      chunk.mutable_request_body()->set_body(body.substr(offset, chunk_bytes));
      chunk.mutable_request_body()->set_end_of_stream(offset + chunk_bytes >= body.size());
      // The EPP may answer before the body ends (a 413 for a declared content-length over the
      // limit) and finish the stream; like Envoy, stop sending then and read its answer.
      if (!stream_->Write(chunk) || body.empty()) break;
    }

    RoutedAnswer answer;
    pb::ProcessingResponse response;
    if (!stream_->Read(&response)) {
      ADD_FAILURE() << "the stream ended without an answer";
      return answer;
    }
    if (response.has_immediate_response()) {
      answer.immediate = response.immediate_response();
      return answer;
    }
    EXPECT_TRUE(response.has_request_headers()) << response.DebugString();
    const auto& common = response.request_headers().response();
    answer.clear_route_cache = common.clear_route_cache();
    answer.headers = set_headers(common.header_mutation());
    answer.destination_header = answer.headers["x-gateway-destination-endpoint"];
    const auto& namespaces = response.dynamic_metadata().fields();
    if (auto lb = namespaces.find("envoy.lb"); lb != namespaces.end()) {
      const auto& fields = lb->second.struct_value().fields();
      if (auto it = fields.find("x-gateway-destination-endpoint"); it != fields.end()) {
        answer.destination_metadata = it->second.string_value();
      }
      if (auto it = fields.find("x-gateway-destination-endpoint-scores"); it != fields.end()) {
        answer.scores_metadata = it->second.string_value();
      }
    }
    while (stream_->Read(&response)) {
      EXPECT_TRUE(response.has_request_body()) << response.DebugString();
      const auto& mutation = response.request_body().response().body_mutation();
      EXPECT_TRUE(mutation.has_streamed_response());
      answer.body += mutation.streamed_response().body();
      ++answer.body_chunks;
      if (mutation.streamed_response().end_of_stream()) break;
    }
    return answer;
  }

  // Plays the upstream's response back: response headers (with the served endpoint in the
  // envoy.lb metadata), then the body split at `cuts` (offsets), the last piece with
  // end_of_stream. The first piece's answer is read before the rest is sent (SSE must stream
  // through), when `expect_first_answer_at_once`.
  ResponseAnswer send_response(const http::ClientResponse& upstream, const std::string& served,
                               const std::vector<std::size_t>& cuts,
                               bool expect_first_answer_at_once) {
    ResponseAnswer answer;
    pb::ProcessingRequest headers;
    auto* http_headers = headers.mutable_response_headers();
    add_header(http_headers->mutable_headers(), ":status", std::to_string(upstream.status));
    for (const auto& [key, value] : upstream.headers) {
      std::string lower = key;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      add_header(http_headers->mutable_headers(), lower, value);
    }
    http_headers->set_end_of_stream(false);
    (*(*headers.mutable_metadata_context()->mutable_filter_metadata())["envoy.lb"]
          .mutable_fields())["x-gateway-destination-endpoint-served"]
        .set_string_value(served);
    EXPECT_TRUE(stream_->Write(headers));
    pb::ProcessingResponse response;
    EXPECT_TRUE(stream_->Read(&response));
    EXPECT_TRUE(response.has_response_headers()) << response.DebugString();
    answer.headers = set_headers(response.response_headers().response().header_mutation());

    std::vector<std::size_t> bounds = cuts;
    bounds.push_back(upstream.body.size());
    std::size_t start = 0;
    bool done = false;
    for (std::size_t piece = 0; piece < bounds.size(); ++piece) {
      pb::ProcessingRequest chunk;
      chunk.mutable_response_body()->set_body(upstream.body.substr(start, bounds[piece] - start));
      chunk.mutable_response_body()->set_end_of_stream(piece + 1 == bounds.size());
      start = bounds[piece];
      EXPECT_TRUE(stream_->Write(chunk));
      if (piece == 0 && expect_first_answer_at_once) {
        EXPECT_TRUE(stream_->Read(&response));
        EXPECT_TRUE(response.has_response_body()) << response.DebugString();
        const auto& streamed = response.response_body().response().body_mutation();
        EXPECT_FALSE(streamed.streamed_response().body().empty())
            << "the first SSE event is passed on before the response ends";
        answer.body += streamed.streamed_response().body();
        ++answer.body_answers;
        done = streamed.streamed_response().end_of_stream();
      }
    }
    while (!done && stream_->Read(&response)) {
      EXPECT_TRUE(response.has_response_body()) << response.DebugString();
      const auto& streamed = response.response_body().response().body_mutation();
      EXPECT_TRUE(streamed.has_streamed_response());
      answer.body += streamed.streamed_response().body();
      ++answer.body_answers;
      done = streamed.streamed_response().end_of_stream();
    }
    EXPECT_TRUE(done) << "the last body answer carries end_of_stream";
    return answer;
  }

  // Half-closes, expects no further answers and returns the RPC's status.
  grpc::Status close() {
    stream_->WritesDone();
    pb::ProcessingResponse extra;
    while (stream_->Read(&extra)) ADD_FAILURE() << "unexpected answer " << extra.DebugString();
    return stream_->Finish();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::ProcessingRequest, pb::ProcessingResponse>> stream_;
};

std::string completion_body(std::string_view model, const std::string& prompt, int max_tokens,
                            bool stream) {
  nlohmann::json body = {{"model", model},
                         {"prompt", prompt},
                         {"max_tokens", max_tokens},
                         {"ignore_eos", true},
                         {"stream", stream}};
  if (stream) body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

class EppTest : public ::testing::TestWithParam<extproc::GrpcTransport> {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      sim::SimOptions options;
      options.port = 0;
      options.time_scale = 1;  // real time: queued requests stay visible in the metrics
      options.engine.num_gpu_blocks = 4000;
      options.engine.max_num_seqs = 2;
      options.engine.max_model_len = 4096;
      sims_.push_back(std::make_unique<sim::SimServer>(sim_io_, options));
      sims_.back()->start();
    }
    sim_thread_ = std::thread([this] { sim_io_.run(); });
    resources_ = std::make_unique<TempFile>("resources.yaml",
                                            std::string(test_support::kSimPoolResources) + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: interactive, namespace: default}
spec: {priority: 10, poolRef: {name: sims}}
)");
  }

  void TearDown() override {
    if (runner_) runner_->stop();
    runner_.reset();
    busy_clients_.clear();
    boost::asio::post(sim_io_, [this] {
      for (auto& sim : sims_) sim->stop();
    });
    sim_io_.stop();
    sim_thread_.join();
    sims_.clear();
  }

  extproc::EppOptions default_options() {
    extproc::EppOptions options;
    options.bind_address = "127.0.0.1";
    options.grpc_port = 0;
    options.grpc_health_port = 0;
    options.metrics_port = 0;
    options.secure_serving = false;
    options.health_checking = true;
    options.refresh_metrics_interval = std::chrono::milliseconds(10);
    options.resources_file = resources_->path();
    for (const auto& sim : sims_)
      options.endpoints.push_back(fmt::format("127.0.0.1:{}", sim->port()));
    options.seed = 42;
    options.shutdown_grace = std::chrono::milliseconds(1000);
    options.grpc_transport = GetParam();
    return options;
  }

  void start_epp(extproc::EppOptions options) {
    runner_ = std::make_unique<extproc::EppRunner>(std::move(options));
    runner_->start();
    channel_ = grpc::CreateChannel(fmt::format("127.0.0.1:{}", runner_->grpc_port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = pb::ExternalProcessor::NewStub(channel_);
  }

  // The simulator listening on `host_port`'s port, by index; -1 when none.
  int sim_index(const std::string& host_port) const {
    for (std::size_t i = 0; i < sims_.size(); ++i) {
      if (host_port == fmt::format("127.0.0.1:{}", sims_[i]->port())) return static_cast<int>(i);
    }
    return -1;
  }

  // Routes `body` through the EPP, sends it to the chosen simulator and plays the response back.
  // Returns the chosen simulator's index.
  int full_exchange(const std::string& body, bool stream, std::string* client_body = nullptr) {
    EnvoyStream envoy(*stub_);
    RoutedAnswer routed = envoy.send_request(body, {}, 700);
    EXPECT_FALSE(routed.immediate) << routed.immediate->DebugString();
    EXPECT_EQ(routed.destination_header, routed.destination_metadata);
    const int index = sim_index(routed.destination_header);
    EXPECT_GE(index, 0) << routed.destination_header;
    if (index < 0) return index;
    auto upstream = http::fetch_blocking(
        "127.0.0.1", sims_[static_cast<std::size_t>(index)]->port(),
        http::make_request(boost::beast::http::verb::post, "/v1/completions", routed.body),
        kTimeout);
    EXPECT_TRUE(upstream.ok()) << upstream.status().message();
    if (!upstream.ok()) return -1;
    EXPECT_EQ(upstream->status, 200u) << upstream->body;
    std::vector<std::size_t> cuts;
    if (stream) {
      // The first SSE event whole, then pieces small enough to split the model name.
      const std::size_t first_event_end = upstream->body.find("\n\n") + 2;
      for (std::size_t at = first_event_end; at < upstream->body.size(); at += 23)
        cuts.push_back(at);
    } else {
      cuts.push_back(upstream->body.size() / 2);
    }
    ResponseAnswer answered =
        envoy.send_response(*upstream, routed.destination_header, cuts, stream);
    const std::string target = fmt::format("\"model\":\"{}\"", kTargetModel);
    const std::string incoming = fmt::format("\"model\":\"{}\"", kClientModel);
    EXPECT_NE(upstream->body.find(target), std::string::npos) << upstream->body;
    EXPECT_EQ(answered.body, replace_all(upstream->body, target, incoming))
        << "the client's model name is restored, nothing else changes";
    if (client_body) *client_body = answered.body;
    EXPECT_TRUE(envoy.close().ok());
    return index;
  }

  grpc::Status check_health(std::uint16_t port, const std::string& service,
                            health::HealthCheckResponse::ServingStatus* status) {
    auto channel =
        grpc::CreateChannel(fmt::format("127.0.0.1:{}", port), grpc::InsecureChannelCredentials());
    auto stub = health::Health::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kTimeout);
    health::HealthCheckRequest request;
    request.set_service(service);
    health::HealthCheckResponse response;
    grpc::Status result = stub->Check(&context, request, &response);
    *status = response.status();
    return result;
  }

  boost::asio::io_context sim_io_{1};
  std::vector<std::unique_ptr<sim::SimServer>> sims_;
  std::thread sim_thread_;
  std::unique_ptr<TempFile> resources_;
  std::unique_ptr<extproc::EppRunner> runner_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::ExternalProcessor::Stub> stub_;
  // Connections loading a simulator directly; they live on client_io_.
  boost::asio::io_context client_io_;
  std::vector<std::unique_ptr<http::ClientConnection>> busy_clients_;
};

TEST_P(EppTest, RoutesStreamsRewritesAndRestoresTheModelName) {
  start_epp(default_options());
  const std::string body = completion_body(kClientModel, "Tell me about food.", 8, true);
  EnvoyStream envoy(*stub_);
  RoutedAnswer routed = envoy.send_request(body, {{"x-request-id", "req-1"}}, 10);
  ASSERT_FALSE(routed.immediate) << routed.immediate->DebugString();
  EXPECT_TRUE(routed.clear_route_cache);
  EXPECT_EQ(routed.destination_header, routed.destination_metadata);
  const int index = sim_index(routed.destination_header);
  ASSERT_GE(index, 0) << routed.destination_header;
  EXPECT_EQ(routed.body, replace_all(body, kClientModel, kTargetModel));
  EXPECT_EQ(routed.headers["content-length"], std::to_string(routed.body.size()));
  EXPECT_EQ(routed.headers["x-request-id"], "req-1");
  EXPECT_EQ(routed.headers["content-type"], "application/json");
  EXPECT_EQ(routed.body_chunks, 1);

  auto upstream = http::fetch_blocking(
      "127.0.0.1", sims_[static_cast<std::size_t>(index)]->port(),
      http::make_request(boost::beast::http::verb::post, "/v1/completions", routed.body), kTimeout);
  ASSERT_TRUE(upstream.ok()) << upstream.status().message();
  ASSERT_EQ(upstream->status, 200u) << upstream->body;
  std::vector<std::size_t> cuts;
  const std::size_t first_event_end = upstream->body.find("\n\n") + 2;
  for (std::size_t at = first_event_end; at < upstream->body.size(); at += 17) cuts.push_back(at);
  ResponseAnswer answered = envoy.send_response(*upstream, routed.destination_header, cuts, true);
  EXPECT_EQ(answered.body,
            replace_all(upstream->body, fmt::format("\"model\":\"{}\"", kTargetModel),
                        fmt::format("\"model\":\"{}\"", kClientModel)));
  EXPECT_NE(answered.body.find("data: [DONE]"), std::string::npos);
  EXPECT_GE(answered.body_answers, 2);
  EXPECT_TRUE(envoy.close().ok());

  // A body larger than one answer chunk comes back in 62,000-byte chunks.
  const std::string large = completion_body(
      kClientModel, request::make_text_with_tokens(30000, 7).substr(0, 150000), 1, false);
  EnvoyStream large_stream(*stub_);
  RoutedAnswer large_routed = large_stream.send_request(large, {}, 16384);
  ASSERT_FALSE(large_routed.immediate);
  EXPECT_EQ(large_routed.body, replace_all(large, kClientModel, kTargetModel));
  EXPECT_EQ(large_routed.body_chunks, static_cast<int>((large_routed.body.size() + 61999) / 62000));
  EXPECT_TRUE(large_stream.close().ok());
}

TEST_P(EppTest, PicksFollowLoadOnceItsMetricsArrive) {
  start_epp(default_options());
  datastore::Datastore& store = runner_->datastore();
  ASSERT_TRUE(eventually([&] {
    for (const auto& endpoint : store.snapshot()->endpoints) {
      if (!endpoint.state->metrics()) return false;
    }
    return true;
  })) << "every endpoint scraped";

  // Queue work on sim 0 (2 running at most, the rest waits), without reading the answers.
  const std::string long_body = completion_body(kTargetModel, "hello", 2000, true);
  for (int i = 0; i < 8; ++i) {
    auto client = std::make_unique<http::ClientConnection>(client_io_.get_executor());
    boost::asio::co_spawn(
        client_io_,
        [&, raw = client.get()]() -> boost::asio::awaitable<void> {
          auto connected =
              co_await raw->connect("127.0.0.1", sims_[0]->port(), std::chrono::seconds(5));
          if (!connected.is_ok()) co_return;
          auto request =
              http::make_request(boost::beast::http::verb::post, "/v1/completions", long_body);
          co_await raw->send_request(std::move(request), std::chrono::seconds(5));
        },
        boost::asio::detached);
    busy_clients_.push_back(std::move(client));
  }
  client_io_.run();
  const std::string busy_name = store.snapshot()->endpoints.front().info->name;
  ASSERT_EQ(busy_name, "sims-0-rank-0");
  ASSERT_TRUE(eventually([&] {
    auto metrics = store.snapshot()->find(busy_name)->state->metrics();
    return metrics && metrics->waiting_requests >= 4;
  })) << "sim 0's queue shows in the EPP's scraped metrics";

  std::map<int, int> picks;
  for (int i = 0; i < 30; ++i) {
    EnvoyStream envoy(*stub_);
    RoutedAnswer routed = envoy.send_request(
        completion_body(kClientModel, request::make_text_with_tokens(50, 100 + i), 4, false));
    ASSERT_FALSE(routed.immediate) << routed.immediate->DebugString();
    ++picks[sim_index(routed.destination_header)];
    EXPECT_TRUE(envoy.close().ok());  // closed before any response: accounting is released
  }
  EXPECT_EQ(picks[0], 0) << "the endpoint with a queue is never chosen";
  EXPECT_EQ(picks[1] + picks[2], 30);
}

TEST_P(EppTest, PicksFollowSharedPromptPrefixes) {
  start_epp(default_options());
  const std::string shared_prefix = request::make_text_with_tokens(800, 11);
  std::set<int> chosen;
  for (int i = 0; i < 6; ++i) {
    const std::string body = completion_body(
        kClientModel, shared_prefix + fmt::format(" Question {}: why?", i), 4, i % 2 == 0);
    chosen.insert(full_exchange(body, i % 2 == 0));
  }
  EXPECT_EQ(chosen.size(), 1u) << "requests sharing a long prefix stay on one endpoint";

  // A different prompt may go elsewhere, but every exchange still completes.
  EXPECT_GE(
      full_exchange(
          completion_body(kClientModel, request::make_text_with_tokens(800, 12), 4, false), false),
      0);

  // /metrics on the metrics port carries the EPP's request and scheduler metrics.
  auto metrics =
      http::fetch_blocking("127.0.0.1", runner_->metrics_port(),
                           http::make_request(boost::beast::http::verb::get, "/metrics"), kTimeout);
  ASSERT_TRUE(metrics.ok()) << metrics.status().message();
  EXPECT_EQ(metrics->status, 200u);
  EXPECT_NE(metrics->body.find("inference_objective_request_total{"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("inference_extension_scheduler_e2e_duration_seconds_bucket"),
            std::string::npos);
  EXPECT_EQ(runner_->extproc_stats().protocol_errors.load(), 0u);
  EXPECT_TRUE(eventually([&] { return runner_->extproc_stats().active_streams.load() == 0; }));
}

TEST_P(EppTest, HealthIsServingForEveryNameOnBothPorts) {
  start_epp(default_options());
  for (std::uint16_t port : {runner_->grpc_health_port(), runner_->grpc_port()}) {
    for (std::string_view name : extproc::HealthState::kServiceNames) {
      health::HealthCheckResponse::ServingStatus status{};
      grpc::Status result = check_health(port, std::string(name), &status);
      ASSERT_TRUE(result.ok()) << name << ": " << result.error_message();
      EXPECT_EQ(status, health::HealthCheckResponse::SERVING) << name << " on port " << port;
    }
    health::HealthCheckResponse::ServingStatus status{};
    EXPECT_EQ(check_health(port, "no-such-service", &status).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
}

TEST_P(EppTest, MalformedBodyGetsALocalReply400) {
  start_epp(default_options());
  EnvoyStream envoy(*stub_);
  RoutedAnswer routed = envoy.send_request(R"({"model": "food-review", "prompt": )");
  ASSERT_TRUE(routed.immediate);
  EXPECT_EQ(routed.immediate->status().code(), 400);
  EXPECT_NE(routed.immediate->body().find("inference error: BadRequest"), std::string::npos)
      << routed.immediate->body();
  EXPECT_TRUE(envoy.close().ok());

  // A body over --max-request-body-bytes gets 413 without being routed.
  runner_.reset();
  auto options = default_options();
  options.max_request_body_bytes = 100;
  start_epp(options);
  EnvoyStream oversize(*stub_);
  RoutedAnswer too_large = oversize.send_request(
      completion_body(kClientModel, request::make_text_with_tokens(200, 1), 4, false));
  ASSERT_TRUE(too_large.immediate);
  EXPECT_EQ(too_large.immediate->status().code(), 413);
  EXPECT_TRUE(oversize.close().ok());
}

TEST_P(EppTest, ConformanceHooksPinTheEndpointAndReportTheServedOne) {
  auto options = default_options();
  options.conformance_test_hooks = true;
  start_epp(options);
  for (std::size_t pinned = 0; pinned < sims_.size(); ++pinned) {
    const std::string pinned_endpoint = fmt::format("127.0.0.1:{}", sims_[pinned]->port());
    EnvoyStream envoy(*stub_);
    RoutedAnswer routed = envoy.send_request(completion_body(kClientModel, "hi", 2, false),
                                             {{"test-epp-endpoint-selection", pinned_endpoint}});
    ASSERT_FALSE(routed.immediate);
    EXPECT_EQ(routed.destination_header, pinned_endpoint);
    EXPECT_EQ(routed.headers.count("test-epp-endpoint-selection"), 1u)
        << "the test header is not a control header: it is forwarded";
    http::ClientResponse upstream{
        .status = 200,
        .headers = {{"content-type", "application/json"}},
        .body = R"({"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[]})"};
    ResponseAnswer answered = envoy.send_response(upstream, pinned_endpoint, {}, false);
    EXPECT_EQ(answered.headers["x-conformance-test-served-endpoint"], pinned_endpoint);
    EXPECT_EQ(answered.body, R"({"model":"food-review","choices":[]})");
    EXPECT_TRUE(envoy.close().ok());
  }
}

TEST_P(EppTest, EmitEndpointScoresExplainsThePick) {
  auto options = default_options();
  options.emit_endpoint_scores = true;
  start_epp(options);
  EnvoyStream envoy(*stub_);
  RoutedAnswer routed = envoy.send_request(completion_body(kClientModel, "why?", 2, false));
  ASSERT_FALSE(routed.immediate);
  ASSERT_FALSE(routed.scores_metadata.empty()) << "scores in the envoy.lb metadata";
  const auto scores = nlohmann::ordered_json::parse(routed.scores_metadata);
  ASSERT_EQ(scores.size(), 3u) << scores.dump();
  ASSERT_TRUE(scores.contains(routed.destination_header)) << scores.dump();
  EXPECT_EQ(scores[routed.destination_header]["total"], scores.begin().value()["total"])
      << "the chosen endpoint has the best total (best first; ties broken at random): "
      << scores.dump();
  EXPECT_TRUE(scores.begin().value().contains("queue-scorer")) << scores.dump();
  http::ClientResponse upstream{.status = 200,
                                .headers = {{"content-type", "application/json"}},
                                .body = R"({"model":"meta-llama/Llama-3.1-8B-Instruct"})"};
  ResponseAnswer answered = envoy.send_response(upstream, routed.destination_header, {}, false);
  EXPECT_EQ(answered.headers["x-gateway-destination-endpoint-scores"], routed.scores_metadata);
  EXPECT_TRUE(envoy.close().ok());
}

TEST_P(EppTest, ProtocolViolationEndsTheStreamWithInvalidArgument) {
  start_epp(default_options());
  EnvoyStream envoy(*stub_);
  grpc::ClientContext context;
  auto stream = stub_->Process(&context);
  pb::ProcessingRequest body_first;
  body_first.mutable_request_body()->set_body("{}");
  body_first.mutable_request_body()->set_end_of_stream(true);
  stream->Write(body_first);
  pb::ProcessingResponse response;
  EXPECT_FALSE(stream->Read(&response));
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(status.error_message().empty());
  EXPECT_TRUE(envoy.close().ok()) << "an idle stream closed by the client ends OK";
  EXPECT_TRUE(eventually([&] { return runner_->extproc_stats().protocol_errors.load() == 1; }));
}

TEST_P(EppTest, CancelledStreamReleasesItsEndpoint) {
  start_epp(default_options());
  grpc::ClientContext context;
  auto stream = stub_->Process(&context);
  EnvoyStream envoy(*stub_);
  RoutedAnswer routed = envoy.send_request(completion_body(kClientModel, "hello", 4, false));
  ASSERT_FALSE(routed.immediate);
  const auto snapshot = runner_->datastore().snapshot();
  const datastore::Endpoint* chosen = nullptr;
  for (const auto& endpoint : snapshot->endpoints) {
    if (endpoint.info->host_port == routed.destination_header) chosen = &endpoint;
  }
  ASSERT_NE(chosen, nullptr);
  EXPECT_EQ(chosen->state->inflight_requests.load(), 1) << "routed, response not yet seen";

  // A stream cancelled mid-request (Envoy resets it when the client goes away).
  pb::ProcessingRequest headers;
  add_header(headers.mutable_request_headers()->mutable_headers(), ":path", "/v1/completions");
  ASSERT_TRUE(stream->Write(headers));
  context.TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);

  EXPECT_TRUE(envoy.close().ok());
  EXPECT_TRUE(eventually([&] { return chosen->state->inflight_requests.load() == 0; }))
      << "closing the stream before the response releases the in-flight accounting";
  EXPECT_TRUE(eventually([&] { return runner_->extproc_stats().active_streams.load() == 0; }));
}

TEST_P(EppTest, ConcurrentStreamsAreAnsweredIndependently) {
  start_epp(default_options());
  constexpr int kThreads = 4;
  constexpr int kStreamsPerThread = 25;
  std::atomic<int> completed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kStreamsPerThread; ++i) {
        EnvoyStream envoy(*stub_);
        const std::string body = completion_body(
            kClientModel,
            request::make_text_with_tokens(40, static_cast<std::uint64_t>(t * 100 + i)), 4, false);
        RoutedAnswer routed = envoy.send_request(body, {}, 64);
        if (routed.immediate || sim_index(routed.destination_header) < 0) {
          ADD_FAILURE() << "not routed";
          continue;
        }
        EXPECT_EQ(routed.body, replace_all(body, kClientModel, kTargetModel));
        http::ClientResponse upstream{
            .status = 200,
            .headers = {{"content-type", "application/json"}},
            .body = fmt::format(R"({{"model":"{}","id":"{}-{}"}})", kTargetModel, t, i)};
        ResponseAnswer answered =
            envoy.send_response(upstream, routed.destination_header, {5, 20}, false);
        EXPECT_EQ(answered.body,
                  fmt::format(R"({{"model":"{}","id":"{}-{}"}})", kClientModel, t, i));
        if (envoy.close().ok()) ++completed;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(completed.load(), kThreads * kStreamsPerThread);
  EXPECT_TRUE(eventually([&] { return runner_->extproc_stats().active_streams.load() == 0; }));
  for (const auto& endpoint : runner_->datastore().snapshot()->endpoints) {
    EXPECT_EQ(endpoint.state->inflight_requests.load(), 0) << endpoint.info->name;
  }
}

// --- TLS -------------------------------------------------------------------------------------

// A request the EPP must refuse (400), over a channel with `credentials` to 127.0.0.1:`port`;
// the server's certificate is checked against `tls_name` when given (else against the IP).
// (Connecting by name would go through gRPC's c-ares resolver, which leaks a few bytes.)
void expect_bad_request_over(std::uint16_t port,
                             std::shared_ptr<grpc::ChannelCredentials> credentials,
                             const std::string& tls_name = {}) {
  grpc::ChannelArguments arguments;
  if (!tls_name.empty()) arguments.SetSslTargetNameOverride(tls_name);
  auto channel =
      grpc::CreateCustomChannel(fmt::format("127.0.0.1:{}", port), credentials, arguments);
  auto stub = pb::ExternalProcessor::NewStub(channel);
  EnvoyStream envoy(*stub);
  RoutedAnswer routed = envoy.send_request("not json");
  ASSERT_TRUE(routed.immediate);
  EXPECT_EQ(routed.immediate->status().code(), 400);
  EXPECT_TRUE(envoy.close().ok());
}

std::string transport_name(const ::testing::TestParamInfo<extproc::GrpcTransport>& info) {
  return info.param == extproc::GrpcTransport::kNative ? "Native" : "Callback";
}

// Every test of the EPP's servers runs on both gRPC transports.
INSTANTIATE_TEST_SUITE_P(Transports, EppTest,
                         ::testing::Values(extproc::GrpcTransport::kNative,
                                           extproc::GrpcTransport::kCallback),
                         transport_name);

class EppTransportTest : public ::testing::TestWithParam<extproc::GrpcTransport> {};
INSTANTIATE_TEST_SUITE_P(Transports, EppTransportTest,
                         ::testing::Values(extproc::GrpcTransport::kNative,
                                           extproc::GrpcTransport::kCallback),
                         transport_name);

extproc::EppOptions tls_options(extproc::GrpcTransport transport) {
  extproc::EppOptions options;
  options.grpc_transport = transport;
  options.bind_address = "127.0.0.1";
  options.grpc_port = 0;
  options.grpc_health_port = 0;
  options.metrics_port = 0;
  options.endpoints = {"127.0.0.1:1"};  // never scraped successfully; not needed here
  options.refresh_metrics_interval = std::chrono::seconds(10);
  return options;
}

TEST_P(EppTransportTest, ServesTlsWithASelfSignedCertificateOrOneFromCertPath) {
  std::string certificate;
  {
    extproc::EppRunner runner(tls_options(GetParam()));  // --secure-serving defaults to true
    runner.start();
    certificate = runner.certificate_pem();
    ASSERT_NE(certificate.find("BEGIN CERTIFICATE"), std::string::npos);
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = certificate;
    expect_bad_request_over(runner.grpc_port(), grpc::SslCredentials(ssl), "localhost");

    // A plaintext client gets no answer from a TLS port.
    auto channel = grpc::CreateChannel(fmt::format("127.0.0.1:{}", runner.grpc_port()),
                                       grpc::InsecureChannelCredentials());
    EXPECT_FALSE(channel->WaitForConnected(std::chrono::system_clock::now() +
                                           std::chrono::milliseconds(300)));
  }

  // --cert-path: the Kubernetes TLS Secret layout.
  auto material = extproc::generate_self_signed();
  ASSERT_TRUE(material.ok()) << material.status().message();
  const auto dir =
      std::filesystem::temp_directory_path() / fmt::format("infergate-epp-test-{}-certs", getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tls.crt") << material->certificate_pem;
  std::ofstream(dir / "tls.key") << material->private_key_pem;
  {
    auto options = tls_options(GetParam());
    options.cert_path = dir.string();
    extproc::EppRunner runner(options);
    runner.start();
    EXPECT_EQ(runner.certificate_pem(), material->certificate_pem);
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = material->certificate_pem;
    expect_bad_request_over(runner.grpc_port(), grpc::SslCredentials(ssl));

    // A client trusting another certificate does not get through: the certificate is checked.
    auto other = extproc::generate_self_signed();
    ASSERT_TRUE(other.ok());
    grpc::SslCredentialsOptions wrong_root;
    wrong_root.pem_root_certs = other->certificate_pem;
    auto channel = grpc::CreateChannel(fmt::format("127.0.0.1:{}", runner.grpc_port()),
                                       grpc::SslCredentials(wrong_root));
    EXPECT_FALSE(channel->WaitForConnected(std::chrono::system_clock::now() +
                                           std::chrono::milliseconds(300)));
  }
  // A key that does not match the certificate is refused at start-up.
  auto other = extproc::generate_self_signed();
  ASSERT_TRUE(other.ok());
  std::ofstream(dir / "tls.key") << other->private_key_pem;
  auto options = tls_options(GetParam());
  options.cert_path = dir.string();
  EXPECT_THROW(extproc::EppRunner{options}, std::runtime_error);
  std::filesystem::remove_all(dir);
  options.cert_path = dir.string();
  try {
    extproc::EppRunner runner(options);
    ADD_FAILURE() << "a missing certificate directory must be refused";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("tls.crt"), std::string::npos) << error.what();
  }
}

TEST_P(EppTransportTest, APortInUseIsAStartupErrorNamingTheAddress) {
  auto options = tls_options(GetParam());
  options.secure_serving = false;
  extproc::EppRunner first(options);
  first.start();
  options.grpc_port = first.grpc_port();
  extproc::EppRunner second(options);
  try {
    second.start();
    ADD_FAILURE() << "binding a port in use must fail";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find(fmt::format("127.0.0.1:{}", first.grpc_port())),
              std::string::npos)
        << error.what();
  }
  second.stop();
}

// --- health state and the static pool description --------------------------------------------

TEST(EppHealthStateTest, NotServingUntilThePoolIsKnown) {
  extproc::HealthState state;
  for (std::string_view name : extproc::HealthState::kServiceNames) {
    EXPECT_EQ(state.status(name), health::HealthCheckResponse::NOT_SERVING) << name;
  }
  state.set_serving(true);
  EXPECT_EQ(state.status("inference-extension"), health::HealthCheckResponse::SERVING);
  EXPECT_EQ(state.status("liveness"), health::HealthCheckResponse::SERVING);
  EXPECT_FALSE(state.status("other").has_value());
}

TEST(EppStaticPoolTest, ParsesEndpointAddresses) {
  struct Case {
    std::string_view description, input;
    std::optional<std::string> host;  // nullopt: an error
    std::optional<std::uint16_t> port;
  };
  const Case cases[] = {
      {"IPv4 with port", "10.0.0.1:8000", "10.0.0.1", 8000},
      {"bare IPv4", "10.0.0.1", "10.0.0.1", std::nullopt},
      {"host name with port", " sim-0.local:9 ", "sim-0.local", 9},
      {"bracketed IPv6 with port", "[fd00::1]:8000", "fd00::1", 8000},
      {"bracketed IPv6 without port", "[fd00::1]", "fd00::1", std::nullopt},
      {"bare IPv6", "fd00::1", "fd00::1", std::nullopt},
      {"port 0", "10.0.0.1:0", std::nullopt, std::nullopt},
      {"port too large", "10.0.0.1:65536", std::nullopt, std::nullopt},
      {"port not a number", "10.0.0.1:http", std::nullopt, std::nullopt},
      {"empty host", ":8000", std::nullopt, std::nullopt},
      {"unbalanced bracket", "[fd00::1:8000", std::nullopt, std::nullopt},
  };
  for (const auto& c : cases) {
    auto parsed = extproc::parse_endpoint_address(c.input);
    ASSERT_EQ(parsed.ok(), c.host.has_value()) << c.description;
    if (!parsed.ok()) continue;
    EXPECT_EQ(parsed->host, *c.host) << c.description;
    EXPECT_EQ(parsed->port, c.port) << c.description;
  }
}

TEST(EppStaticPoolTest, EndpointsFlagAloneMakesAPoolOfRankZeroPods) {
  extproc::EppOptions options;
  options.pool_name = "llama";
  options.pool_namespace = "ml";
  options.endpoints = {"10.0.0.1:8000", "10.0.0.2:8001"};
  auto pool = extproc::resolve_static_pool(options);
  ASSERT_TRUE(pool.ok()) << pool.status().message();
  ASSERT_EQ(pool->endpoints.size(), 2u);
  EXPECT_EQ(pool->endpoints[1].pod_name, "llama-1");
  EXPECT_EQ(pool->endpoints[1].namespace_name, "ml");
  EXPECT_EQ(pool->endpoints[1].address, "10.0.0.2");
  EXPECT_EQ(pool->endpoints[1].port, 8001);
  EXPECT_EQ(pool->endpoints[1].rank, 0);
  EXPECT_EQ(pool->pool.metadata.name, "llama");

  options.endpoints = {"10.0.0.1"};
  auto bare = extproc::resolve_static_pool(options);
  ASSERT_FALSE(bare.ok());
  EXPECT_NE(bare.status().message().find("has no port"), std::string::npos);

  options.endpoints.clear();
  auto none = extproc::resolve_static_pool(options);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("Kubernetes API mode"), std::string::npos);
  EXPECT_NE(none.status().message().find("--endpoints"), std::string::npos);
}

TEST(EppStaticPoolTest, ResourcesFileTakesEndpointsFromTheAnnotationAndExpandsBareHosts) {
  TempFile resources("pools.yaml", R"(
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: dp
  annotations:
    infergate.io/endpoints: "10.0.0.1, 10.0.0.2:3002"
spec:
  selector: {matchLabels: {app: vllm, inference.networking.k8s.io/engine-type: sglang}}
  targetPorts: [{number: 3000}, {number: 3002}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: other}
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
kind: InferenceObjective
metadata: {name: elsewhere}
spec: {priority: 5, poolRef: {name: other}}
)");
  extproc::EppOptions options;
  options.resources_file = resources.path();
  auto ambiguous = extproc::resolve_static_pool(options);
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_NE(ambiguous.status().message().find("--pool-name"), std::string::npos);

  options.pool_name = "dp";
  auto pool = extproc::resolve_static_pool(options);
  ASSERT_TRUE(pool.ok()) << pool.status().message();
  EXPECT_EQ(pool->pool.metadata.namespace_name, "default");
  ASSERT_EQ(pool->endpoints.size(), 3u) << "a bare host: one endpoint per target port";
  EXPECT_EQ(pool->endpoints[0].endpoint_name(), "dp-0-rank-0");
  EXPECT_EQ(pool->endpoints[0].port, 3000);
  EXPECT_EQ(pool->endpoints[1].endpoint_name(), "dp-0-rank-1");
  EXPECT_EQ(pool->endpoints[1].port, 3002);
  EXPECT_EQ(pool->endpoints[2].endpoint_name(), "dp-1-rank-1") << "host:port keeps its rank";
  EXPECT_EQ(pool->endpoints[2].labels.at("inference.networking.k8s.io/engine-type"), "sglang");
  ASSERT_EQ(pool->objectives.size(), 1u);
  EXPECT_EQ(pool->objectives[0].metadata.name, "batch");

  options.endpoints = {"10.9.9.9:3000"};
  auto overridden = extproc::resolve_static_pool(options);
  ASSERT_TRUE(overridden.ok());
  ASSERT_EQ(overridden->endpoints.size(), 1u) << "--endpoints replaces the annotation";
  EXPECT_EQ(overridden->endpoints[0].address, "10.9.9.9");

  options.endpoints.clear();
  options.pool_name = "other";
  auto empty = extproc::resolve_static_pool(options);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("infergate.io/endpoints"), std::string::npos);
}

}  // namespace
}  // namespace infergate
