#include "gateway/retry_policy.h"

#include <algorithm>

#include "common/text.h"

namespace infergate::gateway {
namespace {

bool contains(const std::vector<std::string>& list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

}  // namespace

bool is_retryable(AttemptFailure failure) {
  switch (failure) {
    case AttemptFailure::kConnectRefused:
    case AttemptFailure::kConnectTimeout:
    case AttemptFailure::kReset:
    case AttemptFailure::kServerError:
      return true;
    case AttemptFailure::kFirstByteTimeout:
      return false;
  }
  return false;
}

std::string_view failure_name(AttemptFailure failure) {
  switch (failure) {
    case AttemptFailure::kConnectRefused:
      return "upstream_connect";
    case AttemptFailure::kConnectTimeout:
      return "upstream_connect_timeout";
    case AttemptFailure::kReset:
      return "upstream_reset";
    case AttemptFailure::kFirstByteTimeout:
      return "upstream_timeout";
    case AttemptFailure::kServerError:
      return "upstream_5xx";
  }
  return "upstream";
}

// --- EndpointHealth ---

EndpointHealth::EndpointHealth(const Clock& clock, EjectionOptions options)
    : clock_(clock), options_(options) {}

bool EndpointHealth::ejected_now(const State& state, TimePoint now) const {
  return state.ejected_until != TimePoint{} && now < state.ejected_until;
}

bool EndpointHealth::record_failure(std::string_view host_port) {
  if (options_.consecutive_failures <= 0) return false;
  const TimePoint now = clock_.now();
  std::lock_guard lock(mutex_);
  auto [it, inserted] = states_.try_emplace(std::string(host_port));
  if (inserted) tracked_.fetch_add(1, std::memory_order_relaxed);
  State& state = it->second;
  if (ejected_now(state, now)) return false;  // a request that was already on its way
  ++state.consecutive_failures;
  // On probation after a cool-down: one failure is enough.
  const bool on_probation = state.ejected_until != TimePoint{};
  if (!on_probation && state.consecutive_failures < options_.consecutive_failures) return false;
  // Eject; the count restarts at the threshold minus one so that the first failure after the
  // cool-down ejects again.
  state.ejected_until = now + options_.cooldown;
  if (state.ejected_until == TimePoint{}) state.ejected_until = Duration(1);
  state.consecutive_failures = options_.consecutive_failures - 1;
  ejections_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void EndpointHealth::record_success(std::string_view host_port) {
  if (tracked_.load(std::memory_order_relaxed) == 0) return;
  const TimePoint now = clock_.now();
  std::lock_guard lock(mutex_);
  auto it = states_.find(host_port);
  if (it == states_.end()) return;
  // A response from an ejected endpoint (sent before its ejection) does not end the cool-down.
  if (ejected_now(it->second, now)) return;
  states_.erase(it);
  tracked_.fetch_sub(1, std::memory_order_relaxed);
}

bool EndpointHealth::is_ejected(std::string_view host_port) const {
  if (tracked_.load(std::memory_order_relaxed) == 0) return false;
  const TimePoint now = clock_.now();
  std::lock_guard lock(mutex_);
  auto it = states_.find(host_port);
  return it != states_.end() && ejected_now(it->second, now);
}

std::vector<std::string> EndpointHealth::ejected() const {
  std::vector<std::string> out;
  if (tracked_.load(std::memory_order_relaxed) == 0) return out;
  const TimePoint now = clock_.now();
  {
    std::lock_guard lock(mutex_);
    for (const auto& [host_port, state] : states_) {
      if (ejected_now(state, now)) out.push_back(host_port);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// --- AttemptPlan ---

void AttemptPlan::set_destinations(std::string_view destination_list) {
  pending_.clear();
  next_pending_ = 0;
  std::string_view rest = destination_list;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view entry = trim_blanks(rest.substr(0, comma));
    if (!entry.empty()) pending_.emplace_back(entry);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
}

std::optional<std::string> AttemptPlan::next() {
  if (!attempted_.empty() && !can_retry()) return std::nullopt;
  while (next_pending_ < pending_.size()) {
    std::string candidate = pending_[next_pending_++];
    if (!was_attempted(candidate)) return candidate;
  }
  return std::nullopt;
}

bool AttemptPlan::was_attempted(std::string_view host_port) const {
  return contains(attempted_, host_port);
}

std::vector<std::string> allowed_candidates(const std::vector<std::string>& pool,
                                            const std::vector<std::string>& ejected,
                                            const std::vector<std::string>& attempted) {
  std::vector<std::string> allowed;
  for (const auto& host_port : pool) {
    if (!contains(ejected, host_port) && !contains(attempted, host_port)) {
      allowed.push_back(host_port);
    }
  }
  if (allowed.empty() && attempted.empty()) allowed = pool;  // everything ejected: panic mode
  return allowed;
}

}  // namespace infergate::gateway
