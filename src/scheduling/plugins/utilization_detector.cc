#include <fmt/format.h>

#include <algorithm>

#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

struct UtilizationLimits {
  double queue_depth_threshold = 5;
  double kv_cache_threshold = 0.8;
  Duration staleness = from_milliseconds(200);
  double headroom = 0;
};

// utilization-detector: pool saturation = mean over candidates of
// max(queue / queueDepthThreshold, kv / kvCacheUtilThreshold), stale or missing metrics counting
// as 1.0 and an empty pool as 1.0. As a filter it keeps endpoints with fresh metrics below both
// thresholds (widened by headroom), or everything when none qualifies (fail-open).
class UtilizationDetector final : public Filter, public SaturationDetector {
 public:
  UtilizationDetector(std::string name, UtilizationLimits limits)
      : Filter(std::move(name)), limits_(limits) {}
  std::string_view type() const override { return "utilization-detector"; }

  double saturation(const SchedulingContext& context,
                    std::span<const Candidate> candidates) const override {
    if (candidates.empty()) return 1.0;
    double sum = 0;
    for (const auto& candidate : candidates) {
      auto metrics = candidate.endpoint->fresh_metrics(context.now, limits_.staleness);
      sum += metrics ? std::max(metrics->waiting_requests / limits_.queue_depth_threshold,
                                metrics->kv_cache_usage / limits_.kv_cache_threshold)
                     : 1.0;
    }
    return sum / static_cast<double>(candidates.size());
  }

  void filter(const SchedulingContext& context, std::vector<Candidate>& candidates) const override {
    const double queue_limit = limits_.queue_depth_threshold * (1 + limits_.headroom);
    const double kv_limit = std::min(1.0, limits_.kv_cache_threshold * (1 + limits_.headroom));
    auto has_room = [&](const Candidate& candidate) {
      auto metrics = candidate.endpoint->fresh_metrics(context.now, limits_.staleness);
      return metrics && metrics->waiting_requests < queue_limit &&
             metrics->kv_cache_usage < kv_limit;
    };
    if (std::none_of(candidates.begin(), candidates.end(), has_room)) return;
    std::erase_if(candidates, [&](const Candidate& candidate) { return !has_room(candidate); });
  }

 private:
  UtilizationLimits limits_;
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_utilization_detector(std::string name,
                                                          const nlohmann::json& params) {
  Parameters parameters(name, params);
  if (Status status = parameters.check_keys(
          {"queueDepthThreshold", "kvCacheUtilThreshold", "metricsStalenessThreshold", "headroom"});
      !status.is_ok()) {
    return status;
  }
  UtilizationLimits limits;
  auto queue = parameters.integer("queueDepthThreshold", 5, 1);
  if (!queue) return queue.status();
  limits.queue_depth_threshold = static_cast<double>(*queue);
  auto kv = parameters.number("kvCacheUtilThreshold", 0.8);
  if (!kv) return kv.status();
  if (!(*kv > 0 && *kv <= 1)) {
    return Status::bad_request(
        fmt::format("plugin '{}': parameter 'kvCacheUtilThreshold' must be in (0, 1]", name));
  }
  limits.kv_cache_threshold = *kv;
  auto staleness = parameters.duration("metricsStalenessThreshold", from_milliseconds(200));
  if (!staleness) return staleness.status();
  limits.staleness = *staleness;
  auto headroom = parameters.number("headroom", 0);
  if (!headroom) return headroom.status();
  if (*headroom < 0) {
    return Status::bad_request(fmt::format("plugin '{}': parameter 'headroom' must be >= 0", name));
  }
  limits.headroom = *headroom;
  return std::shared_ptr<Plugin>(std::make_shared<UtilizationDetector>(std::move(name), limits));
}

}  // namespace infergate::scheduling::plugins
