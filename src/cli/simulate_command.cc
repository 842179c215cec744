#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "bench/report.h"
#include "bench/simulate.h"
#include "bench/sweep.h"
#include "bench/workload.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "cli/workload_flags.h"
#include "common/duration.h"
#include "datastore/static_pool.h"

namespace infergate::cli {
namespace {

struct SimulateFlags {
  EngineFlags engine;
  int replicas = 8;
  double rate = 50;
  double duration_s = 60;
  double warmup_s = 0;
  std::string workload = "random";
  std::string api = "completions";
  bench::WorkloadOptions workload_options;
  std::vector<std::string> policies;
  std::vector<std::string> configs;
  std::string scrape_interval = "50ms";
  bool correct_stale_metrics = true;
  std::string output_json;
  SweepFlags sweep;  // --sweep: the saturation rate of the first configuration, then a ladder
};

// The configurations to compare, in command-line order: --policy values, then --config files.
Result<std::vector<sim::ClusterConfig>> configurations(const SimulateFlags& flags,
                                                       const sim::ClusterConfig& base) {
  std::vector<std::string> policies = flags.policies;
  if (policies.empty() && flags.configs.empty()) policies = {"default", "round-robin"};
  std::vector<sim::ClusterConfig> out;
  for (const std::string& policy : policies) {
    sim::ClusterConfig config = base;
    config.name = policy;
    if (policy == "default") {
      config.policy = sim::RoutingPolicy::kScheduler;  // the built-in EndpointPickerConfig
    } else if (policy == "default-uncorrected") {
      config.policy = sim::RoutingPolicy::kScheduler;
      config.correct_stale_metrics = false;
    } else if (policy == "round-robin") {
      config.policy = sim::RoutingPolicy::kRoundRobin;
    } else if (policy == "random") {
      config.policy = sim::RoutingPolicy::kRandom;
    } else {
      return Status::bad_request(fmt::format(
          "--policy must be default, default-uncorrected, round-robin or random, got '{}' "
          "(EndpointPickerConfig "
          "files go in --config)",
          policy));
    }
    out.push_back(std::move(config));
  }
  for (const std::string& file : flags.configs) {
    std::string source;
    auto picker = datastore::load_picker_config(file, "", std::nullopt, "", source);
    if (!picker) return picker.status();
    sim::ClusterConfig config = base;
    config.name = std::filesystem::path(file).stem().string();
    config.policy = sim::RoutingPolicy::kScheduler;
    config.picker_config = std::move(*picker);
    out.push_back(std::move(config));
  }
  return out;
}

int run_simulate(const SimulateFlags& flags) {
  if (flags.engine.print_profiles) {
    fmt::print("{}", describe_profiles());
    return 0;
  }
  auto fail = [](const Status& status) {
    spdlog::error("{}", status.message());
    return 2;
  };
  auto engine = resolve_engine_config(flags.engine);
  if (!engine) return fail(engine.status());
  auto scrape = parse_duration(flags.scrape_interval);
  if (!scrape) return fail(Status::bad_request("--scrape-interval: " + scrape.status().message()));

  bench::WorkloadOptions workload_options = flags.workload_options;
  auto kind = bench::parse_workload_kind(flags.workload);
  if (!kind) return fail(kind.status());
  workload_options.kind = *kind;
  auto api = bench::parse_api(flags.api);
  if (!api) return fail(api.status());
  workload_options.api = *api;
  auto workload = bench::Workload::create(workload_options);
  if (!workload) return fail(workload.status());

  bench::SimulateOptions options{.rate = flags.rate,
                                 .warmup = from_seconds(flags.warmup_s),
                                 .duration = from_seconds(flags.duration_s),
                                 .seed = workload_options.seed,
                                 .model_profile = flags.engine.profile};
  if (!(flags.duration_s <= 1e7 && flags.warmup_s <= 1e7)) {
    return fail(Status::bad_request("--duration and --warmup must be at most 1e7 seconds"));
  }
  if (Status valid = bench::validate(options); !valid.is_ok()) return fail(valid);

  sim::ClusterConfig base;
  base.replicas = flags.replicas;
  base.engine = *engine;
  base.scrape_interval = *scrape;
  base.correct_stale_metrics = flags.correct_stale_metrics;
  base.seed = workload_options.seed;
  auto configs = configurations(flags, base);
  if (!configs) return fail(configs.status());

  std::ofstream json_file;  // opened first: a bad path fails before the run, not after it
  if (!flags.output_json.empty()) {
    json_file.open(flags.output_json);
    if (!json_file) return fail(Status::bad_request("--output: cannot write " + flags.output_json));
  }

  // --sweep: probes against the first configuration, then the ladder; else the one --rate.
  std::vector<double> rates = {flags.rate};
  std::optional<bench::SweepResult> sweep;
  bench::SweepOptions sweep_options;
  if (flags.sweep.enabled) {
    if (workload->has_fixed_arrivals()) {
      return fail(Status::bad_request("--sweep: a trace brings its own arrival times"));
    }
    auto parsed = cli::sweep_options(flags.sweep);
    if (!parsed) return fail(parsed.status());
    sweep_options = *parsed;
    int probe_number = 0;
    bool failed = false;
    sweep = bench::find_saturation(
        sweep_options, [&](double rate) -> std::optional<bench::ProbeResult> {
          bench::SimulateOptions probe = options;
          probe.rate = rate;
          probe.warmup = Duration::zero();
          probe.duration = from_seconds(flags.sweep.probe_duration_s);
          auto report = bench::simulate(*workload, probe, configs->front());
          if (!report) {
            spdlog::error("{}", report.status().message());
            failed = true;
            return std::nullopt;
          }
          fmt::print("{}", bench::format_probe_line(++probe_number, *report));
          std::fflush(stdout);
          return bench::probe_result(*report);
        });
    if (failed) return 2;
    fmt::print("{}", bench::format_sweep_line(*sweep));
    if (sweep->ladder.empty()) {
      return fail(Status::internal("--sweep found no saturation rate to build a ladder on"));
    }
    rates = sweep->ladder;
  }

  std::vector<bench::Report> reports;
  std::vector<bench::BenchConfig> bench_configs;
  for (std::size_t stage = 0; stage < rates.size(); ++stage) {
    options.rate = rates[stage];
    std::vector<bench::Report> stage_reports;
    std::vector<bench::BenchConfig> stage_configs;
    for (const sim::ClusterConfig& config : *configs) {
      const auto started = std::chrono::steady_clock::now();
      auto report = bench::simulate(*workload, options, config);
      if (!report) return fail(report.status());
      const double wall_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      spdlog::info("simulate: {} ({}): {} requests, {:g} virtual s in {:.2f} s of real time",
                   config.name, sim::to_string(config.policy),
                   report->launched + report->warmup_requests,
                   to_seconds(options.warmup + options.duration), wall_s);
      stage_reports.push_back(std::move(*report));
      stage_configs.push_back(bench::simulate_bench_config(*workload, options));
    }
    if (sweep) {
      fmt::print("\nstage {} of {}: {:g} req/s ({:g}% of the saturation rate)\n", stage + 1,
                 rates.size(), rates[stage], 100 * sweep_options.fractions[stage]);
    }
    fmt::print("{}", bench::format_comparison_table(stage_reports, stage_configs));
    std::fflush(stdout);
    for (std::size_t i = 0; i < stage_reports.size(); ++i) {
      reports.push_back(std::move(stage_reports[i]));
      bench_configs.push_back(std::move(stage_configs[i]));
    }
  }
  if (json_file.is_open()) {
    std::string document = bench::format_comparison_json(reports, bench_configs);
    if (sweep) {
      auto parsed = nlohmann::ordered_json::parse(document);
      parsed["sweep"] = bench::sweep_json(*sweep, sweep_options, flags.sweep.probe_duration_s);
      document = parsed.dump(2) + "\n";
    }
    json_file << document;
    if (!json_file.flush()) return fail(Status::internal("--output: write failed"));
  }
  return 0;
}

}  // namespace

Runner add_simulate_command(CLI::App& app) {
  auto flags = std::make_shared<SimulateFlags>();
  bench::WorkloadOptions& workload = flags->workload_options;
  workload.model = "meta-llama/Llama-3.1-8B-Instruct";
  CLI::App* simulate = app.add_subcommand(
      "simulate",
      "Virtual-time cluster simulation: N simulated vLLM replicas behind the real scheduler (or "
      "round robin / random), a Poisson workload, and a side-by-side report per routing "
      "configuration (docs/benchmarks.md)");
  simulate->add_option("--replicas", flags->replicas, "Number of simulated model-server replicas")
      ->capture_default_str();
  simulate->add_option(
      "--policy", flags->policies,
      "Routing configuration to run (repeatable): default (the scheduler with the "
      "built-in EndpointPickerConfig), default-uncorrected (the same with "
      "--correct-stale-metrics=false), round-robin or random. Default: default and "
      "round-robin, unless --config is given");
  simulate->add_option("--config", flags->configs,
                       "EndpointPickerConfig file (GIE format, as `infergate epp --config-file`) "
                       "to run with the real scheduler (repeatable; named after the file)");
  simulate
      ->add_option("--scrape-interval", flags->scrape_interval,
                   "How often each replica's metrics reach the picker (Go duration), like the "
                   "collectors' --refresh-metrics-interval")
      ->capture_default_str();
  // Boolean flags take GIE's (Go's) spelling: --flag, --flag=true, --flag=false.
  simulate
      ->add_flag("--correct-stale-metrics", flags->correct_stale_metrics,
                 "Correct the load scorers' scraped figures with the requests the director "
                 "dispatched since each replica's last scrape, as `infergate serve` and `epp` do "
                 "(--correct-stale-metrics=false: the reference EPP's exact scoring, for every "
                 "scheduler configuration but default-uncorrected's; docs/scheduling.md)")
      ->default_str("true");
  simulate
      ->add_option("--rate", flags->rate,
                   "Mean requests per second (Poisson arrivals; unused with --workload trace, "
                   "which arrives at its timestamps)")
      ->capture_default_str();
  simulate->add_option("--duration", flags->duration_s, "Measured virtual seconds")
      ->capture_default_str();
  simulate
      ->add_option("--warmup", flags->warmup_s,
                   "Virtual seconds of load before the measured time (run, not measured)")
      ->capture_default_str();
  simulate->add_option("--model", workload.model, "Model name sent in every request")
      ->capture_default_str();
  simulate
      ->add_option("--api", flags->api,
                   "completions (/v1/completions) or chat (/v1/chat/completions)")
      ->capture_default_str();
  add_workload_flags(*simulate, flags->workload, workload);
  simulate
      ->add_option("--seed", workload.seed,
                   "Seed for prompts, their order, arrival times and the routing draws")
      ->capture_default_str();
  simulate->add_option("--output,--output-json", flags->output_json,
                       "Also write the reports as JSON to this file (default: none)");
  add_sweep_flags(*simulate, flags->sweep, "the first configuration")
      ->excludes(simulate->get_option("--rate"));
  add_engine_flags(*simulate, flags->engine, "--model-profile");
  return [flags] { return run_simulate(*flags); };
}

}  // namespace infergate::cli
