#include "datastore/static_pool.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <variant>

#include "api/decode.h"
#include "api/endpoint_picker_config.h"
#include "common/text.h"
#include "datastore/pool.h"

namespace infergate::datastore {
namespace {

// Does a policy's `pool_ref_name` (the policy living in namespace `ns`) refer to `pool`?
bool refers_to(const api::InferencePool& pool, const std::string& pool_ref_name,
               const std::string& ns) {
  if (!pool_ref_name.empty() && pool_ref_name != pool.metadata.name) return false;
  return ns.empty() || pool.metadata.namespace_name.empty() || ns == pool.metadata.namespace_name;
}

// The policies of `resources` that refer to `pool`.
void attach_policies(const StaticResources& resources, StaticPool& result) {
  const api::InferencePool& pool = result.pool;
  for (const auto& objective : resources.objectives) {
    if (refers_to(pool, objective.pool_ref.name, objective.metadata.namespace_name)) {
      result.objectives.push_back(objective);
    }
  }
  for (const auto& rewrite : resources.rewrites) {
    if (refers_to(pool, rewrite.pool_ref.name, rewrite.metadata.namespace_name)) {
      result.rewrites.push_back(rewrite);
    }
  }
  for (const auto& model : resources.legacy_models) {
    if (refers_to(pool, model.pool_ref.name, model.metadata.namespace_name)) {
      result.legacy_models.push_back(model);
    }
  }
}

// The entries of the pool's endpoints annotation (empty when it has none).
std::vector<std::string> annotation_entries(const api::InferencePool& pool) {
  auto it = pool.metadata.annotations.find(std::string(kEndpointsAnnotation));
  if (it == pool.metadata.annotations.end()) return {};
  std::string text = it->second;
  std::replace(text.begin(), text.end(), '\n', ',');  // a YAML block scalar, one per line
  std::replace(text.begin(), text.end(), '\r', ' ');
  return split_endpoint_entries({text});
}

std::string annotation_source(std::string_view file, const api::InferencePool& pool) {
  return fmt::format("{}: InferencePool \"{}\": metadata.annotations[\"{}\"]", file,
                     pool.metadata.name, kEndpointsAnnotation);
}

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) return Status::bad_request(fmt::format("{}: cannot be read", path));
  std::stringstream buffer;
  buffer << stream.rdbuf();
  return buffer.str();
}

}  // namespace

Result<EndpointAddress> parse_endpoint_address(std::string_view text) {
  const std::string entry(trim_blanks(text));
  const auto invalid = [&](std::string_view why) {
    return Status::bad_request(fmt::format("entry \"{}\": {}", entry, why));
  };
  if (entry.empty()) return invalid("empty");
  EndpointAddress address;
  std::string_view port_text;
  if (entry.front() == '[') {
    const auto close = entry.find(']');
    if (close == std::string::npos || close == 1) {
      return invalid("unbalanced [ ] around an IPv6 address");
    }
    address.host = entry.substr(1, close - 1);
    const std::string_view rest = std::string_view(entry).substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return invalid("expected :port after ]");
      port_text = rest.substr(1);
      if (port_text.empty()) return invalid("empty port");
    }
  } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
    const auto colon = entry.find(':');
    address.host = entry.substr(0, colon);
    port_text = std::string_view(entry).substr(colon + 1);
    if (address.host.empty()) return invalid("empty host");
    if (port_text.empty()) return invalid("empty port");
  } else {
    address.host = entry;  // a host name, an IPv4 address or a bare IPv6 address
  }
  if (!port_text.empty()) {
    unsigned port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || port > 65535) return invalid("the port is not a number 1-65535");
      port = port * 10 + static_cast<unsigned>(c - '0');
    }
    if (port == 0 || port > 65535) return invalid("the port is not a number 1-65535");
    address.port = static_cast<std::uint16_t>(port);
  }
  return address;
}

