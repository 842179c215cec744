#include "api/types.h"

#include <algorithm>

namespace infergate::api {

bool EndpointPickerConfig::has_feature_gate(std::string_view gate) const {
  return std::find(feature_gates.begin(), feature_gates.end(), gate) != feature_gates.end();
}

const PluginSpec* EndpointPickerConfig::find_plugin(std::string_view name) const {
  auto found = std::find_if(plugins.begin(), plugins.end(),
                            [&](const PluginSpec& plugin) { return plugin.name == name; });
  return found == plugins.end() ? nullptr : &*found;
}

std::string_view kind_of(const Resource& resource) {
  struct KindVisitor {
    std::string_view operator()(const InferencePool&) const { return kKindInferencePool; }
    std::string_view operator()(const InferenceObjective&) const { return kKindInferenceObjective; }
    std::string_view operator()(const InferenceModelRewrite&) const {
      return kKindInferenceModelRewrite;
    }
    std::string_view operator()(const InferenceModel&) const { return kKindInferenceModel; }
    std::string_view operator()(const EndpointPickerConfig&) const {
      return kKindEndpointPickerConfig;
    }
    std::string_view operator()(const Gateway&) const { return kKindGateway; }
    std::string_view operator()(const HTTPRoute&) const { return kKindHTTPRoute; }
  };
  return std::visit(KindVisitor{}, resource);
}

}  // namespace infergate::api
