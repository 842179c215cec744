#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"

namespace infergate::datastore {

// Dense endpoint ids: an id is reused after its endpoint is removed, so per-endpoint arrays (score
// vectors, the prefix index) stay as small as the largest pool has been.
using EndpointId = std::uint32_t;

// The label that chooses an endpoint's metric mapping (metrics facts §6), and its default.
inline constexpr const char* kEngineTypeLabel = "inference.networking.k8s.io/engine-type";
inline constexpr const char* kDefaultEngineType = "vllm";

// What the pool says an endpoint is: one per pod address and target port.
struct EndpointSpec {
  std::string pod_name;
  std::string namespace_name;
  std::string address;  // IP address (IPv4 or IPv6) or host name
  std::uint16_t port = 0;
  int rank = 0;  // index of the port among the pool's target ports
  std::map<std::string, std::string> labels;

  // `<pod>-rank-<rank>`: the endpoint's name in metrics and logs.
  std::string endpoint_name() const;
  friend bool operator==(const EndpointSpec&, const EndpointSpec&) = default;
};

// Immutable identity of a live endpoint.
struct EndpointInfo {
  EndpointId id = 0;
  std::string name;  // `<pod>-rank-<rank>`
  EndpointSpec spec;
  std::string engine_type;  // from kEngineTypeLabel, default kDefaultEngineType
  std::string host_port;    // "address:port", IPv6 addresses bracketed
};

// The model server's state as last scraped from its /metrics (metrics facts §1).
struct EndpointMetrics {
  int waiting_requests = 0;
  int running_requests = 0;
  double kv_cache_usage = 0;  // 0..1
  std::vector<std::string> running_adapters;
  std::vector<std::string> waiting_adapters;
  int max_active_adapters = 0;  // the `max_lora` label
  int cache_block_size = 0;     // 0: unknown
  int cache_num_blocks = 0;     // 0: unknown
  TimePoint updated_at{};       // when these figures were scraped
  // The director's in-flight counters of the endpoint (EndpointState) when the scrape began:
  // requests the figures above may already include. Stamped by Datastore::update_metrics when
  // stale-metrics correction is on; -1 (not recorded) when it is off, which leaves the scorers
  // with the scraped figures alone.
  std::int64_t inflight_requests_at_scrape = -1;
  std::int64_t inflight_tokens_at_scrape = -1;
};

// An endpoint's director in-flight counters at one instant (EndpointState).
struct InflightCounts {
  std::int64_t requests = 0;
  std::int64_t tokens = 0;
};

// Mutable per-endpoint state shared by every snapshot that contains the endpoint: the latest
// metrics (swapped whole by the collector) and in-flight counters (updated by the request path).
// All members are safe to use from any thread.
class EndpointState {
 public:
  // Null until the first successful scrape.
  std::shared_ptr<const EndpointMetrics> metrics() const {
    return metrics_.load(std::memory_order_acquire);
  }
  void set_metrics(std::shared_ptr<const EndpointMetrics> metrics) {
    metrics_.store(std::move(metrics), std::memory_order_release);
    metrics_version_.fetch_add(1, std::memory_order_release);
  }
  // Goes up after every set_metrics. A reader that reads it, then metrics(), may keep using what
  // it loaded for as long as the number stays the same: it saves the load's locked instructions.
  std::uint64_t metrics_version() const { return metrics_version_.load(std::memory_order_acquire); }

  std::atomic<std::int64_t> inflight_requests{0};
  std::atomic<std::int64_t> inflight_tokens{0};  // estimated prompt + output tokens in flight

  InflightCounts inflight() const {
    return {inflight_requests.load(std::memory_order_relaxed),
            inflight_tokens.load(std::memory_order_relaxed)};
  }

 private:
  std::atomic<std::shared_ptr<const EndpointMetrics>> metrics_;
  std::atomic<std::uint64_t> metrics_version_{0};
};

// Stale-metrics correction (docs/scheduling.md): scraped figures are up to one scrape interval
// old, so between scrapes every request would see the same queue and KV usage and herd to the
// same endpoint. These add what the director has in flight to the endpoint that the figures do
// not show: in-flight now minus what the scrape saw — the in-flight count when the scrape began,
// or the scraped waiting + running when lower (requests still on their way into the engine) —
// floored at 0 (requests that ended since do not lower the figures: they have left the engine's
// figures or are about to). O(1), lock-free (relaxed atomic loads); any thread. With no baseline
// recorded (correction off, or never scraped) they return the scraped figure unchanged: the
// reference scorers' exact inputs.
//
// Requests in flight that the scraped figures do not show (dispatched since the scrape, or
// still in transit when it ran).
std::int64_t requests_not_in_scrape(const EndpointMetrics& metrics, const EndpointState& state);
// waiting_requests + requests_not_in_scrape: each unseen request joins the queue.
double corrected_waiting_requests(const EndpointMetrics& metrics, const EndpointState& state);
// running_requests + requests_not_in_scrape.
double corrected_running_requests(const EndpointMetrics& metrics, const EndpointState& state);
// kv_cache_usage + (estimated tokens dispatched since the scrape) / (cache_num_blocks x
// cache_block_size), at most 1; the scraped usage when the KV capacity is unknown (0).
double corrected_kv_cache_usage(const EndpointMetrics& metrics, const EndpointState& state);

// One endpoint as a snapshot holds it.
struct Endpoint {
  std::shared_ptr<const EndpointInfo> info;
  std::shared_ptr<EndpointState> state;

  // Metrics scraped no longer than `threshold` before `now`; null when stale or never scraped.
  std::shared_ptr<const EndpointMetrics> fresh_metrics(TimePoint now, Duration threshold) const;
};

}  // namespace infergate::datastore
