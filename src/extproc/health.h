#pragma once

// The Endpoint Picker's gRPC health service (grpc.health.v1; epp-protocol facts §10).
//
// HealthState holds one readiness bit for the whole picker: NOT_SERVING until the pool is known
// (static configuration: right after its endpoints are loaded), SERVING afterwards, NOT_SERVING
// again while shutting down. Every name the EPP answers reports that bit; any other name is
// unknown (Check answers gRPC NOT_FOUND, as the standard health protocol says).
//
// HealthService answers Check from a HealthState; Watch is answered UNIMPLEMENTED, as the
// reference EPP does (the protocol tells clients not to retry then). One HealthService may be
// registered on several servers (the health port, and the ext_proc port with --health-checking).
//
// Why not grpc::EnableDefaultHealthCheckService: it is a process-wide switch that adds the service
// to every server built afterwards (the ext_proc server must only have it with
// --health-checking), and its names must be set one by one on each server; one small service
// reading one atomic keeps every port and name consistent by construction.
//
// Threads: HealthState is safe from any thread; HealthService's handlers run on gRPC threads.
// The HealthState must outlive every server the service is registered on.

#include <array>
#include <atomic>
#include <optional>
#include <string_view>

#include "extproc/h2_server.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace infergate::extproc {

class HealthState {
 public:
  // The names the EPP answers: "" (the whole server), liveness, readiness, the ext_proc service
  // and inference-extension (the Helm chart's and the conformance fixture's probe).
  static constexpr std::array<std::string_view, 5> kServiceNames = {
      "", "liveness", "readiness", "envoy.service.ext_proc.v3.ExternalProcessor",
      "inference-extension"};

  void set_serving(bool serving) { serving_.store(serving, std::memory_order_release); }
  bool serving() const { return serving_.load(std::memory_order_acquire); }

  // The status of `service`, or nullopt when the name is not one of kServiceNames.
  std::optional<::grpc::health::v1::HealthCheckResponse::ServingStatus> status(
      std::string_view service) const;

 private:
  std::atomic<bool> serving_{false};
};

// Registers Check and Watch on the native transport (h2_server.h), answered as HealthService
// answers them. `state` must outlive the h2::Server.
void add_native_health_methods(const HealthState& state, h2::MethodTable& methods);

class HealthService final : public ::grpc::health::v1::Health::CallbackService {
 public:
  explicit HealthService(const HealthState& state) : state_(state) {}

  ::grpc::ServerUnaryReactor* Check(::grpc::CallbackServerContext* context,
                                    const ::grpc::health::v1::HealthCheckRequest* request,
                                    ::grpc::health::v1::HealthCheckResponse* response) override;
  ::grpc::ServerWriteReactor<::grpc::health::v1::HealthCheckResponse>* Watch(
      ::grpc::CallbackServerContext* context,
      const ::grpc::health::v1::HealthCheckRequest* request) override;

 private:
  const HealthState& state_;
};

}  // namespace infergate::extproc
