#include "gateway/config_file.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "datastore/model_policies.h"
#include "gateway/routes.h"

namespace infergate::gateway {
namespace {

// The HTTP listeners `ref` selects on `gateway` (all when it names no section and no port).
bool selects_http_listener(const api::Gateway& gateway, const api::ParentReference& ref) {
  return std::any_of(gateway.listeners.begin(), gateway.listeners.end(),
                     [&](const api::GatewayListener& listener) {
                       return listener.protocol == "HTTP" &&
                              (ref.section_name.empty() || ref.section_name == listener.name) &&
                              (!ref.port || *ref.port == listener.port);
                     });
}

std::string namespace_or_default(const std::string& ns) {
  return ns.empty() ? std::string(kDefaultNamespace) : ns;
}

}  // namespace

std::vector<std::string> pool_keys(const std::vector<datastore::StaticPool>& pools) {
  std::vector<std::string> keys;
  keys.reserve(pools.size());
  for (const auto& pool : pools) {
    keys.push_back(namespace_or_default(pool.pool.metadata.namespace_name) + "/" +
                   pool.pool.metadata.name);
  }
  return keys;
}

std::vector<std::string> policy_model_names(const datastore::StaticPool& pool) {
  std::vector<std::string> names;
  const auto add = [&](const std::string& name) {
    if (!name.empty() && std::find(names.begin(), names.end(), name) == names.end()) {
      names.push_back(name);
    }
  };
  for (const auto& rewrite : pool.rewrites) {
    for (const auto& rule : rewrite.rules) {
      for (const auto& match : rule.matches) add(match.value);
    }
  }
  for (const auto& model : pool.legacy_models) add(model.model_name);
  return names;
}

Result<GatewayFileConfig> resolve_gateway_config(const datastore::StaticResources& resources,
                                                 std::string_view source) {
  GatewayFileConfig config;
  config.source = std::string(source);

  if (resources.gateways.size() > 1) {
    return Status::bad_request(
        fmt::format("{}: holds {} Gateways (\"{}\", \"{}\", ...); infergate serve runs one Gateway",
                    source, resources.gateways.size(), resources.gateways[0].metadata.name,
                    resources.gateways[1].metadata.name));
  }
  if (!resources.gateways.empty()) {
    const api::Gateway& gateway = resources.gateways.front();
    for (const auto& listener : gateway.listeners) {
      if (listener.protocol == "HTTP") {
        config.listener_port = static_cast<std::uint16_t>(listener.port);
        break;
      }
    }
    if (!config.listener_port) {
      return Status::bad_request(
          fmt::format("{}: Gateway \"{}\": field \"spec.listeners\": no listener with protocol "
                      "HTTP (infergate serves plain HTTP; terminate TLS in front of it)",
                      source, gateway.metadata.name));
    }
    config.gateway = gateway;
  }

  if (resources.configs.size() > 1) {
    return Status::bad_request(fmt::format(
        "{}: holds {} EndpointPickerConfigs (in {} and {}); one EndpointPickerConfig applies to "
        "every pool, so give at most one",
        source, resources.configs.size(), resources.config_sources[0],
        resources.config_sources[1]));
  }
  if (!resources.configs.empty()) {
    config.picker_config = resources.configs.front();
    config.picker_config_source = resources.config_sources.front();
  }

  if (resources.pools.empty()) {
    return Status::bad_request(
        fmt::format("{}: no InferencePool: give at least one, its endpoints in the annotation {}",
                    source, datastore::kEndpointsAnnotation));
  }
  auto pools = datastore::resolve_static_pools(resources, source, kDefaultNamespace);
  if (!pools) return pools.status();
  config.pools = std::move(*pools);

  for (const api::HTTPRoute& route : resources.routes) {
    if (!config.gateway) continue;  // no Gateway given: every route attaches to the listener
    const api::Gateway& gateway = *config.gateway;
    const std::string route_ns = namespace_or_default(route.metadata.namespace_name);
    const std::string gateway_ns = namespace_or_default(gateway.metadata.namespace_name);
    bool attached = false;
    for (std::size_t index = 0; index < route.parent_refs.size(); ++index) {
      const api::ParentReference& ref = route.parent_refs[index];
      const std::string ref_ns = ref.namespace_name.empty() ? route_ns : ref.namespace_name;
      if (ref.name != gateway.metadata.name || ref_ns != gateway_ns) continue;
      if (!selects_http_listener(gateway, ref)) {
        return Status::bad_request(
            fmt::format("{}: HTTPRoute \"{}\": field \"spec.parentRefs[{}]\": Gateway \"{}\" has "
                        "no HTTP listener{}{}",
                        source, route.metadata.name, index, gateway.metadata.name,
                        ref.section_name.empty() ? "" : " named \"" + ref.section_name + "\"",
                        ref.port ? fmt::format(" on port {}", *ref.port) : ""));
      }
      attached = true;
    }
    if (!attached) {
      return Status::bad_request(
          fmt::format("{}: HTTPRoute \"{}\": field \"spec.parentRefs\": does not name the Gateway "
                      "\"{}\" (namespace \"{}\") of the configuration",
                      source, route.metadata.name, gateway.metadata.name, gateway_ns));
    }
  }
  if (resources.routes.empty() && config.pools.size() > 1) {
    return Status::bad_request(fmt::format(
        "{}: holds {} InferencePools but no HTTPRoute to choose among them; add HTTPRoutes "
        "(e.g. one rule per model matching the header X-Gateway-Model-Name)",
        source, config.pools.size()));
  }
  config.routes = resources.routes;
  // Resolve every backendRef now, so that a bad reference is a start-up error.
  auto table = RouteTable::build(config.routes, pool_keys(config.pools), kDefaultNamespace);
  if (!table) return Status::bad_request(fmt::format("{}: {}", source, table.status().message()));
  return config;
}

void apply_gateway_config(const GatewayFileConfig& config, bool port_given,
                          GatewayOptions& options) {
  if (!port_given && config.listener_port) options.port = *config.listener_port;
  options.pools.clear();
  for (const datastore::StaticPool& pool : config.pools) {
    options.pools.push_back({.name = pool.pool.metadata.name,
                             .namespace_name = pool.pool.metadata.namespace_name,
                             .endpoints = pool.endpoints,
                             .policies = std::make_shared<const datastore::ModelPolicies>(
                                 pool.objectives, pool.rewrites, pool.legacy_models),
                             .model_names = policy_model_names(pool),
                             .endpoint_picker_ref = pool.pool.spec.endpoint_picker_ref});
  }
  options.routes = config.routes;
}

Result<GatewayFileConfig> load_gateway_config(const std::vector<std::string>& files) {
  if (files.empty()) return Status::bad_request("--config: no file given");
  auto resources = datastore::load_static_resources(files);
  if (!resources) return resources.status();
  std::string source;
  for (const auto& file : files) source += (source.empty() ? "" : ", ") + file;
  return resolve_gateway_config(*resources, source);
}

}  // namespace infergate::gateway
