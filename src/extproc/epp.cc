#include "extproc/epp.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <stdexcept>
#include <thread>

#include "datastore/collector.h"
#include "datastore/datastore.h"
#include "datastore/metrics_mapping.h"
#include "datastore/model_policies.h"
#include "datastore/static_pool.h"
#include "director/director.h"
#include "extproc/h2_server.h"
#include "extproc/health.h"
#include "extproc/server.h"
#include "extproc/tls.h"
#include "http/server.h"
#include "prom/registry.h"
#include "scheduling/config_loader.h"

namespace infergate::extproc {
namespace {

namespace asio = boost::asio;

constexpr std::string_view kStaticModeHelp =
    "run with a static pool: --endpoints host:port,... (e.g. --endpoints "
    "10.0.0.1:8000,10.0.0.2:8000), or --resources FILE holding the InferencePool (its endpoints "
    "from --endpoints, or from its metadata annotation infergate.io/endpoints: "
    "\"host[:port],...\")";

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return {};
  return name;
}

}  // namespace

Result<StaticPool> resolve_static_pool(const EppOptions& options) {
  StaticPool result;
  if (!options.resources_file.empty()) {
    auto resources = datastore::load_static_resources({options.resources_file});
    if (!resources) return resources.status();
    const std::string& file = options.resources_file;
    if (resources->configs.size() > 1) {
      return Status::bad_request(
          fmt::format("{}: holds {} EndpointPickerConfigs; at most one is allowed", file,
                      resources->configs.size()));
    }
    auto pool = datastore::select_static_pool(*resources, file, options.pool_name,
                                              options.pool_namespace, options.endpoints);
    if (!pool) return pool.status();
    static_cast<datastore::StaticPool&>(result) = std::move(*pool);
    if (!resources->configs.empty()) result.config = std::move(resources->configs.front());
    return result;
  }
  if (options.endpoints.empty()) {
    return Status::bad_request(fmt::format(
        "no pool given: the Kubernetes API mode (watching the InferencePool named by --pool-name "
        "and its Pods) is not available in this build; {}",
        kStaticModeHelp));
  }
  auto pool = datastore::static_pool_from_endpoints(options.endpoints, options.pool_name,
                                                    options.pool_namespace);
  if (!pool) return pool.status();
  static_cast<datastore::StaticPool&>(result) = std::move(*pool);
  return result;
}

struct EppRunner::Impl {
  explicit Impl(EppOptions opts) : options(std::move(opts)) {}

  EppOptions options;
  StaticPool pool;
  std::string config_source;
  SteadyClock clock;
  prom::Registry registry;
  datastore::Datastore store;
  std::optional<datastore::EngineMappings> mappings;
  std::unique_ptr<director::Director> director;
  std::unique_ptr<ProcessorMetrics> processor_metrics;
  HealthState health;
  // One per server: a grpc::Service is registered on one server only.
  std::unique_ptr<HealthService> health_service;
  std::unique_ptr<HealthService> extproc_port_health_service;
  std::unique_ptr<ExtProcService> extproc_service;
  std::optional<TlsMaterial> tls;

  // Collectors: their own io_context and thread. Declared after the store and the clock so that
  // coroutine frames left on the io_context are destroyed while those are still alive.
  asio::io_context collector_io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> collector_work;
  std::unique_ptr<datastore::CollectorSet> collectors;
  std::thread collector_thread;

  asio::io_context metrics_io{1};
  std::unique_ptr<http::Server> metrics_server;
  std::thread metrics_thread;

  // --grpc-transport callback
  std::unique_ptr<GrpcServer> health_server;
  std::unique_ptr<GrpcServer> extproc_server;
  // --grpc-transport native
  std::unique_ptr<h2::Server> native_health_server;
  std::unique_ptr<h2::Server> native_extproc_server;

  std::uint16_t extproc_port() const {
    return native_extproc_server ? native_extproc_server->port()
           : extproc_server      ? extproc_server->port()
                                 : 0;
  }
  std::uint16_t health_port() const {
    return native_health_server ? native_health_server->port()
           : health_server      ? health_server->port()
                                : 0;
  }

  bool started = false;
  bool stopped = false;
};

