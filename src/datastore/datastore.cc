#include "datastore/datastore.h"

#include <fmt/format.h>

#include <algorithm>

namespace infergate::datastore {
namespace {

std::shared_ptr<const EndpointInfo> make_info(EndpointId id, const EndpointSpec& spec) {
  auto info = std::make_shared<EndpointInfo>();
  info->id = id;
  info->name = spec.endpoint_name();
  info->spec = spec;
  auto engine = spec.labels.find(kEngineTypeLabel);
  info->engine_type =
      engine != spec.labels.end() && !engine->second.empty() ? engine->second : kDefaultEngineType;
  const bool ipv6 = spec.address.find(':') != std::string::npos;
  info->host_port = ipv6 ? fmt::format("[{}]:{}", spec.address, spec.port)
                         : fmt::format("{}:{}", spec.address, spec.port);
  return info;
}

}  // namespace

std::string EndpointSpec::endpoint_name() const {
  return fmt::format("{}-rank-{}", pod_name, rank);
}

std::shared_ptr<const EndpointMetrics> Endpoint::fresh_metrics(TimePoint now,
                                                               Duration threshold) const {
  auto metrics = state->metrics();
  if (!metrics || now - metrics->updated_at > threshold) return nullptr;
  return metrics;
}

std::int64_t requests_not_in_scrape(const EndpointMetrics& metrics, const EndpointState& state) {
  if (metrics.inflight_requests_at_scrape < 0) return 0;
  const std::int64_t now = state.inflight_requests.load(std::memory_order_relaxed);
  // Of the requests in flight at the scrape, the figures show at most waiting + running: the rest
  // were still on their way into the engine (HTTP, tokenisation) and count as new too. With
  // other clients' requests in the figures, the in-flight baseline alone applies.
  const std::int64_t seen = std::min<std::int64_t>(
      metrics.inflight_requests_at_scrape,
      static_cast<std::int64_t>(metrics.waiting_requests) + metrics.running_requests);
  return std::max<std::int64_t>(0, now - seen);
}

double corrected_waiting_requests(const EndpointMetrics& metrics, const EndpointState& state) {
  return static_cast<double>(metrics.waiting_requests) +
         static_cast<double>(requests_not_in_scrape(metrics, state));
}

double corrected_running_requests(const EndpointMetrics& metrics, const EndpointState& state) {
  return static_cast<double>(metrics.running_requests) +
         static_cast<double>(requests_not_in_scrape(metrics, state));
}

double corrected_kv_cache_usage(const EndpointMetrics& metrics, const EndpointState& state) {
  const double capacity_tokens =
      static_cast<double>(metrics.cache_num_blocks) * static_cast<double>(metrics.cache_block_size);
  if (metrics.inflight_tokens_at_scrape < 0 || capacity_tokens <= 0) {
    return metrics.kv_cache_usage;
  }
  const std::int64_t now = state.inflight_tokens.load(std::memory_order_relaxed);
  const std::int64_t added = std::max<std::int64_t>(0, now - metrics.inflight_tokens_at_scrape);
  if (added == 0) return metrics.kv_cache_usage;
  return std::min(1.0, metrics.kv_cache_usage + static_cast<double>(added) / capacity_tokens);
}

const Endpoint* Snapshot::find(EndpointId id) const {
  auto it = std::lower_bound(
      endpoints.begin(), endpoints.end(), id,
      [](const Endpoint& endpoint, EndpointId key) { return endpoint.info->id < key; });
  return it != endpoints.end() && it->info->id == id ? &*it : nullptr;
}

const Endpoint* Snapshot::find(std::string_view name) const {
  for (const auto& endpoint : endpoints) {
    if (endpoint.info->name == name) return &endpoint;
  }
  return nullptr;
}

Datastore::Datastore() { snapshot_.store(std::make_shared<const Snapshot>()); }

std::vector<Endpoint> Datastore::current_endpoints() const { return snapshot()->endpoints; }

EndpointId Datastore::allocate_id() {
  if (!free_ids_.empty()) {
    // Smallest free id first, keeping ids dense.
    auto smallest = std::min_element(free_ids_.begin(), free_ids_.end());
    const EndpointId id = *smallest;
    free_ids_.erase(smallest);
    return id;
  }
  return next_id_++;
}

void Datastore::publish(std::vector<Endpoint> endpoints) {
  std::sort(endpoints.begin(), endpoints.end(),
            [](const Endpoint& a, const Endpoint& b) { return a.info->id < b.info->id; });
  auto next = std::make_shared<Snapshot>();
  next->version = snapshot()->version + 1;
  next->endpoints = std::move(endpoints);
  EndpointId bound = 0;
  for (const auto& endpoint : next->endpoints) bound = std::max(bound, endpoint.info->id + 1);
  id_bound_.store(bound, std::memory_order_release);
  snapshot_.store(std::move(next), std::memory_order_release);
}

std::shared_ptr<const Snapshot> Datastore::set_endpoints(const std::vector<EndpointSpec>& specs) {
  std::lock_guard lock(mutex_);
  std::vector<Endpoint> previous = current_endpoints();
  std::vector<bool> carried(previous.size(), false);
  std::vector<Endpoint> next;
  std::vector<const EndpointSpec*> added;
  std::vector<std::string> names;
  for (const auto& spec : specs) {
    std::string name = spec.endpoint_name();
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;  // first one wins
    names.push_back(name);
    bool kept = false;
    for (std::size_t i = 0; i < previous.size() && !kept; ++i) {
      if (!carried[i] && previous[i].info->name == name && previous[i].info->spec == spec) {
        carried[i] = kept = true;
        next.push_back(previous[i]);
      }
    }
    if (!kept) added.push_back(&spec);
  }
  // Ids of endpoints that left (or changed) are free before new endpoints get theirs.
  for (std::size_t i = 0; i < previous.size(); ++i) {
    if (!carried[i]) free_ids_.push_back(previous[i].info->id);
  }
  for (const EndpointSpec* spec : added) {
    next.push_back({make_info(allocate_id(), *spec), std::make_shared<EndpointState>()});
  }
  publish(std::move(next));
  return snapshot();
}

EndpointId Datastore::upsert_endpoint(const EndpointSpec& spec) {
  std::lock_guard lock(mutex_);
  std::vector<Endpoint> endpoints = current_endpoints();
  const std::string name = spec.endpoint_name();
  auto it = std::find_if(endpoints.begin(), endpoints.end(),
                         [&](const Endpoint& endpoint) { return endpoint.info->name == name; });
  if (it != endpoints.end()) {
    if (it->info->spec == spec) return it->info->id;
    free_ids_.push_back(it->info->id);
    endpoints.erase(it);
  }
  Endpoint endpoint{make_info(allocate_id(), spec), std::make_shared<EndpointState>()};
  const EndpointId id = endpoint.info->id;
  endpoints.push_back(std::move(endpoint));
  publish(std::move(endpoints));
  return id;
}

bool Datastore::remove_endpoint(std::string_view name) {
  std::lock_guard lock(mutex_);
  std::vector<Endpoint> endpoints = current_endpoints();
  auto it = std::find_if(endpoints.begin(), endpoints.end(),
                         [&](const Endpoint& endpoint) { return endpoint.info->name == name; });
  if (it == endpoints.end()) return false;
  free_ids_.push_back(it->info->id);
  endpoints.erase(it);
  publish(std::move(endpoints));
  return true;
}

bool Datastore::update_metrics(const EndpointInfo& who, std::shared_ptr<EndpointMetrics> metrics,
                               std::optional<InflightCounts> at_scrape_start) {
  auto current = snapshot();
  const Endpoint* endpoint = current->find(who.id);
  // An id is reused after removal: only the very endpoint the collector was started for counts.
  if (!endpoint || endpoint->info.get() != &who) return false;
  if (correct_stale_metrics()) {
    const InflightCounts baseline = at_scrape_start.value_or(endpoint->state->inflight());
    metrics->inflight_requests_at_scrape = baseline.requests;
    metrics->inflight_tokens_at_scrape = baseline.tokens;
  } else {
    metrics->inflight_requests_at_scrape = -1;
    metrics->inflight_tokens_at_scrape = -1;
  }
  endpoint->state->set_metrics(std::move(metrics));
  return true;
}

std::optional<InflightCounts> Datastore::inflight(const EndpointInfo& who) const {
  auto current = snapshot();
  const Endpoint* endpoint = current->find(who.id);
  if (!endpoint || endpoint->info.get() != &who) return std::nullopt;
  return endpoint->state->inflight();
}

}  // namespace infergate::datastore
