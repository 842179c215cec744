#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdlib>

#include "cli/commands.h"
#include "common/duration.h"
#include "datastore/datastore.h"
#include "extproc/epp.h"

namespace infergate::cli {
namespace {

struct EppFlags {
  extproc::EppOptions options;
  std::string refresh_metrics_interval = "50ms";
  std::string metrics_staleness_threshold = "2s";
  std::string grpc_transport = "native";
  bool correct_stale_metrics = true;
};

std::string default_pool_namespace() {
  const char* value = std::getenv("NAMESPACE");
  return value != nullptr && *value != '\0' ? value : "default";
}

int run_epp(EppFlags& flags) {
  extproc::EppOptions options = flags.options;
  auto refresh = parse_duration(flags.refresh_metrics_interval);
  if (!refresh) {
    spdlog::error("--refresh-metrics-interval: {}", refresh.status().message());
    return 2;
  }
  auto staleness = parse_duration(flags.metrics_staleness_threshold);
  if (!staleness) {
    spdlog::error("--metrics-staleness-threshold: {}", staleness.status().message());
    return 2;
  }
  if (*refresh <= Duration::zero()) {
    spdlog::error("--refresh-metrics-interval must be greater than 0");
    return 2;
  }
  options.refresh_metrics_interval = *refresh;
  options.grpc_transport = flags.grpc_transport == "callback" ? extproc::GrpcTransport::kCallback
                                                              : extproc::GrpcTransport::kNative;
  options.metrics_staleness_threshold = *staleness;

  boost::asio::io_context signal_io(1);
  boost::asio::signal_set signals(signal_io, SIGINT, SIGTERM);
  extproc::EppRunner runner(std::move(options));  // throws one clear message on bad input
  runner.datastore().set_correct_stale_metrics(flags.correct_stale_metrics);
  runner.start();
  signals.async_wait([](const boost::system::error_code& error, int signal_number) {
    if (!error) spdlog::info("infergate epp: signal {}, shutting down", signal_number);
  });
  signal_io.run();
  runner.stop();
  return 0;
}

}  // namespace

Runner add_epp_command(CLI::App& app) {
  auto flags = std::make_shared<EppFlags>();
  extproc::EppOptions& options = flags->options;
  options.pool_namespace = default_pool_namespace();
  CLI::App* epp = app.add_subcommand(
      "epp",
      "Run the Endpoint Picker: an Envoy ext_proc gRPC server speaking the Gateway API Inference "
      "Extension's Endpoint Picker Protocol (drop-in for the reference EPP; docs/epp.md)");
  epp->add_option("--grpc-port", options.grpc_port, "ext_proc gRPC port (0: any free port)")
      ->capture_default_str();
  epp->add_option("--grpc-health-port", options.grpc_health_port,
                  "gRPC health port (grpc.health.v1, plaintext)")
      ->capture_default_str();
  epp->add_option("--metrics-port", options.metrics_port, "Prometheus /metrics HTTP port")
      ->capture_default_str();
  epp->add_option("--pool-name", options.pool_name,
                  "InferencePool to serve (with --resources: the pool in the file; default: the "
                  "only one there; with --endpoints alone: names the pool, default \"default\")")
      ->capture_default_str();
  epp->add_option("--pool-namespace", options.pool_namespace,
                  "Namespace of the pool (default: env NAMESPACE, else \"default\")")
      ->capture_default_str();
  auto* config_file = epp->add_option("--config-file", options.config_file,
                                      "EndpointPickerConfig file (empty: the built-in default "
                                      "configuration)")
                          ->capture_default_str();
  auto* config_text =
      epp->add_option("--config-text", options.config_text, "EndpointPickerConfig as YAML text")
          ->capture_default_str();
  config_file->excludes(config_text);
  config_text->excludes(config_file);
  epp->add_option("--refresh-metrics-interval", flags->refresh_metrics_interval,
                  "Model-server /metrics scrape period (Go duration)")
      ->capture_default_str();
  epp->add_option("--metrics-staleness-threshold", flags->metrics_staleness_threshold,
                  "Scraped metrics older than this count as stale (Go duration)")
      ->capture_default_str();
  // Boolean flags take GIE's (Go's) spelling: --flag, --flag=true, --flag=false.
  epp->add_flag("--secure-serving", options.secure_serving,
                "Serve ext_proc over TLS (--secure-serving=false: plaintext h2c)")
      ->default_str("true");
  epp->add_option("--cert-path", options.cert_path,
                  "Directory holding tls.crt and tls.key (empty: a self-signed EC P-256 "
                  "certificate generated at start-up)")
      ->capture_default_str();
  epp->add_flag("--health-checking", options.health_checking,
                "Also serve gRPC health on the ext_proc port")
      ->default_str("false");
  epp->add_flag("--disable-endpoint-subset-filter", options.disable_endpoint_subset_filter,
                "Ignore the gateway's subset hint (envoy.lb.subset_hint metadata)")
      ->default_str("false");
  add_correct_stale_metrics_flag(*epp, flags->correct_stale_metrics);
  epp->add_flag("--emit-endpoint-scores", options.emit_endpoint_scores,
                "Report every candidate's scores: envoy.lb metadata and response header "
                "x-gateway-destination-endpoint-scores")
      ->default_str("false");
  epp->add_option("--max-request-body-bytes", options.max_request_body_bytes,
                  "Larger request bodies get a 413 local reply (0: no limit)")
      ->capture_default_str();
  epp->add_flag("--conformance-test-hooks", options.conformance_test_hooks,
                "Honour the GIE conformance test headers (test-epp-endpoint-selection, "
                "x-conformance-test-served-endpoint); never in production")
      ->default_str("false");
  epp->add_option("--endpoints", options.endpoints,
                  "Static pool members, host:port,... (with --resources a bare host expands to "
                  "every targetPort of the pool)")
      ->delimiter(',');
  epp->add_option("--resources", options.resources_file,
                  "YAML/JSON file with the InferencePool and its InferenceObjectives, "
                  "InferenceModelRewrites (and legacy InferenceModels); endpoints from "
                  "--endpoints or the pool's infergate.io/endpoints annotation")
      ->capture_default_str();
  epp->add_option("--grpc-transport", flags->grpc_transport,
                  "How the gRPC ports are served: native (infergate's HTTP/2 on nghttp2, "
                  "--grpc-workers threads) or callback (gRPC C++'s callback API); same wire "
                  "protocol (docs/epp.md)")
      ->check(CLI::IsMember({"native", "callback"}))
      ->capture_default_str();
  epp->add_option("--grpc-workers", options.grpc_workers,
                  "Threads serving ext_proc streams with --grpc-transport native (0: one per core)")
      ->capture_default_str();
  return [flags] { return run_epp(*flags); };
}

}  // namespace infergate::cli
