#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <optional>

#include "cli/commands.h"
#include "sim/server.h"

namespace infergate::cli {
namespace {

struct SimFlags {
  sim::SimOptions options;
  std::string profile = "llama3-8b-h100";
  std::vector<std::string> lora_modules;
  std::string metrics_style = "vllm";
  std::optional<int> num_gpu_blocks, block_size, max_num_seqs, max_num_batched_tokens,
      max_model_len;
  bool no_prefix_caching = false;
  std::optional<double> fixed_ms, weights_read_ms, per_token_us, per_sequence_us, kv_read_us,
      attention_ns, frontend_ms;
  bool print_profiles = false;
};

// Applies the profile, then every flag the user gave, on top of it.
Result<sim::SimOptions> resolve(SimFlags& flags) {
  auto profile = sim::find_profile(flags.profile);
  if (!profile) return profile.status();
  sim::SimOptions options = flags.options;
  sim::EngineConfig& engine = options.engine;
  engine.num_gpu_blocks = flags.num_gpu_blocks.value_or(profile->num_gpu_blocks);
  engine.block_size = flags.block_size.value_or(16);
  engine.max_num_seqs = flags.max_num_seqs.value_or(profile->max_num_seqs);
  engine.max_num_batched_tokens =
      flags.max_num_batched_tokens.value_or(profile->max_num_batched_tokens);
  engine.max_model_len = flags.max_model_len.value_or(profile->max_model_len);
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

  for (const auto& module : flags.lora_modules) {
    const auto equals = module.find('=');
    if (equals == std::string::npos || equals == 0 || equals + 1 == module.size()) {
      return Status::bad_request(fmt::format("--lora-modules expects name=path, got '{}'", module));
    }
    options.lora_modules.push_back({module.substr(0, equals), module.substr(equals + 1)});
  }
  auto style = sim::parse_metrics_style(flags.metrics_style);
  if (!style) return style.status();
  options.metrics_style = *style;

  if (engine.block_size < 1 || engine.num_gpu_blocks < 2 || engine.max_num_seqs < 1 ||
      engine.max_num_batched_tokens < 1 || engine.max_model_len < 2 || engine.max_loras < 1) {
    return Status::bad_request(
        "--block-size, --max-num-seqs, --max-num-batched-tokens and --max-loras must be >= 1; "
        "--num-gpu-blocks and --max-model-len >= 2");
  }
  if (!(options.time_scale > 0)) return Status::bad_request("--time-scale must be > 0");
  if (options.failure_rate_percent < 0 || options.failure_rate_percent > 100) {
    return Status::bad_request("--failure-rate must be between 0 and 100");
  }
  for (unsigned code : options.failure_codes) {
    if (code < 400 || code > 599) {
      return Status::bad_request(
          fmt::format("--failure-codes: {} is not a 4xx or 5xx status", code));
    }
  }
  return options;
}

int run_sim(SimFlags& flags) {
  if (flags.print_profiles) {
    for (const auto& profile : sim::profiles()) {
      fmt::print("{:<16} {}\n", profile.name, profile.description);
    }
    return 0;
  }
  auto options = resolve(flags);
  if (!options) {
    spdlog::error("{}", options.status().message());
    return 2;
  }
  boost::asio::io_context io(1);
  sim::SimServer server(io, *options);
  server.start();
  const auto& engine = options->engine;
  spdlog::info(
      "infergate sim: serving {} on http://{}:{} (profile {}, {} KV blocks of {} tokens, "
      "max-num-seqs {}, max-num-batched-tokens {}, time scale {})",
      options->model, options->host, server.port(), flags.profile, engine.num_gpu_blocks,
      engine.block_size, engine.max_num_seqs, engine.max_num_batched_tokens, options->time_scale);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& error, int) {
    if (error) return;
    spdlog::info("infergate sim: shutting down");
    server.stop();
    io.stop();
  });
  io.run();
  return 0;
}

}  // namespace

