#include "cli/engine_flags.h"

#include <fmt/format.h>

#include "sim/step_time.h"

namespace infergate::cli {

void add_engine_flags(CLI::App& command, EngineFlags& flags, const std::string& profile_flag) {
  const sim::Profile& default_profile = sim::profiles().front();
  const sim::StepTimeParams& defaults = default_profile.step_time;
  auto with_default = [&](std::string_view help, double value) {
    return fmt::format("{} (profile {}: {})", help, default_profile.name, value);
  };
  command
      .add_option("--max-loras", flags.max_loras,
                  "Maximum number of distinct LoRA adapters in one batch")
      ->capture_default_str();
  command
      .add_option(profile_flag, flags.profile,
                  "Hardware/model profile supplying the engine defaults below (see "
                  "--list-profiles)")
      ->capture_default_str();
  command.add_flag("--list-profiles", flags.print_profiles, "List the profiles and exit");
  command.add_option("--num-gpu-blocks", flags.num_gpu_blocks,
                     "KV-cache blocks (profile: 27000 for llama3-8b-h100)");
  command.add_option("--block-size", flags.block_size, "Tokens per KV-cache block (default 16)");
  command.add_option("--max-num-seqs", flags.max_num_seqs,
                     "Maximum number of running requests (profile: 1024)");
  command.add_option("--max-num-batched-tokens", flags.max_num_batched_tokens,
                     "Token budget of one engine step (profile: 8192)");
  command.add_option("--max-model-len", flags.max_model_len,
                     "Maximum context length, prompt plus output (profile: 131072)");
  command.add_flag("--no-enable-prefix-caching", flags.no_prefix_caching,
                   "Disable automatic prefix caching");
  command.add_option("--step-fixed-ms", flags.fixed_ms,
                     with_default("Step time: fixed overhead per step (ms)", defaults.fixed_ms));
  command.add_option("--step-weights-read-ms", flags.weights_read_ms,
                     with_default("Step time: memory-bound floor, reading the weights (ms)",
                                  defaults.weights_read_ms));
  command.add_option(
      "--step-per-token-us", flags.per_token_us,
      with_default("Step time: compute per scheduled token (us)", defaults.per_token_us));
  command.add_option("--step-per-sequence-us", flags.per_sequence_us,
                     with_default("Step time: sampling and bookkeeping per sequence (us)",
                                  defaults.per_sequence_us));
  command.add_option(
      "--step-kv-read-us", flags.kv_read_us,
      with_default("Step time: KV read per context token of a decoding sequence (us)",
                   defaults.kv_read_per_context_token_us));
  command.add_option("--step-attention-ns", flags.attention_ns,
                     with_default("Step time: prefill attention per (query, key) token pair (ns)",
                                  defaults.attention_per_pair_ns));
  command.add_option(
      "--frontend-ms", flags.frontend_ms,
      with_default("Time from a request's arrival to the engine queue (HTTP, tokenisation; ms)",
                   defaults.frontend_ms));
}

Result<sim::EngineConfig> resolve_engine_config(const EngineFlags& flags) {
  auto profile = sim::find_profile(flags.profile);
  if (!profile) return profile.status();
  sim::EngineConfig engine;
  engine.num_gpu_blocks = flags.num_gpu_blocks.value_or(profile->num_gpu_blocks);
  engine.block_size = flags.block_size.value_or(16);
  engine.max_num_seqs = flags.max_num_seqs.value_or(profile->max_num_seqs);
  engine.max_num_batched_tokens =
      flags.max_num_batched_tokens.value_or(profile->max_num_batched_tokens);
  engine.max_model_len = flags.max_model_len.value_or(profile->max_model_len);
  engine.max_loras = flags.max_loras;
  engine.enable_prefix_caching = !flags.no_prefix_caching;
  engine.step_time = profile->step_time;
  sim::StepTimeParams& step = engine.step_time;
  step.fixed_ms = flags.fixed_ms.value_or(step.fixed_ms);
  step.weights_read_ms = flags.weights_read_ms.value_or(step.weights_read_ms);
  step.per_token_us = flags.per_token_us.value_or(step.per_token_us);
  step.per_sequence_us = flags.per_sequence_us.value_or(step.per_sequence_us);
  step.kv_read_per_context_token_us = flags.kv_read_us.value_or(step.kv_read_per_context_token_us);
  step.attention_per_pair_ns = flags.attention_ns.value_or(step.attention_per_pair_ns);
  step.frontend_ms = flags.frontend_ms.value_or(step.frontend_ms);
  if (engine.block_size < 1 || engine.num_gpu_blocks < 2 || engine.max_num_seqs < 1 ||
      engine.max_num_batched_tokens < 1 || engine.max_model_len < 2 || engine.max_loras < 1) {
    return Status::bad_request(
        "--block-size, --max-num-seqs, --max-num-batched-tokens and --max-loras must be >= 1; "
        "--num-gpu-blocks and --max-model-len >= 2");
  }
  return engine;
}

std::string describe_profiles() {
  std::string out;
  for (const auto& profile : sim::profiles()) {
    out += fmt::format("{:<16} {}\n", profile.name, profile.description);
  }
  return out;
}

}  // namespace infergate::cli
