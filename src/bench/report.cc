#include "bench/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <vector>

namespace infergate::bench {
namespace {

using ordered_json = nlohmann::ordered_json;

double to_ms(Duration duration) {
  return std::chrono::duration<double, std::milli>(duration).count();
}

double ratio(double numerator, double denominator) {
  return denominator > 0 ? numerator / denominator : 0;
}

// Time [start, end] spends inside [window_start, window_end].
Duration overlap(TimePoint start, TimePoint end, TimePoint window_start, TimePoint window_end) {
  const TimePoint from = std::max(start, window_start);
  const TimePoint to = std::min(end, window_end);
  return to > from ? to - from : Duration::zero();
}

ordered_json distribution_json(const Distribution& distribution) {
  ordered_json result;
  result["count"] = distribution.count;
  for (const auto& [name, value] :
       {std::pair{"mean", distribution.mean}, std::pair{"min", distribution.min},
        std::pair{"p50", distribution.p50}, std::pair{"p90", distribution.p90},
        std::pair{"p99", distribution.p99}, std::pair{"max", distribution.max}}) {
    result[name] = distribution.count > 0 ? ordered_json(value) : ordered_json(nullptr);
  }
  return result;
}

std::string format_cell(const Distribution& distribution, double value) {
  return distribution.count > 0 ? fmt::format("{:>10.2f}", value) : fmt::format("{:>10}", "-");
}

std::string distribution_row(std::string_view name, const Distribution& distribution) {
  return fmt::format(
      "  {:<6}{}{}{}{}{}{:>10}\n", name, format_cell(distribution, distribution.mean),
      format_cell(distribution, distribution.p50), format_cell(distribution, distribution.p90),
      format_cell(distribution, distribution.p99), format_cell(distribution, distribution.max),
      distribution.count);
}

std::string load_description(const LoadOptions& load) {
  return load.mode == LoadMode::kRate ? fmt::format("Poisson {:g} req/s", load.rate)
                                      : fmt::format("concurrency {}", load.concurrency);
}

}  // namespace

Report make_report(const RunResult& run) {
  Report report;
  report.window_seconds = to_seconds(run.window_end - run.window_start);
  report.connections_opened = run.connections_opened;
  report.stale_connection_retries = run.stale_connection_retries;
  report.stopped_early = run.stopped_early;

  std::vector<double> ttft, tpot, ntpot, itl, e2e, lag;
  Duration in_flight_time{};
  Duration measured_latency{};  // launch to end, every measured request
  TimePoint last_end = run.window_start;
  for (const RequestRecord& record : run.records) {
    in_flight_time += overlap(record.start, record.end, run.window_start, run.window_end);
    if (!record.measured) {
      ++report.warmup_requests;
      continue;
    }
    ++report.launched;
    last_end = std::max(last_end, record.end);
    measured_latency += record.end - record.start;
    lag.push_back(to_ms(record.schedule_lag()));
    if (!record.ok()) {
      ++report.failed;
      const std::string label = error_label(record);
      if (report.errors[label]++ == 0) report.error_examples[label] = record.error_message;
      continue;
    }
    ++report.succeeded;
    ttft.push_back(to_ms(record.ttft()));
    e2e.push_back(to_ms(record.e2e()));
    if (auto value = record.tpot()) tpot.push_back(to_ms(*value));
    if (auto value = record.ntpot()) ntpot.push_back(to_ms(*value));
    for (Duration gap : record.text_event_gaps) itl.push_back(to_ms(gap));
    report.output_tokens += record.output_tokens();
    report.prompt_tokens += record.prompt_tokens.value_or(0);
    report.cached_prompt_tokens += record.cached_tokens.value_or(0);
    if (!record.completion_tokens) ++report.requests_without_usage;
  }

  report.span_seconds = std::max(to_seconds(last_end - run.window_start), report.window_seconds);
  report.launch_rate = ratio(static_cast<double>(report.launched), report.window_seconds);
  report.achieved_rate = ratio(static_cast<double>(report.succeeded), report.span_seconds);
  report.output_tokens_per_second =
      ratio(static_cast<double>(report.output_tokens), report.span_seconds);
  report.input_tokens_per_second =
      ratio(static_cast<double>(report.prompt_tokens), report.span_seconds);
  report.mean_in_flight = ratio(to_seconds(in_flight_time), report.window_seconds);
  report.cached_token_share = ratio(static_cast<double>(report.cached_prompt_tokens),
                                    static_cast<double>(report.prompt_tokens));
  report.littles_law_expected_in_flight =
      report.launch_rate *
      ratio(to_seconds(measured_latency), static_cast<double>(report.launched));
  report.littles_law_relative_error =
      ratio(std::abs(report.mean_in_flight - report.littles_law_expected_in_flight),
            report.littles_law_expected_in_flight);
  report.littles_law_holds =
      report.launched == 0 || report.littles_law_relative_error <= kLittlesLawTolerance;

  report.ttft_ms = summarize(std::move(ttft));
  report.tpot_ms = summarize(std::move(tpot));
  report.ntpot_ms = summarize(std::move(ntpot));
  report.itl_ms = summarize(std::move(itl));
  report.e2e_ms = summarize(std::move(e2e));
  report.schedule_lag_ms = summarize(std::move(lag));
  report.generator_kept_up =
      report.schedule_lag_ms.p99 <=
      std::chrono::duration<double, std::milli>(kMaxKeptUpScheduleLagP99).count();
  return report;
}

namespace {

// The --server-metrics line of the table, and one line per server that could not be counted.
std::string server_prefix_cache_line(const PrefixCacheDelta& delta) {
  std::string out = fmt::format(
      "servers     prefix-cache hit rate {:.1f}% ({:.0f} of {:.0f} prompt tokens, {} of {} "
      "servers' /metrics)\n",
      100 * delta.hit_rate, delta.hit_tokens, delta.query_tokens, delta.counted,
      delta.servers.size());
  for (const ServerPrefixCache& server : delta.servers) {
    if (!server.error.empty()) out += fmt::format("warning     {}: {}\n", server.url, server.error);
  }
  return out;
}

// The "workload" line of the tables.
std::string workload_description(const WorkloadOptions& workload) {
  switch (workload.kind) {
    case WorkloadKind::kRandom:
      return fmt::format("workload  random: {} prompt tokens, {} output tokens, seed {}\n",
                         workload.prompt_tokens, workload.output_tokens, workload.seed);
    case WorkloadKind::kSharedPrefix:
      return fmt::format(
          "workload  shared-prefix: {} groups x {} prompts, system {} + question {} tokens, {} "
          "output tokens, seed {}\n",
          workload.num_groups, workload.prompts_per_group, workload.system_prompt_tokens,
          workload.question_tokens, workload.output_tokens, workload.seed);
    case WorkloadKind::kShareGpt:
      return fmt::format("workload  sharegpt: ShareGPT-like prompt and output lengths, seed {}\n",
                         workload.seed);
    case WorkloadKind::kMultiTurn:
      return fmt::format(
          "workload  multi-turn: {} sessions x {} turns, system {} + user {} tokens per turn, {} "
          "output tokens, seed {}\n",
          workload.num_sessions, workload.turns_per_session, workload.system_prompt_tokens,
          workload.user_turn_tokens, workload.output_tokens, workload.seed);
    case WorkloadKind::kTrace:
      return fmt::format("workload  trace: {}\n", workload.trace_path);
  }
  return "workload  ?\n";
}

}  // namespace

std::string format_report_table(const Report& report, const BenchConfig& config) {
  const WorkloadOptions& workload = config.workload;
  std::string out;
  auto line = [&out](std::string text) { out += std::move(text); };

  line(fmt::format("infergate bench  {}  model {}  api {}\n", config.load.target.url(),
                   workload.model, to_string(workload.api)));
  line(workload_description(workload));
  line(fmt::format("load      {}, warm-up {:g} s, measured {:.1f} s{}\n",
                   load_description(config.load), to_seconds(config.load.warmup),
                   report.window_seconds, report.stopped_early ? " (stopped early)" : ""));
  line("\n");
  line(fmt::format("requests    {} launched, {} succeeded, {} failed ({} warm-up not measured)\n",
                   report.launched, report.succeeded, report.failed, report.warmup_requests));
  line(fmt::format(
      "rate        {:.2f} req/s achieved (launched {:.2f} req/s over {:.1f} s; work "
      "took {:.1f} s)\n",
      report.achieved_rate, report.launch_rate, report.window_seconds, report.span_seconds));
  line(fmt::format("tokens/s    {:.1f} output, {:.1f} input\n", report.output_tokens_per_second,
                   report.input_tokens_per_second));
  line(fmt::format(
      "in flight   {:.1f} mean; rate x mean e2e {:.1f} (Little's law, off by "
      "{:.0f}%): {}\n",
      report.mean_in_flight, report.littles_law_expected_in_flight,
      100 * report.littles_law_relative_error,
      report.littles_law_holds ? "holds"
                               : fmt::format("OFF by more than {:.0f}% (not a steady state: queues "
                                             "growing, or the stage is short for its latencies)",
                                             100 * kLittlesLawTolerance)));
  line(fmt::format("prefix      {:.1f}% of prompt tokens cached ({} of {})\n",
                   100 * report.cached_token_share, report.cached_prompt_tokens,
                   report.prompt_tokens));
  if (report.server_prefix_cache) {
    line(server_prefix_cache_line(*report.server_prefix_cache));
  }
  if (report.prefix_oracle) {
    const OracleBound& oracle = *report.prefix_oracle;
    std::string of_oracle;
    if (report.server_prefix_cache && oracle.hit_rate > 0) {
      of_oracle = fmt::format("; servers' hit rate / ORACLE {:.3f}",
                              report.server_prefix_cache->hit_rate / oracle.hit_rate);
    }
    line(
        fmt::format("oracle      ORACLE hit-rate bound {:.1f}% ({} of {} prompt tokens, {}-token "
                    "blocks{})\n",
                    100 * oracle.hit_rate, oracle.hit_tokens, oracle.prompt_tokens,
                    oracle.block_size, of_oracle));
  }
  line("\n");
  line(fmt::format("  {:<6}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}\n", "ms", "mean", "p50", "p90",
                   "p99", "max", "count"));
  line(distribution_row("TTFT", report.ttft_ms));
  line(distribution_row("TPOT", report.tpot_ms));
  line(distribution_row("NTPOT", report.ntpot_ms));
  line(distribution_row("ITL", report.itl_ms));
  line(distribution_row("e2e", report.e2e_ms));
  line("\n");
  line(fmt::format("schedule    lag p99 {:.2f} ms, max {:.2f} ms: {}\n", report.schedule_lag_ms.p99,
                   report.schedule_lag_ms.max,
                   report.generator_kept_up
                       ? "kept up"
                       : "DID NOT KEEP UP (the offered load was late; results understate it)"));
  line(fmt::format("connections {} opened, {} stale retries\n", report.connections_opened,
                   report.stale_connection_retries));
  if (report.errors.empty()) {
    line("errors      none\n");
  } else {
    for (const auto& [label, count] : report.errors) {
      line(fmt::format("error       {:<14} {:>8}  e.g. {}\n", label, count,
                       report.error_examples.at(label)));
    }
  }
  if (report.requests_without_usage > 0) {
    line(
        fmt::format("warning     {} successful responses had no usage chunk; their output tokens "
                    "were counted as text events\n",
                    report.requests_without_usage));
  }
  return out;
}

namespace {

ordered_json simulation_json(const SimulationFigures& figures, double mean_in_flight) {
  return {{"configuration", figures.configuration},
          {"policy", figures.policy},
          {"model_profile", figures.model_profile},
          {"replicas", figures.replicas},
          {"scrape_interval_ms", figures.scrape_interval_ms},
          {"prefix_cache",
           {{"query_tokens", figures.prefix_query_tokens},
            {"hit_tokens", figures.prefix_hit_tokens},
            {"hit_rate", figures.prefix_hit_rate},
            {"oracle_prompt_tokens", figures.oracle_prompt_tokens},
            {"oracle_hit_tokens", figures.oracle_hit_tokens},
            {"oracle_hit_rate", figures.oracle_hit_rate},
            {"hit_rate_of_oracle", figures.hit_rate_of_oracle}}},
          {"littles_law",
           {{"mean_in_flight", mean_in_flight},
            {"expected_in_flight", figures.littles_law_expected_in_flight},
            {"relative_error", figures.littles_law_relative_error}}},
          {"preemptions", figures.preemptions},
          {"engine_steps", figures.engine_steps},
          {"requests_per_replica", figures.requests_per_replica},
          {"inflight_after", figures.inflight_after}};
}

ordered_json report_document(const Report& report, const BenchConfig& config) {
  const WorkloadOptions& workload = config.workload;
  const LoadOptions& load = config.load;
  const bool rate_mode = load.mode == LoadMode::kRate;
  ordered_json document;
  document["schema"] = "infergate.bench.v1";
  document["config"] = {
      {"url", report.simulation ? ordered_json(nullptr) : ordered_json(load.target.url())},
      {"model", workload.model},
      {"api", to_string(workload.api)},
      {"workload", to_string(workload.kind)},
      {"mode", rate_mode ? "rate" : "concurrency"},
      {"rate", rate_mode ? ordered_json(load.rate) : ordered_json(nullptr)},
      {"concurrency", rate_mode ? ordered_json(nullptr) : ordered_json(load.concurrency)},
      {"duration_s", to_seconds(load.duration)},
      {"warmup_s", to_seconds(load.warmup)},
      {"timeout_s", to_seconds(load.timeout)},
      {"seed", workload.seed},
      {"prompt_tokens", workload.prompt_tokens},
      {"output_tokens", workload.output_tokens},
      {"num_groups", workload.num_groups},
      {"prompts_per_group", workload.prompts_per_group},
      {"system_prompt_tokens", workload.system_prompt_tokens},
      {"question_tokens", workload.question_tokens},
      {"num_sessions", workload.num_sessions},
      {"turns_per_session", workload.turns_per_session},
      {"user_turn_tokens", workload.user_turn_tokens},
      {"trace_path",
       workload.trace_path.empty() ? ordered_json(nullptr) : ordered_json(workload.trace_path)},
  };
  document["requests"] = {{"launched", report.launched},
                          {"succeeded", report.succeeded},
                          {"failed", report.failed},
                          {"warmup", report.warmup_requests}};
  document["errors"] = ordered_json::object();
  for (const auto& [label, count] : report.errors) document["errors"][label] = count;
  document["error_examples"] = ordered_json::object();
  for (const auto& [label, message] : report.error_examples) {
    document["error_examples"][label] = message;
  }
  document["throughput"] = {{"window_s", report.window_seconds},
                            {"span_s", report.span_seconds},
                            {"launch_rate", report.launch_rate},
                            {"achieved_rate", report.achieved_rate},
                            {"output_tokens_per_s", report.output_tokens_per_second},
                            {"input_tokens_per_s", report.input_tokens_per_second},
                            {"mean_in_flight", report.mean_in_flight}};
  document["littles_law"] = {{"mean_in_flight", report.mean_in_flight},
                             {"expected_in_flight", report.littles_law_expected_in_flight},
                             {"relative_error", report.littles_law_relative_error},
                             {"tolerance", kLittlesLawTolerance},
                             {"holds", report.littles_law_holds}};
  document["latency_ms"] = {{"ttft", distribution_json(report.ttft_ms)},
                            {"tpot", distribution_json(report.tpot_ms)},
                            {"ntpot", distribution_json(report.ntpot_ms)},
                            {"itl", distribution_json(report.itl_ms)},
                            {"e2e", distribution_json(report.e2e_ms)}};
  document["schedule_lag_ms"] = distribution_json(report.schedule_lag_ms);
  document["generator_kept_up"] = report.generator_kept_up;
  document["tokens"] = {{"prompt", report.prompt_tokens},
                        {"output", report.output_tokens},
                        {"cached_prompt", report.cached_prompt_tokens},
                        {"cached_share", report.cached_token_share},
                        {"requests_without_usage", report.requests_without_usage}};
  document["connections"] = {{"opened", report.connections_opened},
                             {"stale_retries", report.stale_connection_retries}};
  document["stopped_early"] = report.stopped_early;
  if (report.server_prefix_cache) {
    const PrefixCacheDelta& delta = *report.server_prefix_cache;
    ordered_json servers = ordered_json::array();
    for (const ServerPrefixCache& server : delta.servers) {
      servers.push_back(
          {{"url", server.url},
           {"query_tokens", server.query_tokens},
           {"hit_tokens", server.hit_tokens},
           {"error", server.error.empty() ? ordered_json(nullptr) : ordered_json(server.error)}});
    }
    document["server_metrics"] = {{"prefix_cache",
                                   {{"query_tokens", delta.query_tokens},
                                    {"hit_tokens", delta.hit_tokens},
                                    {"hit_rate", delta.hit_rate},
                                    {"servers_counted", delta.counted},
                                    {"servers", servers}}}};
    if (report.prefix_oracle) {
      const double oracle = report.prefix_oracle->hit_rate;
      document["server_metrics"]["prefix_cache"]["hit_rate_of_oracle"] =
          oracle > 0 ? ordered_json(delta.hit_rate / oracle) : ordered_json(nullptr);
    }
  }
  if (report.prefix_oracle) {
    const OracleBound& oracle = *report.prefix_oracle;
    document["prefix_oracle"] = {{"block_size", oracle.block_size},
                                 {"prompt_tokens", oracle.prompt_tokens},
                                 {"hit_tokens", oracle.hit_tokens},
                                 {"hit_rate", oracle.hit_rate}};
  }
  if (report.simulation) {
    document["simulation"] = simulation_json(*report.simulation, report.mean_in_flight);
  }
  return document;
}

// Error messages quote server bytes, which need not be UTF-8.
std::string dump(const ordered_json& document) {
  return document.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

std::string format_report_json(const Report& report, const BenchConfig& config) {
  return dump(report_document(report, config));
}

std::string format_comparison_json(std::span<const Report> reports,
                                   std::span<const BenchConfig> configs) {
  ordered_json document;
  document["schema"] = "infergate.simulate.v1";
  document["runs"] = ordered_json::array();
  for (std::size_t i = 0; i < reports.size() && i < configs.size(); ++i) {
    document["runs"].push_back(report_document(reports[i], configs[i]));
  }
  return dump(document);
}

std::string format_comparison_table(std::span<const Report> reports,
                                    std::span<const BenchConfig> configs) {
  std::string out;
  if (reports.empty() || configs.empty()) return out;
  const WorkloadOptions& workload = configs.front().workload;
  const LoadOptions& load = configs.front().load;
  out += workload_description(workload);
  out += fmt::format("load      {}, warm-up {:g} s, measured {:g} s (virtual time)\n",
                     load_description(load), to_seconds(load.warmup), to_seconds(load.duration));
  if (const auto& simulation = reports.front().simulation) {
    out += fmt::format("cluster   {} replicas, profile {}, metrics scraped every {:g} ms\n",
                       simulation->replicas, simulation->model_profile,
                       simulation->scrape_interval_ms);
  }
  out += "\n";

  constexpr int kLabelWidth = 26;
  constexpr int kColumnWidth = 16;
  auto row = [&](std::string_view label, auto&& cell) {
    out += fmt::format("{:<{}}", label, kLabelWidth);
    for (std::size_t i = 0; i < reports.size(); ++i) {
      out += fmt::format("{:>{}}", cell(reports[i]), kColumnWidth);
    }
    out += "\n";
  };
  auto number = [](double value, int decimals) { return fmt::format("{:.{}f}", value, decimals); };
  auto latency = [&](const Distribution& distribution, double value) {
    return distribution.count > 0 ? number(value, 1) : std::string("-");
  };
  auto sim = [](const Report& report) -> const SimulationFigures& { return *report.simulation; };
  const bool simulated = std::all_of(reports.begin(), reports.end(),
                                     [](const Report& report) { return report.simulation; });

  if (simulated) {
    row("configuration", [&](const Report& r) { return sim(r).configuration; });
    row("policy", [&](const Report& r) { return sim(r).policy; });
  }
  row("requests ok / failed",
      [](const Report& r) { return fmt::format("{} / {}", r.succeeded, r.failed); });
  row("launch rate (req/s)", [&](const Report& r) { return number(r.launch_rate, 2); });
  row("achieved rate (req/s)", [&](const Report& r) { return number(r.achieved_rate, 2); });
  row("output tokens/s", [&](const Report& r) { return number(r.output_tokens_per_second, 0); });
  for (const auto& [name, field] :
       {std::pair{"TTFT", &Report::ttft_ms}, std::pair{"TPOT", &Report::tpot_ms},
        std::pair{"NTPOT", &Report::ntpot_ms}, std::pair{"e2e", &Report::e2e_ms}}) {
    for (const auto& [percentile, member] :
         {std::pair{"p50", &Distribution::p50}, std::pair{"p90", &Distribution::p90},
          std::pair{"p99", &Distribution::p99}}) {
      row(fmt::format("{} {} (ms)", name, percentile), [&](const Report& r) {
        const Distribution& distribution = r.*field;
        return latency(distribution, distribution.*member);
      });
    }
  }
  row("ITL p50 / p99 (ms)", [&](const Report& r) {
    return r.itl_ms.count > 0 ? fmt::format("{:.1f} / {:.1f}", r.itl_ms.p50, r.itl_ms.p99)
                              : std::string("-");
  });
  row("cached prompt share", [&](const Report& r) { return number(r.cached_token_share, 3); });
  if (simulated) {
    row("prefix hit rate (engines)",
        [&](const Report& r) { return number(sim(r).prefix_hit_rate, 3); });
    row("ORACLE hit rate", [&](const Report& r) { return number(sim(r).oracle_hit_rate, 3); });
    row("hit rate / ORACLE", [&](const Report& r) { return number(sim(r).hit_rate_of_oracle, 3); });
    row("mean in flight", [&](const Report& r) { return number(r.mean_in_flight, 1); });
    row("rate x mean e2e (Little)",
        [&](const Report& r) { return number(sim(r).littles_law_expected_in_flight, 1); });
    row("preemptions", [&](const Report& r) { return std::to_string(sim(r).preemptions); });
    row("requests per replica min/max", [&](const Report& r) {
      const auto& routed = sim(r).requests_per_replica;
      if (routed.empty()) return std::string("-");
      const auto [min, max] = std::minmax_element(routed.begin(), routed.end());
      return fmt::format("{} / {}", *min, *max);
    });
  }
  for (const Report& report : reports) {
    for (const auto& [label, count] : report.errors) {
      out += fmt::format("error     {}: {} x {}  e.g. {}\n",
                         simulated ? report.simulation->configuration : std::string(), count, label,
                         report.error_examples.at(label));
    }
  }
  return out;
}

}  // namespace infergate::bench
