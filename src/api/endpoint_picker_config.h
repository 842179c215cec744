#pragma once

// EndpointPickerConfig semantics beyond decoding (api-types.md §7): the built-in default, the
// plugins and weights the EPP implies, and reference validation.
//
// Start-up only; pure functions, thread-safe. Plugin types are classified by a PluginClassifier so
// the scheduling registry can supply its own; builtin_plugin_roles() knows the GIE / llm-d built-in
// types of scheduling.md §3 and §8.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/types.h"

namespace infergate::api {

// What a plugin type can do. A type may have several roles (the saturation detectors are also
// filters). Unknown types have no role.
struct PluginRoles {
  bool filter = false;
  bool scorer = false;
  bool picker = false;
  bool profile_handler = false;
  bool parser = false;
  bool saturation_detector = false;
  bool flow_control_policy = false;

  bool operator==(const PluginRoles&) const = default;
};

using PluginClassifier = std::function<PluginRoles(std::string_view type)>;

// Roles of the built-in plugin types (exact GIE code names).
PluginRoles builtin_plugin_roles(std::string_view type);

// The built-in configuration used when no config is given (GIE `loader/defaults.go`, §7.3):
// plugins queue-scorer, kv-cache-utilization-scorer, prefix-cache-scorer, metrics-data-source,
// core-metrics-extractor; profile `default` weighting them 2 / 2 / 3; data layer
// metrics-data-source -> core-metrics-extractor. System defaults are not yet applied.
EndpointPickerConfig default_endpoint_picker_config();

// Returns `config` with what the EPP implies added (§7.2, §7.3 "system defaults", §6 defaults), in
// this order:
//  1. no schedulingProfiles -> profile `default` referencing every filter, scorer and picker
//     plugin, in declaration order;
//  2. a scorer referenced without weight gets weight 1;
//  3. a profile without a picker gets `max-score-picker` (declared if absent);
//  4. exactly one profile and no profile handler declared -> `single-profile-handler`;
//  5. no `parser` -> the declared parser plugin, else `openai-parser`;
//  6. no `saturationDetector` -> the declared detector plugin, else `utilization-detector`;
//  7. `prefix-cache-scorer` declared without `approx-prefix-cache-producer` -> the producer;
//  8. flow control (section present or feature gate `flowControl`): bands default to
//     `global-strict-fairness-policy` / `fcfs-ordering-policy`, the usage limit to
//     `static-usage-limit-policy`; referenced built-in policies not declared are declared.
// A plugin is "declared" for a type if any plugin has that type; added plugins are named after
// their type. Idempotent. Does not validate; call validate_endpoint_picker_config first.
EndpointPickerConfig fill_implied_defaults(EndpointPickerConfig config,
                                           const PluginClassifier& classify = builtin_plugin_roles);

// `config` if given and it has plugins or profiles, else the built-in default; then implied
// defaults filled. This is the configuration the scheduler should build.
EndpointPickerConfig resolve_endpoint_picker_config(
    const std::optional<EndpointPickerConfig>& config,
    const PluginClassifier& classify = builtin_plugin_roles);

// Name and reference checks, one message per problem, each `field "<path>": <problem>`:
// empty plugin types, duplicate plugin or profile names, duplicate band priorities, negative or
// non-finite weights, and every pluginRef (profiles, saturationDetector, dataLayer, parser) that
// names no declared plugin. Flow-control policy refs may also name a built-in policy type.
std::vector<std::string> validate_endpoint_picker_config(const EndpointPickerConfig& config);

}  // namespace infergate::api
