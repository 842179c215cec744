#include <fmt/format.h>

#include <algorithm>
#include <mutex>

#include "scheduling/plugin_registry.h"
#include "scheduling/plugins/plugins.h"
#include "scheduling/prefix_index.h"
#include "scheduling/scheduler.h"

namespace infergate::scheduling::plugins {
namespace {

struct PrefixCacheOptions {
  bool auto_tune = true;
  int block_size_tokens = kDefaultBlockSizeTokens;
  int max_blocks = kDefaultMaxPrefixBlocks;
  std::size_t lru_capacity_per_server = kDefaultLruCapacityPerServer;
};

// prefix-cache-scorer with its approximate prefix producer (scheduling facts §4): hashes the
// request's prompt bytes in blocks of blockSizeTokens × 4 characters, looks them up in an index of
// what each endpoint was sent before, and scores matched blocks / total blocks. Once an endpoint
// is chosen, the prompt's blocks are recorded for it (PreRequest). With autoTune, an endpoint's
// LRU capacity follows its num_gpu_blocks.
class PrefixCacheScorer final : public Scorer, public PreRequestHook {
 public:
  PrefixCacheScorer(std::string name, PrefixCacheOptions options)
      : Scorer(std::move(name)),
        options_(options),
        index_(std::make_unique<PrefixIndex>(
            PrefixIndexOptions{.default_capacity_per_server = options.lru_capacity_per_server})) {}
  std::string_view type() const override { return "prefix-cache-scorer"; }

  void score(const SchedulingContext& context, std::span<const Candidate> candidates,
             std::span<double> scores) const override {
    CycleState& state = context.state;
    if (!state.prefix_matched) {
      compute_prefix_hashes(context.request.prompt_bytes, context.request.target_model,
                            context.request.cache_salt, block_size(candidates), options_.max_blocks,
                            state.prefix_hashes);
      state.prefix_matched_blocks.assign(
          context.snapshot.endpoints.empty() ? 0 : context.snapshot.endpoints.back().info->id + 1,
          0);
      index_->match(state.prefix_hashes, state.prefix_matched_blocks);
      state.prefix_matched = true;
    }
    const auto total = static_cast<double>(state.prefix_hashes.size());
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const auto id = candidates[i].id();
      const double matched =
          id < state.prefix_matched_blocks.size() ? state.prefix_matched_blocks[id] : 0.0;
      scores[i] = total > 0 ? matched / total : 0.0;
    }
  }

  void pre_request(const SchedulingContext& context,
                   const SchedulingResult& result) const override {
    if (!context.state.prefix_matched || result.primary_result().targets.empty()) return;
    const datastore::Endpoint& chosen = *result.primary_result().targets.front();
    const datastore::EndpointId id = chosen.info->id;
    bool metrics_changed = false;
    {
      // Ids are reused after an endpoint leaves: forget what the previous holder was sent.
      std::lock_guard lock(owners_mutex_);
      if (owners_.size() <= id) owners_.resize(id + 1);
      Owner& owner = owners_[id];
      if (owner.info != chosen.info) {
        if (owner.info != nullptr) index_->remove_server(id);
        owner = Owner{chosen.info};
      }
      // The capacity follows the metrics: look again only when they changed (once a scrape).
      const std::uint64_t version = chosen.state->metrics_version();
      metrics_changed = owner.capacity_checked_at != version;
      owner.capacity_checked_at = version;
    }
    if (options_.auto_tune && metrics_changed) {
      if (auto metrics = chosen.state->metrics(); metrics && metrics->cache_num_blocks > 0) {
        const auto capacity = static_cast<std::size_t>(metrics->cache_num_blocks);
        if (index_->capacity(id) != capacity) index_->set_capacity(id, capacity);
      }
    }
    index_->add(id, context.state.prefix_hashes);
  }

 private:
  // With autoTune, the endpoints' own KV block size when they all report the same one.
  int block_size(std::span<const Candidate> candidates) const {
    if (!options_.auto_tune) return options_.block_size_tokens;
    int reported = 0;
    for (const auto& candidate : candidates) {
      const int size = candidate.metrics->cache_block_size;
      if (size <= 0) continue;
      if (reported != 0 && size != reported) return options_.block_size_tokens;
      reported = size;
    }
    return reported > 0 ? reported : options_.block_size_tokens;
  }

  PrefixCacheOptions options_;
  std::unique_ptr<PrefixIndex> index_;  // thread-safe on its own
  // The endpoint each id's index entries belong to (held, so identity comparisons stay sound),
  // and the endpoint's metrics_version() when its capacity was last compared with them.
  struct Owner {
    std::shared_ptr<const datastore::EndpointInfo> info;
    std::uint64_t capacity_checked_at = ~std::uint64_t{0};
  };
  mutable std::mutex owners_mutex_;
  mutable std::vector<Owner> owners_;  // guarded
};

}  // namespace

Result<std::shared_ptr<Plugin>> make_prefix_cache_scorer(std::string name,
                                                         const nlohmann::json& params) {
  Parameters parameters(name, params);
  if (Status status = parameters.check_keys({"autoTune", "blockSizeTokens", "blockSize",
                                             "maxPrefixBlocksToMatch", "maxPrefixTokensToMatch",
                                             "lruCapacityPerServer"});
      !status.is_ok()) {
    return status;
  }
  PrefixCacheOptions options;
  if (params.is_object() && params.contains("autoTune")) {
    if (!params["autoTune"].is_boolean()) {
      return Status::bad_request(
          fmt::format("plugin '{}': parameter 'autoTune' must be a boolean", name));
    }
    options.auto_tune = params["autoTune"].get<bool>();
  }
  const bool has_block_tokens = params.is_object() && params.contains("blockSizeTokens");
  if (params.is_object() && params.contains("blockSize") && !has_block_tokens) {
    return Status::bad_request(fmt::format(
        "plugin '{}': parameter 'blockSize' (characters) is deprecated; set 'blockSizeTokens'",
        name));
  }
  auto block_tokens = parameters.integer("blockSizeTokens", kDefaultBlockSizeTokens, 1);
  if (!block_tokens) return block_tokens.status();
  options.block_size_tokens = static_cast<int>(*block_tokens);
  auto max_blocks = parameters.integer("maxPrefixBlocksToMatch", kDefaultMaxPrefixBlocks, 1);
  if (!max_blocks) return max_blocks.status();
  options.max_blocks = static_cast<int>(*max_blocks);
  auto max_tokens = parameters.integer("maxPrefixTokensToMatch", 0, 0);
  if (!max_tokens) return max_tokens.status();
  if (*max_tokens > 0) {
    options.max_blocks = std::max(1, static_cast<int>(*max_tokens / options.block_size_tokens));
  }
  auto capacity = parameters.integer("lruCapacityPerServer",
                                     static_cast<std::int64_t>(kDefaultLruCapacityPerServer), 1);
  if (!capacity) return capacity.status();
  options.lru_capacity_per_server = static_cast<std::size_t>(*capacity);
  return std::shared_ptr<Plugin>(std::make_shared<PrefixCacheScorer>(std::move(name), options));
}

}  // namespace infergate::scheduling::plugins
