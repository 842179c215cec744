#include <algorithm>

#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

// max-score-picker: shuffle (so ties break at random), stable sort by total score descending,
// take the first maxNumOfEndpoints (primary, then fallbacks).
class MaxScorePicker final : public Picker {
 public:
  MaxScorePicker(std::string name, std::size_t max_endpoints)
      : Picker(std::move(name)), max_endpoints_(max_endpoints) {}
  std::string_view type() const override { return "max-score-picker"; }
  void pick(const SchedulingContext& context, std::span<const Candidate> candidates,
            std::span<const double> totals, std::vector<std::size_t>& chosen) const override {
    shuffled_indices(candidates.size(), context.state.random_seed, chosen);
    std::stable_sort(chosen.begin(), chosen.end(),
                     [&](std::size_t a, std::size_t b) { return totals[a] > totals[b]; });
    chosen.resize(std::min(chosen.size(), max_endpoints_));
  }

 private:
  std::size_t max_endpoints_;
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_max_score_picker(std::string name,
                                                      const nlohmann::json& params) {
  Parameters parameters(name, params);
  if (Status status = parameters.check_keys({"maxNumOfEndpoints"}); !status.is_ok()) return status;
  auto max_endpoints = parameters.integer("maxNumOfEndpoints", 1, 1);
  if (!max_endpoints) return max_endpoints.status();
  return std::shared_ptr<Plugin>(
      std::make_shared<MaxScorePicker>(std::move(name), static_cast<std::size_t>(*max_endpoints)));
}

}  // namespace infergate::scheduling::plugins
