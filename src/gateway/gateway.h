#pragma once

// `infergate serve`: one process in front of a pool of model servers, the endpoint picker inside.
//
//   clients ─HTTP─▶ http::Server ─▶ Proxy ─▶ Director (picker) ─▶ UpstreamPool ─▶ model servers
//                   (N worker threads)          ▲
//                                   Datastore ◀─ CollectorSet (scrapes /metrics, own thread)
//
// Threads: `workers` threads run one io_context that serves the listener, every client
// connection (each on its own strand) and the upstream connections; the upstream pool is sharded
// by worker thread (upstream_pool.h). One shared io_context rather than one per core because
// http::Server binds a single acceptor (no SO_REUSEPORT option), so connections cannot be spread
// over several io_contexts by the kernel. The metrics collectors run on their own io_context and
// thread.
//
// Lifecycle: construct (checks the configuration, binds the port; throws std::runtime_error with
// one clear message), start(), then stop() — graceful: /readyz turns 503, the listener closes,
// requests in flight (streams included) may finish for up to `drain_timeout`, then everything
// stops. start() and stop() from one controlling thread (not an I/O thread); stop() is
// idempotent and run by the destructor.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "api/endpoint_picker_config.h"
#include "api/types.h"
#include "common/clock.h"
#include "datastore/endpoint.h"
#include "gateway/proxy.h"
#include "gateway/retry_policy.h"

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

struct GatewayOptions {
  std::string host = "0.0.0.0";  // --host
  std::uint16_t port = 8080;     // --port (0: any free port)
  // The pool (--endpoints), and its name in the inference_pool_* metrics.
  std::vector<datastore::EndpointSpec> endpoints;
  std::string pool_name = "default";
  // The picker configuration (--config-file / --config-text; GIE's default profile otherwise).
  api::EndpointPickerConfig picker_config = api::default_endpoint_picker_config();
  // InferenceObjectives and InferenceModelRewrites (null: none).
  std::shared_ptr<const datastore::ModelPolicies> policies;
  ProxyOptions proxy;
  EjectionOptions ejection;
  UpstreamPoolOptions upstream_pool;
  std::size_t workers = 0;                         // --workers (0: one per core)
  std::size_t max_request_body_bytes = 16u << 20;  // --max-request-body-bytes (0: no limit)
  std::chrono::milliseconds drain_timeout{30000};  // --drain-timeout
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
  datastore::Datastore& datastore();
  director::Director& director();
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
