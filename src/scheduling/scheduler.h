#pragma once

#include <memory>
#include <string>
#include <vector>

#include "scheduling/framework.h"

namespace infergate::scheduling {

struct WeightedScorer {
  std::shared_ptr<const Scorer> scorer;
  double weight = 1;
};

// A scheduling profile: filters, weighted scorers and one picker (scheduling facts §2).
struct Profile {
  std::string name;
  std::vector<std::shared_ptr<const Filter>> filters;
  std::vector<WeightedScorer> scorers;
  std::shared_ptr<const Picker> picker;
};

// A profile's scorers by name and weight, in scoring order: made once per profile and shared by
// all its results.
struct ScorerColumns {
  std::vector<std::string> names;
  std::vector<double> weights;
};

// What one profile decided, and why.
struct ProfileResult {
  std::string profile;
  std::vector<const datastore::Endpoint*> targets;  // primary first, then fallbacks
  // Explainability: the candidates that reached the scorers, each scorer's clamped score for
  // each of them (scorer-major: scores[scorer * scored.size() + candidate]) and their totals.
  std::vector<const datastore::Endpoint*> scored;
  std::shared_ptr<const ScorerColumns> scorers;  // never null in a scheduler's result
  std::vector<double> scores;
  std::vector<double> totals;

  double score(std::size_t scorer, std::size_t candidate) const {
    return scores[scorer * scored.size() + candidate];
  }
};

struct SchedulingResult {
  std::vector<ProfileResult> profiles;
  std::size_t primary = 0;

  const ProfileResult& primary_result() const { return profiles[primary]; }
  // The primary profile's targets as `host:port,host:port` (IPv6 bracketed): the value of the
  // x-gateway-destination-endpoint header.
  std::string destination() const;
};

// Runs profiles over a pool snapshot. Immutable after construction; schedule() is safe to call
// from many threads at once.
class Scheduler {
 public:
  Scheduler(std::shared_ptr<const ProfileHandler> handler, std::vector<Profile> profiles);

  // Picks endpoints among `candidates` (endpoints of `snapshot`). Errors: 503 when there are no
  // candidates; 429 when a profile's filters leave none (the reference picker's
  // ResourceExhausted); 500 when the profile handler rejects the results.
  Result<SchedulingResult> schedule(const SchedulingRequest& request,
                                    const datastore::Snapshot& snapshot,
                                    std::span<const datastore::Endpoint* const> candidates,
                                    TimePoint now, CycleState& state) const;
  // The same over every endpoint of the snapshot.
  Result<SchedulingResult> schedule(const SchedulingRequest& request,
                                    const datastore::Snapshot& snapshot, TimePoint now,
                                    CycleState& state) const;

  // Runs every plugin's PreRequestHook (each plugin once, in profile order) for a decision the
  // caller is about to act on.
  void pre_request(const SchedulingContext& context, const SchedulingResult& result) const;

  const std::vector<Profile>& profiles() const { return profiles_; }
  const ProfileHandler& handler() const { return *handler_; }

 private:
  Result<ProfileResult> run_profile(const Profile& profile, const SchedulingContext& context,
                                    const std::vector<Candidate>& base) const;

  std::shared_ptr<const ProfileHandler> handler_;
  std::vector<Profile> profiles_;
  std::vector<std::string> profile_names_;
  std::vector<std::shared_ptr<const ScorerColumns>> scorer_columns_;  // one per profile
  std::vector<const PreRequestHook*> pre_request_hooks_;
  std::vector<const Plugin*> pre_request_plugins_;  // the same plugins, for timing
};

}  // namespace infergate::scheduling
