#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "scheduling/framework.h"

namespace infergate::scheduling {

// Builds a plugin of one type from its configured name and `parameters` (a JSON object, or null
// when the configuration gave none). Errors name the plugin and the parameter.
using PluginFactory = std::function<Result<std::shared_ptr<Plugin>>(
    std::string name, const nlohmann::json& parameters)>;

struct PluginType {
  std::string_view type;  // the exact GIE type name, e.g. "queue-scorer"
  PluginKind kind;
  PluginFactory factory;
};

// Every plugin type infergate knows, from one explicit list (plugin_registry.cc).
const std::vector<PluginType>& plugin_types();

// Creates a plugin by type name; unknown types are an error listing the known ones.
Result<std::shared_ptr<Plugin>> create_plugin(std::string_view type, std::string name,
                                              const nlohmann::json& parameters);

// Helpers for factories: strict parameter decoding.
class Parameters {
 public:
  Parameters(std::string_view plugin_name, const nlohmann::json& parameters)
      : plugin_name_(plugin_name), parameters_(parameters) {}
  // An error naming the first key not in `known` (or a non-object parameters value).
  Status check_keys(std::initializer_list<std::string_view> known) const;
  // An integer parameter >= `minimum`, or `fallback` when absent.
  Result<std::int64_t> integer(std::string_view key, std::int64_t fallback,
                               std::int64_t minimum) const;
  // A number (integer or not), or `fallback` when absent.
  Result<double> number(std::string_view key, double fallback) const;
  // A Go-style duration string ("200ms"), or `fallback` when absent.
  Result<Duration> duration(std::string_view key, Duration fallback) const;
  // One of `choices`, or `fallback` when absent.
  Result<std::string> choice(std::string_view key, std::string_view fallback,
                             std::initializer_list<std::string_view> choices) const;

 private:
  std::string_view plugin_name_;
  const nlohmann::json& parameters_;
};

}  // namespace infergate::scheduling
