#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "datastore/endpoint.h"

namespace infergate::datastore {

// An immutable view of the pool's endpoints. Readers on the hot path take one with
// Datastore::snapshot() (no lock) and use it for a whole request; it stays valid while held.
struct Snapshot {
  std::uint64_t version = 0;        // increases with every membership change
  std::vector<Endpoint> endpoints;  // in id order

  const Endpoint* find(EndpointId id) const;
  const Endpoint* find(std::string_view name) const;
};

// Live endpoint membership and state (ARCHITECTURE.md: datastore). Writers — the pool reconciler
// (static list or Kubernetes watch) and the metrics collectors — may call from any thread; they
// serialise on an internal mutex and publish a new Snapshot for membership changes only. Metrics
// and in-flight counters change in place through the shared EndpointState, so a scrape does not
// copy the endpoint list.
class Datastore {
 public:
  Datastore();

  // Replaces the set of endpoints: new names are added (fresh id, no metrics), vanished ones
  // removed, and endpoints whose spec changed are replaced (new id). Unchanged endpoints keep their
  // id and state. Returns the new snapshot.
  std::shared_ptr<const Snapshot> set_endpoints(const std::vector<EndpointSpec>& specs);
  // Adds or replaces one endpoint; returns its id.
  EndpointId upsert_endpoint(const EndpointSpec& spec);
  // Removes an endpoint by name; false when unknown.
  bool remove_endpoint(std::string_view name);

  // Records a scrape of the endpoint `who` (its info from a snapshot); false when that endpoint
  // is no longer in the pool (its collector should stop). With stale-metrics correction on, first
  // stamps `metrics` with the endpoint's in-flight counters as of the scrape: `at_scrape_start`
  // when the publisher read them as the scrape began (inflight()), else their values now; with it
  // off, clears those fields. `metrics` must not be published elsewhere yet.
  bool update_metrics(const EndpointInfo& who, std::shared_ptr<EndpointMetrics> metrics,
                      std::optional<InflightCounts> at_scrape_start = std::nullopt);
  // The endpoint `who`'s in-flight counters now; nullopt when it is no longer in the pool.
  std::optional<InflightCounts> inflight(const EndpointInfo& who) const;

  // Stale-metrics correction (`--correct-stale-metrics`, default on): whether update_metrics
  // records the in-flight baseline the load scorers correct scraped figures with
  // (endpoint.h). Off: the scorers read the scraped figures alone, as the reference EPP. Any
  // thread; takes effect from the next scrape of each endpoint.
  void set_correct_stale_metrics(bool on) {
    correct_stale_metrics_.store(on, std::memory_order_relaxed);
  }
  bool correct_stale_metrics() const {
    return correct_stale_metrics_.load(std::memory_order_relaxed);
  }

  std::shared_ptr<const Snapshot> snapshot() const {
    return snapshot_.load(std::memory_order_acquire);
  }
  // One more than the largest id in use: the size of per-endpoint arrays.
  EndpointId id_bound() const { return id_bound_.load(std::memory_order_acquire); }

 private:
  void publish(std::vector<Endpoint> endpoints);    // requires mutex_
  EndpointId allocate_id();                         // requires mutex_
  std::vector<Endpoint> current_endpoints() const;  // requires mutex_

  mutable std::mutex mutex_;
  std::vector<EndpointId> free_ids_;  // guarded
  EndpointId next_id_ = 0;            // guarded
  std::atomic<EndpointId> id_bound_{0};
  std::atomic<bool> correct_stale_metrics_{true};
  std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
};

}  // namespace infergate::datastore
