#include "extproc/epp.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <variant>

#include "api/decode.h"
#include "api/endpoint_picker_config.h"
#include "datastore/collector.h"
#include "datastore/datastore.h"
#include "datastore/metrics_mapping.h"
#include "datastore/model_policies.h"
#include "datastore/pool.h"
#include "director/director.h"
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

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

// Splits on commas, trimming spaces and dropping empty entries.
std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> entries;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const auto end = comma == std::string_view::npos ? text.size() : comma;
    std::string entry = trim(text.substr(start, end - start));
    if (!entry.empty()) entries.push_back(std::move(entry));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return entries;
}

// Does `pool_ref_name` (of an objective, rewrite or legacy model in namespace `ns`) refer to
// `pool`? An empty reference counts as the file's pool.
bool refers_to(const api::InferencePool& pool, const std::string& pool_ref_name,
               const std::string& ns) {
  if (!pool_ref_name.empty() && pool_ref_name != pool.metadata.name) return false;
  return ns.empty() || pool.metadata.namespace_name.empty() || ns == pool.metadata.namespace_name;
}

// The endpoints of `pool` from `entries` (`host` or `host:port`); `source` names where the
// entries came from, for messages.
Result<std::vector<datastore::EndpointSpec>> pool_endpoints_from_entries(
    const api::InferencePool& pool, const std::vector<std::string>& entries,
    std::string_view source, bool bare_hosts_allowed) {
  std::vector<datastore::EndpointSpec> endpoints;
  std::set<std::pair<std::string, std::uint16_t>> seen;
  for (std::size_t index = 0; index < entries.size(); ++index) {
    auto address = parse_endpoint_address(entries[index]);
    if (!address) {
      return Status::bad_request(fmt::format("{}: {}", source, address.status().message()));
    }
    const std::string pod_name = fmt::format("{}-{}", pool.metadata.name, index);
    std::vector<datastore::EndpointSpec> specs;
    if (address->port) {
      const auto& ports = pool.spec.target_ports;
      const auto rank = std::find(ports.begin(), ports.end(), static_cast<int32_t>(*address->port));
      specs.push_back({.pod_name = pod_name,
                       .namespace_name = pool.metadata.namespace_name,
                       .address = address->host,
                       .port = *address->port,
                       .rank = rank == ports.end() ? 0 : static_cast<int>(rank - ports.begin()),
                       .labels = pool.spec.match_labels});
    } else {
      if (!bare_hosts_allowed) {
        return Status::bad_request(fmt::format(
            "{}: entry \"{}\" has no port; write host:port (a bare host needs --resources with "
            "the InferencePool's targetPorts)",
            source, entries[index]));
      }
      const datastore::Pod pod{.name = pod_name,
                               .namespace_name = pool.metadata.namespace_name,
                               .address = address->host,
                               .labels = pool.spec.match_labels};
      specs = datastore::pool_endpoints(pool, {pod});
    }
    for (auto& spec : specs) {
      if (!seen.emplace(spec.address, spec.port).second) {
        return Status::bad_request(
            fmt::format("{}: endpoint {}:{} is listed twice", source, spec.address, spec.port));
      }
      endpoints.push_back(std::move(spec));
    }
  }
  return endpoints;
}

