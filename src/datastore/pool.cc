#include "datastore/pool.h"

#include <algorithm>

namespace infergate::datastore {

std::vector<EndpointSpec> pool_endpoints(const api::InferencePool& pool,
                                         const std::vector<Pod>& pods) {
  std::vector<EndpointSpec> endpoints;
  const std::string& pool_namespace = pool.metadata.namespace_name;
  for (const Pod& pod : pods) {
    if (!pod.ready || pod.address.empty()) continue;
    if (!pool_namespace.empty() && !pod.namespace_name.empty() &&
        pod.namespace_name != pool_namespace) {
      continue;
    }
    const bool selected = std::all_of(pool.spec.match_labels.begin(), pool.spec.match_labels.end(),
                                      [&](const auto& label) {
                                        auto it = pod.labels.find(label.first);
                                        return it != pod.labels.end() && it->second == label.second;
                                      });
    if (!selected) continue;
    for (std::size_t rank = 0; rank < pool.spec.target_ports.size(); ++rank) {
      endpoints.push_back({.pod_name = pod.name,
                           .namespace_name = pod.namespace_name,
                           .address = pod.address,
                           .port = static_cast<std::uint16_t>(pool.spec.target_ports[rank]),
                           .rank = static_cast<int>(rank),
                           .labels = pod.labels});
    }
  }
  return endpoints;
}

}  // namespace infergate::datastore
