#include "api/endpoint_picker_config.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace infergate::api {
namespace {

constexpr std::string_view kDefaultProfileName = "default";
constexpr std::string_view kMaxScorePicker = "max-score-picker";
constexpr std::string_view kSingleProfileHandler = "single-profile-handler";
constexpr std::string_view kOpenAiParser = "openai-parser";
constexpr std::string_view kUtilizationDetector = "utilization-detector";
constexpr std::string_view kPrefixCacheScorer = "prefix-cache-scorer";
constexpr std::string_view kPrefixCacheProducer = "approx-prefix-cache-producer";
constexpr std::string_view kDefaultFairnessPolicy = "global-strict-fairness-policy";
constexpr std::string_view kDefaultOrderingPolicy = "fcfs-ordering-policy";
constexpr std::string_view kDefaultUsageLimitPolicy = "static-usage-limit-policy";
constexpr std::string_view kFlowControlGate = "flowControl";

bool contains(std::initializer_list<std::string_view> list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

bool has_plugin_of_type(const EndpointPickerConfig& config, std::string_view type) {
  return std::any_of(config.plugins.begin(), config.plugins.end(),
                     [&](const PluginSpec& plugin) { return plugin.type == type; });
}

// The name of the first plugin of `type`, declaring one (named after the type) if there is none.
std::string ensure_plugin(EndpointPickerConfig& config, std::string_view type) {
  for (const PluginSpec& plugin : config.plugins) {
    if (plugin.type == type) return plugin.name;
  }
  std::string name(type);
  // The type's own name may already be taken by a plugin of another type.
  while (config.find_plugin(name) != nullptr) name += "-implied";
  config.plugins.push_back(PluginSpec{name, std::string(type), nlohmann::json()});
  return name;
}

PluginRoles roles_of_ref(const EndpointPickerConfig& config, std::string_view ref,
                         const PluginClassifier& classify) {
  const PluginSpec* plugin = config.find_plugin(ref);
  return plugin == nullptr ? PluginRoles{} : classify(plugin->type);
}

std::string field(const std::string& path, const std::string& problem) {
  return "field \"" + path + "\": " + problem;
}

}  // namespace

PluginRoles builtin_plugin_roles(std::string_view type) {
  PluginRoles roles;
  roles.scorer = contains(
      {"queue-scorer", "kv-cache-utilization-scorer", "kv-cache-scorer",
       "running-requests-size-scorer", "token-load-scorer", "lora-affinity-scorer",
       "prefix-cache-scorer", "latency-scorer", "precise-prefix-cache-scorer", "load-aware-scorer",
       "active-request-scorer", "no-hit-lru-scorer", "session-affinity-scorer"},
      type);
  roles.filter =
      contains({"header-based-testing-filter", "utilization-detector", "concurrency-detector",
                "prefix-cache-affinity-filter", "slo-headroom-tier-filter", "low-queue-filter",
                "lora-affinity-filter", "least-queue-filter", "least-kv-cache-filter",
                "prefill-filter", "decode-filter"},
               type);
  roles.picker = contains(
      {"max-score-picker", "random-picker", "weighted-random-picker", "round-robin-picker"}, type);
  roles.profile_handler = contains({"single-profile-handler", "disagg-profile-handler"}, type);
  roles.parser = contains({"openai-parser", "passthrough-parser", "vllmgrpc-parser"}, type);
  roles.saturation_detector = contains({"utilization-detector", "concurrency-detector"}, type);
  roles.flow_control_policy = contains(
      {"global-strict-fairness-policy", "round-robin-fairness-policy", "fcfs-ordering-policy",
       "edf-ordering-policy", "slo-deadline-ordering-policy", "static-usage-limit-policy"},
      type);
  return roles;
}

EndpointPickerConfig default_endpoint_picker_config() {
  EndpointPickerConfig config;
  for (std::string_view type :
       {"queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer", "metrics-data-source",
        "core-metrics-extractor"}) {
    config.plugins.push_back(PluginSpec{std::string(type), std::string(type), nlohmann::json()});
  }
  config.scheduling_profiles.push_back(SchedulingProfile{
      std::string(kDefaultProfileName),
      {{"queue-scorer", 2.0}, {"kv-cache-utilization-scorer", 2.0}, {"prefix-cache-scorer", 3.0}}});
  config.data_layer =
      DataLayerConfig{{DataLayerSource{"metrics-data-source", {"core-metrics-extractor"}}}};
  return config;
}

EndpointPickerConfig fill_implied_defaults(EndpointPickerConfig config,
                                           const PluginClassifier& classify) {
  // 1. Synthesised profile.
  if (config.scheduling_profiles.empty()) {
    SchedulingProfile profile{std::string(kDefaultProfileName), {}};
    for (const PluginSpec& plugin : config.plugins) {
      const PluginRoles roles = classify(plugin.type);
      if (roles.filter || roles.scorer || roles.picker) {
        profile.plugins.push_back(ProfilePluginRef{plugin.name, std::nullopt});
      }
    }
    config.scheduling_profiles.push_back(std::move(profile));
  }
  for (SchedulingProfile& profile : config.scheduling_profiles) {
    // 2. Scorer weight.
    bool has_picker = false;
    for (ProfilePluginRef& ref : profile.plugins) {
      const PluginRoles roles = roles_of_ref(config, ref.plugin_ref, classify);
      if (roles.scorer && !ref.weight) ref.weight = 1.0;
      has_picker = has_picker || roles.picker;
    }
    // 3. Picker.
    if (!has_picker) {
      profile.plugins.push_back(
          ProfilePluginRef{ensure_plugin(config, kMaxScorePicker), std::nullopt});
    }
  }
  // 4. Profile handler.
  const bool has_handler =
      std::any_of(config.plugins.begin(), config.plugins.end(),
                  [&](const PluginSpec& plugin) { return classify(plugin.type).profile_handler; });
  if (config.scheduling_profiles.size() == 1 && !has_handler) {
    ensure_plugin(config, kSingleProfileHandler);
  }
  // 5, 6. Parser and saturation detector: a declared one, else the default type.
  auto first_with_role = [&](bool PluginRoles::*role) -> std::optional<std::string> {
    for (const PluginSpec& plugin : config.plugins) {
      if (classify(plugin.type).*role) return plugin.name;
    }
    return std::nullopt;
  };
  if (!config.parser_ref) {
    config.parser_ref = first_with_role(&PluginRoles::parser);
    if (!config.parser_ref) config.parser_ref = ensure_plugin(config, kOpenAiParser);
  }
  if (!config.saturation_detector_ref) {
    config.saturation_detector_ref = first_with_role(&PluginRoles::saturation_detector);
    if (!config.saturation_detector_ref) {
      config.saturation_detector_ref = ensure_plugin(config, kUtilizationDetector);
    }
  }
  // 7. Data producers consumed by declared plugins.
  if (has_plugin_of_type(config, kPrefixCacheScorer)) ensure_plugin(config, kPrefixCacheProducer);
  // 8. Flow-control policies.
  if (config.flow_control || config.has_feature_gate(kFlowControlGate)) {
    if (!config.flow_control) config.flow_control = FlowControlConfig{};
    FlowControlConfig& flow = *config.flow_control;
    auto declare_policy = [&](std::string& ref, std::string_view default_type) {
      if (ref.empty()) ref = std::string(default_type);
      if (config.find_plugin(ref) == nullptr && classify(ref).flow_control_policy) {
        config.plugins.push_back(PluginSpec{ref, ref, nlohmann::json()});
      }
    };
    for (PriorityBandConfig& band : flow.priority_bands) {
      declare_policy(band.fairness_policy_ref, kDefaultFairnessPolicy);
      declare_policy(band.ordering_policy_ref, kDefaultOrderingPolicy);
    }
    declare_policy(flow.usage_limit_policy_plugin_ref, kDefaultUsageLimitPolicy);
    // Bands created on demand (and the default band) use the default policies.
    std::string fairness(kDefaultFairnessPolicy);
    std::string ordering(kDefaultOrderingPolicy);
    declare_policy(fairness, kDefaultFairnessPolicy);
    declare_policy(ordering, kDefaultOrderingPolicy);
  }
  return config;
}

EndpointPickerConfig resolve_endpoint_picker_config(
    const std::optional<EndpointPickerConfig>& config, const PluginClassifier& classify) {
  if (config && (!config->plugins.empty() || !config->scheduling_profiles.empty())) {
    return fill_implied_defaults(*config, classify);
  }
  EndpointPickerConfig base = default_endpoint_picker_config();
  if (config) {
    // Keep what a plugin-less config does say (feature gates, flow control, ...).
    base.api_version = config->api_version;
    base.feature_gates = config->feature_gates;
    base.flow_control = config->flow_control;
  }
  return fill_implied_defaults(std::move(base), classify);
}

std::vector<std::string> validate_endpoint_picker_config(const EndpointPickerConfig& config) {
  std::vector<std::string> problems;
  std::set<std::string, std::less<>> plugin_names;
  for (size_t index = 0; index < config.plugins.size(); ++index) {
    const PluginSpec& plugin = config.plugins[index];
    const std::string path = "plugins[" + std::to_string(index) + "]";
    if (plugin.type.empty()) problems.push_back(field(path + ".type", "must not be empty"));
    if (!plugin_names.insert(plugin.name).second) {
      problems.push_back(field(path + ".name", "duplicate plugin name \"" + plugin.name + "\""));
    }
  }
  auto check_ref = [&](const std::string& path, const std::string& ref) {
    if (plugin_names.count(ref) == 0) {
      problems.push_back(field(path, "no plugin named \"" + ref + "\" is declared"));
    }
  };

  std::set<std::string, std::less<>> profile_names;
  for (size_t index = 0; index < config.scheduling_profiles.size(); ++index) {
    const SchedulingProfile& profile = config.scheduling_profiles[index];
    const std::string path = "schedulingProfiles[" + std::to_string(index) + "]";
    if (!profile_names.insert(profile.name).second) {
      problems.push_back(field(path + ".name", "duplicate profile name \"" + profile.name + "\""));
    }
    for (size_t ref_index = 0; ref_index < profile.plugins.size(); ++ref_index) {
      const ProfilePluginRef& ref = profile.plugins[ref_index];
      const std::string ref_path = path + ".plugins[" + std::to_string(ref_index) + "]";
      check_ref(ref_path + ".pluginRef", ref.plugin_ref);
      if (ref.weight && (!std::isfinite(*ref.weight) || *ref.weight < 0)) {
        problems.push_back(field(ref_path + ".weight", "must be a finite number >= 0"));
      }
    }
  }
  if (config.saturation_detector_ref) {
    check_ref("saturationDetector.pluginRef", *config.saturation_detector_ref);
  }
  if (config.parser_ref) check_ref("parser.pluginRef", *config.parser_ref);
  if (config.data_layer) {
    for (size_t index = 0; index < config.data_layer->sources.size(); ++index) {
      const DataLayerSource& source = config.data_layer->sources[index];
      const std::string path = "dataLayer.sources[" + std::to_string(index) + "]";
      check_ref(path + ".pluginRef", source.plugin_ref);
      for (size_t extractor = 0; extractor < source.extractor_refs.size(); ++extractor) {
        check_ref(path + ".extractors[" + std::to_string(extractor) + "].pluginRef",
                  source.extractor_refs[extractor]);
      }
    }
  }
  if (config.flow_control) {
    auto check_policy_ref = [&](const std::string& path, const std::string& ref) {
      if (!ref.empty() && plugin_names.count(ref) == 0 &&
          !builtin_plugin_roles(ref).flow_control_policy) {
        problems.push_back(field(
            path, "no plugin named \"" + ref + "\" is declared and it is not a built-in policy"));
      }
    };
    std::set<int64_t> priorities;
    const auto& bands = config.flow_control->priority_bands;
    for (size_t index = 0; index < bands.size(); ++index) {
      const std::string path = "flowControl.priorityBands[" + std::to_string(index) + "]";
      if (!priorities.insert(bands[index].priority).second) {
        problems.push_back(field(path + ".priority", "duplicate priority band " +
                                                         std::to_string(bands[index].priority)));
      }
      check_policy_ref(path + ".fairnessPolicyRef", bands[index].fairness_policy_ref);
      check_policy_ref(path + ".orderingPolicyRef", bands[index].ordering_policy_ref);
    }
    check_policy_ref("flowControl.usageLimitPolicyPluginRef",
                     config.flow_control->usage_limit_policy_plugin_ref);
  }
  return problems;
}

}  // namespace infergate::api
