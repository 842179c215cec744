#pragma once

#include <memory>
#include <string>
#include <vector>

#include "api/types.h"
#include "common/status.h"
#include "scheduling/scheduler.h"

namespace infergate::scheduling {

// A scheduler built from an EndpointPickerConfig, with the plugins it created.
struct SchedulerSetup {
  std::unique_ptr<Scheduler> scheduler;
  // The configured saturation detector, when its type is one infergate implements (null: none).
  std::shared_ptr<const SaturationDetector> saturation_detector;
  // Every plugin created, by configured name, in declaration order.
  std::vector<std::shared_ptr<Plugin>> plugins;
  // Declared plugins handled outside the scheduler (parsers, data layer, producers, flow-control
  // policies): "name (type)".
  std::vector<std::string> handled_elsewhere;
};

// Builds the scheduler for `config` as the EPP would (start-up): validates references, fills the
// implied defaults (api::resolve_endpoint_picker_config), creates every scheduling plugin from the
// registry with its parameters, and assembles the profiles. Errors (400) list every problem, one
// per line, naming the plugin or profile.
Result<SchedulerSetup> build_scheduler(const api::EndpointPickerConfig& config);

// A readable account of a built setup: the profile handler, then each profile with its filters,
// weighted scorers and picker, and each plugin's parameters (for `infergate validate`).
std::string describe(const api::EndpointPickerConfig& resolved, const SchedulerSetup& setup);

}  // namespace infergate::scheduling
