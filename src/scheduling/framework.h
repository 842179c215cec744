#pragma once

// The scheduler framework's plugin interfaces (scheduling facts §2–§3): a profile runs its
// filters in order, then its weighted scorers (each score clamped to [0, 1]), then its picker; a
// profile handler decides which profiles run and which result is primary.
//
// Plugins are created once from configuration and then called concurrently from many request
// threads: their call operators must be thread-safe (most are stateless).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "datastore/datastore.h"

namespace infergate::scheduling {

// What the plugins know of a request. Built once per request by the director; views stay valid
// for the scheduling call.
struct SchedulingRequest {
  std::string_view request_id;
  std::string_view target_model;  // after rewrites
  int priority = 0;
  // Request headers with lower-case names.
  std::span<const std::pair<std::string, std::string>> headers;
  // The bytes the approximate prefix cache hashes (scheduling facts §4.2: the prompt text for
  // completions, the JSON of the messages for chat, ...) and the request's cache_salt.
  std::string_view prompt_bytes;
  std::string_view cache_salt;
  std::int64_t estimated_tokens = 0;  // prompt + expected output, for token-based load

  std::optional<std::string_view> header(std::string_view lower_case_name) const;
};

// An endpoint a profile may choose, with the metrics its plugins read. Endpoints never scraped
// get default (zero) metrics, as in the reference picker. Whoever builds the candidates keeps
// their metrics alive for the cycle (the scheduler does).
struct Candidate {
  const datastore::Endpoint* endpoint;
  const datastore::EndpointMetrics* metrics;  // never null

  datastore::EndpointId id() const { return endpoint->info->id; }
  const datastore::EndpointState& state() const { return *endpoint->state; }
};

class Plugin;

// Told how long each plugin call of a scheduling cycle took (the EPP's
// inference_extension_plugin_duration_seconds). `extension_point` is one of "ProfilePicker",
// "Filter", "Scorer", "Picker", "PreRequest". Called on the scheduling thread; must be
// thread-safe and cheap.
class PluginObserver {
 public:
  virtual ~PluginObserver() = default;
  virtual void observe(const Plugin& plugin, std::string_view extension_point,
                       Duration elapsed) const = 0;
};

// Per-request scratch shared by the plugins of one scheduling cycle (e.g. prefix matches computed
// once and read by the prefix scorer).
struct CycleState {
  // When set, every plugin call is timed and reported here. Consecutive calls share clock reads:
  // a call's end is the next call's start (plugin_clock_mark), so the few nanoseconds of the
  // scheduler's own work between two plugins count towards the second. Schedule() and
  // pre_request() each start from a fresh reading.
  const PluginObserver* plugin_observer = nullptr;
  std::chrono::steady_clock::time_point plugin_clock_mark{};
  std::uint64_t random_seed = 0;  // for pickers that shuffle or sample
  // Filled by the prefix-cache scorer, once per request: the prompt's block hashes and the
  // matched blocks per endpoint id. Kept in the state so a caller can reuse the buffers.
  std::vector<std::uint64_t> prefix_hashes;
  std::vector<std::uint32_t> prefix_matched_blocks;
  bool prefix_matched = false;
};

struct SchedulingContext {
  const SchedulingRequest& request;
  const datastore::Snapshot& snapshot;
  TimePoint now;
  CycleState& state;
};

enum class PluginKind { kFilter, kScorer, kPicker, kProfileHandler };

class Plugin {
 public:
  explicit Plugin(std::string name) : name_(std::move(name)) {}
  virtual ~Plugin() = default;
  // The registered type name, e.g. "queue-scorer".
  virtual std::string_view type() const = 0;
  virtual PluginKind kind() const = 0;
  // The name the configuration gave it (defaults to the type).
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

class Filter : public Plugin {
 public:
  using Plugin::Plugin;
  PluginKind kind() const final { return PluginKind::kFilter; }
  // Removes candidates in place; may leave none.
  virtual void filter(const SchedulingContext& context,
                      std::vector<Candidate>& candidates) const = 0;
};

class Scorer : public Plugin {
 public:
  using Plugin::Plugin;
  PluginKind kind() const final { return PluginKind::kScorer; }
  // Writes one score per candidate into `scores` (same order); the framework clamps to [0, 1].
  virtual void score(const SchedulingContext& context, std::span<const Candidate> candidates,
                     std::span<double> scores) const = 0;
};

class Picker : public Plugin {
 public:
  using Plugin::Plugin;
  PluginKind kind() const final { return PluginKind::kPicker; }
  // Chooses targets among candidates with their total scores: indices into `candidates`, best
  // first (primary, then fallbacks).
  virtual void pick(const SchedulingContext& context, std::span<const Candidate> candidates,
                    std::span<const double> total_scores,
                    std::vector<std::size_t>& chosen) const = 0;
};

// A plugin that also measures how saturated the pool is (scheduling facts §5): >= 1.0 means
// saturated. The saturation detectors are filters too.
class SaturationDetector {
 public:
  virtual ~SaturationDetector() = default;
  virtual double saturation(const SchedulingContext& context,
                            std::span<const Candidate> candidates) const = 0;
};

struct SchedulingResult;

// A plugin that acts once the request's endpoints are chosen, before it is sent (e.g. recording
// the prompt's prefix on the chosen endpoint).
class PreRequestHook {
 public:
  virtual ~PreRequestHook() = default;
  virtual void pre_request(const SchedulingContext& context,
                           const SchedulingResult& result) const = 0;
};

class ProfileHandler : public Plugin {
 public:
  using Plugin::Plugin;
  PluginKind kind() const final { return PluginKind::kProfileHandler; }
  // Names of the profiles to run next, given those already run (`done`); empty when finished.
  virtual std::vector<std::string> profiles_to_run(const SchedulingContext& context,
                                                   std::span<const std::string> all_profiles,
                                                   std::span<const std::string> done) const = 0;
  // Which of the run profiles is primary; an error when the results do not fit the handler.
  virtual Result<std::string> primary_profile(std::span<const std::string> run_profiles) const = 0;
};

}  // namespace infergate::scheduling
