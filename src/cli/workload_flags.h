#pragma once

// The flags shared by `infergate bench` and `infergate simulate`: the workload
// (bench/workload.h; the same flags build the same requests in both) and the saturation sweep
// (bench/sweep.h).

#include <CLI/CLI.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "bench/sweep.h"
#include "bench/workload.h"
#include "common/status.h"

namespace infergate::cli {

// Adds --workload (into `kind`, parsed later with bench::parse_workload_kind), --prompt-tokens,
// --output-tokens, --num-groups, --prompts-per-group, --system-prompt-tokens, --question-tokens,
// --sessions, --turns, --user-tokens and --trace to `command`, each writing into `options`.
void add_workload_flags(CLI::App& command, std::string& kind, bench::WorkloadOptions& options);

struct SweepFlags {
  bool enabled = false;  // --sweep: find saturation, then a ladder
  double start_rate = 1;
  double probe_duration_s = 10;
  int max_probes = 12;
  std::vector<double> percents = {25, 50, 75, 90, 100};  // --sweep-fractions
};

// Adds --sweep, --sweep-start-rate, --sweep-probe-duration, --sweep-max-probes and
// --sweep-fractions; `probed` names what the probes run against ("the first target"). Returns
// the --sweep option (for excludes()).
CLI::Option* add_sweep_flags(CLI::App& command, SweepFlags& flags, std::string_view probed);

// bench::make_sweep_options of the flags (400 naming the bad flag).
Result<bench::SweepOptions> sweep_options(const SweepFlags& flags);

}  // namespace infergate::cli
