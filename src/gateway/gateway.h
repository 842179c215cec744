#pragma once

// `infergate serve`: one process in front of a pool of model servers, the endpoint picker inside.
//
//   clients ─HTTP─▶ http::Server ─▶ Proxy ─▶ Director (picker) ─▶ UpstreamPool ─▶ model servers
//                   (N worker threads)          ▲
//                                   Datastore ◀─ CollectorSet (scrapes /metrics, own thread)
//
// Several pools (`--config`): each InferencePool gets its own Datastore, collectors and Director
// (picker, policies, in-flight state); the Proxy's RouteTable (routes.h) picks the pool per
// request. The upstream connection pool, endpoint health and gateway metrics are shared.
//
// Threads: one io_context per worker (`workers`, default one per core), each run by one thread.
// Every worker has its own acceptor on the shared port (SO_REUSEPORT: the kernel spreads new
// connections over the workers), and a client connection stays on the worker that accepted it,
// together with the upstream connections it uses: shard i of the upstream pool is worker i
// (upstream_pool.h). So a request never changes threads and nothing on the request path is shared
// between workers except the director's thread-safe state and atomic counters. The metrics
// collectors run on their own io_context and thread.
//
// External picker (`--epp`, GatewayOptions::epp): an ExtProcClient asks that Endpoint Picker for
// every inference request instead of the embedded director (proxy.h). The pools are then optional:
// when given (`--endpoints`, `--config`) they are what FailOpen falls back on (their embedded
// pickers, collectors and routes run as without --epp); without them the gateway keeps no
// endpoint state at all and /readyz only reflects draining.
//
// Lifecycle: construct (checks the configuration, binds the port; throws std::runtime_error with
// one clear message), start(), then stop() — graceful: /readyz turns 503, the listener closes,
// requests in flight (streams included) may finish for up to `drain_timeout`, then everything
// stops. start() and stop() from one controlling thread (not an I/O thread); stop() is
// idempotent and run by the destructor.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/endpoint_picker_config.h"
#include "api/types.h"
#include "common/clock.h"
#include "datastore/endpoint.h"
#include "extproc/client.h"
#include "gateway/proxy.h"
#include "gateway/retry_policy.h"
#include "gateway/routes.h"

namespace spdlog {
class logger;
}
namespace infergate::datastore {
class Datastore;
class ModelPolicies;
}  // namespace infergate::datastore
namespace infergate::director {
class Director;
}
namespace infergate::prom {
class Registry;
}

namespace infergate::gateway {

// One InferencePool the gateway serves (`--config`).
struct PoolOptions {
  std::string name = "default";  // backendRef name; label `name` of the inference_pool_* gauges
  std::string namespace_name = "default";
  std::vector<datastore::EndpointSpec> endpoints;
  // Its InferenceObjectives and InferenceModelRewrites (null: none).
  std::shared_ptr<const datastore::ModelPolicies> policies;
  // Client model names its policies declare (listed by GET /v1/models).
  std::vector<std::string> model_names;
  // Kept for the external-EPP mode; the embedded picker does not use it.
  std::optional<api::EndpointPickerRef> endpoint_picker_ref;
};

struct GatewayOptions {
  std::string host = "0.0.0.0";  // --host
  std::uint16_t port = 8080;     // --port (0: any free port)
  // The quick-start pool (--endpoints), and its name in the inference_pool_* metrics; used when
  // `pools` is empty.
  std::vector<datastore::EndpointSpec> endpoints;
  std::string pool_name = "default";
  // InferenceObjectives and InferenceModelRewrites of the quick-start pool (null: none).
  std::shared_ptr<const datastore::ModelPolicies> policies;
  // Several pools, each with its own datastore, collectors, picker and in-flight state (--config).
  std::vector<PoolOptions> pools;
  // HTTPRoutes choosing among `pools` (routes.h); empty: everything goes to the first pool.
  std::vector<api::HTTPRoute> routes;
  // The picker configuration every pool uses (--config-file / --config-text / an
  // EndpointPickerConfig in --config; GIE's default profile otherwise).
  api::EndpointPickerConfig picker_config = api::default_endpoint_picker_config();
  ProxyOptions proxy;
  // --epp and its --epp-* options: pick through this external Endpoint Picker (unset: the
  // embedded picker). With it, `endpoints` and `pools` may be empty (see above).
  std::optional<extproc::ExtProcClientOptions> epp;
  EjectionOptions ejection;
  UpstreamPoolOptions upstream_pool;
  std::size_t workers = 0;                         // --workers (0: one per core)
  std::size_t max_request_body_bytes = 16u << 20;  // --max-request-body-bytes (0: no limit)
  // Larger request headers, or more header fields, are answered with 431.
  std::size_t max_request_header_bytes = 64u << 10;                   // --max-request-header-bytes
  std::size_t max_request_headers = 100;                              // --max-request-headers
  std::chrono::milliseconds drain_timeout{30000};                     // --drain-timeout
  Duration refresh_metrics_interval = std::chrono::milliseconds(50);  // --refresh-metrics-interval
  // --metrics-staleness-threshold (also ProxyOptions::metrics_staleness_threshold, set from it).
  Duration metrics_staleness_threshold = std::chrono::seconds(2);
  // --access-log: JSON lines to this logger; null with access_log on: standard output.
  bool access_log = true;
  std::shared_ptr<spdlog::logger> access_logger;
  std::uint64_t seed = 0;  // the director's draws; 0: from the system
};

class Gateway {
 public:
  explicit Gateway(GatewayOptions options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Loads the pool, starts the collectors, the listener and the worker threads. Call once.
  void start();
  // Graceful shutdown (see above). Idempotent.
  void stop();

  std::uint16_t port() const;  // the bound port
  const GatewayOptions& options() const;
  // Pool `pool` (index into options().pools; the quick-start pool is 0).
  datastore::Datastore& datastore(std::size_t pool = 0);
  director::Director& director(std::size_t pool = 0);
  std::size_t pool_count() const;
  prom::Registry& registry();
  const GatewayMetrics& metrics() const;
  const EndpointHealth& health() const;
  const UpstreamPool& upstream_pool() const;
  std::int64_t in_flight() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infergate::gateway
