#pragma once

// The gateway's resilience rules, pure and clock-injected: which upstream failures are retried,
// which endpoint a request tries next, and which endpoints sit out a cool-down after failing
// repeatedly (passive outlier ejection, after Envoy's consecutive-5xx detector).
//
// Semantics (docs/gateway.md, "Retries and ejection"):
//   - A request first tries the destination list the picker returned, in order (primary, then
//     fallbacks: epp-protocol §12.2 override-host semantics). When the list is used up it is
//     re-routed by the director with the endpoints it already tried (and the ejected ones) left
//     out of the candidates. Every attempt after the first is a retry; at most max_retries.
//   - Retried: a refused or timed-out connect, a connection that closed before the response head
//     (a fresh one: a reused one that closed is retried by the pool itself, uncounted), and a 5xx
//     response head. Not retried: no response head within the first-byte timeout (the endpoint may
//     be working on it), and anything once a byte of the response went to the client.
//   - Every failure above counts against the endpoint; a response (any status below 500) resets
//     its count. `consecutive_failures` failures in a row eject it for `cooldown`: it is left out
//     of every pick until then (unless every endpoint is ejected: then none is left out). After
//     the cool-down it is on probation: one more failure ejects it again, a success clears it.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/text.h"

namespace infergate::gateway {

// How an attempt to get a response head from one endpoint failed.
enum class AttemptFailure {
  kConnectRefused,    // connect failed (refused, unreachable, resolve error)
  kConnectTimeout,    // connect did not finish within --connect-timeout
  kReset,             // closed or reset before the response head (or a malformed head)
  kFirstByteTimeout,  // sending, or the response head, took longer than --first-byte-timeout
  kServerError,       // the response head said 5xx
};

// Whether the request should be tried again elsewhere after `failure`.
bool is_retryable(AttemptFailure failure);
// Name for logs and the errors_total `reason` label.
std::string_view failure_name(AttemptFailure failure);

struct EjectionOptions {
  // Failures in a row that eject an endpoint (--ejection-failures); 0 disables ejection.
  int consecutive_failures = 5;
  // How long an ejected endpoint is left out of picks (--ejection-cooldown).
  Duration cooldown = std::chrono::seconds(30);
};

// Per-endpoint consecutive-failure counters and ejections, keyed by "host:port". Any thread.
// While every endpoint is healthy, record_success() and ejected() cost one atomic load and take no
// lock; failures and ejected endpoints take a mutex.
class EndpointHealth {
 public:
  EndpointHealth(const Clock& clock, EjectionOptions options);

  // Counts a failure; true when it ejected the endpoint.
  bool record_failure(std::string_view host_port);
  // Clears the endpoint's failure count (and its probation).
  void record_success(std::string_view host_port);

  bool is_ejected(std::string_view host_port) const;
  // The endpoints whose cool-down is not over, sorted.
  std::vector<std::string> ejected() const;
  // Ejections since construction.
  std::uint64_t ejections() const { return ejections_.load(std::memory_order_relaxed); }

 private:
  struct State {
    int consecutive_failures = 0;
    TimePoint ejected_until{};  // zero: never ejected
  };
  bool ejected_now(const State& state, TimePoint now) const;

  const Clock& clock_;
  const EjectionOptions options_;
  // Number of endpoints with a non-zero failure count or an ejection on record; 0 = fast path.
  std::atomic<std::size_t> tracked_{0};
  std::atomic<std::uint64_t> ejections_{0};
  mutable std::mutex mutex_;
  std::unordered_map<std::string, State, StringHash, std::equal_to<>> states_;  // guarded
};

// The endpoints one request tries, in order. Owned by the request's handler (not thread-safe).
class AttemptPlan {
 public:
  explicit AttemptPlan(int max_retries) : max_retries_(max_retries) {}

  // Takes a destination list from a (re-)route: "ip:port[,ip:port...]" (IPv6 bracketed),
  // replacing what was left of the previous one.
  void set_destinations(std::string_view destination_list);
  // The next endpoint to try, or nullopt: the destination list is used up (re-route, if
  // can_retry()) or the retry budget is spent. Endpoints already tried are skipped.
  std::optional<std::string> next();
  // Records an attempt at `host_port`.
  void record_attempt(const std::string& host_port) { attempted_.push_back(host_port); }
  // Another attempt is within the budget (attempts so far <= max_retries).
  bool can_retry() const { return static_cast<int>(attempted_.size()) <= max_retries_; }
  const std::vector<std::string>& attempted() const { return attempted_; }
  bool was_attempted(std::string_view host_port) const;

 private:
  int max_retries_;
  std::vector<std::string> pending_;  // destinations not tried yet, in order
  std::size_t next_pending_ = 0;
  std::vector<std::string> attempted_;
};

// The candidates for a pick, in `pool` order: `pool` (every endpoint's "host:port") minus
// `ejected` and minus `attempted`. Exception: for a request's first pick (nothing attempted) with
// every endpoint ejected, the whole pool (ejection would otherwise turn a sick pool into an
// unavailable one). Empty when nothing is left: the request has nowhere else to go.
std::vector<std::string> allowed_candidates(const std::vector<std::string>& pool,
                                            const std::vector<std::string>& ejected,
                                            const std::vector<std::string>& attempted);

}  // namespace infergate::gateway
