#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <fstream>
#include <memory>
#include <optional>

#include "bench/load.h"
#include "bench/report.h"
#include "bench/workload.h"
#include "cli/commands.h"

namespace infergate::cli {
namespace {

struct BenchFlags {
  std::string url = "http://127.0.0.1:8000";
  std::string model;
  std::string api = "completions";
  std::optional<double> rate;
  std::optional<int> concurrency;
  double duration_s = 30;
  double warmup_s = 5;
  std::string workload = "random";
  bench::WorkloadOptions workload_options;
  double timeout_s = 60;
  double progress_s = 5;
  std::string output_json;
};

Result<bench::BenchConfig> resolve(const BenchFlags& flags) {
  bench::BenchConfig config;
  config.workload = flags.workload_options;
  config.workload.model = flags.model;
  auto api = bench::parse_api(flags.api);
  if (!api) return api.status();
  config.workload.api = *api;
  auto kind = bench::parse_workload_kind(flags.workload);
  if (!kind) return kind.status();
  config.workload.kind = *kind;

  auto target = bench::parse_target_url(flags.url);
  if (!target) return target.status();
  bench::LoadOptions& load = config.load;
  load.target = *target;
  if (flags.rate.has_value() == flags.concurrency.has_value()) {
    return Status::bad_request("give exactly one of --rate (open loop) or --concurrency");
  }
  if (flags.rate) {
    load.mode = bench::LoadMode::kRate;
    load.rate = *flags.rate;
  } else {
    load.mode = bench::LoadMode::kConcurrency;
    load.concurrency = *flags.concurrency;
  }
  for (const auto& [value, flag] :
       {std::pair{flags.duration_s, "--duration"}, std::pair{flags.warmup_s, "--warmup"},
        std::pair{flags.timeout_s, "--timeout"},
        std::pair{flags.progress_s, "--progress-interval"}}) {
    if (!(value >= 0 && value <= 1e7)) {
      return Status::bad_request(fmt::format("{} must be between 0 and 1e7 seconds", flag));
    }
  }
  load.duration = from_seconds(flags.duration_s);
  load.warmup = from_seconds(flags.warmup_s);
  load.timeout = from_seconds(flags.timeout_s);
  load.progress_interval = from_seconds(flags.progress_s);
  load.seed = config.workload.seed;
  if (Status valid = bench::validate(load); !valid.is_ok()) return valid;
  return config;
}

// Each request holds a socket; the default soft limit (often 1024) would turn high concurrency
// into connect errors.
void raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      spdlog::warn("bench: could not raise the open-file limit; high concurrency may fail");
    }
  }
}

int run_bench(const BenchFlags& flags) {
  auto config = resolve(flags);
  if (!config) {
    spdlog::error("{}", config.status().message());
    return 2;
  }
  auto workload = bench::Workload::create(config->workload);
  if (!workload) {
    spdlog::error("{}", workload.status().message());
    return 2;
  }
  // Opened first so that a bad path fails before the run, not after it.
  std::ofstream json_file;
  if (!flags.output_json.empty()) {
    json_file.open(flags.output_json);
    if (!json_file) {
      spdlog::error("--output-json: cannot write '{}'", flags.output_json);
      return 2;
    }
  }
  raise_open_file_limit();

  boost::asio::io_context io(1);
  bench::LoadGenerator generator(io.get_executor(), config->load, *workload);
  std::optional<bench::RunResult> result;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  int signals_received = 0;
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& error, int) {
        if (error) return;
        if (++signals_received == 1) {
          spdlog::info("bench: stopping; waiting for requests in flight (again to abort)");
          generator.stop();
          signals.async_wait(on_signal);
        } else {
          io.stop();
        }
      };
  signals.async_wait(on_signal);
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        result = co_await generator.run();
        signals.cancel();
      },
      boost::asio::detached);
  spdlog::info("bench: {} against {} for {:g} s after a {:g} s warm-up",
               config->load.mode == bench::LoadMode::kRate
                   ? fmt::format("{:g} req/s Poisson", config->load.rate)
                   : fmt::format("concurrency {}", config->load.concurrency),
               config->load.target.url(), flags.duration_s, flags.warmup_s);
  io.run();
  if (!result) {
    spdlog::error("bench: aborted");
    return 1;
  }

  const bench::Report report = bench::make_report(*result);
  fmt::print("{}", bench::format_report_table(report, *config));
  if (json_file.is_open()) {
    json_file << bench::format_report_json(report, *config);
    json_file.close();
    if (!json_file) {
      spdlog::error("--output-json: writing '{}' failed", flags.output_json);
      return 1;
    }
  }
  if (!report.generator_kept_up) {
    spdlog::warn("bench: the generator fell behind its schedule (p99 lag {:.1f} ms)",
                 report.schedule_lag_ms.p99);
  }
  return report.succeeded > 0 ? 0 : 1;
}

}  // namespace

