#include <fmt/format.h>

#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

// concurrency-detector: saturation = in-flight load / capacity over the candidates, counted in
// requests (maxConcurrency per endpoint) or tokens (maxTokenConcurrency per endpoint), from the
// gateway's own in-flight accounting. As a filter it keeps endpoints below their limit (widened by
// headroom), or everything when none is (fail-open).
class ConcurrencyDetector final : public Filter, public SaturationDetector {
 public:
  ConcurrencyDetector(std::string name, bool tokens, double limit, double headroom)
      : Filter(std::move(name)), tokens_(tokens), limit_(limit), headroom_(headroom) {}
  std::string_view type() const override { return "concurrency-detector"; }

  double saturation(const SchedulingContext&,
                    std::span<const Candidate> candidates) const override {
    if (candidates.empty()) return 1.0;
    double load = 0;
    for (const auto& candidate : candidates) load += in_flight(candidate);
    return load / (limit_ * static_cast<double>(candidates.size()));
  }

  void filter(const SchedulingContext&, std::vector<Candidate>& candidates) const override {
    const double limit = limit_ * (1 + headroom_);
    auto has_room = [&](const Candidate& candidate) { return in_flight(candidate) < limit; };
    if (std::none_of(candidates.begin(), candidates.end(), has_room)) return;
    std::erase_if(candidates, [&](const Candidate& candidate) { return !has_room(candidate); });
  }

 private:
  double in_flight(const Candidate& candidate) const {
    const auto& state = candidate.state();
    return static_cast<double>(tokens_ ? state.inflight_tokens.load(std::memory_order_relaxed)
                                       : state.inflight_requests.load(std::memory_order_relaxed));
  }

  bool tokens_;
  double limit_;
  double headroom_;
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_concurrency_detector(std::string name,
                                                          const nlohmann::json& params) {
  Parameters parameters(name, params);
  if (Status status = parameters.check_keys(
          {"concurrencyMode", "maxConcurrency", "maxTokenConcurrency", "headroom"});
      !status.is_ok()) {
    return status;
  }
  auto mode = parameters.choice("concurrencyMode", "requests", {"requests", "tokens"});
  if (!mode) return mode.status();
  auto max_requests = parameters.integer("maxConcurrency", 100, 1);
  if (!max_requests) return max_requests.status();
  auto max_tokens = parameters.integer("maxTokenConcurrency", 1'000'000, 1);
  if (!max_tokens) return max_tokens.status();
  auto headroom = parameters.number("headroom", 0);
  if (!headroom) return headroom.status();
  if (*headroom < 0) {
    return Status::bad_request(fmt::format("plugin '{}': parameter 'headroom' must be >= 0", name));
  }
  const bool tokens = *mode == "tokens";
  return std::shared_ptr<Plugin>(std::make_shared<ConcurrencyDetector>(
      std::move(name), tokens, static_cast<double>(tokens ? *max_tokens : *max_requests),
      *headroom));
}

}  // namespace infergate::scheduling::plugins
