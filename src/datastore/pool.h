#pragma once

#include <map>
#include <string>
#include <vector>

#include "api/types.h"
#include "datastore/endpoint.h"

namespace infergate::datastore {

// A pod as the pool sees it: from the Kubernetes API, or listed statically outside Kubernetes.
struct Pod {
  std::string name;
  std::string namespace_name;
  std::string address;  // pod IP
  std::map<std::string, std::string> labels;
  bool ready = true;
};

// The endpoints of `pool` among `pods`: every ready pod in the pool's namespace (when both name
// one) whose labels include all of the selector's matchLabels, once per target port, the port's
// index being the endpoint's rank (`<pod>-rank-<index>`). Pure.
std::vector<EndpointSpec> pool_endpoints(const api::InferencePool& pool,
                                         const std::vector<Pod>& pods);

}  // namespace infergate::datastore
