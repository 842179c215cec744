#include <algorithm>

#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

// token-load-scorer: 1 - min(in-flight tokens, T) / T, with T = queueThresholdTokens. In-flight
// tokens are the gateway's own estimate per endpoint (EndpointState::inflight_tokens).
class TokenLoadScorer final : public Scorer {
 public:
  TokenLoadScorer(std::string name, double threshold_tokens)
      : Scorer(std::move(name)), threshold_tokens_(threshold_tokens) {}
  std::string_view type() const override { return "token-load-scorer"; }
  void score(const SchedulingContext&, std::span<const Candidate> candidates,
             std::span<double> scores) const override {
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const auto tokens = static_cast<double>(std::max<std::int64_t>(
          0, candidates[i].state().inflight_tokens.load(std::memory_order_relaxed)));
      scores[i] = 1.0 - std::min(tokens, threshold_tokens_) / threshold_tokens_;
    }
  }

 private:
  double threshold_tokens_;
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_token_load_scorer(std::string name,
                                                       const nlohmann::json& params) {
  Parameters parameters(name, params);
  if (Status status = parameters.check_keys({"queueThresholdTokens"}); !status.is_ok()) {
    return status;
  }
  auto threshold = parameters.integer("queueThresholdTokens", 4'194'304, 1);
  if (!threshold) return threshold.status();
  return std::shared_ptr<Plugin>(
      std::make_shared<TokenLoadScorer>(std::move(name), static_cast<double>(*threshold)));
}

}  // namespace infergate::scheduling::plugins
