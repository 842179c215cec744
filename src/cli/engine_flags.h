#pragma once

// The engine-model flags shared by `infergate sim` and `infergate simulate`: a named profile
// supplies the defaults, and each flag the user gives overrides one field.

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "common/status.h"
#include "sim/engine.h"

namespace infergate::cli {

struct EngineFlags {
  std::string profile = "llama3-8b-h100";
  std::optional<int> num_gpu_blocks, block_size, max_num_seqs, max_num_batched_tokens,
      max_model_len;
  int max_loras = 1;
  bool no_prefix_caching = false;
  std::optional<double> fixed_ms, weights_read_ms, per_token_us, per_sequence_us, kv_read_us,
      attention_ns, frontend_ms;
  bool print_profiles = false;
};

// Adds the flags to `command`; the profile flag is named `profile_flag` (e.g. "--profile").
void add_engine_flags(CLI::App& command, EngineFlags& flags, const std::string& profile_flag);

// The profile, then every flag given on top of it. 400 for an unknown profile or out-of-range
// sizes.
Result<sim::EngineConfig> resolve_engine_config(const EngineFlags& flags);

// One line per profile: name and description (--list-profiles).
std::string describe_profiles();

}  // namespace infergate::cli
