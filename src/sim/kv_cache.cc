#include "sim/kv_cache.h"

#include <xxhash.h>

#include <cassert>
#include <string>

namespace infergate::sim {

BlockHash root_block_hash(std::string_view model_or_adapter, std::string_view cache_salt) {
  std::string key;
  key.reserve(model_or_adapter.size() + cache_salt.size() + 1);
  key.append(model_or_adapter).push_back('\0');
  key.append(cache_salt);
  return XXH64(key.data(), key.size(), 0);
}

BlockHash chain_block_hash(BlockHash parent, std::span<const std::uint32_t> block_tokens) {
  return XXH64(block_tokens.data(), block_tokens.size_bytes(), parent);
}

KvCache::KvCache(int num_gpu_blocks, int block_size, bool enable_prefix_caching)
    : num_gpu_blocks_(num_gpu_blocks),
      block_size_(block_size),
      prefix_caching_(enable_prefix_caching),
      blocks_(static_cast<std::size_t>(num_gpu_blocks)) {
  for (BlockId id = 1; id < num_gpu_blocks; ++id) push_free_tail(id);
}

double KvCache::usage() const {
  if (usable_blocks() <= 0) return 0.0;
  return 1.0 - static_cast<double>(free_count_) / usable_blocks();
}

std::vector<BlockId> KvCache::find_cached_prefix(std::span<const BlockHash> hashes) const {
  std::vector<BlockId> hits;
  if (!prefix_caching_) return hits;
  for (BlockHash hash : hashes) {
    auto it = hash_to_block_.find(hash);
    if (it == hash_to_block_.end()) break;
    hits.push_back(it->second);
  }
  return hits;
}

bool KvCache::allocate(std::vector<BlockId>& table, std::span<const BlockId> hit_blocks,
                       int num_new_blocks) {
  int revived = 0;  // hit blocks that currently sit in the free queue
  for (BlockId id : hit_blocks) revived += blocks_[static_cast<std::size_t>(id)].ref_count == 0;
  if (num_new_blocks + revived > free_count_) return false;

  for (BlockId id : hit_blocks) {
    Block& block = blocks_[static_cast<std::size_t>(id)];
    if (block.ref_count++ == 0) remove_free(id);
    table.push_back(id);
  }
  for (int i = 0; i < num_new_blocks; ++i) {
    BlockId id = pop_free_head();
    Block& block = blocks_[static_cast<std::size_t>(id)];
    if (block.has_hash) {  // eviction: the block's cached content is gone
      hash_to_block_.erase(block.hash);
      block.has_hash = false;
    }
    block.ref_count = 1;
    table.push_back(id);
  }
  return true;
}

void KvCache::cache_block(BlockId id, BlockHash hash) {
  if (!prefix_caching_) return;
  Block& block = blocks_[static_cast<std::size_t>(id)];
  if (block.has_hash) return;
  if (!hash_to_block_.emplace(hash, id).second) return;
  block.has_hash = true;
  block.hash = hash;
}

void KvCache::release(std::vector<BlockId>& table) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) {
    Block& block = blocks_[static_cast<std::size_t>(*it)];
    assert(block.ref_count > 0);
    if (--block.ref_count == 0) push_free_tail(*it);
  }
  table.clear();
}

int KvCache::reset_prefix_cache() {
  int dropped = 0;
  for (BlockId id = free_head_; id >= 0; id = blocks_[static_cast<std::size_t>(id)].next) {
    Block& block = blocks_[static_cast<std::size_t>(id)];
    if (!block.has_hash) continue;
    hash_to_block_.erase(block.hash);
    block.has_hash = false;
    ++dropped;
  }
  return dropped;
}

void KvCache::push_free_tail(BlockId id) {
  Block& block = blocks_[static_cast<std::size_t>(id)];
  block.prev = free_tail_;
  block.next = -1;
  block.queued = true;
  if (free_tail_ >= 0) {
    blocks_[static_cast<std::size_t>(free_tail_)].next = id;
  } else {
    free_head_ = id;
  }
  free_tail_ = id;
  ++free_count_;
}

void KvCache::remove_free(BlockId id) {
  Block& block = blocks_[static_cast<std::size_t>(id)];
  assert(block.queued);
  if (block.prev >= 0) {
    blocks_[static_cast<std::size_t>(block.prev)].next = block.next;
  } else {
    free_head_ = block.next;
  }
  if (block.next >= 0) {
    blocks_[static_cast<std::size_t>(block.next)].prev = block.prev;
  } else {
    free_tail_ = block.prev;
  }
  block.prev = block.next = -1;
  block.queued = false;
  --free_count_;
}

BlockId KvCache::pop_free_head() {
  BlockId id = free_head_;
  assert(id >= 0);
  remove_free(id);
  return id;
}

bool KvCache::check_invariants() const {
  int queued = 0;
  BlockId previous = -1;
  for (BlockId id = free_head_; id >= 0; id = blocks_[static_cast<std::size_t>(id)].next) {
    const Block& block = blocks_[static_cast<std::size_t>(id)];
    if (!block.queued || block.ref_count != 0 || block.prev != previous) return false;
    previous = id;
    if (++queued > num_gpu_blocks_) return false;  // a cycle
  }
  if (queued != free_count_ || previous != free_tail_) return false;
  std::size_t hashed = 0;
  for (BlockId id = 1; id < num_gpu_blocks_; ++id) {
    const Block& block = blocks_[static_cast<std::size_t>(id)];
    if (block.ref_count < 0 || (block.ref_count == 0) != block.queued) return false;
    if (block.has_hash) {
      ++hashed;
      auto it = hash_to_block_.find(block.hash);
      if (it == hash_to_block_.end() || it->second != id) return false;
    }
  }
  return hashed == hash_to_block_.size() && !blocks_[0].queued;
}

}  // namespace infergate::sim
