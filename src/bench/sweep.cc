#include "bench/sweep.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace infergate::bench {

std::string saturation_reason(const ProbeResult& probe, std::span<const ProbeResult> earlier) {
  // The unloaded latency: the lowest e2e p90 of the earlier probes (the first probe also warms
  // caches, so it need not be the lowest), or this probe's own when it is the first.
  double baseline_ms = 0;
  for (const ProbeResult& previous : earlier) {
    if (previous.e2e_p90_ms > 0 && (baseline_ms == 0 || previous.e2e_p90_ms < baseline_ms)) {
      baseline_ms = previous.e2e_p90_ms;
    }
  }
  if (baseline_ms == 0) baseline_ms = probe.e2e_p90_ms;
  if (!probe.generator_kept_up) return "the load generator fell behind its schedule";
  if (probe.launched > 0 && static_cast<double>(probe.failed) >
                                kSweepMaxFailedShare * static_cast<double>(probe.launched)) {
    return fmt::format("{} of {} requests failed", probe.failed, probe.launched);
  }
  // The rate an unsaturated server achieves: every request served, the last one after the
  // window ends (about one e2e later).
  double servable = probe.offered_rate;
  if (probe.window_s > 0) {
    servable *= probe.window_s / (probe.window_s + baseline_ms / 1000);
  }
  if (probe.achieved_rate < (1 - kSweepShortfall) * servable) {
    return fmt::format("achieved {:.2f} req/s of {:.2f} offered", probe.achieved_rate,
                       probe.offered_rate);
  }
  if (!earlier.empty()) {
    double best = 0;
    for (const ProbeResult& previous : earlier) best = std::max(best, previous.achieved_rate);
    if (probe.achieved_rate < (1 + kSweepMinGain) * best) {
      return fmt::format("achieved rate stopped rising ({:.2f} req/s, best before {:.2f})",
                         probe.achieved_rate, best);
    }
    if (baseline_ms > 0 && probe.e2e_p90_ms > kSweepLatencyBlowup * baseline_ms) {
      return fmt::format("e2e p90 {:.0f} ms, over {:g}x the lowest earlier {:.0f} ms",
                         probe.e2e_p90_ms, kSweepLatencyBlowup, baseline_ms);
    }
  }
  return "";
}

std::vector<double> sweep_ladder(double saturation_rate, std::span<const double> fractions) {
  std::vector<double> ladder;
  if (!(saturation_rate > 0)) return ladder;
  for (double fraction : fractions) {
    ladder.push_back(std::max(0.01, std::round(fraction * saturation_rate * 100) / 100));
  }
  return ladder;
}

SweepResult find_saturation(const SweepOptions& options, const StageRunner& run_probe) {
  SweepResult result;
  double rate = options.start_rate;
  for (int probe_index = 0; probe_index < options.max_probes; ++probe_index) {
    result.probe_rates.push_back(rate);
    std::optional<ProbeResult> probe = run_probe(rate);
    if (!probe) {
      result.interrupted = true;
      result.stop_reason = "interrupted";
      break;
    }
    std::string reason = saturation_reason(*probe, result.probes);
    result.probes.push_back(*probe);
    if (!reason.empty()) {
      result.stop_reason = fmt::format("saturated at {:g} req/s offered: {}", rate, reason);
      break;
    }
    rate *= kSweepGrowth;
  }
  if (result.stop_reason.empty()) {
    result.stop_reason = fmt::format(
        "no saturation within {} probes (up to {:g} req/s); the ladder uses the best achieved "
        "rate",
        options.max_probes, result.probe_rates.empty() ? 0.0 : result.probe_rates.back());
  }
  for (const ProbeResult& probe : result.probes) {
    result.saturation_rate = std::max(result.saturation_rate, probe.achieved_rate);
  }
  if (!result.interrupted) result.ladder = sweep_ladder(result.saturation_rate, options.fractions);
  return result;
}

Result<SweepOptions> make_sweep_options(double start_rate, double probe_duration_s, int max_probes,
                                        std::span<const double> percents) {
  if (!(start_rate > 0 && start_rate <= 1e6)) {
    return Status::bad_request("--sweep-start-rate must be > 0");
  }
  if (!(probe_duration_s > 0 && probe_duration_s <= 1e7)) {
    return Status::bad_request("--sweep-probe-duration must be > 0 seconds");
  }
  if (max_probes < 1 || max_probes > 40) {
    return Status::bad_request("--sweep-max-probes must be between 1 and 40");
  }
  if (percents.empty()) {
    return Status::bad_request("--sweep-fractions: give at least one percentage");
  }
  SweepOptions options;
  options.start_rate = start_rate;
  options.max_probes = max_probes;
  options.fractions.clear();
  for (double percent : percents) {
    if (!(percent > 0 && percent <= 1000)) {
      return Status::bad_request("--sweep-fractions: percentages must be in (0, 1000]");
    }
    options.fractions.push_back(percent / 100);
  }
  return options;
}

ProbeResult probe_result(const Report& report) {
  return ProbeResult{.offered_rate = report.launch_rate,
                     .achieved_rate = report.achieved_rate,
                     .e2e_p90_ms = report.e2e_ms.p90,
                     .window_s = report.window_seconds,
                     .launched = report.launched,
                     .failed = report.failed,
                     .generator_kept_up = report.generator_kept_up};
}

std::string format_probe_line(int number, const Report& report) {
  return fmt::format(
      "probe {:>2}  {:>9.2f} req/s offered  {:>9.2f} achieved  e2e p90 {:>9.1f} ms  failed {}  "
      "kept up {}\n",
      number, report.launch_rate, report.achieved_rate, report.e2e_ms.p90, report.failed,
      report.generator_kept_up ? "yes" : "NO");
}

std::string format_sweep_line(const SweepResult& sweep) {
  std::string ladder;
  for (double rate : sweep.ladder)
    ladder += fmt::format("{}{:g}", ladder.empty() ? "" : ", ", rate);
  return fmt::format("sweep     {}; saturation rate {:.2f} req/s; ladder {} req/s\n",
                     sweep.stop_reason, sweep.saturation_rate, ladder.empty() ? "-" : ladder);
}

nlohmann::json sweep_json(const SweepResult& sweep, const SweepOptions& options,
                          double probe_duration_s) {
  nlohmann::json probes = nlohmann::json::array();
  for (std::size_t index = 0; index < sweep.probes.size(); ++index) {
    const ProbeResult& probe = sweep.probes[index];
    probes.push_back({{"rate", sweep.probe_rates[index]},
                      {"launch_rate", probe.offered_rate},
                      {"achieved_rate", probe.achieved_rate},
                      {"e2e_p90_ms", probe.e2e_p90_ms},
                      {"launched", probe.launched},
                      {"failed", probe.failed},
                      {"generator_kept_up", probe.generator_kept_up}});
  }
  return {{"start_rate", options.start_rate},         {"growth", kSweepGrowth},
          {"probe_duration_s", probe_duration_s},     {"probes", probes},
          {"saturation_rate", sweep.saturation_rate}, {"stop_reason", sweep.stop_reason},
          {"fractions", options.fractions},           {"ladder", sweep.ladder}};
}

}  // namespace infergate::bench
