#include "gateway/metrics.h"

#include <string>

#include "gateway/upstream_pool.h"
#include "http/server.h"

namespace infergate::gateway {
namespace {

std::vector<double> duration_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 600};
}

std::vector<double> ttft_buckets() {
  return {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 5, 10, 30, 60, 120};
}

// Raises `counter` to `total` (a counter mirrored from a monotonic source).
void sync_counter(prom::Counter& counter, std::uint64_t total) {
  const double value = static_cast<double>(total);
  if (value > counter.value()) counter.inc(value - counter.value());
}

}  // namespace

GatewayMetrics::GatewayMetrics(prom::Registry& registry)
    : requests_total_(registry.counter("infergate_gateway_requests_total",
                                       "Requests the gateway answered, by HTTP status code.",
                                       {"code"})),
      errors_total_(registry.counter(
          "infergate_gateway_errors_total",
          "Error answers and failed upstream attempts of the gateway, by cause.", {"reason"})),
      request_duration_(registry
                            .histogram("infergate_gateway_request_duration_seconds",
                                       "Time from a request's receipt to its last response byte.",
                                       {}, duration_buckets())
                            .with({})),
      ttft_(registry
                .histogram("infergate_gateway_ttft_seconds",
                           "Time from an inference request's receipt to the first response-body "
                           "byte from the model server (successful responses).",
                           {}, ttft_buckets())
                .with({})),
      retries_(registry
                   .counter("infergate_gateway_upstream_retries_total",
                            "Upstream attempts after a request's first (fallback endpoints and "
                            "re-routes).")
                   .with({})),
      ejections_(registry.counter(
          "infergate_gateway_endpoint_ejections_total",
          "Endpoints taken out of picking for a cool-down after consecutive failures.",
          {"endpoint"})),
      connections_(registry.counter(
          "infergate_gateway_upstream_connections_total",
          "Upstream connections: opened, reused from the pool, and pooled ones found closed and "
          "replaced (stale_retry).",
          {"state"})),
      epp_failures_(registry.counter(
          "infergate_gateway_epp_failures_total",
          "Exchanges with the external endpoint picker (--epp) that failed, by error kind and by "
          "what the gateway did (fail_open, fail_close, truncated).",
          {"kind", "outcome"})),
      in_flight_(registry
                     .gauge("infergate_gateway_requests_in_flight",
                            "Requests the gateway is handling now.")
                     .with({})) {
  for (std::size_t reason_idx = 0; reason_idx < kErrorReasons.size(); ++reason_idx) {
    error_series_[reason_idx] = &errors_total_.with({kErrorReasons[reason_idx]});
  }
  for (auto& series : status_series_) series.store(nullptr, std::memory_order_relaxed);
}

void GatewayMetrics::watch(prom::Registry& registry, const http::ServerStats& server,
                           const UpstreamPoolStats& pool) {
  prom::Counter& opened = connections_.with({"opened"});
  prom::Counter& reused = connections_.with({"reused"});
  prom::Counter& stale = connections_.with({"stale_retry"});
  // The HTTP server answers these itself; their running totals are mirrored into our series.
  struct Mirror {
    const std::atomic<std::uint64_t>* source;
    prom::Counter* status;
    prom::Counter* reason;
    std::uint64_t mirrored = 0;
  };
  auto mirrors = std::make_shared<std::vector<Mirror>>(std::vector<Mirror>{
      {&server.bad_requests, &status_series(400), &errors_total_.with({"bad_request"})},
      {&server.read_timeouts, &status_series(408), &errors_total_.with({"read_timeout"})},
      {&server.body_too_large, &status_series(413), &errors_total_.with({"body_too_large"})},
      {&server.headers_too_large, &status_series(431), &errors_total_.with({"headers_too_large"})},
  });
  registry.add_collect_hook([&opened, &reused, &stale, &pool, mirrors] {
    sync_counter(opened, pool.opened.load(std::memory_order_relaxed));
    sync_counter(reused, pool.reused.load(std::memory_order_relaxed));
    sync_counter(stale, pool.stale_retries.load(std::memory_order_relaxed));
    for (Mirror& mirror : *mirrors) {
      const std::uint64_t total = mirror.source->load(std::memory_order_relaxed);
      if (total > mirror.mirrored) {
        const auto delta = static_cast<double>(total - mirror.mirrored);
        mirror.status->inc(delta);
        mirror.reason->inc(delta);
        mirror.mirrored = total;
      }
    }
  });
}

prom::Counter& GatewayMetrics::status_series(unsigned status) {
  if (status >= status_series_.size()) status = 599;
  prom::Counter* series = status_series_[status].load(std::memory_order_acquire);
  if (series == nullptr) {
    series = &requests_total_.with({std::to_string(status)});  // the family's lock, once per code
    status_series_[status].store(series, std::memory_order_release);
  }
  return *series;
}

void GatewayMetrics::count_request(unsigned status) { status_series(status).inc(); }

void GatewayMetrics::count_error(std::string_view reason) {
  for (std::size_t reason_idx = 0; reason_idx < kErrorReasons.size(); ++reason_idx) {
    if (kErrorReasons[reason_idx] == reason) {
      error_series_[reason_idx]->inc();
      return;
    }
  }
  errors_total_.with({"internal"}).inc();
}

void GatewayMetrics::count_ejection(std::string_view endpoint) {
  ejections_.with({endpoint}).inc();
}

void GatewayMetrics::count_epp_failure(std::string_view kind, std::string_view outcome) {
  epp_failures_.with({kind, outcome}).inc();  // rare: the family's lock is fine
}

double GatewayMetrics::epp_failures(std::string_view kind, std::string_view outcome) {
  return epp_failures_.with({kind, outcome}).value();
}

double GatewayMetrics::errors(std::string_view reason) const {
  for (std::size_t reason_idx = 0; reason_idx < kErrorReasons.size(); ++reason_idx) {
    if (kErrorReasons[reason_idx] == reason) return error_series_[reason_idx]->value();
  }
  return 0;
}

double GatewayMetrics::requests(unsigned status) { return status_series(status).value(); }

}  // namespace infergate::gateway
