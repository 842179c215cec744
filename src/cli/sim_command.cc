#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <optional>

#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "sim/server.h"

namespace infergate::cli {
namespace {

struct SimFlags {
  sim::SimOptions options;
  EngineFlags engine;
  std::vector<std::string> lora_modules;
  std::string metrics_style = "vllm";
};

// Applies the profile, then every flag the user gave, on top of it.
Result<sim::SimOptions> resolve(SimFlags& flags) {
  sim::SimOptions options = flags.options;
  auto engine = resolve_engine_config(flags.engine);
  if (!engine) return engine.status();
  options.engine = std::move(*engine);

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
  if (flags.engine.print_profiles) {
    fmt::print("{}", describe_profiles());
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
      options->model, options->host, server.port(), flags.engine.profile, engine.num_gpu_blocks,
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
  add_engine_flags(*sim, flags->engine, "--profile");
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
