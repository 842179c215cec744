#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <variant>

#include "api/decode.h"
#include "api/endpoint_picker_config.h"
#include "cli/commands.h"
#include "datastore/metrics_mapping.h"
#include "datastore/static_pool.h"
#include "gateway/config_file.h"
#include "scheduling/config_loader.h"

namespace infergate::cli {
namespace {

struct ValidateFlags {
  std::vector<std::string> files;
};

// Decodes every file, builds the scheduler of every EndpointPickerConfig (or the default one when
// the files hold none), and prints what infergate would run; every problem on stderr.
int run_validate(const ValidateFlags& flags) {
  int problems = 0;
  std::vector<std::pair<std::string, api::EndpointPickerConfig>> configs;
  datastore::StaticResources all;  // for the cross-checks of a gateway configuration
  std::string sources;
  for (const auto& path : flags.files) {
    std::ifstream file(path, std::ios::binary);
    if (!file) {
      fmt::print(stderr, "{}: cannot be read\n", path);
      ++problems;
      continue;
    }
    std::stringstream text;
    text << file.rdbuf();
    api::DecodeReport report = api::decode_documents_report(text.str(), path);
    for (const auto& error : report.errors) fmt::print(stderr, "{}\n", error);
    problems += static_cast<int>(report.errors.size());
    for (const auto& resource : report.resources) {
      std::visit(
          [&](const auto& object) {
            using T = std::decay_t<decltype(object)>;
            if constexpr (std::is_same_v<T, api::EndpointPickerConfig>) {
              configs.emplace_back(path, object);
            } else {
              fmt::print("{}: {} \"{}\" ({}) ok\n", path, api::kind_of(resource),
                         object.metadata.name, object.api_version);
            }
          },
          resource);
    }
    all.add(report.resources, path);
    sources += (sources.empty() ? "" : ", ") + path;
  }
  // Gateway API objects: check what `infergate serve --config` would (one Gateway, routes
  // attached to it, backendRefs and poolRefs naming pools, endpoints given).
  if (problems == 0 && (!all.gateways.empty() || !all.routes.empty())) {
    auto resolved = gateway::resolve_gateway_config(all, sources);
    if (!resolved) {
      fmt::print(stderr, "{}\n", resolved.status().message());
      ++problems;
    } else {
      std::size_t rules = 0;
      for (const auto& route : resolved->routes) rules += route.rules.size();
      fmt::print(
          "gateway configuration ok: {} pool{}, {} route{} with {} rule{}{}\n",
          resolved->pools.size(), resolved->pools.size() == 1 ? "" : "s", resolved->routes.size(),
          resolved->routes.size() == 1 ? "" : "s", rules, rules == 1 ? "" : "s",
          resolved->listener_port ? fmt::format(", listening on port {}", *resolved->listener_port)
                                  : "");
    }
  }
  if (configs.empty() && problems == 0) {
    configs.emplace_back("built-in default", api::default_endpoint_picker_config());
  }
  for (const auto& [source, config] : configs) {
    auto setup = scheduling::build_scheduler(config);
    if (!setup) {
      fmt::print(stderr, "{}: EndpointPickerConfig:\n{}\n", source, setup.status().message());
      ++problems;
      continue;
    }
    auto mappings = datastore::engine_mappings_from_config(config);
    if (!mappings) {
      fmt::print(stderr, "{}: EndpointPickerConfig:\n{}\n", source, mappings.status().message());
      ++problems;
      continue;
    }
    fmt::print("{}: EndpointPickerConfig ok\n{}", source,
               scheduling::describe(api::resolve_endpoint_picker_config(config), *setup));
    std::string engines;
    for (const auto& name : mappings->names()) engines += (engines.empty() ? "" : ", ") + name;
    fmt::print("engine metric mappings: {}\n", engines);
  }
  if (problems > 0) {
    fmt::print(stderr, "{} problem{} found\n", problems, problems == 1 ? "" : "s");
    return 1;
  }
  return 0;
}

}  // namespace

Runner add_validate_command(CLI::App& app) {
  auto flags = std::make_shared<ValidateFlags>();
  CLI::App* validate = app.add_subcommand(
      "validate",
      "Check configuration and resource files (EndpointPickerConfig, InferencePool, "
      "InferenceObjective, InferenceModelRewrite, InferenceModel, Gateway, HTTPRoute; "
      "multi-document YAML or JSON; Gateway API objects are also checked together as `infergate "
      "serve --config` would load them) and print the resolved scheduling profiles; exit status "
      "1 on any problem");
  validate->add_option("files", flags->files, "Files to check")->required();
  return [flags] { return run_validate(*flags); };
}

}  // namespace infergate::cli
