#pragma once

// The Endpoint Picker's ext_proc gRPC service (epp-protocol facts §1, §4) on gRPC's callback API,
// and a small wrapper that builds and starts a grpc::Server.
//
// One `Process` call is one HTTP request. Each call gets a StreamReactor (server.cc) that owns one
// StreamProcessor (the protocol state machine) and an ordered send queue:
// - one read outstanding at a time, into one ProcessingRequest reused across reads, so
//   StreamProcessor::on_message calls are serialised;
// - the answers of each message are appended to the queue in order, and one write is in flight
//   at a time (OnReadDone and OnWriteDone may run concurrently on different gRPC threads; the
//   queue and the stream state are guarded by a mutex, and no gRPC call is made while holding it);
// - StreamAction::kFinishOk or the client's half-close: stop reading, finish with OK once the
//   queued answers are written; kFinishError: the same with INVALID_ARGUMENT and the processor's
//   message; a failed write (client gone): drop the queue and finish at once;
// - Finish is called exactly once; on_stream_end() runs when reading ends and again (idempotent)
//   in OnDone, which deletes the reactor.
//
// The same service runs on infergate's own HTTP/2 transport (h2_server.h, the default of
// `infergate epp --grpc-transport`): add_native_methods() registers a Process call there that
// drives the same StreamProcessor with the same counters; the transport already serialises each
// stream's callbacks on one thread, so that call needs no lock or queue of its own.
//
// Threads: Process() and the reactions run on gRPC's threads. The Director, ProcessorOptions and
// ProcessorMetrics given to ExtProcService must outlive every server it is registered on.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "extproc/h2_server.h"
#include "extproc/stream_processor.h"

namespace grpc {
class Server;
class ServerCredentials;
class Service;
}  // namespace grpc

namespace infergate::extproc {

// Counters of an ExtProcService, readable from any thread.
struct ExtProcStats {
  std::atomic<std::int64_t> active_streams{0};
  std::atomic<std::uint64_t> streams_total{0};
  std::atomic<std::uint64_t> protocol_errors{0};  // streams finished with INVALID_ARGUMENT
  std::atomic<std::uint64_t> write_failures{0};   // streams whose client went away mid-answer
};

class ExtProcService final : public pb::ExternalProcessor::CallbackService {
 public:
  ExtProcService(director::Director& director, ProcessorOptions options, ProcessorMetrics& metrics);
  ~ExtProcService() override;

  ::grpc::ServerBidiReactor<pb::ProcessingRequest, pb::ProcessingResponse>* Process(
      ::grpc::CallbackServerContext* context) override;

  const ExtProcStats& stats() const { return stats_; }

  // Registers Process (kProcessPath) on the native transport. The service must outlive the
  // h2::Server.
  void add_native_methods(h2::MethodTable& methods);
  static constexpr std::string_view kProcessPath =
      "/envoy.service.ext_proc.v3.ExternalProcessor/Process";

 private:
  friend class StreamReactor;
  friend class NativeProcessCall;
  director::Director& director_;
  const ProcessorOptions options_;
  ProcessorMetrics& metrics_;
  ExtProcStats stats_;
};

struct GrpcServerOptions {
  std::string address = "0.0.0.0";
  std::uint16_t port = 0;  // 0: an ephemeral port (GrpcServer::port() tells which)
  // Null: plaintext HTTP/2 (--secure-serving=false).
  std::shared_ptr<::grpc::ServerCredentials> credentials;
  // Largest message accepted; 0 keeps gRPC's default (4 MiB). Envoy's body chunks are far smaller.
  int max_receive_message_bytes = 0;
};

// A started grpc::Server serving `services` (not owned: they must outlive the GrpcServer).
class GrpcServer {
 public:
  // Binds and starts; throws std::runtime_error naming the address when the port cannot be bound
  // (start-up only).
  GrpcServer(const GrpcServerOptions& options, const std::vector<::grpc::Service*>& services);
  // shutdown() with no grace.
  ~GrpcServer();
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  std::uint16_t port() const { return port_; }
  // Stops accepting calls, lets calls in flight run for up to `grace`, then cancels the rest and
  // waits until every reactor is done. Idempotent; any thread except a gRPC thread.
  void shutdown(std::chrono::milliseconds grace);

 private:
  std::unique_ptr<::grpc::Server> server_;
  std::uint16_t port_ = 0;
  std::atomic<bool> shut_down_{false};
};

}  // namespace infergate::extproc
