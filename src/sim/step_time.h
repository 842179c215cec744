#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace infergate::sim {

// What one engine step computes, as far as the time model cares.
struct StepShape {
  int scheduled_tokens = 0;            // prefill chunk tokens + one per decode
  int num_sequences = 0;               // sequences in the batch
  double decode_context_tokens = 0;    // Σ context length (KV read) over decoding sequences
  double prefill_attention_pairs = 0;  // Σ chunk × (already computed + chunk / 2) over prefills
};

// Roofline step-time model (model-server facts §5.4):
//   t = fixed + max(weights_read, per_token × tokens) + per_sequence × sequences
//       + kv_read_per_context_token × Σ decode context + attention_per_pair × Σ prefill pairs
// Every constant is a flag of `infergate sim`; a named profile supplies defaults.
struct StepTimeParams {
  double fixed_ms = 1.0;                       // CPU scheduling / launch overhead per step
  double weights_read_ms = 6.2;                // memory-bound floor: reading the weights once
  double per_token_us = 26.0;                  // compute per scheduled token (linear layers)
  double per_sequence_us = 20.0;               // sampling and bookkeeping per sequence
  double kv_read_per_context_token_us = 0.05;  // reading one token's KV during decode
  double attention_per_pair_ns = 1.0;          // prefill attention per (query, key) pair
  // Time between a request's arrival and its entry into the engine queue (HTTP, tokenisation,
  // hand-off to the engine). Not batch work: it never delays other requests.
  double frontend_ms = 23.0;

  Duration step_duration(const StepShape& shape) const;
};

struct Profile {
  std::string name;
  std::string description;
  StepTimeParams step_time;
  int num_gpu_blocks;
  int max_num_seqs;
  int max_num_batched_tokens;
  int max_model_len;
};

// Named hardware/model profiles; the first is the default.
const std::vector<Profile>& profiles();
Result<Profile> find_profile(std::string_view name);

}  // namespace infergate::sim
