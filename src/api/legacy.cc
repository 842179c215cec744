#include "api/legacy.h"

namespace infergate::api {

int64_t priority_for_criticality(std::optional<Criticality> criticality) {
  switch (criticality.value_or(Criticality::kStandard)) {
    case Criticality::kCritical:
      return kCriticalPriority;
    case Criticality::kStandard:
      return kStandardPriority;
    case Criticality::kSheddable:
      return kSheddablePriority;
  }
  return kStandardPriority;
}

ConvertedInferenceModel convert_inference_model(const InferenceModel& model) {
  ConvertedInferenceModel converted;
  PoolRef pool_ref = model.pool_ref;
  if (pool_ref.group == kGroupExperimental) pool_ref.group = std::string(kGroupV1);

  InferenceObjective& objective = converted.objective;
  objective.api_version = std::string(kApiVersionV1alpha2);
  objective.metadata = model.metadata;
  objective.priority = priority_for_criticality(model.criticality);
  objective.pool_ref = pool_ref;

  if (!model.target_models.empty()) {
    InferenceModelRewrite rewrite;
    rewrite.api_version = std::string(kApiVersionV1alpha2);
    rewrite.metadata = model.metadata;
    rewrite.pool_ref = pool_ref;
    RewriteRule rule;
    rule.matches.push_back(ModelMatch{ModelMatchType::kExact, model.model_name});
    for (const TargetModel& target : model.target_models) {
      rule.targets.push_back(RewriteTarget{target.name, target.weight});
    }
    rewrite.rules.push_back(std::move(rule));
    converted.rewrite = std::move(rewrite);
  }
  return converted;
}

}  // namespace infergate::api
