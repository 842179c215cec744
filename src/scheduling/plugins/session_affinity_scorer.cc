#include <boost/beast/core/detail/base64.hpp>

#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"

namespace infergate::scheduling::plugins {
namespace {

constexpr std::string_view kSessionHeader = "x-session-token";

// session-affinity-scorer: the request header x-session-token carries the base64 name of the pod
// that served the session before; that pod's endpoints score 1, the others 0.
class SessionAffinityScorer final : public Scorer {
 public:
  using Scorer::Scorer;
  std::string_view type() const override { return "session-affinity-scorer"; }
  void score(const SchedulingContext& context, std::span<const Candidate> candidates,
             std::span<double> scores) const override {
    const std::string pod = decode(context.request.header(kSessionHeader).value_or(""));
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const datastore::EndpointInfo& info = *candidates[i].endpoint->info;
      scores[i] = !pod.empty() && (info.spec.pod_name == pod || info.name == pod) ? 1.0 : 0.0;
    }
  }

 private:
  static std::string decode(std::string_view encoded) {
    namespace base64 = boost::beast::detail::base64;
    while (!encoded.empty() && encoded.back() == '=') encoded.remove_suffix(1);  // padding
    // decoded_size() assumes padded input; unpadded input may decode to up to 2 more bytes.
    std::string decoded(base64::decoded_size(encoded.size()) + 2, '\0');
    const auto [written, read] = base64::decode(decoded.data(), encoded.data(), encoded.size());
    if (read != encoded.size()) return {};  // not base64: no affinity
    decoded.resize(written);
    return decoded;
  }
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_session_affinity_scorer(std::string name,
                                                             const nlohmann::json& params) {
  if (Status status = Parameters(name, params).check_keys({}); !status.is_ok()) return status;
  return std::shared_ptr<Plugin>(std::make_shared<SessionAffinityScorer>(std::move(name)));
}

}  // namespace infergate::scheduling::plugins
