#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

// running-requests-size-scorer: fewer running requests score higher, min-max normalised. The
// count is corrected for staleness like the queue scorer's (datastore/endpoint.h).
class RunningRequestsSizeScorer final : public Scorer {
 public:
  using Scorer::Scorer;
  std::string_view type() const override { return "running-requests-size-scorer"; }
  void score(const SchedulingContext&, std::span<const Candidate> candidates,
             std::span<double> scores) const override {
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      scores[i] =
          datastore::corrected_running_requests(*candidates[i].metrics, candidates[i].state());
    }
    score_lower_is_better(scores, scores);
  }
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_running_requests_size_scorer(std::string name,
                                                                  const nlohmann::json& params) {
  if (Status status = Parameters(name, params).check_keys({}); !status.is_ok()) return status;
  return std::shared_ptr<Plugin>(std::make_shared<RunningRequestsSizeScorer>(std::move(name)));
}

}  // namespace infergate::scheduling::plugins
