#pragma once

// Start-up rules for pools described statically (outside Kubernetes), shared by `infergate epp`
// and `infergate serve` so that both read the same flags and files the same way:
//
//   - `--endpoints host:port,...` alone: a synthetic v1 InferencePool named after the pool name,
//     endpoints `<pool>-<index>` (rank 0), targetPorts = the distinct ports given.
//   - an InferencePool from a resources file, its endpoints listed in the annotation
//     `infergate.io/endpoints: "host[:port],..."` (or given by --endpoints): `host:port` is one
//     endpoint (its rank = the index of that port among targetPorts, else 0), a bare `host` expands
//     to one endpoint per targetPort (rank = the port's index); pods are named `<pool>-<index>`.
//     Duplicated `address:port` pairs are errors.
//   - InferenceObjectives, InferenceModelRewrites and legacy InferenceModels attach to the pool
//     their poolRef names (same namespace, or either side without one).
//   - the EndpointPickerConfig from --config-file / --config-text, or one found among the
//     resources, or GIE's built-in default.
//
// Pure apart from reading the files named. Start-up only; errors are 400 Statuses whose message
// names the flag, file, object and entry at fault.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/types.h"
#include "common/status.h"
#include "datastore/endpoint.h"

namespace infergate::datastore {

// The annotation on an InferencePool that lists its endpoints outside Kubernetes (an infergate
// extension field): "host[:port],host[:port],...".
inline constexpr std::string_view kEndpointsAnnotation = "infergate.io/endpoints";

// One `host[:port]` entry. IPv6 addresses may be written bare (then without a port) or bracketed
// (`[::1]:8000`); the host is returned without brackets.
struct EndpointAddress {
  std::string host;
  std::optional<std::uint16_t> port;
};
Result<EndpointAddress> parse_endpoint_address(std::string_view text);

// Every entry of `arguments` (each possibly a comma-separated list), trimmed, empty ones dropped.
std::vector<std::string> split_endpoint_entries(const std::vector<std::string>& arguments);

// A statically described pool: its resource, endpoints and the policies that apply to it.
struct StaticPool {
  api::InferencePool pool;
  std::vector<EndpointSpec> endpoints;
  std::vector<api::InferenceObjective> objectives;
  std::vector<api::InferenceModelRewrite> rewrites;
  std::vector<api::InferenceModel> legacy_models;
};

// The endpoints of `pool` from `entries` (see above); `source` names where the entries came from,
// for messages. Without `bare_hosts_allowed` an entry without a port is an error.
Result<std::vector<EndpointSpec>> static_endpoints(const api::InferencePool& pool,
                                                   const std::vector<std::string>& entries,
                                                   std::string_view source,
                                                   bool bare_hosts_allowed);

// `--endpoints` alone (`flag` names it in messages): every entry must be host:port.
Result<StaticPool> static_pool_from_endpoints(const std::vector<std::string>& arguments,
                                              std::string_view pool_name,
                                              std::string_view namespace_name,
                                              std::string_view flag = "--endpoints");

// Decoded resources sorted by kind, with the file each EndpointPickerConfig came from.
struct StaticResources {
  std::vector<api::InferencePool> pools;
  std::vector<api::InferenceObjective> objectives;
  std::vector<api::InferenceModelRewrite> rewrites;
  std::vector<api::InferenceModel> legacy_models;
  std::vector<api::EndpointPickerConfig> configs;
  std::vector<std::string> config_sources;  // parallel to `configs`
  std::vector<api::Gateway> gateways;
  std::vector<api::HTTPRoute> routes;

  // Sorts `resources` (decoded from `source`) in.
  void add(std::vector<api::Resource> resources, std::string_view source);
};

// Loads and sorts every file (each may hold many documents); all decoding errors of all files are
// reported together.
Result<StaticResources> load_static_resources(const std::vector<std::string>& files);

// `infergate epp --resources`: the one pool named `pool_name` (any when empty and there is only
// one; namespace `pool_namespace` breaks ties and is given to a pool without one), with its
// policies; endpoints from `endpoint_override` when not empty, else from the annotation.
Result<StaticPool> select_static_pool(const StaticResources& resources, std::string_view source,
                                      std::string_view pool_name, std::string_view pool_namespace,
                                      const std::vector<std::string>& endpoint_override);

// `infergate serve --config`: every pool, each with its endpoints from the annotation and the
// policies that name it. Pools without a namespace get `default_namespace`. Errors: two pools with
// the same namespace/name, a pool without endpoints, a policy naming no pool.
Result<std::vector<StaticPool>> resolve_static_pools(const StaticResources& resources,
                                                     std::string_view source,
                                                     std::string_view default_namespace);

// The picker configuration: from `file` or `text` (mutually exclusive), else `from_resources`
// (read from `resources_source`), else GIE's default. Giving one both ways is an error. `source`
// is set to what was used, for messages.
Result<api::EndpointPickerConfig> load_picker_config(
    const std::string& file, const std::string& text,
    const std::optional<api::EndpointPickerConfig>& from_resources,
    std::string_view resources_source, std::string& source);

}  // namespace infergate::datastore
