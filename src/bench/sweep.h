#pragma once

// `infergate bench --sweep`: find the rate at which the servers saturate, then run a ladder of
// open-loop stages at fractions of it (inference-perf's `sweep`, benchmarks facts §2).
//
// Saturation search: probe stages of --sweep-probe-duration at geometrically rising rates
// (start, start x kSweepGrowth, ...). The search stops at the first probe that shows saturation:
//   - the load generator fell behind its schedule (it, not the servers, is the limit);
//   - more than kSweepMaxFailedShare of the probe's requests failed;
//   - the achieved rate fell short of the offered rate by more than kSweepShortfall (the servers
//     no longer keep up: queues grow, the drain stretches the stage). A stage's achieved rate
//     divides by the window plus its drain, so even an idle server falls short by about
//     e2e / window; the offered rate is scaled by window / (window + the lowest e2e p90 so far)
//     before comparing, so that short probes of slow requests are not mistaken for saturation;
//   - the achieved rate rose by less than kSweepMinGain over the best earlier probe;
//   - e2e p90 exceeded kSweepLatencyBlowup x the lowest earlier probe's (latency exploded).
// The saturation rate is the highest achieved rate of any probe (the most the servers were seen to
// serve). The ladder is each fraction of it (default 25, 50, 75, 90, 100 %).
//
// Pure: the probes are run by the caller's StageRunner (real stages in the CLI, a fake in tests).

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bench/report.h"
#include "common/status.h"

namespace infergate::bench {

inline constexpr double kSweepGrowth = 2.0;
inline constexpr double kSweepMaxFailedShare = 0.05;
inline constexpr double kSweepShortfall = 0.10;
inline constexpr double kSweepMinGain = 0.05;
inline constexpr double kSweepLatencyBlowup = 5.0;

// What one probe stage showed.
struct ProbeResult {
  double offered_rate = 0;   // launched / window (req/s)
  double achieved_rate = 0;  // succeeded / span (req/s)
  double e2e_p90_ms = 0;
  double window_s = 0;  // measured window; 0: compare rates without the drain allowance
  std::size_t launched = 0;
  std::size_t failed = 0;
  bool generator_kept_up = true;
};

// Runs one probe at `rate` req/s; nullopt when interrupted (the search stops).
using StageRunner = std::function<std::optional<ProbeResult>(double rate)>;

struct SweepOptions {
  double start_rate = 1;  // first probe, req/s
  int max_probes = 12;    // probes at most (start x 2^11 by default)
  std::vector<double> fractions = {0.25, 0.5, 0.75, 0.9, 1.0};  // of the saturation rate
};

struct SweepResult {
  std::vector<double> probe_rates;  // the rates asked for, in order
  std::vector<ProbeResult> probes;
  double saturation_rate = 0;  // 0 when no probe served anything
  std::string stop_reason;     // why the search stopped, for the report
  bool interrupted = false;
  std::vector<double> ladder;  // fractions x saturation_rate (empty when it is 0)
};

// Why `probe` shows saturation given the earlier probes, or "" when it does not.
std::string saturation_reason(const ProbeResult& probe, std::span<const ProbeResult> earlier);

SweepResult find_saturation(const SweepOptions& options, const StageRunner& run_probe);

// The --sweep flags' values (`infergate bench` and `infergate simulate`), 400 naming the flag:
// start rate in (0, 1e6], probe duration in (0, 1e7] s, max probes in [1, 40], at least one
// percentage, each in (0, 1000]. On success, the options (fractions = percents / 100).
Result<SweepOptions> make_sweep_options(double start_rate, double probe_duration_s, int max_probes,
                                        std::span<const double> percents);

// What a probe stage's report shows, for saturation_reason().
ProbeResult probe_result(const Report& report);

// The one-line summaries the CLI prints: a probe ("probe  3  ... req/s offered ...") and the
// search's outcome ("sweep     <stop reason>; saturation rate ...; ladder ... req/s").
std::string format_probe_line(int number, const Report& report);
std::string format_sweep_line(const SweepResult& sweep);

// The JSON `sweep` section: {start_rate, growth, probe_duration_s, probes [{rate, launch_rate,
// achieved_rate, e2e_p90_ms, launched, failed, generator_kept_up}], saturation_rate, stop_reason,
// fractions, ladder}.
nlohmann::json sweep_json(const SweepResult& sweep, const SweepOptions& options,
                          double probe_duration_s);

// fraction x saturation_rate for each fraction, rounded to 0.01 req/s, at least 0.01.
std::vector<double> sweep_ladder(double saturation_rate, std::span<const double> fractions);

}  // namespace infergate::bench
