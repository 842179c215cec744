#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
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
#include "bench/oracle.h"
#include "bench/progress.h"
#include "bench/report.h"
#include "bench/server_metrics.h"
#include "bench/sweep.h"
#include "bench/workload.h"
#include "cli/commands.h"
#include "cli/workload_flags.h"

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
  std::optional<double> stage_duration_s;   // --stage-duration (default: --duration)
  std::string before_each;                  // --before-each: shell command run before each target
  std::vector<std::string> server_metrics;  // --server-metrics: the model servers' /metrics URLs
  int oracle_block_size = 16;               // --oracle-block-size: the servers' KV block size
  bool no_progress = false;                 // --no-progress
  SweepFlags sweep;                         // --sweep and its options
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
                    static_cast<int>(!flags.rates.empty()) + static_cast<int>(flags.sweep.enabled);
  const bool trace = config.workload.kind == bench::WorkloadKind::kTrace;
  if (modes != 1 && !(trace && modes == 0)) {
    return Status::bad_request(
        "give exactly one of --rate (open loop), --rates (a ladder of open-loop stages), --sweep "
        "(find the saturation rate, then a ladder below it) or --concurrency");
  }
  if (flags.sweep.enabled) {
    if (trace) return Status::bad_request("--sweep: a trace brings its own arrival times");
    if (auto valid = sweep_options(flags.sweep); !valid) return valid.status();
  }
  if (modes == 0) {
    // A trace brings its own arrival times; the open-loop rate is not used.
    load.mode = bench::LoadMode::kRate;
  } else if (flags.sweep.enabled) {
    load.mode = bench::LoadMode::kRate;
    load.rate = flags.sweep.start_rate;
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
  load.duration =
      from_seconds(flags.stage_duration_s && (!flags.rates.empty() || flags.sweep.enabled)
                       ? *flags.stage_duration_s
                       : flags.duration_s);
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

// What run_once needs besides the run itself.
struct RunContext {
  std::string label;                       // progress bar: "run 2/6 round-robin 10 req/s"
  bool progress_bar = false;               // redraw a progress line on stderr
  std::span<const bench::Target> servers;  // --server-metrics
};

// One run's result, and the servers' prefix-cache figures when --server-metrics was given.
struct RunOutcome {
  bench::RunResult result;
  std::optional<bench::PrefixCacheDelta> server_prefix_cache;
};

constexpr std::chrono::milliseconds kScrapeTimeout{5000};
constexpr std::chrono::milliseconds kProgressRedraw{250};

// Scrapes every server in turn (loopback or LAN: milliseconds each).
boost::asio::awaitable<std::vector<Result<bench::PrefixCacheCounters>>> scrape_all(
    boost::asio::any_io_executor executor, std::span<const bench::Target> servers) {
  std::vector<Result<bench::PrefixCacheCounters>> counters;
  for (const bench::Target& server : servers) {
    counters.push_back(co_await bench::scrape_prefix_cache(executor, server, kScrapeTimeout));
  }
  co_return counters;
}

// The terminal's width for the progress line (80 when unknown).
std::size_t terminal_width() {
  if (const char* columns = std::getenv("COLUMNS")) {
    const int value = std::atoi(columns);
    if (value > 0) return static_cast<std::size_t>(value);
  }
  return 80;
}

// One run (a target at one load) to its end, or nullopt when interrupted (signals_received says
// how often: once stops the run gracefully and keeps its result, twice aborts). With servers to
// scrape, their counters are read when the measured window opens (after the warm-up) and again
// once every request has finished.
std::optional<RunOutcome> run_once(const bench::BenchConfig& config, bench::Workload& workload,
                                   int& signals_received, const RunContext& context) {
  namespace asio = boost::asio;
  constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
  asio::io_context io(1);
  bench::LoadGenerator generator(io.get_executor(), config.load, workload);
  std::optional<RunOutcome> outcome;
  asio::signal_set signals(io, SIGINT, SIGTERM);
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

  const auto started = std::chrono::steady_clock::now();
  bool run_done = false;
  // The "before" scrape, at the start of the measured window.
  std::optional<std::vector<Result<bench::PrefixCacheCounters>>> before;
  bool before_finished = false;
  asio::steady_timer window_timer(io);
  asio::steady_timer before_done(io);
  if (!context.servers.empty()) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          window_timer.expires_at(started + config.load.warmup);
          co_await window_timer.async_wait(kAsTuple);
          if (!run_done) before = co_await scrape_all(io.get_executor(), context.servers);
          before_finished = true;
          before_done.cancel();
        },
        asio::detached);
  }
  asio::steady_timer progress_timer(io);
  if (context.progress_bar) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          const double total_s = to_seconds(config.load.warmup + config.load.duration);
          const std::size_t width = terminal_width();
          while (!run_done) {
            bench::ProgressState state;
            state.stage = context.label;
            state.elapsed_s =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            state.total_s = total_s;
            state.in_flight = generator.in_flight();
            state.done = generator.launched() - state.in_flight;
            state.errors = generator.failed();
            std::fprintf(stderr, "\r%s\033[K", bench::format_progress_line(state, width).c_str());
            std::fflush(stderr);
            progress_timer.expires_after(kProgressRedraw);
            co_await progress_timer.async_wait(kAsTuple);
          }
          std::fprintf(stderr, "\r\033[K");
          std::fflush(stderr);
        },
        asio::detached);
  }
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        RunOutcome finished;
        finished.result = co_await generator.run();
        run_done = true;
        progress_timer.cancel();
        window_timer.cancel();
        if (!context.servers.empty()) {
          if (!before_finished) {
            // The before-scrape may still be running: wait for it (it ends within its timeout).
            before_done.expires_at(asio::steady_timer::time_point::max());
            co_await before_done.async_wait(kAsTuple);
          }
          const std::vector<Result<bench::PrefixCacheCounters>> after =
              co_await scrape_all(io.get_executor(), context.servers);
          // Stopped before the window opened: nothing to compare with.
          std::vector<Result<bench::PrefixCacheCounters>> before_or_missing;
          if (before) {
            before_or_missing = std::move(*before);
          } else {
            for (std::size_t i = 0; i < context.servers.size(); ++i) {
              before_or_missing.push_back(
                  Status(499, "the run stopped before its measured window opened"));
            }
          }
          finished.server_prefix_cache =
              bench::prefix_cache_delta(context.servers, before_or_missing, after);
        }
        outcome = std::move(finished);
        signals.cancel();
      },
      asio::detached);
  io.run();
  return outcome;
}

