#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/html_report.h"
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
  std::string output_html;
  // --targets name=url,...: the same workload against each, one after another.
  std::vector<std::string> targets;
  // --rates r1,r2,...: a ladder of open-loop stages per target (instead of --rate).
  std::vector<double> rates;
  std::optional<double> stage_duration_s;  // --stage-duration (default: --duration)
  std::string before_each;                 // --before-each: shell command run before each target
};

// One target of a comparison.
struct NamedTarget {
  std::string name;
  std::string url;
};

// --targets entries (each may itself be a comma-separated list) as name=url pairs; a bare URL is
// named after itself. Without --targets: the one --url.
Result<std::vector<NamedTarget>> parse_targets(const BenchFlags& flags) {
  std::vector<NamedTarget> targets;
  if (flags.targets.empty()) {
    targets.push_back({flags.url, flags.url});
    return targets;
  }
  for (const std::string& entry_list : flags.targets) {
    std::string_view rest = entry_list;
    while (!rest.empty()) {
      const std::size_t comma = rest.find(',');
      std::string_view entry = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (entry.empty()) continue;
      const std::size_t equals = entry.find('=');
      NamedTarget target;
      if (equals == std::string_view::npos) {
        target = {std::string(entry), std::string(entry)};
      } else {
        target = {std::string(entry.substr(0, equals)), std::string(entry.substr(equals + 1))};
      }
      if (target.name.empty() || target.url.empty()) {
        return Status::bad_request(
            fmt::format("--targets: '{}' is not name=url", std::string(entry)));
      }
      for (const NamedTarget& seen : targets) {
        if (seen.name == target.name) {
          return Status::bad_request(
              fmt::format("--targets: the name '{}' is given twice", target.name));
        }
      }
      targets.push_back(std::move(target));
    }
  }
  if (targets.empty()) return Status::bad_request("--targets: no target given");
  return targets;
}

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
  const int modes = static_cast<int>(flags.rate.has_value()) +
                    static_cast<int>(flags.concurrency.has_value()) +
                    static_cast<int>(!flags.rates.empty());
  const bool trace = config.workload.kind == bench::WorkloadKind::kTrace;
  if (modes != 1 && !(trace && modes == 0)) {
    return Status::bad_request(
        "give exactly one of --rate (open loop), --rates (a ladder of open-loop stages) or "
        "--concurrency");
  }
  if (modes == 0) {
    // A trace brings its own arrival times; the open-loop rate is not used.
    load.mode = bench::LoadMode::kRate;
  } else if (flags.rate || !flags.rates.empty()) {
    load.mode = bench::LoadMode::kRate;
    load.rate = flags.rate ? *flags.rate : flags.rates.front();
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
  if (flags.stage_duration_s && !(*flags.stage_duration_s >= 0 && *flags.stage_duration_s <= 1e7)) {
    return Status::bad_request("--stage-duration must be between 0 and 1e7 seconds");
  }
  load.duration = from_seconds(
      flags.stage_duration_s && !flags.rates.empty() ? *flags.stage_duration_s : flags.duration_s);
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

// One run (a target at one load) to its end, or nullopt when interrupted (signals_received says
// how often: once stops the run gracefully and keeps its result, twice aborts).
std::optional<bench::RunResult> run_once(const bench::BenchConfig& config,
                                         bench::Workload& workload, int& signals_received) {
  boost::asio::io_context io(1);
  bench::LoadGenerator generator(io.get_executor(), config.load, workload);
  std::optional<bench::RunResult> result;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
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
  io.run();
  return result;
}

// The summary of several runs, one line each.
std::string format_runs_summary(const std::vector<std::string>& names,
                                const std::vector<bench::Report>& reports,
                                const std::vector<bench::BenchConfig>& configs) {
  std::string out = fmt::format("\n{:<24}{:>10}{:>10}{:>11}{:>10}{:>10}{:>10}{:>10}{:>8}{:>9}\n",
                                "target", "offered/s", "achieved", "out tok/s", "TTFT p50",
                                "TTFT p90", "NTPOT p90", "e2e p90", "failed", "kept up");
  for (std::size_t index = 0; index < reports.size(); ++index) {
    const bench::Report& report = reports[index];
    const std::string offered = configs[index].load.mode == bench::LoadMode::kRate
                                    ? fmt::format("{:.1f}", report.launch_rate)
                                    : fmt::format("c={}", configs[index].load.concurrency);
    out += fmt::format(
        "{:<24}{:>10}{:>10.2f}{:>11.0f}{:>10.1f}{:>10.1f}{:>10.2f}{:>10.1f}{:>8}{:>9}\n",
        names[index], offered, report.achieved_rate, report.output_tokens_per_second,
        report.ttft_ms.p50, report.ttft_ms.p90, report.ntpot_ms.p90, report.e2e_ms.p90,
        report.failed, report.generator_kept_up ? "yes" : "NO");
  }
  out +=
      "(latencies in ms over successful requests; kept up: the generator launched on schedule)\n";
  return out;
}

int run_bench(const BenchFlags& flags) {
  auto config = resolve(flags);
  if (!config) {
    spdlog::error("{}", config.status().message());
    return 2;
  }
  auto targets = parse_targets(flags);
  if (!targets) {
    spdlog::error("{}", targets.status().message());
    return 2;
  }
  std::vector<bench::BenchConfig> plan;  // every run: targets outside, stages inside
  std::vector<std::string> plan_names;
  for (const NamedTarget& target : *targets) {
    auto parsed = bench::parse_target_url(target.url);
    if (!parsed) {
      spdlog::error("{}: {}", target.name, parsed.status().message());
      return 2;
    }
    const std::vector<double> stages =
        flags.rates.empty() ? std::vector<double>{config->load.rate} : flags.rates;
    for (double rate : stages) {
      bench::BenchConfig run = *config;
      run.load.target = *parsed;
      run.load.rate = rate;
      if (Status valid = bench::validate(run.load); !valid.is_ok()) {
        spdlog::error("{}", valid.message());
        return 2;
      }
      plan.push_back(std::move(run));
      plan_names.push_back(target.name);
    }
  }
  // Opened first so that a bad path fails before the runs, not after them.
  std::ofstream json_file;
  if (!flags.output_json.empty()) {
    json_file.open(flags.output_json);
    if (!json_file) {
      spdlog::error("--output-json: cannot write '{}'", flags.output_json);
      return 2;
    }
  }
  std::ofstream html_file;
  if (!flags.output_html.empty()) {
    html_file.open(flags.output_html);
    if (!html_file) {
      spdlog::error("--output-html: cannot write '{}'", flags.output_html);
      return 2;
    }
  }
  raise_open_file_limit();

  std::vector<bench::Report> reports;
  std::vector<bench::BenchConfig> configs;
  std::vector<std::string> names;
  int signals_received = 0;
  for (std::size_t index = 0; index < plan.size() && signals_received == 0; ++index) {
    const bench::BenchConfig& run = plan[index];
    const bool first_of_target = index == 0 || plan_names[index] != plan_names[index - 1];
    if (first_of_target && !flags.before_each.empty()) {
      // The user's reset (restart the servers, flush their prefix caches): the targets must start
      // from the same state for a fair comparison.
      const std::string command =
          "INFERGATE_BENCH_TARGET='" + plan_names[index] + "' " + flags.before_each;
      spdlog::info("bench: --before-each for {}: {}", plan_names[index], flags.before_each);
      if (const int status = std::system(command.c_str()); status != 0) {
        spdlog::error("bench: --before-each failed (status {}); stopping", status);
        return 1;
      }
    }
    // The same requests for every target: a fresh workload from the same seed.
    auto workload = bench::Workload::create(run.workload);
    if (!workload) {
      spdlog::error("{}", workload.status().message());
      return 2;
    }
    spdlog::info(
        "bench: {}{} against {} ({}) for {:g} s after a {:g} s warm-up",
        run.workload.kind == bench::WorkloadKind::kTrace && run.load.mode == bench::LoadMode::kRate
            ? std::string("trace arrivals")
        : run.load.mode == bench::LoadMode::kRate
            ? fmt::format("{:g} req/s Poisson", run.load.rate)
            : fmt::format("concurrency {}", run.load.concurrency),
        plan.size() > 1 ? fmt::format(" (run {} of {})", index + 1, plan.size()) : "",
        plan_names[index], run.load.target.url(), to_seconds(run.load.duration), flags.warmup_s);
    auto result = run_once(run, *workload, signals_received);
    if (!result) {
      spdlog::error("bench: aborted");
      break;
    }
    reports.push_back(bench::make_report(*result));
    configs.push_back(run);
    names.push_back(plan_names[index]);
    fmt::print("{}", bench::format_report_table(reports.back(), run));
    if (!reports.back().generator_kept_up) {
      spdlog::warn("bench: the generator fell behind its schedule (p99 lag {:.1f} ms)",
                   reports.back().schedule_lag_ms.p99);
    }
  }
  if (reports.empty()) return 1;
  if (reports.size() > 1) fmt::print("{}", format_runs_summary(names, reports, configs));

  // JSON: the one run's document, or {"schema", "runs": [...]}; every run names its target.
  nlohmann::json document;
  std::vector<nlohmann::json> runs;
  for (std::size_t index = 0; index < reports.size(); ++index) {
    nlohmann::json run =
        nlohmann::json::parse(bench::format_report_json(reports[index], configs[index]));
    run["target"] = names[index];
    runs.push_back(std::move(run));
  }
  if (runs.size() == 1) {
    document = runs.front();
  } else {
    document = {{"schema", "infergate.bench.runs.v1"}, {"runs", runs}};
  }
  if (json_file.is_open()) {
    json_file << document.dump(2) << "\n";
    json_file.close();
    if (!json_file) {
      spdlog::error("--output-json: writing '{}' failed", flags.output_json);
      return 1;
    }
  }
  if (html_file.is_open()) {
    html_file << bench::render_html_report(document, "infergate bench");
    html_file.close();
    if (!html_file) {
      spdlog::error("--output-html: writing '{}' failed", flags.output_html);
      return 1;
    }
    spdlog::info("bench: HTML report in {}", flags.output_html);
  }
  std::size_t succeeded = 0;
  for (const auto& report : reports) succeeded += report.succeeded;
  return succeeded > 0 && signals_received < 2 ? 0 : 1;
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
  bench
      ->add_option("--targets", flags->targets,
                   "Run the same workload against several servers one after another and report "
                   "them side by side: name=url,... (instead of --url)")
      ->delimiter(',');
  auto* rate = bench->add_option("--rate", flags->rate,
                                 "Open loop: mean requests per second, Poisson arrivals");
  auto* rates = bench
                    ->add_option("--rates", flags->rates,
                                 "A ladder of open-loop stages, e.g. 10,20,40 req/s, each run for "
                                 "--stage-duration (per target)")
                    ->delimiter(',');
  bench->add_option("--stage-duration", flags->stage_duration_s,
                    "Measured seconds of each --rates stage (default: --duration)");
  bench->add_option(
      "--before-each", flags->before_each,
      "Shell command run before each target (INFERGATE_BENCH_TARGET names it), e.g. to restart "
      "the model servers or reset their prefix caches so that every target starts cold");
  auto* concurrency = bench->add_option("--concurrency", flags->concurrency,
                                        "Closed loop: requests kept in flight (instead of --rate)");
  rate->excludes(concurrency);
  rates->excludes(rate);
  rates->excludes(concurrency);
  bench->add_option("--duration", flags->duration_s, "Measured time in seconds")
      ->capture_default_str();
  bench
      ->add_option("--warmup", flags->warmup_s,
                   "Seconds of load before the measured time (sent, not measured; 0: none)")
      ->capture_default_str();
  bench
      ->add_option("--workload", flags->workload,
                   "random, shared-prefix, sharegpt (ShareGPT-like prompt/output lengths), "
                   "multi-turn (chat sessions) or trace (replay of --trace)")
      ->capture_default_str();
  bench->add_option("--prompt-tokens", workload.prompt_tokens, "random: prompt length in tokens")
      ->capture_default_str();
  bench
      ->add_option("--output-tokens", workload.output_tokens,
                   "Output tokens per request (max_tokens, with ignore_eos); multi-turn: also "
                   "the length of each earlier assistant reply; sharegpt and trace set their own")
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
                   "shared-prefix, multi-turn: system prompt length in tokens")
      ->capture_default_str();
  bench
      ->add_option("--question-tokens", workload.question_tokens,
                   "shared-prefix: question length in tokens")
      ->capture_default_str();
  bench
      ->add_option("--sessions", workload.num_sessions,
                   "multi-turn: chat sessions in flight; request i is a turn of session i mod "
                   "--sessions, so a session's turns are --sessions requests apart")
      ->capture_default_str();
  bench->add_option("--turns", workload.turns_per_session, "multi-turn: turns per session")
      ->capture_default_str();
  bench
      ->add_option("--user-tokens", workload.user_turn_tokens,
                   "multi-turn: tokens of each user message")
      ->capture_default_str();
  bench->add_option(
      "--trace", workload.trace_path,
      "trace: JSONL file, one request per line: {\"timestamp\": seconds from the start, "
      "\"prompt\": text or \"prompt_tokens\": n, \"output_tokens\": n, \"session_id\": "
      "optional}; arrivals follow the timestamps unless --concurrency is given (default: "
      "none)");
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
  bench->add_option("--output-html", flags->output_html,
                    "Also write a self-contained HTML page with SVG charts of latency and "
                    "throughput against offered load, one line per target (default: none)");
  return [flags] { return run_bench(*flags); };
}

}  // namespace infergate::cli
