#include <fmt/format.h>

#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

// single-profile-handler: runs every profile once; exactly one may exist, and it is primary.
class SingleProfileHandler final : public ProfileHandler {
 public:
  using ProfileHandler::ProfileHandler;
  std::string_view type() const override { return "single-profile-handler"; }
  std::vector<std::string> profiles_to_run(const SchedulingContext&,
                                           std::span<const std::string> all_profiles,
                                           std::span<const std::string> done) const override {
    if (!done.empty()) return {};
    return {all_profiles.begin(), all_profiles.end()};
  }
  Result<std::string> primary_profile(std::span<const std::string> run_profiles) const override {
    if (run_profiles.size() != 1) {
      return Status::internal(
          fmt::format("single-profile-handler '{}' requires exactly one profile result, got {}",
                      name(), run_profiles.size()));
    }
    return run_profiles.front();
  }
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_single_profile_handler(std::string name,
                                                            const nlohmann::json& params) {
  if (Status status = Parameters(name, params).check_keys({}); !status.is_ok()) return status;
  return std::shared_ptr<Plugin>(std::make_shared<SingleProfileHandler>(std::move(name)));
}

}  // namespace infergate::scheduling::plugins