EppRunner::EppRunner(EppOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& impl = *impl_;
  const EppOptions& opts = impl.options;
  auto pool = resolve_static_pool(opts);
  if (!pool) throw std::runtime_error(pool.status().message());
  impl.pool = std::move(*pool);

  auto loaded = datastore::load_picker_config(opts.config_file, opts.config_text, impl.pool.config,
                                              opts.resources_file, impl.config_source);
  if (!loaded) throw std::runtime_error(loaded.status().message());
  const api::EndpointPickerConfig config = std::move(*loaded);
  auto setup = scheduling::build_scheduler(config);
  if (!setup) {
    throw std::runtime_error(
        fmt::format("{}: EndpointPickerConfig:\n{}", impl.config_source, setup.status().message()));
  }
  auto mappings = datastore::engine_mappings_from_config(config);
  if (!mappings) {
    throw std::runtime_error(fmt::format("{}: EndpointPickerConfig:\n{}", impl.config_source,
                                         mappings.status().message()));
  }
  impl.mappings = std::move(*mappings);

  auto policies = std::make_shared<const datastore::ModelPolicies>(
      impl.pool.objectives, impl.pool.rewrites, impl.pool.legacy_models);
  director::DirectorOptions director_options;
  director_options.pool_name = impl.pool.pool.metadata.name;
  director_options.disable_subset_filter = opts.disable_endpoint_subset_filter;
  director_options.conformance_hooks = opts.conformance_test_hooks;
  director_options.metrics_staleness_threshold = opts.metrics_staleness_threshold;
  director_options.seed = opts.seed;
  impl.director =
      std::make_unique<director::Director>(impl.store, std::move(*setup), std::move(policies),
                                           impl.clock, impl.registry, director_options);
  impl.processor_metrics = std::make_unique<ProcessorMetrics>(impl.registry);
  ProcessorOptions processor_options;
  processor_options.max_body_bytes = opts.max_request_body_bytes;
  processor_options.emit_endpoint_scores = opts.emit_endpoint_scores;
  impl.extproc_service =
      std::make_unique<ExtProcService>(*impl.director, processor_options, *impl.processor_metrics);
  impl.health_service = std::make_unique<HealthService>(impl.health);
  impl.extproc_port_health_service = std::make_unique<HealthService>(impl.health);

  if (opts.secure_serving) {
    auto tls = opts.cert_path.empty() ? generate_self_signed({host_name()})
                                      : load_tls_material(opts.cert_path);
    if (!tls) throw std::runtime_error(tls.status().message());
    impl.tls = std::move(*tls);
  }
}

EppRunner::~EppRunner() { stop(); }

