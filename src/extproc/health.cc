#include "extproc/health.h"

#include <algorithm>
#include <string>

namespace infergate::extproc {

namespace health = ::grpc::health::v1;

std::optional<health::HealthCheckResponse::ServingStatus> HealthState::status(
    std::string_view service) const {
  if (std::find(kServiceNames.begin(), kServiceNames.end(), service) == kServiceNames.end()) {
    return std::nullopt;
  }
  return serving() ? health::HealthCheckResponse::SERVING
                   : health::HealthCheckResponse::NOT_SERVING;
}

::grpc::ServerUnaryReactor* HealthService::Check(::grpc::CallbackServerContext* context,
                                                 const health::HealthCheckRequest* request,
                                                 health::HealthCheckResponse* response) {
  ::grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const auto status = state_.status(request->service());
  if (!status) {
    reactor->Finish(::grpc::Status(::grpc::StatusCode::NOT_FOUND,
                                   "unknown service \"" + request->service() + "\""));
    return reactor;
  }
  response->set_status(*status);
  reactor->Finish(::grpc::Status::OK);
  return reactor;
}

namespace {

// Finishes at once with UNIMPLEMENTED and deletes itself when gRPC is done with it.
class UnimplementedWatch final : public ::grpc::ServerWriteReactor<health::HealthCheckResponse> {
 public:
  UnimplementedWatch() {
    Finish(
        ::grpc::Status(::grpc::StatusCode::UNIMPLEMENTED, "Watch is not implemented; use Check"));
  }
  void OnDone() override { delete this; }
};

}  // namespace

::grpc::ServerWriteReactor<health::HealthCheckResponse>* HealthService::Watch(
    ::grpc::CallbackServerContext* /*context*/, const health::HealthCheckRequest* /*request*/) {
  return new UnimplementedWatch();
}

namespace {

// Check on the native transport: one request message, one answer.
class NativeCheckCall final : public h2::Call {
 public:
  NativeCheckCall(const HealthState& state, h2::CallResponder& responder)
      : state_(state), responder_(responder) {}

  void on_message(std::string_view bytes) override {
    health::HealthCheckRequest request;
    if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      responder_.finish(h2::GrpcCode::kInternal, "cannot parse the HealthCheckRequest message");
      return;
    }
    const auto status = state_.status(request.service());
    if (!status) {
      responder_.finish(h2::GrpcCode::kNotFound, "unknown service \"" + request.service() + "\"");
      return;
    }
    health::HealthCheckResponse response;
    response.set_status(*status);
    responder_.send(response);
    responder_.finish(h2::GrpcCode::kOk);
  }
  void on_half_close() override {
    responder_.finish(h2::GrpcCode::kInternal, "Check expects one HealthCheckRequest message");
  }
  void on_cancel() override {}

 private:
  const HealthState& state_;
  h2::CallResponder& responder_;
};

// Answered UNIMPLEMENTED at once, as HealthService::Watch is.
class NativeUnimplementedCall final : public h2::Call {
 public:
  explicit NativeUnimplementedCall(h2::CallResponder& responder) {
    responder.finish(h2::GrpcCode::kUnimplemented, "Watch is not implemented; use Check");
  }
  void on_message(std::string_view) override {}
  void on_half_close() override {}
  void on_cancel() override {}
};

}  // namespace

void add_native_health_methods(const HealthState& state, h2::MethodTable& methods) {
  methods.emplace("/grpc.health.v1.Health/Check", [&state](h2::CallResponder& responder) {
    return std::make_unique<NativeCheckCall>(state, responder);
  });
  methods.emplace("/grpc.health.v1.Health/Watch", [](h2::CallResponder& responder) {
    return std::make_unique<NativeUnimplementedCall>(responder);
  });
}

}  // namespace infergate::extproc