Result<StaticPool> pool_from_resources(const EppOptions& options) {
  auto resources = api::load_file(options.resources_file);
  if (!resources) return resources.status();
  std::vector<api::InferencePool> pools;
  StaticPool result;
  std::vector<api::EndpointPickerConfig> configs;
  for (auto& resource : *resources) {
    std::visit(
        [&](auto& object) {
          using T = std::decay_t<decltype(object)>;
          if constexpr (std::is_same_v<T, api::InferencePool>) {
            pools.push_back(std::move(object));
          } else if constexpr (std::is_same_v<T, api::InferenceObjective>) {
            result.objectives.push_back(std::move(object));
          } else if constexpr (std::is_same_v<T, api::InferenceModelRewrite>) {
            result.rewrites.push_back(std::move(object));
          } else if constexpr (std::is_same_v<T, api::InferenceModel>) {
            result.legacy_models.push_back(std::move(object));
          } else {
            configs.push_back(std::move(object));
          }
        },
        resource);
  }
  const std::string& file = options.resources_file;
  if (configs.size() > 1) {
    return Status::bad_request(fmt::format(
        "{}: holds {} EndpointPickerConfigs; at most one is allowed", file, configs.size()));
  }
  if (configs.size() == 1) result.config = std::move(configs.front());

  std::vector<const api::InferencePool*> matches;
  for (const auto& pool : pools) {
    if (options.pool_name.empty() || pool.metadata.name == options.pool_name) {
      matches.push_back(&pool);
    }
  }
  if (matches.size() > 1 && !options.pool_name.empty()) {
    std::erase_if(matches, [&](const api::InferencePool* pool) {
      return pool->metadata.namespace_name != options.pool_namespace;
    });
  }
  if (matches.size() != 1) {
    std::string names;
    for (const auto& pool : pools) {
      names += fmt::format("{}\"{}\"", names.empty() ? "" : ", ", pool.metadata.name);
    }
    if (pools.empty()) return Status::bad_request(fmt::format("{}: no InferencePool", file));
    if (options.pool_name.empty()) {
      return Status::bad_request(fmt::format(
          "{}: holds several InferencePools ({}); choose one with --pool-name", file, names));
    }
    return Status::bad_request(fmt::format(
        "{}: no InferencePool \"{}\"{} (found {})", file, options.pool_name,
        matches.empty() ? "" : fmt::format(" in namespace \"{}\"", options.pool_namespace), names));
  }
  result.pool = *matches.front();
  api::InferencePool& pool = result.pool;
  if (pool.metadata.namespace_name.empty()) pool.metadata.namespace_name = options.pool_namespace;

  std::erase_if(result.objectives, [&](const api::InferenceObjective& objective) {
    return !refers_to(pool, objective.pool_ref.name, objective.metadata.namespace_name);
  });
  std::erase_if(result.rewrites, [&](const api::InferenceModelRewrite& rewrite) {
    return !refers_to(pool, rewrite.pool_ref.name, rewrite.metadata.namespace_name);
  });
  std::erase_if(result.legacy_models, [&](const api::InferenceModel& model) {
    return !refers_to(pool, model.pool_ref.name, model.metadata.namespace_name);
  });

  std::vector<std::string> entries;
  std::string source;
  if (!options.endpoints.empty()) {
    for (const auto& entry : options.endpoints) {
      for (auto& part : split_list(entry)) entries.push_back(std::move(part));
    }
    source = "--endpoints";
  } else if (auto it = pool.metadata.annotations.find(kEndpointsAnnotation);
             it != pool.metadata.annotations.end()) {
    entries = split_list(it->second);
    source = fmt::format("{}: InferencePool \"{}\": metadata.annotations[\"{}\"]", file,
                         pool.metadata.name, kEndpointsAnnotation);
  }
  if (entries.empty()) {
    return Status::bad_request(fmt::format(
        "{}: InferencePool \"{}\" has no endpoints: give --endpoints host[:port],... or the "
        "annotation {}: \"host[:port],...\" (the Kubernetes API mode, which would list its Pods, "
        "is not available in this build)",
        file, pool.metadata.name, kEndpointsAnnotation));
  }
  auto endpoints = pool_endpoints_from_entries(pool, entries, source, /*bare_hosts_allowed=*/true);
  if (!endpoints) return endpoints.status();
  result.endpoints = std::move(*endpoints);
  return result;
}

// The EndpointPickerConfig from --config-file / --config-text, the resources file, or the default.
api::EndpointPickerConfig load_config(
    const EppOptions& options, const std::optional<api::EndpointPickerConfig>& from_resources,
    std::string& source) {
  if (!options.config_file.empty() && !options.config_text.empty()) {
    throw std::runtime_error("--config-file and --config-text are mutually exclusive");
  }
  std::string text;
  if (!options.config_file.empty()) {
    std::ifstream file(options.config_file, std::ios::binary);
    if (!file) throw std::runtime_error(fmt::format("{}: cannot be read", options.config_file));
    std::stringstream contents;
    contents << file.rdbuf();
    text = contents.str();
    source = options.config_file;
  } else if (!options.config_text.empty()) {
    text = options.config_text;
    source = "--config-text";
  }
  if (source.empty()) {
    if (from_resources) {
      source = options.resources_file;
      return *from_resources;
    }
    source = "built-in default";
    return api::default_endpoint_picker_config();
  }
  if (from_resources) {
    throw std::runtime_error(
        fmt::format("an EndpointPickerConfig is given twice: in {} and in {}; keep one", source,
                    options.resources_file));
  }
  auto resources = api::decode_documents(text, source);
  if (!resources) throw std::runtime_error(resources.status().message());
  std::optional<api::EndpointPickerConfig> config;
  for (auto& resource : *resources) {
    if (auto* picker_config = std::get_if<api::EndpointPickerConfig>(&resource)) {
      if (config) {
        throw std::runtime_error(
            fmt::format("{}: holds more than one EndpointPickerConfig", source));
      }
      config = std::move(*picker_config);
    } else {
      throw std::runtime_error(fmt::format("{}: expected an EndpointPickerConfig, found a {}",
                                           source, api::kind_of(resource)));
    }
  }
  if (!config) throw std::runtime_error(fmt::format("{}: no EndpointPickerConfig", source));
  return std::move(*config);
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return {};
  return name;
}

}  // namespace

