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

}  // namespace infergate::extproc
