#include <algorithm>

#include "common/text.h"
#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

constexpr std::string_view kSelectionHeader = "test-epp-endpoint-selection";

// header-based-testing-filter (conformance tests only): keeps the endpoints whose address, or
// exact address:port, is listed in the request header test-epp-endpoint-selection (a comma list);
// no header leaves no endpoint.
class HeaderBasedTestingFilter final : public Filter {
 public:
  using Filter::Filter;
  std::string_view type() const override { return "header-based-testing-filter"; }
  void filter(const SchedulingContext& context, std::vector<Candidate>& candidates) const override {
    const std::string_view header = context.request.header(kSelectionHeader).value_or("");
    std::erase_if(candidates, [&](const Candidate& candidate) {
      const datastore::EndpointInfo& info = *candidate.endpoint->info;
      std::string_view rest = header;
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        const std::string_view item = trim_blanks(rest.substr(0, comma));
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        if (item == info.spec.address || item == info.host_port) return false;
      }
      return true;
    });
  }
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_header_based_testing_filter(std::string name,
                                                                 const nlohmann::json& params) {
  if (Status status = Parameters(name, params).check_keys({}); !status.is_ok()) return status;
  return std::shared_ptr<Plugin>(std::make_shared<HeaderBasedTestingFilter>(std::move(name)));
}

}  // namespace infergate::scheduling::plugins
