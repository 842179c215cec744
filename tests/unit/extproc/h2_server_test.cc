// The native gRPC transport (extproc/h2_server.h) against grpc++'s own client over loopback:
// message order both ways, large messages across many frames, statuses and trailers-only answers,
// limits, cancellation, concurrency and shutdown. The calls here are scripted test calls on the
// ext_proc and health method paths, so grpc++'s generated stubs can drive them.
#include "extproc/h2_server.h"

#include <fmt/format.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "extproc/tls.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace infergate::extproc::h2 {
namespace {

namespace pb = ::envoy::service::ext_proc::v3;
namespace health = ::grpc::health::v1;

constexpr std::string_view kProcess = "/envoy.service.ext_proc.v3.ExternalProcessor/Process";
constexpr std::string_view kCheck = "/grpc.health.v1.Health/Check";

// What the scripted calls saw, across all calls of a server.
struct Observed {
  std::atomic<int> created{0};
  std::atomic<int> half_closed{0};
  std::atomic<int> cancelled{0};
  std::atomic<int> destroyed{0};
};

// Echoes each request body back as a body mutation. A body "finish <code> <message>" ends the
// call with that status at once; "hold" answers nothing (the call stays open).
class ScriptedCall final : public Call {
 public:
  ScriptedCall(CallResponder& responder, Observed& observed)
      : responder_(responder), observed_(observed) {
    observed_.created++;
  }
  ~ScriptedCall() override { observed_.destroyed++; }

  void on_message(std::string_view bytes) override {
    pb::ProcessingRequest request;
    ASSERT_TRUE(request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
    const std::string& body = request.request_body().body();
    if (body.starts_with("finish ")) {
      const auto space = body.find(' ', 7);
      const int code = std::stoi(body.substr(7, space - 7));
      responder_.finish(static_cast<GrpcCode>(code),
                        space == std::string::npos ? "" : body.substr(space + 1));
      return;
    }
    if (body == "hold") return;
    pb::ProcessingResponse response;
    response.mutable_request_body()->mutable_response()->mutable_body_mutation()->set_body(body);
    responder_.send(response);
  }
  void on_half_close() override {
    observed_.half_closed++;
    responder_.finish(GrpcCode::kOk);
  }
  void on_cancel() override { observed_.cancelled++; }

 private:
  CallResponder& responder_;
  Observed& observed_;
};

// Answers Check with SERVING for "", and NOT_FOUND otherwise.
class CheckCall final : public Call {
 public:
  explicit CheckCall(CallResponder& responder) : responder_(responder) {}
  void on_message(std::string_view bytes) override {
    health::HealthCheckRequest request;
    request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
    if (!request.service().empty()) {
      responder_.finish(GrpcCode::kNotFound, "unknown service " + request.service());
      return;
    }
    health::HealthCheckResponse response;
    response.set_status(health::HealthCheckResponse::SERVING);
    responder_.send(response);
    responder_.finish(GrpcCode::kOk);
  }
  void on_half_close() override {}
  void on_cancel() override {}

 private:
  CallResponder& responder_;
};

// Waits (bounded) for a condition another thread makes true.
template <typename Predicate>
bool eventually(Predicate predicate) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// Only the health Check method.
MethodTable check_only() {
  MethodTable methods;
  methods.emplace(std::string(kCheck),
                  [](CallResponder& responder) { return std::make_unique<CheckCall>(responder); });
  return methods;
}

class H2ServerTest : public ::testing::Test {
 protected:
  void start(ServerOptions options = {}) {
    options.address = "127.0.0.1";
    options.port = 0;
    if (options.workers == 0) options.workers = 2;
    MethodTable methods;
    methods.emplace(std::string(kProcess), [this](CallResponder& responder) {
      return std::make_unique<ScriptedCall>(responder, observed_);
    });
    methods.emplace(std::string(kCheck), [](CallResponder& responder) {
      return std::make_unique<CheckCall>(responder);
    });
    server_ = std::make_unique<Server>(options, std::move(methods));
    channel_ = ::grpc::CreateChannel(fmt::format("127.0.0.1:{}", server_->port()),
                                     ::grpc::InsecureChannelCredentials());
    stub_ = pb::ExternalProcessor::NewStub(channel_);
  }

  static pb::ProcessingRequest body_message(std::string body) {
    pb::ProcessingRequest request;
    request.mutable_request_body()->set_body(std::move(body));
    return request;
  }
  static const std::string& echoed(const pb::ProcessingResponse& response) {
    return response.request_body().response().body_mutation().body();
  }

