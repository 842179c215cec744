#include "scheduling/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace infergate::scheduling {
namespace {

// The metrics a thread loaded for the candidate at one position of its last cycle, and the
// endpoint's metrics_version() then. Holding the state keeps its address from being reused by
// another endpoint while the pin names it.
struct MetricsPin {
  std::shared_ptr<const datastore::EndpointState> state;
  std::uint64_t version = 0;
  std::shared_ptr<const datastore::EndpointMetrics> metrics;
};

// Per-thread buffers reused by every decision, so that a decision allocates nothing that grows
// with the pool beyond the score vectors it returns. schedule() is not re-entrant on a thread.
struct Scratch {
  std::vector<const datastore::Endpoint*> endpoints;
  std::vector<MetricsPin> pins;  // by candidate position
  std::vector<Candidate> base;
  std::vector<Candidate> working;
  std::vector<std::size_t> chosen;
  std::vector<std::string> done_profiles;
};
thread_local Scratch scratch;

// The candidate's metrics for this cycle: those pinned at its position in the thread's last
// cycle while the endpoint's version is unchanged (a scrape every 50 ms, thousands of decisions
// between), else loaded and pinned. The reuse saves an atomic shared_ptr load and two reference
// count updates per candidate, all locked instructions on a cache line every worker writes.
const datastore::EndpointMetrics* pinned_metrics(std::size_t position,
                                                 const datastore::Endpoint& endpoint) {
  static const datastore::EndpointMetrics kNoMetrics;
  if (scratch.pins.size() <= position) scratch.pins.resize(position + 1);
  MetricsPin& pin = scratch.pins[position];
  const std::uint64_t version = endpoint.state->metrics_version();
  if (pin.state != endpoint.state || pin.version != version) {
    pin.state = endpoint.state;
    pin.version = version;
    pin.metrics = endpoint.state->metrics();
  }
  return pin.metrics ? pin.metrics.get() : &kNoMetrics;
}

// Runs `call`, reporting its duration to the cycle's observer when there is one. The start is
// the previous timed call's end when the cycle has one (one clock read per call, not two).
template <typename Call>
void timed(CycleState& state, const Plugin& plugin, std::string_view extension_point, Call&& call) {
  if (state.plugin_observer == nullptr) {
    call();
    return;
  }
  const auto start = state.plugin_clock_mark != std::chrono::steady_clock::time_point{}
                         ? state.plugin_clock_mark
                         : std::chrono::steady_clock::now();
  call();
  state.plugin_clock_mark = std::chrono::steady_clock::now();
  state.plugin_observer->observe(plugin, extension_point, state.plugin_clock_mark - start);
}

}  // namespace

std::optional<std::string_view> SchedulingRequest::header(std::string_view lower_case_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_case_name) return value;
  }
  return std::nullopt;
}

std::string SchedulingResult::destination() const {
  std::string out;
  for (const auto* endpoint : primary_result().targets) {
    if (!out.empty()) out += ',';
    out += endpoint->info->host_port;
  }
  return out;
}

Scheduler::Scheduler(std::shared_ptr<const ProfileHandler> handler, std::vector<Profile> profiles)
    : handler_(std::move(handler)), profiles_(std::move(profiles)) {
  for (const auto& profile : profiles_) {
    profile_names_.push_back(profile.name);
    auto columns = std::make_shared<ScorerColumns>();
    for (const WeightedScorer& weighted : profile.scorers) {
      columns->names.emplace_back(weighted.scorer->name());
      columns->weights.push_back(weighted.weight);
    }
    scorer_columns_.push_back(std::move(columns));
  }
  auto note_hook = [this](const Plugin* plugin) {
    auto* hook = dynamic_cast<const PreRequestHook*>(plugin);
    if (hook && std::find(pre_request_hooks_.begin(), pre_request_hooks_.end(), hook) ==
                    pre_request_hooks_.end()) {
      pre_request_hooks_.push_back(hook);
      pre_request_plugins_.push_back(plugin);
    }
  };
  for (const auto& profile : profiles_) {
    for (const auto& filter : profile.filters) note_hook(filter.get());
    for (const auto& weighted : profile.scorers) note_hook(weighted.scorer.get());
    note_hook(profile.picker.get());
  }
}

void Scheduler::pre_request(const SchedulingContext& context,
                            const SchedulingResult& result) const {
  context.state.plugin_clock_mark = {};
  for (std::size_t i = 0; i < pre_request_hooks_.size(); ++i) {
    timed(context.state, *pre_request_plugins_[i], "PreRequest",
          [&] { pre_request_hooks_[i]->pre_request(context, result); });
  }
}

