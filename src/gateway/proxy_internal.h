#pragma once

// Private to the proxy's translation units (proxy.cc, proxy_epp.cc): the per-request state and
// helpers both request paths share. Not part of the module's interface.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "gateway/access_log.h"
#include "gateway/proxy.h"
#include "gateway/upstream_pool.h"
#include "http/message.h"

namespace infergate::gateway {
namespace proxy_detail {

using SteadyTime = std::chrono::steady_clock::time_point;

// Named constants: GCC 12 miscompiles string literals passed straight into co_await expressions.
inline constexpr std::string_view kJson = "application/json";
// Status logged and counted for a request whose client left before the response was complete
// (nginx's convention; never sent).
inline constexpr unsigned kClientClosed = 499;
// A 5xx body kept to relay it in case no retry succeeds; beyond this the connection is dropped.
inline constexpr std::size_t kMaxKeptErrorBodyBytes = 256 << 10;

// A whole 5xx response kept from an attempt, relayed if no retry does better.
struct KeptResponse {
  http::ResponseHead head;
  std::string body;
  std::string endpoint;
};

// What the attempts that did not answer the client left behind: the failure to answer with, or
// an endpoint's own 5xx, kept to relay instead (at most one of the two).
struct FailedAttempts {
  std::optional<ExchangeFailure> last_failure;
  std::optional<KeptResponse> kept_response;
};

// The errors_total reason for an error status a picker answered with.
std::string_view picker_error_reason(const Status& status);
// What the client gets for the failure of the last attempt.
Status final_status(const ExchangeFailure& failure, int attempts);

}  // namespace proxy_detail

struct Proxy::RequestState {
  proxy_detail::SteadyTime start = std::chrono::steady_clock::now();
  // --request-timeout, or the rule's timeouts.request.
  std::optional<proxy_detail::SteadyTime> deadline;
  std::chrono::milliseconds request_timeout{0};
  // The rule's timeouts.backendRequest, and the current attempt's deadline from it.
  std::optional<std::chrono::milliseconds> backend_request_timeout;
  std::optional<proxy_detail::SteadyTime> attempt_deadline;
  const ProxyPool* pool = nullptr;  // chosen by choose_pool
  std::optional<proxy_detail::SteadyTime> first_byte;
  AccessRecord record;
  // Lives as long as the handler, like the on_client_gone callback that uses it.
  UpstreamCancel cancel;
};

}  // namespace infergate::gateway