  Observed observed_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<::grpc::Channel> channel_;
  std::unique_ptr<pb::ExternalProcessor::Stub> stub_;
};

TEST_F(H2ServerTest, BidiStreamKeepsOrderBothWaysAndEndsOk) {
  start();
  ::grpc::ClientContext context;
  auto stream = stub_->Process(&context);
  for (int index = 0; index < 50; ++index) {
    ASSERT_TRUE(stream->Write(body_message(fmt::format("message {}", index))));
  }
  for (int index = 0; index < 50; ++index) {
    pb::ProcessingResponse response;
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(echoed(response), fmt::format("message {}", index));
  }
  ASSERT_TRUE(stream->WritesDone());
  pb::ProcessingResponse extra;
  EXPECT_FALSE(stream->Read(&extra));
  const ::grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(eventually([&] { return observed_.destroyed.load() == 1; }));
  EXPECT_EQ(observed_.half_closed.load(), 1);
  EXPECT_EQ(observed_.cancelled.load(), 0);
}

TEST_F(H2ServerTest, LargeMessagesCrossManyFramesAndWindows) {
  ServerOptions options;
  options.stream_window_bytes = 65535;  // the protocol's smallest window: many WINDOW_UPDATEs
  start(options);
  ::grpc::ClientContext context;
  context.AddMetadata("x-test", "large");
  auto stream = stub_->Process(&context);
  std::string big(3u << 20, '\0');
  for (std::size_t index = 0; index < big.size(); ++index) big[index] = char('a' + index % 26);
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(stream->Write(body_message(big)));
    pb::ProcessingResponse response;
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(echoed(response).size(), big.size());
    EXPECT_TRUE(echoed(response) == big);
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(H2ServerTest, StatusesAndMessagesReachTheClient) {
  start();
  struct Case {
    std::string_view description;
    std::string command;
    ::grpc::StatusCode code;
    std::string message;
  };
  const Case cases[] = {
      {"error with a message", "finish 3 the body is not JSON", ::grpc::INVALID_ARGUMENT,
       "the body is not JSON"},
      {"non-ASCII and percent signs are percent-encoded on the wire", "finish 13 100% caf\xc3\xa9",
       ::grpc::INTERNAL, "100% caf\xc3\xa9"},
      {"OK before the client is done sending", "finish 0", ::grpc::OK, ""},
  };
  for (const Case& c : cases) {
    ::grpc::ClientContext context;
    auto stream = stub_->Process(&context);
    ASSERT_TRUE(stream->Write(body_message("first"))) << c.description;
    pb::ProcessingResponse response;
    ASSERT_TRUE(stream->Read(&response)) << c.description;
    EXPECT_EQ(echoed(response), "first");
    stream->Write(body_message(c.command));
    EXPECT_FALSE(stream->Read(&response)) << c.description;
    const ::grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), c.code) << c.description;
    EXPECT_EQ(status.error_message(), c.message) << c.description;
  }
  // Trailers-only: the status before any message.
  ::grpc::ClientContext context;
  auto stream = stub_->Process(&context);
  ASSERT_TRUE(stream->Write(body_message("finish 8 too busy")));
  pb::ProcessingResponse response;
  EXPECT_FALSE(stream->Read(&response));
  const ::grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), ::grpc::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(), "too busy");
}

TEST_F(H2ServerTest, UnaryCallsAndUnknownMethods) {
  start();
  auto health_stub = health::Health::NewStub(channel_);
  {
    ::grpc::ClientContext context;
    health::HealthCheckRequest request;
    health::HealthCheckResponse response;
    ASSERT_TRUE(health_stub->Check(&context, request, &response).ok());
    EXPECT_EQ(response.status(), health::HealthCheckResponse::SERVING);
  }
  {
    ::grpc::ClientContext context;
    health::HealthCheckRequest request;
    request.set_service("other");
    health::HealthCheckResponse response;
    const ::grpc::Status status = health_stub->Check(&context, request, &response);
    EXPECT_EQ(status.error_code(), ::grpc::NOT_FOUND);
    EXPECT_EQ(status.error_message(), "unknown service other");
  }
  {
    ::grpc::ClientContext context;
    health::HealthCheckRequest request;
    auto reader = health_stub->Watch(&context, request);
    health::HealthCheckResponse response;
    EXPECT_FALSE(reader->Read(&response));
    const ::grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), ::grpc::UNIMPLEMENTED);
    EXPECT_EQ(status.error_message(), "unknown method /grpc.health.v1.Health/Watch");
  }
  EXPECT_EQ(server_->stats().unknown_methods.load(), 1u);
}

TEST_F(H2ServerTest, OversizeMessageEndsOnlyItsCall) {
  ServerOptions options;
  options.max_receive_message_bytes = 1000;
  start(options);
  ::grpc::ClientContext held_context;
  auto held = stub_->Process(&held_context);
  ASSERT_TRUE(held->Write(body_message("before")));
  pb::ProcessingResponse response;
  ASSERT_TRUE(held->Read(&response));

  ::grpc::ClientContext context;
  auto stream = stub_->Process(&context);
  stream->Write(body_message(std::string(2000, 'x')));
  EXPECT_FALSE(stream->Read(&response));
  const ::grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), ::grpc::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("larger than max"), std::string::npos)
      << status.error_message();
  EXPECT_EQ(server_->stats().bad_messages.load(), 1u);

  // The other call on the same connection carries on.
  ASSERT_TRUE(held->Write(body_message("after")));
  ASSERT_TRUE(held->Read(&response));
  EXPECT_EQ(echoed(response), "after");
  held->WritesDone();
  EXPECT_TRUE(held->Finish().ok());
  EXPECT_TRUE(eventually([&] { return observed_.destroyed.load() == 2; }));
  EXPECT_EQ(observed_.cancelled.load(), 1);  // the refused call was told
}

