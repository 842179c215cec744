#pragma once

// Mapping of the legacy InferenceModel (v1alpha2, removed upstream at GIE v1.0.0) onto its
// replacements, InferenceObjective (priority) and InferenceModelRewrite (weighted targets).
// Pure functions, start-up only.

#include <cstdint>
#include <optional>

#include "api/types.h"

namespace infergate::api {

// Criticality -> objective priority. The facts fix only the ordering and the sign convention
// (negative = sheddable, unset criticality = Standard, unset priority = 0), so infergate maps
// Critical -> 1, Standard (or unset) -> 0, Sheddable -> -1.
inline constexpr int64_t kCriticalPriority = 1;
inline constexpr int64_t kStandardPriority = 0;
inline constexpr int64_t kSheddablePriority = -1;
int64_t priority_for_criticality(std::optional<Criticality> criticality);

struct ConvertedInferenceModel {
  // Same metadata as the model; priority from criticality; poolRef with the legacy group
  // `inference.networking.x-k8s.io` replaced by `inference.networking.k8s.io` (the pool itself is
  // served as v1 after conversion).
  InferenceObjective objective;
  // Present when the model lists targetModels: one rule matching `modelName` exactly whose targets
  // are the target models with their weights (no weights = uniform choice). Absent when the target
  // is the model name itself.
  std::optional<InferenceModelRewrite> rewrite;
};

ConvertedInferenceModel convert_inference_model(const InferenceModel& model);

}  // namespace infergate::api
