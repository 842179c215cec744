#include "scheduling/config_loader.h"

#include <fmt/format.h>

#include <algorithm>

#include "api/endpoint_picker_config.h"
#include "scheduling/plugin_registry.h"

namespace infergate::scheduling {
namespace {

const PluginType* registered(std::string_view type) {
  for (const auto& known : plugin_types()) {
    if (known.type == type) return &known;
  }
  return nullptr;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += (out.empty() ? "" : "\n") + line;
  return out;
}

}  // namespace

Result<SchedulerSetup> build_scheduler(const api::EndpointPickerConfig& config) {
  std::vector<std::string> errors = api::validate_endpoint_picker_config(config);
  if (!errors.empty()) return Status::bad_request(join_lines(errors));
  const api::EndpointPickerConfig resolved = api::resolve_endpoint_picker_config(config);

  SchedulerSetup setup;
  std::vector<std::shared_ptr<ProfileHandler>> handlers;
  for (const auto& spec : resolved.plugins) {
    if (!registered(spec.type)) {
      // Parsers, data-layer plugins, producers and flow-control policies are other modules'
      // business; a type used in a profile that the scheduler lacks is reported there.
      setup.handled_elsewhere.push_back(fmt::format("{} ({})", spec.name, spec.type));
      continue;
    }
    auto plugin = create_plugin(spec.type, spec.name, spec.parameters);
    if (!plugin) {
      errors.push_back(plugin.status().message());
      continue;
    }
    if (auto handler = std::dynamic_pointer_cast<ProfileHandler>(*plugin))
      handlers.push_back(handler);
    setup.plugins.push_back(std::move(*plugin));
  }
  auto find = [&](std::string_view name) -> std::shared_ptr<Plugin> {
    for (const auto& plugin : setup.plugins) {
      if (plugin->name() == name) return plugin;
    }
    return nullptr;
  };

  std::vector<Profile> profiles;
  for (const auto& profile_spec : resolved.scheduling_profiles) {
    Profile profile{.name = profile_spec.name};
    for (const auto& ref : profile_spec.plugins) {
      std::shared_ptr<Plugin> plugin = find(ref.plugin_ref);
      if (!plugin) {
        const api::PluginSpec* spec = resolved.find_plugin(ref.plugin_ref);
        errors.push_back(fmt::format(
            "profile '{}': plugin '{}' of type '{}' is not a filter, scorer or picker infergate "
            "implements",
            profile.name, ref.plugin_ref, spec ? spec->type : "?"));
        continue;
      }
      if (auto filter = std::dynamic_pointer_cast<const Filter>(plugin)) {
        profile.filters.push_back(filter);
      } else if (auto scorer = std::dynamic_pointer_cast<const Scorer>(plugin)) {
        profile.scorers.push_back({scorer, ref.weight.value_or(1.0)});
      } else if (auto picker = std::dynamic_pointer_cast<const Picker>(plugin)) {
        if (profile.picker) {
          errors.push_back(fmt::format("profile '{}': more than one picker ('{}' and '{}')",
                                       profile.name, profile.picker->name(), picker->name()));
        }
        profile.picker = picker;
      } else {
        errors.push_back(fmt::format("profile '{}': plugin '{}' ({}) cannot be used in a profile",
                                     profile.name, plugin->name(), plugin->type()));
      }
    }
    if (!profile.picker) errors.push_back(fmt::format("profile '{}' has no picker", profile.name));
    profiles.push_back(std::move(profile));
  }
  if (handlers.size() != 1) {
    errors.push_back(
        fmt::format("exactly one profile handler is required, found {}", handlers.size()));
  }
  if (resolved.saturation_detector_ref) {
    auto detector = std::dynamic_pointer_cast<const SaturationDetector>(
        find(*resolved.saturation_detector_ref));
    setup.saturation_detector = detector;
  }
  if (!errors.empty()) return Status::bad_request(join_lines(errors));
  setup.scheduler = std::make_unique<Scheduler>(handlers.front(), std::move(profiles));
  return setup;
}

std::string describe(const api::EndpointPickerConfig& resolved, const SchedulerSetup& setup) {
  std::string out = fmt::format("profile handler: {}\n", setup.scheduler->handler().name());
  auto parameters = [&](std::string_view name) {
    const api::PluginSpec* spec = resolved.find_plugin(name);
    return spec && !spec->parameters.is_null() ? " " + spec->parameters.dump() : std::string();
  };
  for (const auto& profile : setup.scheduler->profiles()) {
    out += fmt::format("profile {}:\n", profile.name);
    for (const auto& filter : profile.filters) {
      out += fmt::format("  filter  {} ({}){}\n", filter->name(), filter->type(),
                         parameters(filter->name()));
    }
    for (const auto& [scorer, weight] : profile.scorers) {
      out += fmt::format("  scorer  {} ({}) weight {}{}\n", scorer->name(), scorer->type(), weight,
                         parameters(scorer->name()));
    }
    out += fmt::format("  picker  {} ({}){}\n", profile.picker->name(), profile.picker->type(),
                       parameters(profile.picker->name()));
  }
  if (setup.saturation_detector) {
    out += fmt::format("saturation detector: {}\n", *resolved.saturation_detector_ref);
  }
  if (!setup.handled_elsewhere.empty()) {
    out += "other plugins:";
    for (const auto& plugin : setup.handled_elsewhere) out += " " + plugin;
    out += "\n";
  }
  return out;
}

}  // namespace infergate::scheduling
