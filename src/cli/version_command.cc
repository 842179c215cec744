#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/version.h"

namespace infergate::cli {

Runner add_version_command(CLI::App& app) {
  app.add_subcommand("version", "Print the infergate version");
  return [] {
    fmt::print("infergate {}\n", kVersion);
    return 0;
  };
}

}  // namespace infergate::cli
