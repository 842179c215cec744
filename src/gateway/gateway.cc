#include "gateway/gateway.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <limits>
#include <optional>
#include <stdexcept>
#include <thread>

#include "common/random.h"
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

namespace {

// Can a completion or chat request for `model` reach pool `pool_idx` through `routes`?
bool routes_reach(const RouteTable& routes, const std::string& model, std::size_t pool_idx) {
  const director::Headers headers = {{std::string(kModelNameHeader), model}};
  for (std::string_view path : {"/v1/completions", "/v1/chat/completions"}) {
    const RouteRule* rule =
        routes.match({.method = "POST", .path = path, .host = "", .headers = headers});
    if (rule == nullptr) continue;
    for (const RouteBackend& backend : rule->backends) {
      if (backend.pool_index == pool_idx) return true;
    }
  }
  return false;
}

}  // namespace

struct Gateway::Impl {
  explicit Impl(GatewayOptions opts) : options(std::move(opts)) {}

  GatewayOptions options;
  std::size_t workers = 1;
  SteadyClock clock;
  prom::Registry registry;
  // One per pool: its datastore and director (picker, policies, in-flight state).
  struct PoolRuntime {
    PoolOptions options;
    datastore::Datastore store;
    std::unique_ptr<director::Director> director;
  };
  std::vector<std::unique_ptr<PoolRuntime>> pools;
  std::shared_ptr<const RouteTable> routes;
  std::optional<datastore::EngineMappings> mappings;
  std::unique_ptr<GatewayMetrics> metrics;
  std::unique_ptr<EndpointHealth> health;
  // --epp: the external picker's client; outlives the handlers' exchanges (see stop()).
  std::unique_ptr<extproc::ExtProcClient> epp;

  // Collectors: their own io_context and thread; declared after what their coroutines use.
  asio::io_context collector_io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> collector_work;
  std::vector<std::unique_ptr<datastore::CollectorSet>> collectors;  // one per pool
  std::thread collector_thread;

  // The data plane: one io_context per worker, each run by its own thread. Declared after
  // everything handlers use, so that the io_contexts (and the coroutine frames they may still
  // hold) go first; the pool's connections must go before them.
  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> io_work;
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
  if (opts.pools.empty()) {
    if (!opts.endpoints.empty()) {
      opts.pools.push_back(
          {.name = opts.pool_name, .endpoints = opts.endpoints, .policies = opts.policies});
    } else if (!opts.epp) {
      throw std::runtime_error("the pool has no endpoints: give --endpoints host:port,...");
    }
  }
  impl.workers = opts.workers != 0 ? opts.workers
                                   : std::max<std::size_t>(1, std::thread::hardware_concurrency());
  opts.proxy.metrics_staleness_threshold = opts.metrics_staleness_threshold;

  auto mappings = datastore::engine_mappings_from_config(opts.picker_config);
  if (!mappings) {
    throw std::runtime_error(fmt::format("EndpointPickerConfig:\n{}", mappings.status().message()));
  }
  impl.mappings = std::move(*mappings);

