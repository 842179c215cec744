#include <numeric>

#include "common/random.h"
#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {

void shuffled_indices(std::size_t count, std::uint64_t seed, std::vector<std::size_t>& out) {
  out.resize(count);
  std::iota(out.begin(), out.end(), std::size_t{0});
  SplitMix64 rng(seed);
  for (std::size_t i = count; i > 1; --i) std::swap(out[i - 1], out[rng.next_below(i)]);
}

namespace {

// random-picker: shuffle the candidates and take maxNumOfEndpoints, ignoring scores.
class RandomPicker final : public Picker {
 public:
  RandomPicker(std::string name, std::size_t max_endpoints)
      : Picker(std::move(name)), max_endpoints_(max_endpoints) {}
  std::string_view type() const override { return "random-picker"; }
  void pick(const SchedulingContext& context, std::span<const Candidate> candidates,
            std::span<const double>, std::vector<std::size_t>& chosen) const override {
    shuffled_indices(candidates.size(), context.state.random_seed, chosen);
    chosen.resize(std::min(chosen.size(), max_endpoints_));
  }

 private:
  std::size_t max_endpoints_;
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_random_picker(std::string name, const nlohmann::json& params) {
  Parameters parameters(name, params);
  if (Status status = parameters.check_keys({"maxNumOfEndpoints"}); !status.is_ok()) return status;
  auto max_endpoints = parameters.integer("maxNumOfEndpoints", 1, 1);
  if (!max_endpoints) return max_endpoints.status();
  return std::shared_ptr<Plugin>(
      std::make_shared<RandomPicker>(std::move(name), static_cast<std::size_t>(*max_endpoints)));
}

}  // namespace infergate::scheduling::plugins
