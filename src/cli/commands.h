#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace infergate::cli {

// Each subcommand adds itself to the top-level app and returns the function that runs it once
// the command line is parsed. The function returns the process exit status.
using Runner = std::function<int()>;

Runner add_version_command(CLI::App& app);
Runner add_sim_command(CLI::App& app);
Runner add_validate_command(CLI::App& app);
Runner add_bench_command(CLI::App& app);
Runner add_serve_command(CLI::App& app);
Runner add_epp_command(CLI::App& app);
Runner add_simulate_command(CLI::App& app);

// --correct-stale-metrics of the commands that pick endpoints (epp, serve; docs/scheduling.md).
inline CLI::Option* add_correct_stale_metrics_flag(CLI::App& command, bool& correct) {
  return command
      .add_flag("--correct-stale-metrics", correct,
                "Correct the load scorers' scraped figures (queue-scorer, "
                "kv-cache-utilization-scorer, running-requests-size-scorer) with the requests "
                "dispatched to each endpoint since its last scrape, so bursts between scrapes do "
                "not herd to one endpoint (--correct-stale-metrics=false: the reference EPP's "
                "exact scoring; docs/scheduling.md)")
      ->default_str("true");
}

}  // namespace infergate::cli