// The summary of several runs, one line each.
std::string format_runs_summary(const std::vector<std::string>& names,
                                const std::vector<bench::Report>& reports,
                                const std::vector<bench::BenchConfig>& configs) {
  const bool hit_rates = std::any_of(reports.begin(), reports.end(), [](const auto& report) {
    return report.server_prefix_cache.has_value();
  });
  std::string out = fmt::format(
      "\n{:<24}{:>10}{:>10}{:>11}{:>10}{:>10}{:>10}{:>10}{:>8}{}{:>9}{:>8}\n", "target",
      "offered/s", "achieved", "out tok/s", "TTFT p50", "TTFT p90", "NTPOT p90", "e2e p90",
      "failed", hit_rates ? fmt::format("{:>10}", "hit rate") : "", "kept up", "Little");
  for (std::size_t index = 0; index < reports.size(); ++index) {
    const bench::Report& report = reports[index];
    const std::string offered = configs[index].load.mode == bench::LoadMode::kRate
                                    ? fmt::format("{:.1f}", report.launch_rate)
                                    : fmt::format("c={}", configs[index].load.concurrency);
    std::string hit_rate;
    if (hit_rates) {
      hit_rate = report.server_prefix_cache
                     ? fmt::format("{:>9.1f}%", 100 * report.server_prefix_cache->hit_rate)
                     : fmt::format("{:>10}", "-");
    }
    out += fmt::format(
        "{:<24}{:>10}{:>10.2f}{:>11.0f}{:>10.1f}{:>10.1f}{:>10.2f}{:>10.1f}{:>8}{}{:>9}{:>8}\n",
        names[index], offered, report.achieved_rate, report.output_tokens_per_second,
        report.ttft_ms.p50, report.ttft_ms.p90, report.ntpot_ms.p90, report.e2e_ms.p90,
        report.failed, hit_rate, report.generator_kept_up ? "yes" : "NO",
        report.littles_law_holds ? "ok" : "OFF");
  }
  out +=
      "(latencies in ms over successful requests; hit rate: the servers' prefix-cache hits / "
      "queries over the stage; kept up: the generator launched on schedule; Little: mean in "
      "flight within " +
      fmt::format("{:.0f}", 100 * bench::kLittlesLawTolerance) + "% of rate x mean e2e)\n";
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
  std::vector<bench::Target> parsed_targets;
  for (const NamedTarget& target : *targets) {
    auto parsed = bench::parse_target_url(target.url);
    if (!parsed) {
      spdlog::error("{}: {}", target.name, parsed.status().message());
      return 2;
    }
    parsed_targets.push_back(*parsed);
  }
  std::vector<bench::Target> servers;
  for (const std::string& url : flags.server_metrics) {
    if (url.empty()) continue;
    auto parsed = bench::parse_server_metrics_url(url);
    if (!parsed) {
      spdlog::error("{}", parsed.status().message());
      return 2;
    }
    servers.push_back(*parsed);
  }
  // A stage at `rate` against target `index`, checked before anything runs.
  auto stage_config = [&](std::size_t index, double rate) -> Result<bench::BenchConfig> {
    bench::BenchConfig run = *config;
    run.load.target = parsed_targets[index];
    run.load.rate = rate;
    if (Status valid = bench::validate(run.load); !valid.is_ok()) return valid;
    return run;
  };
  std::vector<double> stages =
      flags.rates.empty() ? std::vector<double>{config->load.rate} : flags.rates;
  if (!flags.sweep.enabled) {
    for (std::size_t index = 0; index < parsed_targets.size(); ++index) {
      for (double rate : stages) {
        if (auto run = stage_config(index, rate); !run) {
          spdlog::error("{}", run.status().message());
          return 2;
        }
      }
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
  const bool progress_bar = !flags.no_progress && isatty(STDERR_FILENO) == 1;

  std::vector<bench::Report> reports;
  std::vector<bench::BenchConfig> configs;
  std::vector<std::string> names;
  int signals_received = 0;

  // The user's reset (restart the servers, flush their prefix caches): the targets must start
  // from the same state for a fair comparison.
  auto before_each = [&](const std::string& name) {
    if (flags.before_each.empty()) return true;
    const std::string command = "INFERGATE_BENCH_TARGET='" + name + "' " + flags.before_each;
    spdlog::info("bench: --before-each for {}: {}", name, flags.before_each);
    if (const int status = std::system(command.c_str()); status != 0) {
      spdlog::error("bench: --before-each failed (status {}); stopping", status);
      return false;
    }
    return true;
  };
  // One stage; nullopt when it could not run or was aborted.
  auto run_stage = [&](const bench::BenchConfig& run, const std::string& name,
                       const std::string& label, bool print_table) -> std::optional<bench::Report> {
    // The same requests for every target: a fresh workload from the same seed.
    auto workload = bench::Workload::create(run.workload);
    if (!workload) {
      spdlog::error("{}", workload.status().message());
      return std::nullopt;
    }
    spdlog::info(
        "bench: {}{} against {} ({}) for {:g} s after a {:g} s warm-up",
        run.workload.kind == bench::WorkloadKind::kTrace && run.load.mode == bench::LoadMode::kRate
            ? std::string("trace arrivals")
        : run.load.mode == bench::LoadMode::kRate
            ? fmt::format("{:g} req/s Poisson", run.load.rate)
            : fmt::format("concurrency {}", run.load.concurrency),
        label.empty() ? "" : " (" + label + ")", name, run.load.target.url(),
        to_seconds(run.load.duration), to_seconds(run.load.warmup));
    const std::string rate_text = run.load.mode == bench::LoadMode::kRate
                                      ? fmt::format("{:g} req/s", run.load.rate)
                                      : fmt::format("c={}", run.load.concurrency);
    RunContext context{
        .label = fmt::format("{}{}{} {}", label, label.empty() ? "" : " ", name, rate_text),
        .progress_bar = progress_bar,
        .servers = servers};
    bench::BenchConfig effective = run;
    if (progress_bar) effective.load.progress_interval = Duration::zero();
    auto outcome = run_once(effective, *workload, signals_received, context);
    if (!outcome) {
      spdlog::error("bench: aborted");
      return std::nullopt;
    }
    bench::Report report = bench::make_report(outcome->result);
    report.server_prefix_cache = std::move(outcome->server_prefix_cache);
    if (!servers.empty()) {
      report.prefix_oracle =
          bench::oracle_bound(*workload, outcome->result, flags.oracle_block_size);
    }
    if (print_table) fmt::print("{}", bench::format_report_table(report, run));
    std::fflush(stdout);
    if (!report.generator_kept_up) {
      spdlog::warn("bench: the generator fell behind its schedule (p99 lag {:.1f} ms)",
                   report.schedule_lag_ms.p99);
    }
    if (!report.littles_law_holds) {
      spdlog::warn(
          "bench: Little's law off by {:.0f}%: mean in flight {:.1f}, rate x mean e2e {:.1f} "
          "(not a steady state)",
          100 * report.littles_law_relative_error, report.mean_in_flight,
          report.littles_law_expected_in_flight);
    }
    return report;
  };

  std::optional<bench::SweepResult> sweep;
  bench::SweepOptions sweep_options;
  if (flags.sweep.enabled) {
    sweep_options = *cli::sweep_options(flags.sweep);  // validated with the flags
    const std::string& name = targets->front().name;
    if (!before_each(name)) return 1;
    int probe_number = 0;
    sweep = bench::find_saturation(
        sweep_options, [&](double rate) -> std::optional<bench::ProbeResult> {
          if (signals_received > 0) return std::nullopt;
          auto probe = stage_config(0, rate);
          if (!probe) {
            spdlog::error("{}", probe.status().message());
            return std::nullopt;
          }
          probe->load.warmup = Duration::zero();
          probe->load.duration = from_seconds(flags.sweep.probe_duration_s);
          auto report =
              run_stage(*probe, name, fmt::format("saturation probe {}", ++probe_number), false);
          if (!report || signals_received > 0) return std::nullopt;
          fmt::print("{}", bench::format_probe_line(probe_number, *report));
          std::fflush(stdout);
          return bench::probe_result(*report);
        });
    fmt::print("{}", bench::format_sweep_line(*sweep));
    if (sweep->interrupted || sweep->ladder.empty()) {
      spdlog::error("bench: --sweep found no saturation rate to build a ladder on");
      return 1;
    }
    stages = sweep->ladder;
  }

  const std::size_t total_runs = parsed_targets.size() * stages.size();
  for (std::size_t target = 0; target < parsed_targets.size() && signals_received == 0; ++target) {
    const std::string& name = (*targets)[target].name;
    if (!before_each(name)) return 1;
    for (std::size_t stage = 0; stage < stages.size() && signals_received == 0; ++stage) {
      auto run = stage_config(target, stages[stage]);
      if (!run) {
        spdlog::error("{}", run.status().message());
        return 2;
      }
      const std::size_t number = target * stages.size() + stage + 1;
      auto report = run_stage(
          *run, name, total_runs > 1 ? fmt::format("run {} of {}", number, total_runs) : "", true);
      if (!report) break;
      reports.push_back(std::move(*report));
      configs.push_back(*run);
      names.push_back(name);
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
  if (runs.size() == 1 && !sweep) {
    document = runs.front();
  } else {
    document = {{"schema", "infergate.bench.runs.v1"}, {"runs", runs}};
    if (sweep)
      document["sweep"] = bench::sweep_json(*sweep, sweep_options, flags.sweep.probe_duration_s);
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
                    "Measured seconds of each --rates or --sweep ladder stage (default: "
                    "--duration)");
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
  add_workload_flags(*bench, flags->workload, workload);
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
  bench
      ->add_option("--server-metrics", flags->server_metrics,
                   "The model servers' Prometheus URLs, http://host:port[/path] (path default "
                   "/metrics), comma-separated: their vllm:prefix_cache_hits / queries counters "
                   "are read when each stage's measured window opens and after it drains, and "
                   "the stage reports hit rate = sum of hit deltas / sum of query deltas "
                   "(default: none), next to the ORACLE bound for the stage's requests (an "
                   "infinite cache behind perfect routing, from an empty cache at the start of the "
                   "stage: reset the servers' caches with --before-each to compare)")
      ->delimiter(',');
  bench
      ->add_option("--oracle-block-size", flags->oracle_block_size,
                   "KV-cache block size in tokens of the model servers, for the ORACLE bound "
                   "(--server-metrics)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  bench->add_flag("--no-progress", flags->no_progress,
                  "No progress bar (default: a one-line bar on stderr when it is a terminal: "
                  "stage, elapsed / total, requests done, in flight, errors)");
  auto* sweep = add_sweep_flags(*bench, flags->sweep, "the first target");
  sweep->excludes(rate);
  sweep->excludes(rates);
  sweep->excludes(concurrency);
  bench->add_option("--output-json", flags->output_json,
                    "Also write the report as JSON to this file (default: none)");
  bench->add_option("--output-html", flags->output_html,
                    "Also write a self-contained HTML page with SVG charts of latency and "
                    "throughput against offered load, one line per target (default: none)");
  return [flags] { return run_bench(*flags); };
}

}  // namespace infergate::cli