TEST_F(H2ServerTest, ClientCancellationReachesTheCall) {
  start();
  ::grpc::ClientContext context;
  auto stream = stub_->Process(&context);
  ASSERT_TRUE(stream->Write(body_message("hold")));
  ASSERT_TRUE(eventually([&] { return observed_.created.load() == 1; }));
  context.TryCancel();
  EXPECT_TRUE(eventually([&] { return observed_.cancelled.load() == 1; }));
  EXPECT_TRUE(eventually([&] { return observed_.destroyed.load() == 1; }));
  EXPECT_EQ(stream->Finish().error_code(), ::grpc::CANCELLED);
}

TEST_F(H2ServerTest, ManyConcurrentCallsFromSeveralThreads) {
  start();
  std::vector<std::thread> clients;
  std::atomic<int> failures{0};
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 40;
  for (int thread_index = 0; thread_index < kThreads; ++thread_index) {
    clients.emplace_back([&, thread_index] {
      // Half the threads on their own connection, half sharing the fixture's.
      auto channel = thread_index % 2 == 0
                         ? ::grpc::CreateChannel(fmt::format("127.0.0.1:{}", server_->port()),
                                                 ::grpc::InsecureChannelCredentials())
                         : channel_;
      auto stub = pb::ExternalProcessor::NewStub(channel);
      for (int call = 0; call < kCallsPerThread; ++call) {
        ::grpc::ClientContext context;
        auto stream = stub->Process(&context);
        const std::string body = fmt::format("{}-{}", thread_index, call);
        pb::ProcessingResponse response;
        if (!stream->Write(body_message(body)) || !stream->Read(&response) ||
            echoed(response) != body || !stream->WritesDone() || !stream->Finish().ok()) {
          failures++;
        }
      }
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(eventually([&] { return observed_.destroyed.load() == kThreads * kCallsPerThread; }));
  EXPECT_EQ(server_->stats().calls_total.load(), std::uint64_t{kThreads * kCallsPerThread});
}

TEST_F(H2ServerTest, ShutdownLetsCallsFinishWithinTheGraceThenCancelsThem) {
  start();
  ::grpc::ClientContext context;
  auto stream = stub_->Process(&context);
  ASSERT_TRUE(stream->Write(body_message("hold")));
  ASSERT_TRUE(eventually([&] { return observed_.created.load() == 1; }));
  // The call never ends by itself: after the grace it is cancelled, and shutdown returns.
  std::thread stopper([&] { server_->shutdown(std::chrono::milliseconds(200)); });
  stopper.join();
  EXPECT_EQ(observed_.cancelled.load(), 1);
  EXPECT_EQ(observed_.destroyed.load(), 1);
  EXPECT_EQ(server_->stats().connections_active.load(), 0);
  EXPECT_FALSE(stream->Finish().ok());
}

TEST_F(H2ServerTest, GracefulShutdownCompletesACallInFlight) {
  start();
  ::grpc::ClientContext context;
  auto stream = stub_->Process(&context);
  ASSERT_TRUE(stream->Write(body_message("one")));
  pb::ProcessingResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::thread stopper([&] { server_->shutdown(std::chrono::seconds(10)); });
  // GOAWAY does not end the call in flight: it still answers and ends OK.
  ASSERT_TRUE(stream->Write(body_message("two")));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(echoed(response), "two");
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  stopper.join();
  EXPECT_EQ(observed_.cancelled.load(), 0);
  EXPECT_EQ(observed_.half_closed.load(), 1);
}

TEST(H2ServerShutdownTest, AConnectionStillInItsTlsHandshakeIsClosed) {
  auto material = generate_self_signed();
  ASSERT_TRUE(material.ok()) << material.status().message();
  ServerOptions options;
  options.address = "127.0.0.1";
  options.workers = 1;
  options.tls = &*material;
  Server server(options, check_only());
  // A client that connects and never starts the handshake: the connection has no HTTP/2 session.
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket silent(io);
  silent.connect({boost::asio::ip::make_address("127.0.0.1"), server.port()});
  ASSERT_TRUE(eventually([&] { return server.stats().connections_active.load() == 1; }));
  server.shutdown(std::chrono::seconds(5));  // the grace asks every connection to go away
  EXPECT_EQ(server.stats().connections_active.load(), 0);
}

TEST(H2ServerStartupTest, RefusesAnAddressItCannotBind) {
  const MethodTable methods = check_only();
  ServerOptions options;
  options.address = "127.0.0.1";
  options.workers = 1;
  Server first(options, methods);
  options.port = first.port();
  try {
    Server second(options, methods);
    ADD_FAILURE() << "binding a port in use must fail";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find(fmt::format("127.0.0.1:{}", first.port())),
              std::string::npos)
        << error.what();
  }
  options.address = "not-an-address";
  EXPECT_THROW(Server(options, methods), std::runtime_error);
}

}  // namespace
}  // namespace infergate::extproc::h2
