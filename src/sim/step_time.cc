#include "sim/step_time.h"

#include <fmt/format.h>

#include <algorithm>

namespace infergate::sim {

Duration StepTimeParams::step_duration(const StepShape& shape) const {
  const double linear_ms = std::max(weights_read_ms, per_token_us * shape.scheduled_tokens / 1e3);
  const double total_ms = fixed_ms + linear_ms + per_sequence_us * shape.num_sequences / 1e3 +
                          kv_read_per_context_token_us * shape.decode_context_tokens / 1e3 +
                          attention_per_pair_ns * shape.prefill_attention_pairs / 1e6;
  return from_milliseconds(total_ms);
}

const std::vector<Profile>& profiles() {
  // llama3-8b-h100: Llama-3.1-8B-Instruct BF16 on one H100 SXM 80GB, vLLM V1 defaults for a GPU
  // of >= 70 GiB. Fitted to the KubeCon NA 2025 inference-perf measurements (docs/simulator.md).
  // llama2-7b-h100: same GPU, 4x the KV bytes per token and a quarter of the blocks.
  static const std::vector<Profile> kProfiles = {
      {"llama3-8b-h100", "Llama-3.1-8B-Instruct, BF16, 1x H100 80GB (vLLM V1 defaults)",
       StepTimeParams{}, 27000, 1024, 8192, 131072},
      {"llama2-7b-h100", "Llama-2-7B, BF16, 1x H100 80GB (vLLM V1 defaults)",
       StepTimeParams{.weights_read_ms = 5.0, .kv_read_per_context_token_us = 0.2}, 7100, 1024,
       8192, 4096},
  };
  return kProfiles;
}

Result<Profile> find_profile(std::string_view name) {
  for (const auto& profile : profiles()) {
    if (profile.name == name) return profile;
  }
  std::string known;
  for (const auto& profile : profiles()) known += (known.empty() ? "" : ", ") + profile.name;
  return Status::bad_request(fmt::format("unknown profile '{}' (known: {})", name, known));
}

}  // namespace infergate::sim
