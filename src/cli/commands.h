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

}  // namespace infergate::cli
