#pragma once

// The `infergate epp` runner: everything an Endpoint Picker process owns, wired together.
//
//   pool (static: --endpoints / --resources) ─▶ Datastore ◀─ CollectorSet (scrapes /metrics)
//                                                   │
//   Envoy ─ext_proc─▶ ExtProcService ─▶ StreamProcessor ─▶ Director ─▶ scheduler
//   probes ─grpc.health.v1─▶ HealthService (health port; ext_proc port with --health-checking)
//   Prometheus ─HTTP GET /metrics─▶ prom::Registry (director, extproc and pool metrics)
//
// Pool membership comes from a static description (the Kubernetes API mode is not part of this
// build): `--endpoints host:port,...` alone (pods `<pool-name>-<index>`, rank 0), or a resources
// file holding the InferencePool (+ InferenceObjectives, InferenceModelRewrites, legacy
// InferenceModels) whose endpoints are the --endpoints entries or, failing those, the pool's
// `infergate.io/endpoints` annotation; a bare `host` entry expands to every targetPort of the pool
// (one endpoint per port, rank = the port's index), `host:port` is used as is.
//
// Threads: the gRPC servers use their own threads (the native transport's workers, or gRPC's); the
// collectors and the metrics HTTP server each run one io_context on their own thread. start(),
// stop() and the accessors may be called from any non-gRPC thread; stop() is idempotent and also
// run by the destructor.
//
// Errors: the constructor and start() throw std::runtime_error with one clear message (file,
// object and field, or the port that could not be bound) — start-up only.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/types.h"
#include "common/clock.h"
#include "common/status.h"
#include "datastore/endpoint.h"
#include "datastore/static_pool.h"

namespace infergate::datastore {
class Datastore;
}
namespace infergate::director {
class Director;
}
namespace infergate::prom {
class Registry;
}

namespace infergate::extproc {

class HealthState;
struct ExtProcStats;

// The static-pool start-up rules live in datastore/static_pool.h, shared with `infergate serve`.
using datastore::EndpointAddress;
using datastore::kEndpointsAnnotation;
using datastore::parse_endpoint_address;

// How the gRPC ports are served: infergate's own HTTP/2 transport (h2_server.h: nghttp2 and
// Asio, one thread per core) or gRPC C++'s callback API. Both speak the same wire protocol.
enum class GrpcTransport { kNative, kCallback };

// Everything `infergate epp` can be told (flag names in comments; defaults as GIE's).
struct EppOptions {
  std::string bind_address = "0.0.0.0";    // every listener (tests use 127.0.0.1)
  std::uint16_t grpc_port = 9002;          // --grpc-port (0: ephemeral)
  std::uint16_t grpc_health_port = 9003;   // --grpc-health-port
  std::uint16_t metrics_port = 9090;       // --metrics-port
  std::string pool_name;                   // --pool-name
  std::string pool_namespace = "default";  // --pool-namespace
  std::string config_file;                 // --config-file (EndpointPickerConfig)
  std::string config_text;                 // --config-text
  Duration refresh_metrics_interval = std::chrono::milliseconds(50);  // --refresh-metrics-interval
  Duration metrics_staleness_threshold = std::chrono::seconds(2);  // --metrics-staleness-threshold
  bool secure_serving = true;                                      // --secure-serving
  std::string cert_path;                                           // --cert-path (tls.crt, tls.key)
  bool health_checking = false;                                    // --health-checking
  bool disable_endpoint_subset_filter = false;            // --disable-endpoint-subset-filter
  bool emit_endpoint_scores = false;                      // --emit-endpoint-scores
  std::size_t max_request_body_bytes = 16u << 20;         // --max-request-body-bytes (0: no limit)
  bool conformance_test_hooks = false;                    // --conformance-test-hooks
  std::vector<std::string> endpoints;                     // --endpoints
  std::string resources_file;                             // --resources
  GrpcTransport grpc_transport = GrpcTransport::kNative;  // --grpc-transport
  unsigned grpc_workers = 0;  // --grpc-workers: native transport threads (0: one per core)
  // Time calls in flight may take to end at shutdown before they are cancelled.
  std::chrono::milliseconds shutdown_grace{5000};
  // Seed for the director's draws; 0: from the system.
  std::uint64_t seed = 0;
};

// A statically described pool (datastore/static_pool.h), and the EndpointPickerConfig found in
// the resources file, if any.
struct StaticPool : datastore::StaticPool {
  std::optional<api::EndpointPickerConfig> config;
};

// Resolves the static pool from the options (pure apart from reading --resources). Errors (400)
// name the flag, file, object or entry at fault; without --endpoints and --resources the error
// explains that the Kubernetes API mode is not available in this build.
Result<StaticPool> resolve_static_pool(const EppOptions& options);

class EppRunner {
 public:
  // Loads and checks the configuration and the pool (nothing is bound yet). Throws on error.
  explicit EppRunner(EppOptions options);
  ~EppRunner();
  EppRunner(const EppRunner&) = delete;
  EppRunner& operator=(const EppRunner&) = delete;

  // Binds the ports, loads the endpoints, starts the collectors and reports SERVING. Throws when
  // a port cannot be bound. Call once.
  void start();
  // Reports NOT_SERVING, stops the servers (calls in flight get shutdown_grace), the collectors
  // and the metrics server. Idempotent.
  void stop();

  // Bound ports (valid after start()).
  std::uint16_t grpc_port() const;
  std::uint16_t grpc_health_port() const;
  std::uint16_t metrics_port() const;
  // The PEM certificate the ext_proc port presents (generated or loaded); empty when insecure.
  const std::string& certificate_pem() const;

  const EppOptions& options() const;
  const StaticPool& pool() const;
  datastore::Datastore& datastore();
  director::Director& director();
  prom::Registry& registry();
  const HealthState& health() const;
  const ExtProcStats& extproc_stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infergate::extproc
