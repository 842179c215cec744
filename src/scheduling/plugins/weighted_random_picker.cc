#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/random.h"
#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

// weighted-random-picker: weighted sampling without replacement (A-Res): each candidate with a
// positive score gets the key U^(1/score), and the maxNumOfEndpoints largest keys win. Candidates
// scoring <= 0 are never chosen, unless all do: then it picks like the random picker.
class WeightedRandomPicker final : public Picker {
 public:
  WeightedRandomPicker(std::string name, std::size_t max_endpoints)
      : Picker(std::move(name)), max_endpoints_(max_endpoints) {}
  std::string_view type() const override { return "weighted-random-picker"; }
  void pick(const SchedulingContext& context, std::span<const Candidate> candidates,
            std::span<const double> totals, std::vector<std::size_t>& chosen) const override {
    chosen.clear();
    thread_local std::vector<double> keys;  // reused: no allocation per decision
    keys.assign(candidates.size(), 0.0);
    SplitMix64 rng(context.state.random_seed);
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const double uniform = rng.next_unit();
      if (totals[i] > 0) {
        keys[i] = std::pow(uniform, 1.0 / totals[i]);
        chosen.push_back(i);
      }
    }
    if (chosen.empty()) {
      shuffled_indices(candidates.size(), context.state.random_seed, chosen);
    } else {
      std::sort(chosen.begin(), chosen.end(),
                [&](std::size_t a, std::size_t b) { return keys[a] > keys[b]; });
    }
    chosen.resize(std::min(chosen.size(), max_endpoints_));
  }

 private:
  std::size_t max_endpoints_;
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_weighted_random_picker(std::string name,
                                                            const nlohmann::json& params) {
  Parameters parameters(name, params);
  if (Status status = parameters.check_keys({"maxNumOfEndpoints"}); !status.is_ok()) return status;
  auto max_endpoints = parameters.integer("maxNumOfEndpoints", 1, 1);
  if (!max_endpoints) return max_endpoints.status();
  return std::shared_ptr<Plugin>(std::make_shared<WeightedRandomPicker>(
      std::move(name), static_cast<std::size_t>(*max_endpoints)));
}

}  // namespace infergate::scheduling::plugins