Result<SchedulingResult> Scheduler::schedule(const SchedulingRequest& request,
                                             const datastore::Snapshot& snapshot, TimePoint now,
                                             CycleState& state) const {
  std::vector<const datastore::Endpoint*>& all = scratch.endpoints;
  all.clear();
  for (const auto& endpoint : snapshot.endpoints) all.push_back(&endpoint);
  return schedule(request, snapshot, all, now, state);
}

Result<SchedulingResult> Scheduler::schedule(const SchedulingRequest& request,
                                             const datastore::Snapshot& snapshot,
                                             std::span<const datastore::Endpoint* const> candidates,
                                             TimePoint now, CycleState& state) const {
  state.plugin_clock_mark = {};  // even on the early return: callers read it after the cycle
  if (candidates.empty()) return Status::unavailable("no endpoints available in the pool");
  std::vector<Candidate>& base = scratch.base;
  base.clear();
  for (std::size_t position = 0; position < candidates.size(); ++position) {
    base.push_back({candidates[position], pinned_metrics(position, *candidates[position])});
  }

  const SchedulingContext context{request, snapshot, now, state};
  SchedulingResult result;
  std::vector<std::string>& done = scratch.done_profiles;
  done.clear();
  while (true) {
    std::vector<std::string> next;
    timed(state, *handler_, "ProfilePicker",
          [&] { next = handler_->profiles_to_run(context, profile_names_, done); });
    if (next.empty()) break;
    for (const auto& name : next) {
      auto profile = std::find_if(profiles_.begin(), profiles_.end(),
                                  [&](const Profile& p) { return p.name == name; });
      if (profile == profiles_.end() || std::find(done.begin(), done.end(), name) != done.end()) {
        return Status::internal(
            fmt::format("profile handler '{}' asked for profile '{}' which is unknown or has "
                        "already run",
                        handler_->name(), name));
      }
      auto profile_result = run_profile(*profile, context, base);
      if (!profile_result) return profile_result.status();
      result.profiles.push_back(std::move(*profile_result));
      done.push_back(name);
    }
  }
  auto primary = handler_->primary_profile(done);
  if (!primary) return primary.status();
  auto it = std::find(done.begin(), done.end(), *primary);
  if (it == done.end()) {
    return Status::internal(fmt::format("primary profile '{}' did not run", *primary));
  }
  result.primary = static_cast<std::size_t>(it - done.begin());
  return result;
}

Result<ProfileResult> Scheduler::run_profile(const Profile& profile,
                                             const SchedulingContext& context,
                                             const std::vector<Candidate>& base) const {
  std::vector<Candidate>& candidates = scratch.working;
  candidates.assign(base.begin(), base.end());
  for (const auto& filter : profile.filters) {
    timed(context.state, *filter, "Filter", [&] { filter->filter(context, candidates); });
    if (candidates.empty()) {
      return Status(429, fmt::format("no endpoint is available for the request: filter '{}' of "
                                     "profile '{}' removed every candidate",
                                     filter->name(), profile.name));
    }
  }
  ProfileResult result;
  result.profile = profile.name;
  const std::size_t count = candidates.size();
  result.scored.reserve(count);
  for (const auto& candidate : candidates) result.scored.push_back(candidate.endpoint);
  result.scores.assign(profile.scorers.size() * count, 0.0);
  result.totals.assign(count, 0.0);
  result.scorers = scorer_columns_[static_cast<std::size_t>(&profile - profiles_.data())];
  for (std::size_t s = 0; s < profile.scorers.size(); ++s) {
    const WeightedScorer& weighted = profile.scorers[s];
    std::span<double> scores(result.scores.data() + s * count, count);
    timed(context.state, *weighted.scorer, "Scorer",
          [&] { weighted.scorer->score(context, candidates, scores); });
    for (std::size_t c = 0; c < count; ++c) {
      // NaN (e.g. 0/0 from a broken metric) counts as 0.
      scores[c] = scores[c] >= 0 ? std::min(scores[c], 1.0) : 0.0;
      result.totals[c] += scores[c] * weighted.weight;
    }
  }
  std::vector<std::size_t>& chosen = scratch.chosen;
  chosen.clear();
  timed(context.state, *profile.picker, "Picker",
        [&] { profile.picker->pick(context, candidates, result.totals, chosen); });
  if (chosen.empty()) {
    return Status(429, fmt::format("picker '{}' of profile '{}' chose no endpoint",
                                   profile.picker->name(), profile.name));
  }
  result.targets.reserve(chosen.size());
  for (std::size_t index : chosen) result.targets.push_back(candidates[index].endpoint);
  return result;
}

}  // namespace infergate::scheduling
