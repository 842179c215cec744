#pragma once

// Metrics collectors: one per endpoint, scraping the model server's /metrics every
// refresh_interval and publishing the extracted EndpointMetrics to the Datastore (metrics facts
// §7; ARCHITECTURE.md: "a collector per endpoint scrapes /metrics").
//
// Threading: collectors run as coroutines on the io_context given to them (the scrapers' own
// io_context, which may be run by one or several threads: each collector keeps to its own strand).
// start(), stop() and the CollectorSet methods may be called from any thread. Stats are atomics.
//
// Ownership: the Datastore and Clock passed in must outlive every collector's coroutine (i.e. keep
// them until the io_context has stopped or CollectorSet::stop_all() has been followed by the
// collectors finishing). A collector's coroutine holds a shared_ptr to it, so dropping the last
// outside reference does not end a running scrape early.
//
// Errors never throw: a failed scrape (connect error, timeout, non-200 status, a body that is not
// the engine's metrics) is counted in scrape_errors, logged once when scraping starts failing, and
// leaves the endpoint's last good metrics in place; they go stale as their updated_at ages.

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "datastore/datastore.h"
#include "datastore/metrics_mapping.h"

namespace infergate::datastore {

struct CollectorOptions {
  // --refresh-metrics-interval: time from the start of one scrape to the start of the next (a
  // scrape that takes longer is followed by the next one at once).
  std::chrono::milliseconds refresh_interval{50};
  // The whole of one scrape: connect, request, response head and body.
  std::chrono::milliseconds scrape_timeout{1000};
  std::string path = "/metrics";
};

struct CollectorStats {
  std::atomic<std::uint64_t> scrapes{0};        // attempts
  std::atomic<std::uint64_t> scrape_errors{0};  // attempts that published nothing
  std::atomic<std::uint64_t> published{0};      // metrics handed to the Datastore
  // Figures the engine config enables but the last good scrape lacked (a MetricSet).
  std::atomic<MetricSet> missing{0};
};

class MetricsCollector : public std::enable_shared_from_this<MetricsCollector> {
 public:
  // `endpoint` is the endpoint's info from a Datastore snapshot; `config` its engine's mapping.
  static std::shared_ptr<MetricsCollector> create(boost::asio::io_context& io, Datastore& store,
                                                  std::shared_ptr<const EndpointInfo> endpoint,
                                                  EngineMetricsConfig config, const Clock& clock,
                                                  CollectorOptions options = {});

  // Spawns the scrape loop. Call once.
  void start();
  // Asks the loop to end: it stops before its next scrape (a scrape in flight finishes first, at
  // most scrape_timeout later). Idempotent; any thread.
  void stop();
  // The loop has ended: stopped, or its endpoint left the pool (update_metrics returned false).
  bool finished() const { return finished_.load(std::memory_order_acquire); }

  const EndpointInfo& endpoint() const { return *endpoint_; }
  const CollectorStats& stats() const { return stats_; }

  // Private: use create().
  MetricsCollector(boost::asio::io_context& io, Datastore& store,
                   std::shared_ptr<const EndpointInfo> endpoint, EngineMetricsConfig config,
                   const Clock& clock, CollectorOptions options);
  ~MetricsCollector();

 private:
  struct Loop;  // the coroutine's state, living on the strand
  // One scrape, published on success. Runs on the strand.
  boost::asio::awaitable<Status> scrape(std::chrono::steady_clock::time_point deadline);

  boost::asio::any_io_executor strand_;
  Datastore& store_;
  std::shared_ptr<const EndpointInfo> endpoint_;
  const Clock& clock_;
  CollectorOptions options_;
  std::unique_ptr<Loop> loop_;
  CollectorStats stats_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> started_{false};
};

// Keeps one collector per endpoint of the Datastore's current snapshot. Call sync() after every
// membership change (the pool reconciler does, right after Datastore::set_endpoints): it starts
// collectors for new endpoints (choosing the engine config by EndpointInfo::engine_type, the
// default engine's for an unknown type) and stops those of endpoints that left. Thread-safe.
class CollectorSet {
 public:
  CollectorSet(boost::asio::io_context& io, Datastore& store, EngineMappings mappings,
               const Clock& clock, CollectorOptions options = {});
  // Stops every collector (their loops end on the io_context shortly after).
  ~CollectorSet();
  CollectorSet(const CollectorSet&) = delete;
  CollectorSet& operator=(const CollectorSet&) = delete;

  void sync();
  void stop_all();

  std::size_t size() const;
  // The collector of the endpoint called `name`, or null.
  std::shared_ptr<MetricsCollector> find(std::string_view name) const;
  // Sum over current collectors.
  std::uint64_t scrape_errors() const;

 private:
  boost::asio::io_context& io_;
  Datastore& store_;
  const EngineMappings mappings_;
  const Clock& clock_;
  const CollectorOptions options_;
  mutable std::mutex mutex_;
  // Keyed by the endpoint's info object: a replaced endpoint (new spec or reused id) gets a new
  // one.
  std::map<const EndpointInfo*, std::shared_ptr<MetricsCollector>> collectors_;  // guarded
};

}  // namespace infergate::datastore