  // Each pool its own picker (its own scheduler state, e.g. the prefix index) and datastore.
  std::vector<ProxyPool> proxy_pools;
  std::vector<std::string> keys;
  for (std::size_t pool_idx = 0; pool_idx < opts.pools.size(); ++pool_idx) {
    const PoolOptions& pool_options = opts.pools[pool_idx];
    if (pool_options.endpoints.empty()) {
      throw std::runtime_error(fmt::format("pool {} has no endpoints", pool_options.name));
    }
    auto setup = scheduling::build_scheduler(opts.picker_config);
    if (!setup) {
      throw std::runtime_error(fmt::format("EndpointPickerConfig:\n{}", setup.status().message()));
    }
    auto runtime = std::make_unique<Impl::PoolRuntime>();
    runtime->options = pool_options;
    director::DirectorOptions director_options;
    director_options.pool_name = pool_options.name;
    director_options.metrics_staleness_threshold = opts.metrics_staleness_threshold;
    // The first pool draws as the single pool always has; the others from their own seeds.
    director_options.seed = opts.seed == 0 || pool_idx == 0
                                ? opts.seed
                                : derive_seed(opts.seed, /*domain=*/1, pool_idx);
    runtime->director = std::make_unique<director::Director>(runtime->store, std::move(*setup),
                                                             pool_options.policies, impl.clock,
                                                             impl.registry, director_options);
    proxy_pools.push_back({.name = pool_options.name, .director = runtime->director.get()});
    keys.push_back(pool_options.namespace_name + "/" + pool_options.name);
    impl.pools.push_back(std::move(runtime));
  }
  if (!opts.routes.empty()) {
    auto routes = RouteTable::build(opts.routes, keys, kDefaultNamespace);
    if (!routes) throw std::runtime_error(routes.status().message());
    impl.routes = std::make_shared<const RouteTable>(std::move(*routes));
  }
  // GET /v1/models: what the routes and the pools' policies name, each model once.
  std::vector<ListedModel> models;
  const auto list = [&models](const std::string& id, const std::string& owner) {
    const bool listed = std::any_of(models.begin(), models.end(),
                                    [&](const ListedModel& model) { return model.id == id; });
    if (!listed) models.push_back({.id = id, .owned_by = owner});
  };
  if (impl.routes) {
    for (const RoutedModel& routed : impl.routes->routed_models()) {
      list(routed.model, opts.pools[routed.pool_index].name);
    }
  }
  for (std::size_t pool_idx = 0; pool_idx < opts.pools.size(); ++pool_idx) {
    for (const std::string& model : opts.pools[pool_idx].model_names) {
      // Only names a request can reach this pool with: no routes (one pool), or a rule that
      // accepts the model and may choose the pool.
      if (!impl.routes ? pool_idx == 0 : routes_reach(*impl.routes, model, pool_idx)) {
        list(model, opts.pools[pool_idx].name);
      }
    }
  }
  impl.metrics = std::make_unique<GatewayMetrics>(impl.registry);
  impl.health = std::make_unique<EndpointHealth>(impl.clock, opts.ejection);

  // Shard i of the upstream pool is worker i: its connections live on that worker's io_context.
  // Only that worker's thread touches its sockets (other threads post to it), so the reactor
  // needs no per-socket lock: the hint drops two mutex round trips per socket operation.
  std::vector<asio::any_io_executor> shard_executors;
  std::vector<asio::io_context*> listener_ios;
  for (std::size_t worker = 0; worker < impl.workers; ++worker) {
    impl.ios.push_back(std::make_unique<asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO));
    shard_executors.push_back(impl.ios.back()->get_executor());
    listener_ios.push_back(impl.ios.back().get());
  }
  impl.pool = std::make_unique<UpstreamPool>(std::move(shard_executors), opts.upstream_pool);
  std::shared_ptr<spdlog::logger> access_logger;
  if (opts.access_log) {
    access_logger = opts.access_logger ? opts.access_logger : make_stdout_access_logger();
  }
  if (opts.epp) {
    if (opts.epp->target.empty()) throw std::runtime_error("--epp: give the picker's host:port");
    impl.epp = std::make_unique<extproc::ExtProcClient>(*opts.epp, impl.registry);
  }
  impl.proxy =
      std::make_unique<Proxy>(std::move(proxy_pools), impl.routes, std::move(models), *impl.pool,
                              *impl.health, *impl.metrics, impl.registry, std::move(access_logger),
                              opts.proxy, opts.seed, impl.epp.get());

  http::ServerOptions server_options;
  server_options.address = opts.host;
  server_options.port = opts.port;
  server_options.body_limit_bytes = opts.max_request_body_bytes == 0
                                        ? std::numeric_limits<std::size_t>::max()
                                        : opts.max_request_body_bytes;
  server_options.header_limit_bytes = opts.max_request_header_bytes;
  server_options.max_header_fields = opts.max_request_headers;
  server_options.server_name = "infergate";
  server_options.strand_per_connection = false;  // each worker's io_context has one thread
  impl.server = std::make_unique<http::Server>(listener_ios, server_options, impl.proxy->handler());
  impl.metrics->watch(impl.registry, impl.server->stats(), impl.pool->stats());
}

Gateway::~Gateway() { stop(); }

