#include "gateway/static_config.h"

#include <fmt/format.h>

#include <fstream>
#include <set>
#include <sstream>
#include <variant>

#include "api/decode.h"
#include "api/endpoint_picker_config.h"
#include "common/text.h"
#include "gateway/upstream_pool.h"

namespace infergate::gateway {
namespace {}  // namespace

Result<std::vector<datastore::EndpointSpec>> parse_endpoint_list(
    const std::vector<std::string>& entries, std::string_view pool_name,
    std::string_view namespace_name) {
  std::vector<datastore::EndpointSpec> endpoints;
  std::set<std::pair<std::string, std::uint16_t>> seen;
  for (const std::string& argument : entries) {
    std::string_view rest = argument;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const std::string_view entry = trim_blanks(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (entry.empty()) continue;
      const auto parsed = parse_upstream_endpoint(entry);
      if (!parsed) {
        return Status::bad_request(fmt::format(
            "--endpoints: entry \"{}\" is not host:port (IPv6: [address]:port, port 1-65535)",
            entry));
      }
      if (!seen.emplace(parsed->host, parsed->port).second) {
        return Status::bad_request(
            fmt::format("--endpoints: endpoint {} is listed twice", parsed->host_port));
      }
      endpoints.push_back({.pod_name = fmt::format("{}-{}", pool_name, endpoints.size()),
                           .namespace_name = std::string(namespace_name),
                           .address = parsed->host,
                           .port = parsed->port});
    }
  }
  if (endpoints.empty()) {
    return Status::bad_request("--endpoints: no endpoint given (host:port,host:port,...)");
  }
  return endpoints;
}

Result<api::EndpointPickerConfig> load_picker_config(const std::string& file,
                                                     const std::string& text, std::string& source) {
  if (!file.empty() && !text.empty()) {
    return Status::bad_request("--config-file and --config-text are mutually exclusive");
  }
  std::string contents;
  if (!file.empty()) {
    std::ifstream stream(file, std::ios::binary);
    if (!stream) return Status::bad_request(fmt::format("{}: cannot be read", file));
    std::stringstream buffer;
    buffer << stream.rdbuf();
    contents = buffer.str();
    source = file;
  } else if (!text.empty()) {
    contents = text;
    source = "--config-text";
  } else {
    source = "built-in default";
    return api::default_endpoint_picker_config();
  }
  auto resources = api::decode_documents(contents, source);
  if (!resources) return resources.status();
  std::optional<api::EndpointPickerConfig> config;
  for (auto& resource : *resources) {
    auto* picker_config = std::get_if<api::EndpointPickerConfig>(&resource);
    if (picker_config == nullptr) {
      return Status::bad_request(fmt::format("{}: expected an EndpointPickerConfig, found a {}",
                                             source, api::kind_of(resource)));
    }
    if (config) {
      return Status::bad_request(
          fmt::format("{}: holds more than one EndpointPickerConfig", source));
    }
    config = std::move(*picker_config);
  }
  if (!config) return Status::bad_request(fmt::format("{}: no EndpointPickerConfig", source));
  return std::move(*config);
}

}  // namespace infergate::gateway