std::vector<std::string> split_endpoint_entries(const std::vector<std::string>& arguments) {
  std::vector<std::string> entries;
  for (const std::string& argument : arguments) {
    std::string_view rest = argument;
    while (true) {
      const auto comma = rest.find(',');
      const std::string_view entry = trim_blanks(rest.substr(0, comma));
      if (!entry.empty()) entries.emplace_back(entry);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return entries;
}

Result<std::vector<EndpointSpec>> static_endpoints(const api::InferencePool& pool,
                                                   const std::vector<std::string>& entries,
                                                   std::string_view source,
                                                   bool bare_hosts_allowed) {
  std::vector<EndpointSpec> endpoints;
  std::set<std::pair<std::string, std::uint16_t>> seen;
  for (std::size_t index = 0; index < entries.size(); ++index) {
    auto address = parse_endpoint_address(entries[index]);
    if (!address) {
      return Status::bad_request(fmt::format("{}: {} (write host:port; IPv6: [address]:port)",
                                             source, address.status().message()));
    }
    const std::string pod_name = fmt::format("{}-{}", pool.metadata.name, index);
    std::vector<EndpointSpec> specs;
    if (address->port) {
      const auto& ports = pool.spec.target_ports;
      const auto rank = std::find(ports.begin(), ports.end(), static_cast<int32_t>(*address->port));
      specs.push_back({.pod_name = pod_name,
                       .namespace_name = pool.metadata.namespace_name,
                       .address = address->host,
                       .port = *address->port,
                       .rank = rank == ports.end() ? 0 : static_cast<int>(rank - ports.begin()),
                       .labels = pool.spec.match_labels});
    } else {
      if (!bare_hosts_allowed) {
        return Status::bad_request(
            fmt::format("{}: entry \"{}\" is not host:port: it has no port (a bare host needs an "
                        "InferencePool's targetPorts)",
                        source, trim_blanks(entries[index])));
      }
      const Pod pod{.name = pod_name,
                    .namespace_name = pool.metadata.namespace_name,
                    .address = address->host,
                    .labels = pool.spec.match_labels};
      specs = pool_endpoints(pool, {pod});
    }
    for (auto& spec : specs) {
      if (!seen.emplace(spec.address, spec.port).second) {
        return Status::bad_request(
            fmt::format("{}: endpoint {}:{} is listed twice", source, spec.address, spec.port));
      }
      endpoints.push_back(std::move(spec));
    }
  }
  return endpoints;
}

Result<StaticPool> static_pool_from_endpoints(const std::vector<std::string>& arguments,
                                              std::string_view pool_name,
                                              std::string_view namespace_name,
                                              std::string_view flag) {
  StaticPool result;
  api::InferencePool& pool = result.pool;
  pool.api_version = std::string(api::kApiVersionV1);
  pool.metadata.name = pool_name.empty() ? "default" : std::string(pool_name);
  pool.metadata.namespace_name = std::string(namespace_name);
  const std::vector<std::string> entries = split_endpoint_entries(arguments);
  if (entries.empty()) {
    return Status::bad_request(
        fmt::format("{}: no endpoint given (host:port,host:port,...)", flag));
  }
  auto endpoints = static_endpoints(pool, entries, flag, /*bare_hosts_allowed=*/false);
  if (!endpoints) return endpoints.status();
  result.endpoints = std::move(*endpoints);
  for (const auto& endpoint : result.endpoints) {
    const auto port = static_cast<int32_t>(endpoint.port);
    auto& ports = pool.spec.target_ports;
    if (std::find(ports.begin(), ports.end(), port) == ports.end()) ports.push_back(port);
  }
  return result;
}

void StaticResources::add(std::vector<api::Resource> resources, std::string_view source) {
  for (auto& resource : resources) {
    std::visit(
        [&](auto& object) {
          using T = std::decay_t<decltype(object)>;
          if constexpr (std::is_same_v<T, api::InferencePool>) {
            pools.push_back(std::move(object));
          } else if constexpr (std::is_same_v<T, api::InferenceObjective>) {
            objectives.push_back(std::move(object));
          } else if constexpr (std::is_same_v<T, api::InferenceModelRewrite>) {
            rewrites.push_back(std::move(object));
          } else if constexpr (std::is_same_v<T, api::InferenceModel>) {
            legacy_models.push_back(std::move(object));
          } else if constexpr (std::is_same_v<T, api::EndpointPickerConfig>) {
            configs.push_back(std::move(object));
            config_sources.emplace_back(source);
          } else if constexpr (std::is_same_v<T, api::Gateway>) {
            gateways.push_back(std::move(object));
          } else {
            static_assert(std::is_same_v<T, api::HTTPRoute>);
            routes.push_back(std::move(object));
          }
        },
        resource);
  }
}

Result<StaticResources> load_static_resources(const std::vector<std::string>& files) {
  StaticResources resources;
  std::string errors;
  for (const std::string& file : files) {
    auto decoded = api::load_file(file);
    if (!decoded) {
      errors += (errors.empty() ? "" : "\n") + decoded.status().message();
      continue;
    }
    resources.add(std::move(*decoded), file);
  }
  if (!errors.empty()) return Status::bad_request(std::move(errors));
  return resources;
}

Result<StaticPool> select_static_pool(const StaticResources& resources, std::string_view source,
                                      std::string_view pool_name, std::string_view pool_namespace,
                                      const std::vector<std::string>& endpoint_override) {
  const auto& pools = resources.pools;
  std::vector<const api::InferencePool*> matches;
  for (const auto& pool : pools) {
    if (pool_name.empty() || pool.metadata.name == pool_name) matches.push_back(&pool);
  }
  if (matches.size() > 1 && !pool_name.empty()) {
    std::erase_if(matches, [&](const api::InferencePool* pool) {
      return pool->metadata.namespace_name != pool_namespace;
    });
  }
  if (matches.size() != 1) {
    std::string names;
    for (const auto& pool : pools) {
      names += fmt::format("{}\"{}\"", names.empty() ? "" : ", ", pool.metadata.name);
    }
    if (pools.empty()) return Status::bad_request(fmt::format("{}: no InferencePool", source));
    if (pool_name.empty()) {
      return Status::bad_request(fmt::format(
          "{}: holds several InferencePools ({}); choose one with --pool-name", source, names));
    }
    return Status::bad_request(fmt::format(
        "{}: no InferencePool \"{}\"{} (found {})", source, pool_name,
        matches.empty() ? "" : fmt::format(" in namespace \"{}\"", pool_namespace), names));
  }
  StaticPool result;
  result.pool = *matches.front();
  api::InferencePool& pool = result.pool;
  if (pool.metadata.namespace_name.empty()) {
    pool.metadata.namespace_name = std::string(pool_namespace);
  }
  attach_policies(resources, result);

  std::vector<std::string> entries;
  std::string entries_source;
  if (!endpoint_override.empty()) {
    entries = split_endpoint_entries(endpoint_override);
    entries_source = "--endpoints";
  } else {
    entries = annotation_entries(pool);
    entries_source = annotation_source(source, pool);
  }
  if (entries.empty()) {
    return Status::bad_request(fmt::format(
        "{}: InferencePool \"{}\" has no endpoints: give --endpoints host[:port],... or the "
        "annotation {}: \"host[:port],...\" (the Kubernetes API mode, which would list its Pods, "
        "is not available in this build)",
        source, pool.metadata.name, kEndpointsAnnotation));
  }
  auto endpoints = static_endpoints(pool, entries, entries_source, /*bare_hosts_allowed=*/true);
  if (!endpoints) return endpoints.status();
  result.endpoints = std::move(*endpoints);
  return result;
}

Result<std::vector<StaticPool>> resolve_static_pools(const StaticResources& resources,
                                                     std::string_view source,
                                                     std::string_view default_namespace) {
  std::vector<StaticPool> result;
  std::set<std::pair<std::string, std::string>> names;
  for (const auto& resource : resources.pools) {
    StaticPool pool;
    pool.pool = resource;
    api::ObjectMeta& meta = pool.pool.metadata;
    if (meta.namespace_name.empty()) meta.namespace_name = std::string(default_namespace);
    if (!names.emplace(meta.namespace_name, meta.name).second) {
      return Status::bad_request(
          fmt::format("{}: InferencePool \"{}\" (namespace \"{}\") is "
                      "defined twice; names must be unique",
                      source, meta.name, meta.namespace_name));
    }
    const std::vector<std::string> entries = annotation_entries(pool.pool);
    if (entries.empty()) {
      return Status::bad_request(
          fmt::format("{}: InferencePool \"{}\" has no endpoints: list them in its annotation "
                      "{}: \"host[:port],...\" (a bare host: one endpoint per targetPort)",
                      source, meta.name, kEndpointsAnnotation));
    }
    auto endpoints = static_endpoints(pool.pool, entries, annotation_source(source, pool.pool),
                                      /*bare_hosts_allowed=*/true);
    if (!endpoints) return endpoints.status();
    pool.endpoints = std::move(*endpoints);
    attach_policies(resources, pool);
    result.push_back(std::move(pool));
  }
  // Every policy must name a pool: a typo would otherwise silently apply no policy.
  const auto check = [&](std::string_view kind, const api::ObjectMeta& meta,
                         const api::PoolRef& ref) -> Status {
    const bool found = std::any_of(result.begin(), result.end(), [&](const StaticPool& pool) {
      return refers_to(pool.pool, ref.name, meta.namespace_name);
    });
    if (found) return Status::ok();
    return Status::bad_request(fmt::format(
        "{}: {} \"{}\": field \"spec.poolRef.name\": no InferencePool \"{}\" in the configuration",
        source, kind, meta.name, ref.name));
  };
  for (const auto& objective : resources.objectives) {
    if (Status status = check(api::kKindInferenceObjective, objective.metadata, objective.pool_ref);
        !status.is_ok()) {
      return status;
    }
  }
  for (const auto& rewrite : resources.rewrites) {
    if (Status status = check(api::kKindInferenceModelRewrite, rewrite.metadata, rewrite.pool_ref);
        !status.is_ok()) {
      return status;
    }
  }
  for (const auto& model : resources.legacy_models) {
    if (Status status = check(api::kKindInferenceModel, model.metadata, model.pool_ref);
        !status.is_ok()) {
      return status;
    }
  }
  return result;
}

Result<api::EndpointPickerConfig> load_picker_config(
    const std::string& file, const std::string& text,
    const std::optional<api::EndpointPickerConfig>& from_resources,
    std::string_view resources_source, std::string& source) {
  if (!file.empty() && !text.empty()) {
    return Status::bad_request("--config-file and --config-text are mutually exclusive");
  }
  std::string contents;
  if (!file.empty()) {
    auto read = read_text_file(file);
    if (!read) return read.status();
    contents = std::move(*read);
    source = file;
  } else if (!text.empty()) {
    contents = text;
    source = "--config-text";
  } else if (from_resources) {
    source = std::string(resources_source);
    return *from_resources;
  } else {
    source = "built-in default";
    return api::default_endpoint_picker_config();
  }
  if (from_resources) {
    return Status::bad_request(
        fmt::format("an EndpointPickerConfig is given twice: in {} and in {}; keep one", source,
                    resources_source));
  }
  auto resources = api::decode_documents(contents, source);
  if (!resources) return resources.status();
  std::optional<api::EndpointPickerConfig> config;
  for (auto& resource : *resources) {
    auto* picker_config = std::get_if<api::EndpointPickerConfig>(&resource);
    if (picker_config == nullptr) {
      return Status::bad_request(fmt::format("{}: expected an EndpointPickerConfig, found a {}",
                                             source, api::kind_of(resource)));
    }
    if (config) {
      return Status::bad_request(
          fmt::format("{}: holds more than one EndpointPickerConfig", source));
    }
    config = std::move(*picker_config);
  }
  if (!config) return Status::bad_request(fmt::format("{}: no EndpointPickerConfig", source));
  return std::move(*config);
}

}  // namespace infergate::datastore