void EppRunner::start() {
  Impl& impl = *impl_;
  if (impl.started) throw std::logic_error("EppRunner::start called twice");
  impl.started = true;
  const EppOptions& opts = impl.options;

  // Metrics first, so that a failing gRPC bind still leaves nothing half-started for long.
  http::ServerOptions http_options;
  http_options.address = opts.bind_address;
  http_options.port = opts.metrics_port;
  http_options.server_name = "infergate-epp";
  prom::Registry* registry = &impl.registry;
  impl.metrics_server = std::make_unique<http::Server>(
      impl.metrics_io, http_options,
      [registry](http::Request& request, http::ResponseWriter& writer) -> asio::awaitable<void> {
        const std::string_view target = request.target();
        const std::string_view path = target.substr(0, target.find('?'));
        if (path == "/metrics" && (request.method() == boost::beast::http::verb::get ||
                                   request.method() == boost::beast::http::verb::head)) {
          const std::string content_type = "text/plain; version=0.0.4; charset=utf-8";
          co_await writer.send(200, content_type, registry->expose());
        } else {
          const std::string content_type = "text/plain; charset=utf-8";
          std::string body = "not found: the EPP serves GET /metrics\n";
          co_await writer.send(404, content_type, std::move(body));
        }
      });
  impl.metrics_server->start();
  impl.metrics_thread = std::thread([&impl] { impl.metrics_io.run(); });

  if (opts.grpc_transport == GrpcTransport::kNative) {
    h2::ServerOptions health_options;
    health_options.address = opts.bind_address;
    health_options.port = opts.grpc_health_port;
    health_options.workers = 1;
    h2::MethodTable health_methods;
    add_native_health_methods(impl.health, health_methods);
    impl.native_health_server =
        std::make_unique<h2::Server>(health_options, std::move(health_methods));

    h2::ServerOptions extproc_options;
    extproc_options.address = opts.bind_address;
    extproc_options.port = opts.grpc_port;
    extproc_options.workers = opts.grpc_workers;
    if (impl.tls) extproc_options.tls = &*impl.tls;
    h2::MethodTable methods;
    impl.extproc_service->add_native_methods(methods);
    if (opts.health_checking) add_native_health_methods(impl.health, methods);
    impl.native_extproc_server = std::make_unique<h2::Server>(extproc_options, std::move(methods));
  } else {
    GrpcServerOptions health_options;
    health_options.address = opts.bind_address;
    health_options.port = opts.grpc_health_port;
    impl.health_server = std::make_unique<GrpcServer>(
        health_options, std::vector<::grpc::Service*>{impl.health_service.get()});

    GrpcServerOptions extproc_options;
    extproc_options.address = opts.bind_address;
    extproc_options.port = opts.grpc_port;
    if (impl.tls) extproc_options.credentials = tls_server_credentials(*impl.tls);
    std::vector<::grpc::Service*> services = {impl.extproc_service.get()};
    if (opts.health_checking) services.push_back(impl.extproc_port_health_service.get());
    impl.extproc_server = std::make_unique<GrpcServer>(extproc_options, services);
  }

  // The pool is known once its endpoints are in the datastore: only then report SERVING.
  impl.store.set_endpoints(impl.pool.endpoints);
  datastore::CollectorOptions collector_options;
  collector_options.refresh_interval =
      std::chrono::duration_cast<std::chrono::milliseconds>(opts.refresh_metrics_interval);
  if (collector_options.refresh_interval.count() < 1) {
    collector_options.refresh_interval = std::chrono::milliseconds(1);
  }
  impl.collector_work.emplace(impl.collector_io.get_executor());
  impl.collectors = std::make_unique<datastore::CollectorSet>(
      impl.collector_io, impl.store, *impl.mappings, impl.clock, collector_options);
  impl.collectors->sync();
  impl.collector_thread = std::thread([&impl] { impl.collector_io.run(); });
  impl.health.set_serving(true);

  const api::InferencePool& pool = impl.pool.pool;
  spdlog::info(
      "infergate epp: pool {}/{} with {} endpoint{}, picker config from {}; ext_proc on {}:{} "
      "({}{}, {} transport), gRPC health on {}:{}, metrics on http://{}:{}/metrics",
      pool.metadata.namespace_name, pool.metadata.name, impl.pool.endpoints.size(),
      impl.pool.endpoints.size() == 1 ? "" : "s", impl.config_source, opts.bind_address,
      impl.extproc_port(),
      !impl.tls                ? "plaintext"
      : opts.cert_path.empty() ? "TLS, self-signed EC P-256 certificate"
                               : "TLS, certificate from " + opts.cert_path,
      opts.health_checking ? ", with gRPC health" : "",
      opts.grpc_transport == GrpcTransport::kNative ? "native" : "callback", opts.bind_address,
      impl.health_port(), opts.bind_address, impl.metrics_server->port());
}

void EppRunner::stop() {
  Impl& impl = *impl_;
  if (!impl.started || impl.stopped) return;
  impl.stopped = true;
  impl.health.set_serving(false);
  // Streams in flight still reference the director: the servers go first.
  if (impl.extproc_server) impl.extproc_server->shutdown(impl.options.shutdown_grace);
  if (impl.native_extproc_server) {
    impl.native_extproc_server->shutdown(impl.options.shutdown_grace);
  }
  if (impl.health_server) impl.health_server->shutdown(std::chrono::milliseconds(0));
  if (impl.native_health_server) impl.native_health_server->shutdown(std::chrono::milliseconds(0));

  if (impl.collectors) impl.collectors->stop_all();
  impl.collector_work.reset();
  impl.collector_io.stop();
  if (impl.collector_thread.joinable()) impl.collector_thread.join();

  if (impl.metrics_server) impl.metrics_server->stop();
  impl.metrics_io.stop();
  if (impl.metrics_thread.joinable()) impl.metrics_thread.join();
  spdlog::info("infergate epp: stopped");
}

std::uint16_t EppRunner::grpc_port() const { return impl_->extproc_port(); }
std::uint16_t EppRunner::grpc_health_port() const { return impl_->health_port(); }
std::uint16_t EppRunner::metrics_port() const {
  return impl_->metrics_server ? impl_->metrics_server->port() : 0;
}
const std::string& EppRunner::certificate_pem() const {
  static const std::string kNone;
  return impl_->tls ? impl_->tls->certificate_pem : kNone;
}
const EppOptions& EppRunner::options() const { return impl_->options; }
const StaticPool& EppRunner::pool() const { return impl_->pool; }
datastore::Datastore& EppRunner::datastore() { return impl_->store; }
director::Director& EppRunner::director() { return *impl_->director; }
prom::Registry& EppRunner::registry() { return impl_->registry; }
const HealthState& EppRunner::health() const { return impl_->health; }
const ExtProcStats& EppRunner::extproc_stats() const { return impl_->extproc_service->stats(); }

}  // namespace infergate::extproc
