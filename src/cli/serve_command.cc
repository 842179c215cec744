#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <future>
#include <iterator>
#include <thread>

#include "cli/commands.h"
#include "common/duration.h"
#include "datastore/datastore.h"
#include "datastore/static_pool.h"
#include "gateway/config_file.h"
#include "gateway/gateway.h"

namespace infergate::cli {
namespace {

struct ServeFlags {
  gateway::GatewayOptions options;
  std::vector<std::string> endpoints;
  std::vector<std::string> config;  // --config (Gateway API + GIE resources)
  bool port_given = false;
  std::string config_file;
  std::string config_text;
  std::string connect_timeout = "5s";
  std::string first_byte_timeout = "300s";
  std::string idle_timeout = "300s";
  std::string request_timeout = "0";
  std::string drain_timeout = "30s";
  std::string refresh_metrics_interval = "50ms";
  std::string metrics_staleness_threshold = "2s";
  std::string ejection_cooldown = "30s";
  bool correct_stale_metrics = true;
  // --epp and its options.
  std::string epp;
  std::string epp_failure_mode = "FailClose";
  std::string epp_timeout = "10s";
  bool epp_tls = true;
  bool epp_tls_verify = false;
  std::string epp_ca_file;
  std::string epp_server_name;
};

// Parses a Go-style duration flag; prints the error and returns nullopt when it is not one.
std::optional<Duration> duration_flag(std::string_view flag, const std::string& text) {
  auto parsed = parse_duration(text);
  if (!parsed) {
    spdlog::error("{}: {}", flag, parsed.status().message());
    return std::nullopt;
  }
  return *parsed;
}

std::chrono::milliseconds to_milliseconds(Duration duration) {
  return std::chrono::ceil<std::chrono::milliseconds>(duration);
}

// The ext_proc client options from the --epp flags; prints the error and returns nullopt when
// one is wrong.
std::optional<extproc::ExtProcClientOptions> epp_options(const ServeFlags& flags) {
  extproc::ExtProcClientOptions epp;
  epp.target = flags.epp;
  if (flags.epp_failure_mode == "FailOpen") {
    epp.failure_mode = extproc::FailureMode::kFailOpen;
  } else if (flags.epp_failure_mode == "FailClose") {
    epp.failure_mode = extproc::FailureMode::kFailClose;
  } else {
    spdlog::error("--epp-failure-mode: \"{}\" is neither FailOpen nor FailClose",
                  flags.epp_failure_mode);
    return std::nullopt;
  }
  const auto timeout = duration_flag("--epp-timeout", flags.epp_timeout);
  if (!timeout) return std::nullopt;
  if (*timeout < Duration::zero()) {
    spdlog::error("--epp-timeout must be >= 0");
    return std::nullopt;
  }
  epp.message_timeout = to_milliseconds(*timeout);
  epp.tls = flags.epp_tls;
  epp.tls_verify = flags.epp_tls_verify;
  epp.tls_server_name = flags.epp_server_name;
  if (!flags.epp_ca_file.empty()) {
    std::ifstream file(flags.epp_ca_file, std::ios::binary);
    if (!file) {
      spdlog::error("--epp-ca-file: cannot read {}", flags.epp_ca_file);
      return std::nullopt;
    }
    epp.tls_root_certs_pem.assign(std::istreambuf_iterator<char>(file),
                                  std::istreambuf_iterator<char>());
  }
  if ((epp.tls_verify || !epp.tls_root_certs_pem.empty() || !epp.tls_server_name.empty()) &&
      !epp.tls) {
    spdlog::error("--epp-tls-verify, --epp-ca-file and --epp-server-name need --epp-tls");
    return std::nullopt;
  }
  return epp;
}

int run_serve(ServeFlags& flags) {
  gateway::GatewayOptions options = flags.options;
  const auto connect = duration_flag("--connect-timeout", flags.connect_timeout);
  const auto first_byte = duration_flag("--first-byte-timeout", flags.first_byte_timeout);
  const auto idle = duration_flag("--idle-timeout", flags.idle_timeout);
  const auto request = duration_flag("--request-timeout", flags.request_timeout);
  const auto drain = duration_flag("--drain-timeout", flags.drain_timeout);
  const auto refresh = duration_flag("--refresh-metrics-interval", flags.refresh_metrics_interval);
  const auto staleness =
      duration_flag("--metrics-staleness-threshold", flags.metrics_staleness_threshold);
  const auto cooldown = duration_flag("--ejection-cooldown", flags.ejection_cooldown);
  if (!connect || !first_byte || !idle || !request || !drain || !refresh || !staleness ||
      !cooldown) {
    return 2;
  }
  if (*connect <= Duration::zero() || *first_byte <= Duration::zero() ||
      *idle <= Duration::zero() || *refresh <= Duration::zero()) {
    spdlog::error(
        "--connect-timeout, --first-byte-timeout, --idle-timeout and --refresh-metrics-interval "
        "must be greater than 0");
    return 2;
  }
  if (options.max_request_header_bytes == 0) {
    spdlog::error("--max-request-header-bytes must be greater than 0");
    return 2;
  }
  if (options.proxy.max_retries < 0 || options.ejection.consecutive_failures < 0) {
    spdlog::error("--max-retries and --ejection-failures must be >= 0");
    return 2;
  }
  options.proxy.connect_timeout = to_milliseconds(*connect);
  options.proxy.first_byte_timeout = to_milliseconds(*first_byte);
  options.proxy.idle_timeout = to_milliseconds(*idle);
  options.proxy.request_timeout = to_milliseconds(*request);
  options.drain_timeout = to_milliseconds(*drain);
  options.refresh_metrics_interval = *refresh;
  options.metrics_staleness_threshold = *staleness;
  options.ejection.cooldown = *cooldown;

  if (!flags.epp.empty()) {
    options.epp = epp_options(flags);
    if (!options.epp) return 2;
  }
  if (!flags.endpoints.empty() && !flags.config.empty()) {
    spdlog::error("give either --endpoints or --config, not both");
    return 2;
  }
  if (flags.endpoints.empty() && flags.config.empty() && flags.epp.empty()) {
    spdlog::error(
        "give either --endpoints host:port,... (one pool) or --config FILE (Gateway, HTTPRoutes, "
        "InferencePools, ...; docs/gateway.md), or an external endpoint picker with --epp "
        "host:port");
    return 2;
  }
  std::optional<api::EndpointPickerConfig> file_picker_config;
  std::string file_picker_source;
  if (!flags.config.empty()) {
    auto resolved = gateway::load_gateway_config(flags.config);
    if (!resolved) {
      spdlog::error("{}", resolved.status().message());
      return 2;
    }
    gateway::apply_gateway_config(*resolved, flags.port_given, options);
    file_picker_config = std::move(resolved->picker_config);
    file_picker_source = resolved->picker_config_source;
  } else if (!flags.endpoints.empty()) {
    auto pool = datastore::static_pool_from_endpoints(flags.endpoints, options.pool_name,
                                                      gateway::kDefaultNamespace);
    if (!pool) {
      spdlog::error("{}", pool.status().message());
      return 2;
    }
    options.endpoints = std::move(pool->endpoints);
  }
  std::string config_source;
  auto config = datastore::load_picker_config(
      flags.config_file, flags.config_text, file_picker_config, file_picker_source, config_source);
  if (!config) {
    spdlog::error("{}", config.status().message());
    return 2;
  }
  options.picker_config = std::move(*config);
  spdlog::info("infergate serve: picker configuration from {}", config_source);

  boost::asio::io_context signal_io(1);
  boost::asio::signal_set signals(signal_io, SIGINT, SIGTERM);
  gateway::Gateway gateway(std::move(options));  // throws one clear message on bad input
  for (std::size_t pool = 0; pool < gateway.pool_count(); ++pool) {
    gateway.datastore(pool).set_correct_stale_metrics(flags.correct_stale_metrics);
  }
  gateway.start();
  // The first signal drains; a second one during the drain exits at once.
  std::promise<void> first_signal;
  signals.async_wait([&](const boost::system::error_code& error, int signal_number) {
    if (error) return;
    spdlog::info("infergate serve: signal {}, draining (again to exit at once)", signal_number);
    signals.async_wait([](const boost::system::error_code& again, int) {
      if (again) return;
      spdlog::warn("infergate serve: second signal, exiting without draining");
      std::_Exit(1);
    });
    first_signal.set_value();
  });
  std::thread signal_thread([&] { signal_io.run(); });
  first_signal.get_future().wait();
  gateway.stop();
  signal_io.stop();
  signal_thread.join();
  return 0;
}

}  // namespace

Runner add_serve_command(CLI::App& app) {
  auto flags = std::make_shared<ServeFlags>();
  gateway::GatewayOptions& options = flags->options;
  options.workers = std::max(1u, std::thread::hardware_concurrency());
  CLI::App* serve = app.add_subcommand(
      "serve",
      "Run the standalone gateway: an OpenAI-compatible HTTP proxy in front of a pool of model "
      "servers, with the endpoint picker inside or, with --epp, asking an external one over "
      "ext_proc as Envoy would (no Envoy needed; docs/gateway.md)");
  serve->add_option("--host", options.host, "Address to listen on")->capture_default_str();
  serve
      ->add_option("--port", options.port,
                   "Port to listen on (0: any free port; default with --config: the Gateway's "
                   "first HTTP listener)")
      ->capture_default_str()
      ->each([flags = flags.get()](const std::string&) { flags->port_given = true; });
  serve
      ->add_option("--endpoints", flags->endpoints,
                   "One pool of model servers, host:port,... (IPv6: [address]:port); or use "
                   "--config. With --epp: optional, the endpoints FailOpen falls back on")
      ->delimiter(',');
  serve->add_option("--config", flags->config,
                    "Configuration file as a user applies it to a cluster: Gateway, HTTPRoutes, "
                    "InferencePools (endpoints in the infergate.io/endpoints annotation), "
                    "InferenceObjectives, InferenceModelRewrites, an EndpointPickerConfig; "
                    "repeatable, multi-document YAML (docs/gateway.md)");
  serve
      ->add_option("--pool-name", options.pool_name,
                   "Name of the --endpoints pool (label of the inference_pool_* metrics)")
      ->capture_default_str();
  auto* config_file = serve
                          ->add_option("--config-file", flags->config_file,
                                       "EndpointPickerConfig file (empty: the one in --config, "
                                       "else GIE's default configuration)")
                          ->capture_default_str();
  auto* config_text =
      serve->add_option("--config-text", flags->config_text, "EndpointPickerConfig as YAML text")
          ->capture_default_str();
  config_file->excludes(config_text);
  config_text->excludes(config_file);
  serve
      ->add_option("--workers", options.workers,
                   "I/O threads serving clients and upstream connections (default: one per core)")
      ->capture_default_str();
  serve
      ->add_option("--max-request-body-bytes", options.max_request_body_bytes,
                   "Larger request bodies are answered with 413 (0: no limit)")
      ->capture_default_str();
  serve
      ->add_option("--max-request-header-bytes", options.max_request_header_bytes,
                   "Larger request headers (request line and fields) are answered with 431")
      ->capture_default_str();
  serve
      ->add_option("--max-request-headers", options.max_request_headers,
                   "Requests with more header fields are answered with 431 (0: no limit)")
      ->capture_default_str();
  serve
      ->add_option("--max-retries", options.proxy.max_retries,
                   "Upstream attempts after the first: the picker's fallback endpoints, then "
                   "re-routes without the endpoints that failed")
      ->capture_default_str();
  serve
      ->add_option("--connect-timeout", flags->connect_timeout,
                   "Time to connect to a model server (Go duration)")
      ->capture_default_str();
  serve
      ->add_option("--first-byte-timeout", flags->first_byte_timeout,
                   "Time from sending a request upstream to its response header (Go duration)")
      ->capture_default_str();
  serve
      ->add_option("--idle-timeout", flags->idle_timeout,
                   "Longest pause between two pieces of an upstream response body (Go duration)")
      ->capture_default_str();
  serve
      ->add_option("--request-timeout", flags->request_timeout,
                   "Time a whole request may take, retries and streaming included (Go "
                   "duration; 0: no limit)")
      ->capture_default_str();
  serve
      ->add_option("--drain-timeout", flags->drain_timeout,
                   "On SIGTERM/SIGINT, time requests in flight may take to finish (Go duration)")
      ->capture_default_str();
  serve
      ->add_option("--ejection-failures", options.ejection.consecutive_failures,
                   "Consecutive failures (connect errors, resets, timeouts, 5xx) that eject an "
                   "endpoint from picking for --ejection-cooldown (0: never eject)")
      ->capture_default_str();
  serve
      ->add_option("--ejection-cooldown", flags->ejection_cooldown,
                   "How long an ejected endpoint is left out of picking (Go duration)")
      ->capture_default_str();
  serve
      ->add_option("--refresh-metrics-interval", flags->refresh_metrics_interval,
                   "Model-server /metrics scrape period (Go duration)")
      ->capture_default_str();
  serve
      ->add_option("--metrics-staleness-threshold", flags->metrics_staleness_threshold,
                   "Scraped metrics older than this count as stale (Go duration)")
      ->capture_default_str();
  serve
      ->add_option("--seed", options.seed,
                   "Seed of the random draws: weighted route backends, the pickers' tie-breaks "
                   "and weighted rewrites (0: from the system)")
      ->capture_default_str();
  // Boolean flags take GIE's (Go's) spelling: --flag, --flag=true, --flag=false.
  serve
      ->add_flag("--access-log", options.access_log,
                 "One JSON line per request on standard output (--access-log=false: none)")
      ->default_str("true");
  add_correct_stale_metrics_flag(*serve, flags->correct_stale_metrics);
  serve
      ->add_flag("--emit-endpoint-scores", options.proxy.emit_endpoint_scores,
                 "Add response headers x-gateway-destination-endpoint-scores (every candidate's "
                 "scores) and x-gateway-destination-endpoint-served")
      ->default_str("false");
  serve->add_option("--epp", flags->epp,
                    "Pick through this external Endpoint Picker (host:port of its ext_proc gRPC "
                    "port, e.g. `infergate epp`'s 9002) instead of the embedded picker; "
                    "--endpoints / --config then only give the FailOpen fallback (docs/gateway.md, "
                    "\"Picking through an external EPP\")");
  serve
      ->add_option("--epp-failure-mode", flags->epp_failure_mode,
                   "What happens when the external picker is unreachable or fails: FailClose "
                   "(answer 503) or FailOpen (pick with the embedded picker over --endpoints / "
                   "--config; 503 without them). GIE's endpointPickerRef.failureMode")
      ->capture_default_str()
      ->check(CLI::IsMember({"FailOpen", "FailClose"}));
  serve
      ->add_option("--epp-timeout", flags->epp_timeout,
                   "Longest wait for each expected answer of the external picker, and for "
                   "connecting to it (Go duration; 0: no limit)")
      ->capture_default_str();
  serve
      ->add_flag("--epp-tls", flags->epp_tls,
                 "Speak TLS to the external picker, as the reference EPP (and `infergate epp`) "
                 "serve by default (--epp-tls=false: plaintext HTTP/2)")
      ->default_str("true");
  serve
      ->add_flag("--epp-tls-verify", flags->epp_tls_verify,
                 "Check the picker's certificate (default off, as GIE's Envoy configuration: "
                 "the reference EPP's certificate is self-signed)")
      ->default_str("false");
  serve
      ->add_option("--epp-ca-file", flags->epp_ca_file,
                   "With --epp-tls-verify: PEM roots to trust (empty: the system's)")
      ->capture_default_str();
  serve
      ->add_option("--epp-server-name", flags->epp_server_name,
                   "With --epp-tls-verify: the name to check the certificate against (empty: "
                   "the --epp host)")
      ->capture_default_str();
  return [flags] { return run_serve(*flags); };
}

}  // namespace infergate::cli
