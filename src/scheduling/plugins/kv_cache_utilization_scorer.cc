#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

// kv-cache-utilization-scorer: 1 - KV-cache usage (usage in 0..1). The usage is corrected for
// staleness when the datastore recorded a baseline (the estimated tokens dispatched since the
// scrape, over the endpoint's KV capacity; datastore/endpoint.h), else the scraped figure.
class KvCacheUtilizationScorer final : public Scorer {
 public:
  using Scorer::Scorer;
  std::string_view type() const override { return "kv-cache-utilization-scorer"; }
  void score(const SchedulingContext&, std::span<const Candidate> candidates,
             std::span<double> scores) const override {
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      scores[i] =
          1.0 - datastore::corrected_kv_cache_usage(*candidates[i].metrics, candidates[i].state());
    }
  }
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_kv_cache_utilization_scorer(std::string name,
                                                                 const nlohmann::json& params) {
  if (Status status = Parameters(name, params).check_keys({}); !status.is_ok()) return status;
  return std::shared_ptr<Plugin>(std::make_shared<KvCacheUtilizationScorer>(std::move(name)));
}

}  // namespace infergate::scheduling::plugins
