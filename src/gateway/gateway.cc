#include "gateway/gateway.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <limits>
#include <optional>
#include <stdexcept>
#include <thread>

#include "datastore/collector.h"
#include "datastore/datastore.h"
#include "datastore/metrics_mapping.h"
#include "datastore/model_policies.h"
#include "director/director.h"
#include "http/server.h"
#include "prom/registry.h"
#include "scheduling/config_loader.h"

namespace infergate::gateway {

namespace asio = boost::asio;

struct Gateway::Impl {
  explicit Impl(GatewayOptions opts) : options(std::move(opts)) {}

  GatewayOptions options;
  std::size_t workers = 1;
  SteadyClock clock;
  prom::Registry registry;
  datastore::Datastore store;
  std::optional<datastore::EngineMappings> mappings;
  std::unique_ptr<director::Director> director;
  std::unique_ptr<GatewayMetrics> metrics;
  std::unique_ptr<EndpointHealth> health;

  // Collectors: their own io_context and thread; declared after what their coroutines use.
  asio::io_context collector_io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> collector_work;
  std::unique_ptr<datastore::CollectorSet> collectors;
  std::thread collector_thread;

  // The data plane. Declared after everything handlers use, so that the io_context (and the
  // coroutine frames it may still hold) goes first; the pool's connections must go before it.
  std::optional<asio::io_context> io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> io_work;
  std::unique_ptr<UpstreamPool> pool;
  std::unique_ptr<Proxy> proxy;
  std::unique_ptr<http::Server> server;
  std::vector<std::thread> worker_threads;

  bool started = false;
  bool stopped = false;
};

Gateway::Gateway(GatewayOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& impl = *impl_;
  GatewayOptions& opts = impl.options;
  if (opts.endpoints.empty()) {
    throw std::runtime_error("the pool has no endpoints: give --endpoints host:port,...");
  }
  impl.workers = opts.workers != 0 ? opts.workers
                                   : std::max<std::size_t>(1, std::thread::hardware_concurrency());
  opts.proxy.metrics_staleness_threshold = opts.metrics_staleness_threshold;

  auto setup = scheduling::build_scheduler(opts.picker_config);
  if (!setup) {
    throw std::runtime_error(fmt::format("EndpointPickerConfig:\n{}", setup.status().message()));
  }
  auto mappings = datastore::engine_mappings_from_config(opts.picker_config);
  if (!mappings) {
    throw std::runtime_error(fmt::format("EndpointPickerConfig:\n{}", mappings.status().message()));
  }
  impl.mappings = std::move(*mappings);

  director::DirectorOptions director_options;
  director_options.pool_name = opts.pool_name;
  director_options.metrics_staleness_threshold = opts.metrics_staleness_threshold;
  director_options.seed = opts.seed;
  impl.director = std::make_unique<director::Director>(impl.store, std::move(*setup), opts.policies,
                                                       impl.clock, impl.registry, director_options);
  impl.metrics = std::make_unique<GatewayMetrics>(impl.registry);
  impl.health = std::make_unique<EndpointHealth>(impl.clock, opts.ejection);

  impl.io.emplace(static_cast<int>(impl.workers));
  impl.pool =
      std::make_unique<UpstreamPool>(impl.io->get_executor(), impl.workers, opts.upstream_pool);
  std::shared_ptr<spdlog::logger> access_logger;
  if (opts.access_log) {
    access_logger = opts.access_logger ? opts.access_logger : make_stdout_access_logger();
  }
  impl.proxy = std::make_unique<Proxy>(*impl.director, *impl.pool, *impl.health, *impl.metrics,
                                       impl.registry, std::move(access_logger), opts.proxy);

  http::ServerOptions server_options;
  server_options.address = opts.host;
  server_options.port = opts.port;
  server_options.body_limit_bytes = opts.max_request_body_bytes == 0
                                        ? std::numeric_limits<std::size_t>::max()
                                        : opts.max_request_body_bytes;
  server_options.server_name = "infergate";
  impl.server = std::make_unique<http::Server>(*impl.io, server_options, impl.proxy->handler());
  impl.metrics->watch(impl.registry, impl.server->stats(), impl.pool->stats());
}

Gateway::~Gateway() { stop(); }

void Gateway::start() {
  Impl& impl = *impl_;
  if (impl.started) throw std::logic_error("Gateway::start called twice");
  impl.started = true;
  const GatewayOptions& opts = impl.options;

  impl.store.set_endpoints(opts.endpoints);
  datastore::CollectorOptions collector_options;
  collector_options.refresh_interval = std::max(
      std::chrono::milliseconds(1),
      std::chrono::duration_cast<std::chrono::milliseconds>(opts.refresh_metrics_interval));
  impl.collector_work.emplace(impl.collector_io.get_executor());
  impl.collectors = std::make_unique<datastore::CollectorSet>(
      impl.collector_io, impl.store, *impl.mappings, impl.clock, collector_options);
  impl.collectors->sync();
  impl.collector_thread = std::thread([&impl] { impl.collector_io.run(); });

  impl.io_work.emplace(impl.io->get_executor());
  impl.server->start();
  for (std::size_t worker = 0; worker < impl.workers; ++worker) {
    impl.worker_threads.emplace_back([&impl, worker] {
      set_current_shard(worker);
      impl.io->run();
    });
  }
  spdlog::info(
      "infergate serve: listening on http://{}:{} with {} worker thread{}; pool {} with "
      "{} endpoint{}",
      opts.host, impl.server->port(), impl.workers, impl.workers == 1 ? "" : "s", opts.pool_name,
      opts.endpoints.size(), opts.endpoints.size() == 1 ? "" : "s");
}

void Gateway::stop() {
  Impl& impl = *impl_;
  if (!impl.started || impl.stopped) return;
  impl.stopped = true;

  // Drain: readiness off, no new connections, requests in flight may finish.
  impl.proxy->set_draining();
  impl.server->stop();
  const auto deadline = std::chrono::steady_clock::now() + impl.options.drain_timeout;
  while (impl.proxy->in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (impl.proxy->in_flight() > 0) {
    spdlog::warn(
        "infergate serve: {} request(s) still in flight after the drain timeout; "
        "closing them",
        impl.proxy->in_flight());
  }
  impl.io_work.reset();
  impl.io->stop();
  for (auto& thread : impl.worker_threads) thread.join();
  impl.worker_threads.clear();
  // Idle upstream connections, then whatever coroutine frames are left (their connections return
  // to a pool that now closes them), then the listener, all before the io_context goes.
  impl.pool->shutdown();
  impl.server.reset();
  impl.io.reset();

  if (impl.collectors) impl.collectors->stop_all();
  impl.collector_work.reset();
  impl.collector_io.stop();
  if (impl.collector_thread.joinable()) impl.collector_thread.join();
  spdlog::info("infergate serve: stopped");
}

std::uint16_t Gateway::port() const { return impl_->server ? impl_->server->port() : 0; }
const GatewayOptions& Gateway::options() const { return impl_->options; }
datastore::Datastore& Gateway::datastore() { return impl_->store; }
director::Director& Gateway::director() { return *impl_->director; }
prom::Registry& Gateway::registry() { return impl_->registry; }
const GatewayMetrics& Gateway::metrics() const { return *impl_->metrics; }
const EndpointHealth& Gateway::health() const { return *impl_->health; }
const UpstreamPool& Gateway::upstream_pool() const { return *impl_->pool; }
std::int64_t Gateway::in_flight() const { return impl_->proxy->in_flight(); }

}  // namespace infergate::gateway