Runner add_sim_command(CLI::App& app) {
  auto flags = std::make_shared<SimFlags>();
  const sim::Profile& default_profile = sim::profiles().front();
  const sim::StepTimeParams& defaults = default_profile.step_time;
  auto with_default = [&](std::string_view help, double value) {
    return fmt::format("{} (profile {}: {})", help, default_profile.name, value);
  };
  sim::SimOptions& options = flags->options;
  CLI::App* sim = app.add_subcommand(
      "sim",
      "Run a simulated vLLM-compatible model server (OpenAI API, SSE streaming, prefix cache, "
      "LoRA, continuous batching, vLLM metrics)");
  sim->add_option("--host", options.host, "Address to listen on")->capture_default_str();
  sim->add_option("--port", options.port, "Port to listen on (0: any free port)")
      ->capture_default_str();
  sim->add_option("--model", options.model, "Base model name")->capture_default_str();
  sim->add_option("--served-model-name", options.served_model_names,
                  "Names clients may use for the base model (default: --model)");
  sim->add_option("--lora-modules", flags->lora_modules,
                  "LoRA adapters to load at start, as name=path (repeatable)");
  sim->add_option("--max-loras", options.engine.max_loras,
                  "Maximum number of distinct LoRA adapters in one batch")
      ->capture_default_str();
  sim->add_option("--profile", flags->profile,
                  "Hardware/model profile supplying the defaults below (see --list-profiles)")
      ->capture_default_str();
  sim->add_flag("--list-profiles", flags->print_profiles, "List the profiles and exit");
  sim->add_option("--num-gpu-blocks", flags->num_gpu_blocks,
                  "KV-cache blocks (profile: 27000 for llama3-8b-h100)");
  sim->add_option("--block-size", flags->block_size, "Tokens per KV-cache block (default 16)");
  sim->add_option("--max-num-seqs", flags->max_num_seqs,
                  "Maximum number of running requests (profile: 1024)");
  sim->add_option("--max-num-batched-tokens", flags->max_num_batched_tokens,
                  "Token budget of one engine step (profile: 8192)");
  sim->add_option("--max-model-len", flags->max_model_len,
                  "Maximum context length, prompt plus output (profile: 131072)");
  sim->add_flag("--no-enable-prefix-caching", flags->no_prefix_caching,
                "Disable automatic prefix caching");
  sim->add_option("--step-fixed-ms", flags->fixed_ms,
                  with_default("Step time: fixed overhead per step (ms)", defaults.fixed_ms));
  sim->add_option("--step-weights-read-ms", flags->weights_read_ms,
                  with_default("Step time: memory-bound floor, reading the weights (ms)",
                               defaults.weights_read_ms));
  sim->add_option(
      "--step-per-token-us", flags->per_token_us,
      with_default("Step time: compute per scheduled token (us)", defaults.per_token_us));
  sim->add_option("--step-per-sequence-us", flags->per_sequence_us,
                  with_default("Step time: sampling and bookkeeping per sequence (us)",
                               defaults.per_sequence_us));
  sim->add_option("--step-kv-read-us", flags->kv_read_us,
                  with_default("Step time: KV read per context token of a decoding sequence (us)",
                               defaults.kv_read_per_context_token_us));
  sim->add_option("--step-attention-ns", flags->attention_ns,
                  with_default("Step time: prefill attention per (query, key) token pair (ns)",
                               defaults.attention_per_pair_ns));
  sim->add_option(
      "--frontend-ms", flags->frontend_ms,
      with_default("Time from a request's arrival to the engine queue (HTTP, tokenisation; ms)",
                   defaults.frontend_ms));
  sim->add_option("--time-scale", options.time_scale,
                  "Simulated seconds per real second (10: ten times faster than real time)")
      ->capture_default_str();
  sim->add_option("--seed", options.seed, "Seed for generated text, output lengths and failures")
      ->capture_default_str();
  sim->add_option("--mean-output-tokens", options.mean_output_tokens,
                  "Mean output length of requests without ignore_eos")
      ->capture_default_str();
  sim->add_option("--failure-rate", options.failure_rate_percent,
                  "Percentage of completion requests answered with an injected error (0-100); a "
                  "request header 'x-return-error: <status>' forces one")
      ->capture_default_str();
  sim->add_option("--failure-codes", options.failure_codes,
                  "HTTP statuses injected failures draw from")
      ->delimiter(',')
      ->capture_default_str();
  sim->add_option("--max-request-body-bytes", options.max_request_body_bytes,
                  "Larger request bodies are answered with 413")
      ->capture_default_str();
  sim->add_option("--metrics-style", flags->metrics_style,
                  "Metric names to serve: vllm, vllm-legacy (vLLM <= 0.9.1: "
                  "vllm:gpu_cache_usage_perc, ...) or sglang")
      ->capture_default_str();
  return [flags] { return run_sim(*flags); };
}

}  // namespace infergate::cli
