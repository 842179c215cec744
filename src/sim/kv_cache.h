#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace infergate::sim {

using BlockId = std::int32_t;
using BlockHash = std::uint64_t;

// Block hash of one full block: XXH64 of the block's token ids, seeded with the parent block's
// hash. The first block's parent is `root_block_hash(namespace, cache_salt)`, which keys the
// chain by model or LoRA adapter and by cache_salt, as vLLM's extra keys do.
BlockHash root_block_hash(std::string_view model_or_adapter, std::string_view cache_salt);
BlockHash chain_block_hash(BlockHash parent, std::span<const std::uint32_t> block_tokens);

// Paged KV cache with automatic prefix caching, after vLLM V1's block pool:
// - `num_gpu_blocks` blocks of `block_size` tokens; block 0 is reserved (vLLM's null block), so
//   `usable_blocks() == num_gpu_blocks - 1`;
// - free blocks sit in a doubly-linked queue in eviction order: allocation pops the head, a freed
//   block is appended at the tail; a free block that still holds a cached hash can be revived by a
//   prefix hit ("touch") until it is popped and its hash dropped (LRU over unreferenced blocks);
// - only full blocks are cached, keyed by their chained hash.
// Pure data structure: no clock, no I/O, single-threaded.
class KvCache {
 public:
  KvCache(int num_gpu_blocks, int block_size, bool enable_prefix_caching);

  int block_size() const { return block_size_; }
  int num_gpu_blocks() const { return num_gpu_blocks_; }
  int usable_blocks() const { return num_gpu_blocks_ - 1; }
  int free_blocks() const { return free_count_; }
  // vLLM's kv_cache_usage_perc: 1 - free / (num_gpu_blocks - 1); cached idle blocks count as free.
  double usage() const;
  bool prefix_caching() const { return prefix_caching_; }
  std::size_t cached_block_count() const { return hash_to_block_.size(); }

  // The blocks holding the longest cached prefix of `hashes` (stops at the first miss). Does not
  // change any state. Empty when prefix caching is off.
  std::vector<BlockId> find_cached_prefix(std::span<const BlockHash> hashes) const;

  // Gives a request `hit_blocks` (from find_cached_prefix, appended to `table`) plus
  // `num_new_blocks` fresh blocks. Fails without changing anything when the free queue cannot
  // supply them (hit blocks taken out of the free queue count against it).
  bool allocate(std::vector<BlockId>& table, std::span<const BlockId> hit_blocks,
                int num_new_blocks);

  // Registers the full block `block` under `hash` so later requests can hit it. A hash already
  // cached elsewhere leaves this block uncached (duplicate content).
  void cache_block(BlockId block, BlockHash hash);

  // Releases a request's blocks: reference counts drop in reverse order, and blocks reaching zero
  // join the free queue's tail, so a request's last (longest-prefix) block is evicted first.
  void release(std::vector<BlockId>& table);

  // vLLM's reset_prefix_cache, restricted to what is safe while requests run: drops the cached
  // hash of every FREE block (they stay free, in the same queue order, and can no longer be hit);
  // blocks held by requests keep their hashes. Returns the number of hashes dropped.
  int reset_prefix_cache();

  int ref_count(BlockId block) const { return blocks_[static_cast<std::size_t>(block)].ref_count; }
  // Whole-structure consistency check for tests: reference counts, free queue and hash map agree.
  bool check_invariants() const;

 private:
  struct Block {
    int ref_count = 0;
    bool has_hash = false;
    BlockHash hash = 0;
    BlockId prev = -1;  // free-queue links; -1 when not queued
    BlockId next = -1;
    bool queued = false;
  };

  void push_free_tail(BlockId id);
  void remove_free(BlockId id);
  BlockId pop_free_head();

  int num_gpu_blocks_;
  int block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  BlockId free_head_ = -1;
  BlockId free_tail_ = -1;
  int free_count_ = 0;
  std::unordered_map<BlockHash, BlockId> hash_to_block_;
};

}  // namespace infergate::sim
