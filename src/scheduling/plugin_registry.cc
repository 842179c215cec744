#include "scheduling/plugin_registry.h"

#include <fmt/format.h>

#include "common/duration.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling {

const std::vector<PluginType>& plugin_types() {
  // The one list of built-in plugins. Adding a plugin: its file in plugins/, its factory in
  // plugins.h, one line here, and its test.
  static const std::vector<PluginType> kTypes = {
      {"queue-scorer", PluginKind::kScorer, plugins::make_queue_scorer},
      {"running-requests-size-scorer", PluginKind::kScorer,
       plugins::make_running_requests_size_scorer},
      {"kv-cache-utilization-scorer", PluginKind::kScorer,
       plugins::make_kv_cache_utilization_scorer},
      {"prefix-cache-scorer", PluginKind::kScorer, plugins::make_prefix_cache_scorer},
      {"lora-affinity-scorer", PluginKind::kScorer, plugins::make_lora_affinity_scorer},
      {"token-load-scorer", PluginKind::kScorer, plugins::make_token_load_scorer},
      {"session-affinity-scorer", PluginKind::kScorer, plugins::make_session_affinity_scorer},
      {"header-based-testing-filter", PluginKind::kFilter,
       plugins::make_header_based_testing_filter},
      {"utilization-detector", PluginKind::kFilter, plugins::make_utilization_detector},
      {"concurrency-detector", PluginKind::kFilter, plugins::make_concurrency_detector},
      {"max-score-picker", PluginKind::kPicker, plugins::make_max_score_picker},
      {"weighted-random-picker", PluginKind::kPicker, plugins::make_weighted_random_picker},
      {"random-picker", PluginKind::kPicker, plugins::make_random_picker},
      {"round-robin-picker", PluginKind::kPicker, plugins::make_round_robin_picker},
      {"single-profile-handler", PluginKind::kProfileHandler, plugins::make_single_profile_handler},
  };
  return kTypes;
}

Result<std::shared_ptr<Plugin>> create_plugin(std::string_view type, std::string name,
                                              const nlohmann::json& parameters) {
  for (const auto& known : plugin_types()) {
    if (known.type == type) return known.factory(std::move(name), parameters);
  }
  std::string names;
  for (const auto& known : plugin_types())
    names += (names.empty() ? "" : ", ") + std::string(known.type);
  return Status::bad_request(
      fmt::format("plugin '{}': unknown type '{}' (known: {})", name, type, names));
}

Status Parameters::check_keys(std::initializer_list<std::string_view> known) const {
  if (parameters_.is_null()) return Status::ok();
  if (!parameters_.is_object()) {
    return Status::bad_request(
        fmt::format("plugin '{}': parameters must be an object", plugin_name_));
  }
  for (const auto& [key, value] : parameters_.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return Status::bad_request(
          fmt::format("plugin '{}': unknown parameter '{}'", plugin_name_, key));
    }
  }
  return Status::ok();
}

Result<std::int64_t> Parameters::integer(std::string_view key, std::int64_t fallback,
                                         std::int64_t minimum) const {
  if (!parameters_.is_object()) return fallback;
  auto it = parameters_.find(key);
  if (it == parameters_.end() || it->is_null()) return fallback;
  if (!it->is_number_integer() || it->get<std::int64_t>() < minimum) {
    return Status::bad_request(fmt::format("plugin '{}': parameter '{}' must be an integer >= {}",
                                           plugin_name_, key, minimum));
  }
  return it->get<std::int64_t>();
}

Result<double> Parameters::number(std::string_view key, double fallback) const {
  if (!parameters_.is_object()) return fallback;
  auto it = parameters_.find(key);
  if (it == parameters_.end() || it->is_null()) return fallback;
  if (!it->is_number()) {
    return Status::bad_request(
        fmt::format("plugin '{}': parameter '{}' must be a number", plugin_name_, key));
  }
  return it->get<double>();
}

Result<Duration> Parameters::duration(std::string_view key, Duration fallback) const {
  if (!parameters_.is_object()) return fallback;
  auto it = parameters_.find(key);
  if (it == parameters_.end() || it->is_null()) return fallback;
  if (!it->is_string()) {
    return Status::bad_request(
        fmt::format("plugin '{}': parameter '{}' must be a duration string such as \"200ms\"",
                    plugin_name_, key));
  }
  auto parsed = parse_duration(it->get<std::string>());
  if (!parsed) {
    return Status::bad_request(fmt::format("plugin '{}': parameter '{}': {}", plugin_name_, key,
                                           parsed.status().message()));
  }
  return *parsed;
}

Result<std::string> Parameters::choice(std::string_view key, std::string_view fallback,
                                       std::initializer_list<std::string_view> choices) const {
  if (!parameters_.is_object()) return std::string(fallback);
  auto it = parameters_.find(key);
  if (it == parameters_.end() || it->is_null()) return std::string(fallback);
  if (it->is_string()) {
    const std::string value = it->get<std::string>();
    if (std::find(choices.begin(), choices.end(), value) != choices.end()) return value;
  }
  std::string known;
  for (auto choice : choices) known += (known.empty() ? "" : ", ") + std::string(choice);
  return Status::bad_request(
      fmt::format("plugin '{}': parameter '{}' must be one of: {}", plugin_name_, key, known));
}

}  // namespace infergate::scheduling