Runner add_bench_command(CLI::App& app) {
  auto flags = std::make_shared<BenchFlags>();
  bench::WorkloadOptions& workload = flags->workload_options;
  CLI::App* bench = app.add_subcommand(
      "bench",
      "Load an OpenAI-compatible server (vLLM, infergate sim, a gateway) with streaming requests "
      "at a Poisson rate or a fixed concurrency and report TTFT, TPOT, ITL, e2e and throughput");
  bench->add_option("--url", flags->url, "Server base URL, http://host:port[/path]")
      ->capture_default_str();
  bench->add_option("--model", flags->model, "Model name sent in every request")->required();
  bench
      ->add_option("--api", flags->api,
                   "completions (/v1/completions) or chat (/v1/chat/completions)")
      ->capture_default_str();
  auto* rate = bench->add_option("--rate", flags->rate,
                                 "Open loop: mean requests per second, Poisson arrivals");
  auto* concurrency = bench->add_option("--concurrency", flags->concurrency,
                                        "Closed loop: requests kept in flight (instead of --rate)");
  rate->excludes(concurrency);
  bench->add_option("--duration", flags->duration_s, "Measured time in seconds")
      ->capture_default_str();
  bench
      ->add_option("--warmup", flags->warmup_s,
                   "Seconds of load before the measured time (sent, not measured; 0: none)")
      ->capture_default_str();
  bench->add_option("--workload", flags->workload, "random or shared-prefix")
      ->capture_default_str();
  bench->add_option("--prompt-tokens", workload.prompt_tokens, "random: prompt length in tokens")
      ->capture_default_str();
  bench
      ->add_option("--output-tokens", workload.output_tokens,
                   "Output tokens per request (max_tokens, with ignore_eos)")
      ->capture_default_str();
  bench
      ->add_option("--num-groups", workload.num_groups,
                   "shared-prefix: groups, each with its own system prompt")
      ->capture_default_str();
  bench
      ->add_option("--prompts-per-group", workload.prompts_per_group,
                   "shared-prefix: distinct questions per group")
      ->capture_default_str();
  bench
      ->add_option("--system-prompt-tokens", workload.system_prompt_tokens,
                   "shared-prefix: system prompt length in tokens")
      ->capture_default_str();
  bench
      ->add_option("--question-tokens", workload.question_tokens,
                   "shared-prefix: question length in tokens")
      ->capture_default_str();
  bench->add_option("--seed", workload.seed, "Seed for prompts, their order and arrival times")
      ->capture_default_str();
  bench
      ->add_option("--timeout", flags->timeout_s,
                   "Per-request limit in seconds, from launch to the end of the stream")
      ->capture_default_str();
  bench
      ->add_option("--progress-interval", flags->progress_s,
                   "Seconds between progress lines (0: none)")
      ->capture_default_str();
  bench->add_option("--output-json", flags->output_json,
                    "Also write the report as JSON to this file (default: none)");
  return [flags] { return run_bench(*flags); };
}

}  // namespace infergate::cli
