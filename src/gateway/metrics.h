#pragma once

// The standalone gateway's own metrics (infergate_gateway_*), next to the director's GIE EPP
// metrics in the same registry:
//
//   infergate_gateway_requests_total{code}            every request answered, by HTTP status
//   infergate_gateway_errors_total{reason}            every error answer or failed attempt, by
//                                                     cause (reasons listed in kErrorReasons)
//   infergate_gateway_request_duration_seconds        receipt to last byte, every request
//   infergate_gateway_ttft_seconds                    receipt to first response-body byte from the
//                                                     model server, successful inference requests
//   infergate_gateway_upstream_retries_total          attempts after a request's first
//   infergate_gateway_endpoint_ejections_total{endpoint}
//   infergate_gateway_upstream_connections_total{state}  opened / reused / stale_retry
//   infergate_gateway_requests_in_flight              handlers running
//   infergate_gateway_epp_failures_total{kind,outcome}  `--epp`: exchanges with the external
//                                                     endpoint picker that failed, by error kind
//                                                     (unavailable, stream_broken, timeout,
//                                                     protocol) and what the gateway did:
//                                                     fail_open (served without the picker),
//                                                     fail_close (answered 503), truncated (the
//                                                     response had started: cut off)
//
// Threads: every method is safe from any thread; the per-request updates use series resolved at
// construction (status codes resolved on first use) and take no lock on the common path.

#include <array>
#include <atomic>
#include <string_view>

#include "prom/registry.h"

namespace infergate::http {
struct ServerStats;
}

namespace infergate::gateway {

struct UpstreamPoolStats;

// The `reason` label values of infergate_gateway_errors_total, all exposed from the start.
inline constexpr std::array<std::string_view, 19> kErrorReasons = {
    "bad_request",         // unreadable body (the director's 400), malformed HTTP
    "not_found",           // unknown path
    "no_route",            // 404: no HTTPRoute rule matches (e.g. an unknown model)
    "no_backend",          // 500: the matching rule has no backend of weight > 0
    "method_not_allowed",  // a known path with the wrong method
    "body_too_large",      // 413 (answered by the HTTP server)
    "headers_too_large",   // 431 (answered by the HTTP server)
    "read_timeout",        // 408 (answered by the HTTP server)
    "shed",                // 429 from the director (sheddable while saturated, all filtered out)
    "no_endpoint",         // 503 from the director (empty pool, nothing left to pick)
    "upstream_connect",    // an attempt's connect refused (retried)
    "upstream_connect_timeout",  // an attempt's connect timed out (retried)
    "upstream_reset",            // connection closed before the head or mid-response (502)
    "upstream_timeout",          // first-byte, idle or request timeout (504)
    "upstream_5xx",              // an attempt answered 5xx (retried; relayed when the last)
    "all_attempts_failed",       // the request ran out of endpoints or retries
    "client_disconnected",       // the client left before the response was complete
    "epp_failure",               // `--epp`: the endpoint picker failed (FailClose: 503)
    "internal",                  // anything else (500)
};

class GatewayMetrics {
 public:
  explicit GatewayMetrics(prom::Registry& registry);
  GatewayMetrics(const GatewayMetrics&) = delete;
  GatewayMetrics& operator=(const GatewayMetrics&) = delete;

  // Adds a collect hook that copies the HTTP server's protocol-error counters (answers the
  // handler never sees: 400 malformed, 408, 413, 431) into requests_total and errors_total, and
  // the pool's connection counters. Both must outlive the registry's exposures.
  void watch(prom::Registry& registry, const http::ServerStats& server,
             const UpstreamPoolStats& pool);

  void count_request(unsigned status);
  // `reason` must be one of kErrorReasons (others count as "internal").
  void count_error(std::string_view reason);
  void observe_duration(double seconds) { request_duration_.observe(seconds); }
  void observe_ttft(double seconds) { ttft_.observe(seconds); }
  void count_retry() { retries_.inc(); }
  void count_ejection(std::string_view endpoint);
  // `kind`: the ext_proc error kind name; `outcome`: fail_open, fail_close or truncated.
  void count_epp_failure(std::string_view kind, std::string_view outcome);
  prom::Gauge& in_flight() { return in_flight_; }

  // Values, for tests.
  double errors(std::string_view reason) const;
  double requests(unsigned status);
  double epp_failures(std::string_view kind, std::string_view outcome);

 private:
  prom::Counter& status_series(unsigned status);

  prom::CounterFamily& requests_total_;
  prom::CounterFamily& errors_total_;
  prom::Histogram& request_duration_;
  prom::Histogram& ttft_;
  prom::Counter& retries_;
  prom::CounterFamily& ejections_;
  prom::CounterFamily& connections_;
  prom::CounterFamily& epp_failures_;
  prom::Gauge& in_flight_;
  std::array<prom::Counter*, kErrorReasons.size()> error_series_{};
  std::array<std::atomic<prom::Counter*>, 600> status_series_{};  // by status code, lazily
};

}  // namespace infergate::gateway