Result<EndpointAddress> parse_endpoint_address(std::string_view text) {
  const std::string entry = trim(text);
  const auto invalid = [&](std::string_view why) {
    return Status::bad_request(fmt::format("entry \"{}\": {}", entry, why));
  };
  if (entry.empty()) return invalid("empty");
  EndpointAddress address;
  std::string_view port_text;
  if (entry.front() == '[') {
    const auto close = entry.find(']');
    if (close == std::string::npos || close == 1)
      return invalid("unbalanced [ ] around an IPv6 address");
    address.host = entry.substr(1, close - 1);
    const std::string_view rest = std::string_view(entry).substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return invalid("expected :port after ]");
      port_text = rest.substr(1);
      if (port_text.empty()) return invalid("empty port");
    }
  } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
    const auto colon = entry.find(':');
    address.host = entry.substr(0, colon);
    port_text = std::string_view(entry).substr(colon + 1);
    if (address.host.empty()) return invalid("empty host");
    if (port_text.empty()) return invalid("empty port");
  } else {
    address.host = entry;  // a host name, an IPv4 address or a bare IPv6 address
  }
  if (!port_text.empty()) {
    unsigned port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || port > 65535) return invalid("the port is not a number 1-65535");
      port = port * 10 + static_cast<unsigned>(c - '0');
    }
    if (port == 0 || port > 65535) return invalid("the port is not a number 1-65535");
    address.port = static_cast<std::uint16_t>(port);
  }
  return address;
}

Result<StaticPool> resolve_static_pool(const EppOptions& options) {
  if (!options.resources_file.empty()) return pool_from_resources(options);
  if (options.endpoints.empty()) {
    return Status::bad_request(fmt::format(
        "no pool given: the Kubernetes API mode (watching the InferencePool named by --pool-name "
        "and its Pods) is not available in this build; {}",
        kStaticModeHelp));
  }
  StaticPool result;
  api::InferencePool& pool = result.pool;
  pool.api_version = "inference.networking.k8s.io/v1";
  pool.metadata.name = options.pool_name.empty() ? "default" : options.pool_name;
  pool.metadata.namespace_name = options.pool_namespace;
  std::vector<std::string> entries;
  for (const auto& entry : options.endpoints) {
    for (auto& part : split_list(entry)) entries.push_back(std::move(part));
  }
  auto endpoints =
      pool_endpoints_from_entries(pool, entries, "--endpoints", /*bare_hosts_allowed=*/false);
  if (!endpoints) return endpoints.status();
  result.endpoints = std::move(*endpoints);
  for (const auto& endpoint : result.endpoints) {
    const auto port = static_cast<int32_t>(endpoint.port);
    auto& ports = pool.spec.target_ports;
    if (std::find(ports.begin(), ports.end(), port) == ports.end()) ports.push_back(port);
  }
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

  std::unique_ptr<GrpcServer> health_server;
  std::unique_ptr<GrpcServer> extproc_server;

  bool started = false;
  bool stopped = false;
};

EppRunner::EppRunner(EppOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& impl = *impl_;
  const EppOptions& opts = impl.options;
  auto pool = resolve_static_pool(opts);
  if (!pool) throw std::runtime_error(pool.status().message());
  impl.pool = std::move(*pool);

  const api::EndpointPickerConfig config = load_config(opts, impl.pool.config, impl.config_source);
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
      "({}{}), gRPC health on {}:{}, metrics on http://{}:{}/metrics",
      pool.metadata.namespace_name, pool.metadata.name, impl.pool.endpoints.size(),
      impl.pool.endpoints.size() == 1 ? "" : "s", impl.config_source, opts.bind_address,
      impl.extproc_server->port(),
      !impl.tls                ? "plaintext"
      : opts.cert_path.empty() ? "TLS, self-signed EC P-256 certificate"
                               : "TLS, certificate from " + opts.cert_path,
      opts.health_checking ? ", with gRPC health" : "", opts.bind_address,
      impl.health_server->port(), opts.bind_address, impl.metrics_server->port());
}

void EppRunner::stop() {
  Impl& impl = *impl_;
  if (!impl.started || impl.stopped) return;
  impl.stopped = true;
  impl.health.set_serving(false);
  // Streams in flight still reference the director: the servers go first.
  if (impl.extproc_server) impl.extproc_server->shutdown(impl.options.shutdown_grace);
  if (impl.health_server) impl.health_server->shutdown(std::chrono::milliseconds(0));

  if (impl.collectors) impl.collectors->stop_all();
  impl.collector_work.reset();
  impl.collector_io.stop();
  if (impl.collector_thread.joinable()) impl.collector_thread.join();

  if (impl.metrics_server) impl.metrics_server->stop();
  impl.metrics_io.stop();
  if (impl.metrics_thread.joinable()) impl.metrics_thread.join();
  spdlog::info("infergate epp: stopped");
}

std::uint16_t EppRunner::grpc_port() const {
  return impl_->extproc_server ? impl_->extproc_server->port() : 0;
}
std::uint16_t EppRunner::grpc_health_port() const {
  return impl_->health_server ? impl_->health_server->port() : 0;
}
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
