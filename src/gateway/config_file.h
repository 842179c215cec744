#pragma once

// `infergate serve --config FILE`: the user's Kubernetes YAML (docs/gateway.md, "Configuration
// file") resolved into what the gateway runs — the listener port, the pools with their endpoints
// and policies, the routes, and the one EndpointPickerConfig every pool uses.
//
// Kinds: Gateway (at most one; its first HTTP listener gives the port), HTTPRoutes (attached to
// that Gateway by parentRefs when there is one), InferencePools (endpoints from the
// `infergate.io/endpoints` annotation; endpointPickerRef kept), InferenceObjectives,
// InferenceModelRewrites and legacy InferenceModels (per pool, by poolRef), at most one
// EndpointPickerConfig (it applies to every pool; none: GIE's default).
//
// Start-up only; pure apart from reading the files. Errors are 400 Statuses naming the file (or
// the files, when a problem spans them), the object and the field at fault.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api/types.h"
#include "common/status.h"
#include "datastore/static_pool.h"
#include "gateway/gateway.h"
#include "gateway/routes.h"

namespace infergate::gateway {

struct GatewayFileConfig {
  std::string source;  // the file name(s), for messages
  std::optional<api::Gateway> gateway;
  std::optional<std::uint16_t> listener_port;  // the Gateway's first HTTP listener
  std::vector<datastore::StaticPool> pools;
  std::vector<api::HTTPRoute> routes;
  std::optional<api::EndpointPickerConfig> picker_config;
  std::string picker_config_source;  // the file it came from
};

// Checks and resolves decoded resources (`source` names their files in messages).
Result<GatewayFileConfig> resolve_gateway_config(const datastore::StaticResources& resources,
                                                 std::string_view source);

// Loads every file (each may hold many documents) and resolves them together.
Result<GatewayFileConfig> load_gateway_config(const std::vector<std::string>& files);

// Sets `options`' pools (with their policies and model names) and routes from `config`, and its
// port from the Gateway's listener unless `port_given` (--port). The picker configuration is left
// to the caller (flags may override it).
void apply_gateway_config(const GatewayFileConfig& config, bool port_given,
                          GatewayOptions& options);

// "<namespace>/<name>" of each pool, in order: what RouteTable::build resolves backendRefs to.
std::vector<std::string> pool_keys(const std::vector<datastore::StaticPool>& pools);

// The model names clients may send to `pool` as its policies declare them: the matches of its
// InferenceModelRewrites and the modelName of its legacy InferenceModels, each once.
std::vector<std::string> policy_model_names(const datastore::StaticPool& pool);

}  // namespace infergate::gateway