void Gateway::start() {
  Impl& impl = *impl_;
  if (impl.started) throw std::logic_error("Gateway::start called twice");
  impl.started = true;
  const GatewayOptions& opts = impl.options;

  datastore::CollectorOptions collector_options;
  collector_options.refresh_interval = std::max(
      std::chrono::milliseconds(1),
      std::chrono::duration_cast<std::chrono::milliseconds>(opts.refresh_metrics_interval));
  impl.collector_work.emplace(impl.collector_io.get_executor());
  std::size_t endpoints = 0;
  for (auto& pool : impl.pools) {
    pool->store.set_endpoints(pool->options.endpoints);
    endpoints += pool->options.endpoints.size();
    impl.collectors.push_back(std::make_unique<datastore::CollectorSet>(
        impl.collector_io, pool->store, *impl.mappings, impl.clock, collector_options));
    impl.collectors.back()->sync();
  }
  impl.collector_thread = std::thread([&impl] { impl.collector_io.run(); });

  for (auto& io : impl.ios) impl.io_work.push_back(asio::make_work_guard(*io));
  impl.server->start();
  for (std::size_t worker = 0; worker < impl.workers; ++worker) {
    impl.worker_threads.emplace_back([&impl, worker] {
      set_current_shard(worker);
      impl.ios[worker]->run();
    });
  }
  std::string pool_names;
  for (const auto& pool : impl.pools) {
    pool_names += (pool_names.empty() ? "" : ", ") + pool->options.name;
  }
  if (opts.epp) {
    spdlog::info(
        "infergate serve: picking through the endpoint picker at {} ({}, {}{})", opts.epp->target,
        opts.epp->tls ? "TLS" : "plaintext",
        opts.epp->failure_mode == extproc::FailureMode::kFailOpen ? "FailOpen" : "FailClose",
        impl.pools.empty() ? ", no fallback endpoints" : "");
  }
  if (impl.pools.empty()) {
    spdlog::info("infergate serve: listening on http://{}:{} with {} worker thread{}", opts.host,
                 impl.server->port(), impl.workers, impl.workers == 1 ? "" : "s");
    return;
  }
  spdlog::info(
      "infergate serve: listening on http://{}:{} with {} worker thread{}; pool{} {} with "
      "{} endpoint{}{}",
      opts.host, impl.server->port(), impl.workers, impl.workers == 1 ? "" : "s",
      impl.pools.size() == 1 ? "" : "s", pool_names, endpoints, endpoints == 1 ? "" : "s",
      impl.routes ? fmt::format(", {} route rule{}", impl.routes->rule_count(),
                                impl.routes->rule_count() == 1 ? "" : "s")
                  : "");
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
  impl.io_work.clear();
  for (auto& io : impl.ios) io->stop();
  for (auto& thread : impl.worker_threads) thread.join();
  impl.worker_threads.clear();
  // Idle upstream connections, then whatever coroutine frames are left (their connections return
  // to a pool that now closes them), then the listener, all before the io_contexts go. A worker's
  // frames hold only objects of its own io_context, so the io_contexts may go in any order.
  impl.pool->shutdown();
  // Streams to the external picker still open end now; their waiting handlers are queued on the
  // (stopped) io_contexts and go with them.
  if (impl.epp) impl.epp->cancel_all();
  impl.server.reset();
  impl.ios.clear();

  for (auto& collectors : impl.collectors) collectors->stop_all();
  impl.collector_work.reset();
  impl.collector_io.stop();
  if (impl.collector_thread.joinable()) impl.collector_thread.join();
  spdlog::info("infergate serve: stopped");
}

std::uint16_t Gateway::port() const { return impl_->server ? impl_->server->port() : 0; }
const GatewayOptions& Gateway::options() const { return impl_->options; }
datastore::Datastore& Gateway::datastore(std::size_t pool) { return impl_->pools.at(pool)->store; }
director::Director& Gateway::director(std::size_t pool) { return *impl_->pools.at(pool)->director; }
std::size_t Gateway::pool_count() const { return impl_->pools.size(); }
prom::Registry& Gateway::registry() { return impl_->registry; }
const GatewayMetrics& Gateway::metrics() const { return *impl_->metrics; }
const EndpointHealth& Gateway::health() const { return *impl_->health; }
const UpstreamPool& Gateway::upstream_pool() const { return *impl_->pool; }
std::int64_t Gateway::in_flight() const { return impl_->proxy->in_flight(); }

}  // namespace infergate::gateway
