#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "api/types.h"
#include "common/text.h"

namespace infergate::datastore {

// What happened to a request's model name.
struct RewriteDecision {
  std::string target_model;
  std::string rewrite_name;  // the InferenceModelRewrite (namespace/name) whose rule applied
};

// The pool's InferenceObjectives and InferenceModelRewrites (and legacy InferenceModels mapped
// onto both), as the director consults them per request (api-types facts §4–§5). Immutable once
// built: share it behind a shared_ptr and swap it whole when resources change.
class ModelPolicies {
 public:
  ModelPolicies() = default;
  ModelPolicies(const std::vector<api::InferenceObjective>& objectives,
                const std::vector<api::InferenceModelRewrite>& rewrites,
                const std::vector<api::InferenceModel>& legacy_models = {});

  // Priority of the objective named by the request (header x-gateway-inference-objective), else
  // of a legacy InferenceModel serving `model`, else 0.
  std::int64_t priority(std::string_view objective_name, std::string_view model) const;

  // The rewrite for an incoming model name: the first exact-match rule of the oldest resource,
  // else the first generic rule of the oldest resource; a target drawn by weight using `random`
  // (uniform in [0, 1)); nullopt when no rule applies.
  std::optional<RewriteDecision> rewrite(std::string_view model, double random) const;

 private:
  std::vector<api::InferenceModelRewrite> rewrites_;  // sorted oldest first
  std::unordered_map<std::string, std::int64_t, StringHash, std::equal_to<>> objective_priorities_;
  std::unordered_map<std::string, std::int64_t, StringHash, std::equal_to<>>
      legacy_model_priorities_;
};

}  // namespace infergate::datastore
