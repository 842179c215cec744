#include <algorithm>

#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {

void score_lower_is_better(std::span<const double> values, std::span<double> scores) {
  if (values.empty()) return;
  // Copies, not iterators: `values` and `scores` may be the same buffer.
  const auto [min_it, max_it] = std::minmax_element(values.begin(), values.end());
  const double min = *min_it;
  const double max = *max_it;
  const double range = max - min;
  for (std::size_t i = 0; i < values.size(); ++i) {
    scores[i] = range > 0 ? (max - values[i]) / range : 1.0;
  }
}

namespace {

// queue-scorer: fewer waiting requests score higher, min-max normalised over the candidates. The
// waiting count is corrected for staleness when the datastore recorded a baseline (requests
// dispatched since the scrape join the queue; datastore/endpoint.h), else the scraped figure.
class QueueScorer final : public Scorer {
 public:
  using Scorer::Scorer;
  std::string_view type() const override { return "queue-scorer"; }
  void score(const SchedulingContext&, std::span<const Candidate> candidates,
             std::span<double> scores) const override {
    // `scores` doubles as the value buffer: no allocation per request.
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      scores[i] =
          datastore::corrected_waiting_requests(*candidates[i].metrics, candidates[i].state());
    }
    score_lower_is_better(scores, scores);
  }
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_queue_scorer(std::string name, const nlohmann::json& params) {
  if (Status status = Parameters(name, params).check_keys({}); !status.is_ok()) return status;
  return std::shared_ptr<Plugin>(std::make_shared<QueueScorer>(std::move(name)));
}

}  // namespace infergate::scheduling::plugins
