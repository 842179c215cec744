#include "datastore/model_policies.h"

#include <algorithm>

#include "api/legacy.h"

namespace infergate::datastore {
namespace {

std::string qualified_name(const api::ObjectMeta& metadata) {
  return metadata.namespace_name.empty() ? metadata.name
                                         : metadata.namespace_name + "/" + metadata.name;
}

const api::RewriteTarget& draw(const std::vector<api::RewriteTarget>& targets, double random) {
  std::int64_t total = 0;
  for (const auto& target : targets) total += target.weight.value_or(0);
  if (total == 0) {
    // No weights: uniform.
    const auto index = static_cast<std::size_t>(random * static_cast<double>(targets.size()));
    return targets[std::min(index, targets.size() - 1)];
  }
  auto point = static_cast<std::int64_t>(random * static_cast<double>(total));
  for (const auto& target : targets) {
    point -= target.weight.value_or(0);
    if (point < 0) return target;
  }
  return targets.back();
}

}  // namespace

ModelPolicies::ModelPolicies(const std::vector<api::InferenceObjective>& objectives,
                             const std::vector<api::InferenceModelRewrite>& rewrites,
                             const std::vector<api::InferenceModel>& legacy_models)
    : rewrites_(rewrites) {
  for (const auto& objective : objectives) {
    objective_priorities_.emplace(objective.metadata.name, objective.priority);
  }
  for (const auto& model : legacy_models) {
    api::ConvertedInferenceModel converted = api::convert_inference_model(model);
    legacy_model_priorities_.emplace(model.model_name, converted.objective.priority);
    objective_priorities_.emplace(converted.objective.metadata.name, converted.objective.priority);
    if (converted.rewrite) rewrites_.push_back(std::move(*converted.rewrite));
  }
  // Oldest first (RFC 3339 timestamps compare as strings; resources without one last), then by
  // name so the order never depends on the order of the files.
  std::stable_sort(rewrites_.begin(), rewrites_.end(),
                   [](const api::InferenceModelRewrite& a, const api::InferenceModelRewrite& b) {
                     const auto& ta = a.metadata.creation_timestamp;
                     const auto& tb = b.metadata.creation_timestamp;
                     if (ta.empty() != tb.empty()) return tb.empty();
                     if (ta != tb) return ta < tb;
                     return qualified_name(a.metadata) < qualified_name(b.metadata);
                   });
}

std::int64_t ModelPolicies::priority(std::string_view objective_name,
                                     std::string_view model) const {
  if (!objective_name.empty()) {
    if (auto it = objective_priorities_.find(objective_name); it != objective_priorities_.end()) {
      return it->second;
    }
  }
  if (auto it = legacy_model_priorities_.find(model); it != legacy_model_priorities_.end()) {
    return it->second;
  }
  return 0;
}

std::optional<RewriteDecision> ModelPolicies::rewrite(std::string_view model, double random) const {
  const api::InferenceModelRewrite* generic_owner = nullptr;
  const api::RewriteRule* generic = nullptr;
  for (const auto& resource : rewrites_) {
    for (const auto& rule : resource.rules) {
      if (rule.targets.empty()) continue;
      if (rule.is_generic()) {
        if (!generic) {
          generic = &rule;
          generic_owner = &resource;
        }
        continue;
      }
      const bool matches =
          std::any_of(rule.matches.begin(), rule.matches.end(),
                      [&](const api::ModelMatch& match) { return match.value == model; });
      if (matches) {
        return RewriteDecision{draw(rule.targets, random).model_rewrite,
                               qualified_name(resource.metadata)};
      }
    }
  }
  if (generic) {
    return RewriteDecision{draw(generic->targets, random).model_rewrite,
                           qualified_name(generic_owner->metadata)};
  }
  return std::nullopt;
}

}  // namespace infergate::datastore
