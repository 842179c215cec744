#include <algorithm>
#include <atomic>
#include <cstdint>

#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

// round-robin-picker (an infergate addition, not a GIE plugin): the candidates in turn, ignoring
// scores — the baseline a plain Kubernetes Service gives, behind the same gateway. One counter per
// plugin instance, shared by every thread that schedules with it: pick k starts at candidate
// (k mod n) and takes the next maxNumOfEndpoints (primary, then fallbacks). Candidates come in
// snapshot order, so with an unchanged candidate set each endpoint gets every n-th request.
class RoundRobinPicker final : public Picker {
 public:
  RoundRobinPicker(std::string name, std::size_t max_endpoints)
      : Picker(std::move(name)), max_endpoints_(max_endpoints) {}
  std::string_view type() const override { return "round-robin-picker"; }
  void pick(const SchedulingContext&, std::span<const Candidate> candidates,
            std::span<const double>, std::vector<std::size_t>& chosen) const override {
    chosen.clear();
    if (candidates.empty()) return;
    const std::uint64_t turn = next_.fetch_add(1, std::memory_order_relaxed);
    const std::size_t count = std::min(candidates.size(), max_endpoints_);
    const std::size_t first = static_cast<std::size_t>(turn % candidates.size());
    for (std::size_t offset = 0; offset < count; ++offset) {
      chosen.push_back((first + offset) % candidates.size());
    }
  }

 private:
  std::size_t max_endpoints_;
  // Only the sequence matters, not its order relative to other memory: relaxed is enough.
  mutable std::atomic<std::uint64_t> next_{0};
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_round_robin_picker(std::string name,
                                                        const nlohmann::json& params) {
  Parameters parameters(name, params);
  if (Status status = parameters.check_keys({"maxNumOfEndpoints"}); !status.is_ok()) return status;
  auto max_endpoints = parameters.integer("maxNumOfEndpoints", 1, 1);
  if (!max_endpoints) return max_endpoints.status();
  return std::shared_ptr<Plugin>(std::make_shared<RoundRobinPicker>(
      std::move(name), static_cast<std::size_t>(*max_endpoints)));
}

}  // namespace infergate::scheduling::plugins
