#include <spdlog/spdlog.h>

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"
#include "common/log.h"

int main(int argc, char** argv) {
  using namespace infergate;
  CLI::App app{
      "infergate: an inference-aware gateway for self-hosted LLMs (Gateway API Inference "
      "Extension).",
      "infergate"};
  app.require_subcommand(1);
  app.fallthrough();  // top-level flags such as --log-level may follow the subcommand
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str();

  const std::vector<std::pair<std::string, cli::Runner>> commands = {
      {"version", cli::add_version_command(app)},   {"epp", cli::add_epp_command(app)},
      {"sim", cli::add_sim_command(app)},           {"validate", cli::add_validate_command(app)},
      {"bench", cli::add_bench_command(app)},       {"serve", cli::add_serve_command(app)},
      {"simulate", cli::add_simulate_command(app)},
  };

  CLI11_PARSE(app, argc, argv);
  if (!set_log_level(log_level)) {
    spdlog::error("unknown log level '{}'", log_level);
    return 2;
  }
  try {
    for (const auto& [name, run] : commands) {
      if (app.got_subcommand(name)) return run();
    }
  } catch (const std::exception& error) {
    spdlog::error("{}", error.what());
    return 1;
  }
  return 0;
}
