#include <algorithm>

#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

bool contains(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// lora-affinity-scorer: the request's target model already active on the endpoint → 1.0; else
// room to load one more adapter (active + waiting < max) → 0.8; else already waiting → 0.6; else 0.
class LoraAffinityScorer final : public Scorer {
 public:
  using Scorer::Scorer;
  std::string_view type() const override { return "lora-affinity-scorer"; }
  void score(const SchedulingContext& context, std::span<const Candidate> candidates,
             std::span<double> scores) const override {
    const std::string_view model = context.request.target_model;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const datastore::EndpointMetrics& metrics = *candidates[i].metrics;
      const auto loaded = metrics.running_adapters.size() + metrics.waiting_adapters.size();
      if (contains(metrics.running_adapters, model)) {
        scores[i] = 1.0;
      } else if (loaded < static_cast<std::size_t>(std::max(0, metrics.max_active_adapters))) {
        scores[i] = 0.8;
      } else if (contains(metrics.waiting_adapters, model)) {
        scores[i] = 0.6;
      } else {
        scores[i] = 0.0;
      }
    }
  }
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_lora_affinity_scorer(std::string name,
                                                          const nlohmann::json& params) {
  if (Status status = Parameters(name, params).check_keys({}); !status.is_ok()) return status;
  return std::shared_ptr<Plugin>(std::make_shared<LoraAffinityScorer>(std::move(name)));
}

}  // namespace infergate::scheduling::plugins
