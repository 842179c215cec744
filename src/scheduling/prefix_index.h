#pragma once

// The approximate prefix-cache index (scheduling facts §4.3–§4.4): which servers are believed to
// hold which prompt blocks, learnt from the gateway's own routing decisions.
//
// Model: a map `block hash -> set(server)` plus, per server, an LRU of the hashes routed to it
// with a capacity in blocks (`lruCapacityPerServer`, or the server's num_gpu_blocks with
// autoTune). Evicting a hash from a server's LRU removes the server from that hash's set.
//
// Threads: every member is thread-safe.
// - `match` runs on request threads, concurrently with everything else. It takes one shard's
//   reader lock per block for a few nanoseconds (lookup + copying that hash's server set); it
//   never allocates and never blocks on another server's writes except while a writer holds that
//   shard (one set update, or a table rehash of 1/shard_count of the index, which is rare).
// - `add`, `remove_server`, `set_capacity` are writers, expected off the request path (the
//   director's pre-request hook runs them asynchronously). Writers for the same server serialise
//   on that server's mutex; writers for different servers run in parallel except on shared shards.
// Lock order: server mutex, then one shard lock; a second shard lock is only ever try_lock'ed
// (add's eviction of a victim in another shard), so it never waits while holding the first.
//
// Memory: (hash, server) entries live in two places — a 16-byte LRU node in the server's slab
// (hash + 32-bit prev/next), and an 8-byte-payload slot in the hash's shard table (open addressing,
// linear probing, 16-byte slots, load ≤ 0.8) that stores a single (server, node) pair inline, or a
// pointer to a sorted heap array of pairs when two or more servers hold the hash. Bytes per entry:
// about 16 + 16 / load for hashes held by one server, less for shared hashes. `memory_bytes()`
// counts every heap byte the index holds (allocator headers excepted).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <vector>

#include "common/thread_cells.h"
#include "scheduling/prefix_hash.h"

namespace infergate::scheduling {

// Dense server id: the datastore's EndpointId (`<pod>-rank-N` mapped to a small reusable integer).
// Writers ignore ids above kMaxServerId (ids are dense: the directory is sized by the largest).
using ServerId = std::uint32_t;
inline constexpr ServerId kMaxServerId = (1u << 31) - 1;

inline constexpr std::size_t kDefaultLruCapacityPerServer = 31'250;

struct PrefixIndexOptions {
  // Capacity of a server's LRU until `set_capacity` is called for it (`lruCapacityPerServer`).
  std::size_t default_capacity_per_server = kDefaultLruCapacityPerServer;
  // Number of hash shards (rounded up to a power of two, at least 1). More shards: less reader /
  // writer contention and shorter rehash pauses, at ~100 bytes each.
  std::size_t shard_count = 128;
};

// The outcome of one `match`, for the scorer and the indexer metrics.
struct PrefixMatch {
  std::uint32_t total_blocks = 0;        // hashes looked up
  std::uint32_t matched_blocks = 0;      // blocks walked before the first hash no server holds
  std::uint32_t best_server_blocks = 0;  // largest per-server count among the output's servers
};

// Cumulative statistics (monotonic since construction) plus current sizes, for /metrics.
struct PrefixIndexStats {
  std::uint64_t match_calls = 0;
  std::uint64_t looked_up_blocks = 0;  // sum of total_blocks
  std::uint64_t matched_blocks = 0;    // sum of matched_blocks
  std::size_t entries = 0;             // (hash, server) pairs indexed
  std::size_t distinct_hashes = 0;     // hashes held by at least one server
  std::size_t memory_bytes = 0;        // heap bytes held, see memory_bytes()

  // `inference_extension_prefix_indexer_hit_ratio` over the index's lifetime.
  double hit_ratio() const {
    return looked_up_blocks == 0 ? 0.0 : static_cast<double>(matched_blocks) / looked_up_blocks;
  }
};

// `inference_extension_prefix_indexer_hit_bytes` for a number of blocks (blocks × blockSize × 4).
inline std::uint64_t prefix_hit_bytes(std::uint64_t blocks, int block_size_tokens) {
  return blocks * static_cast<std::uint64_t>(block_size_tokens) * kCharsPerToken;
}

class PrefixIndex {
 public:
  explicit PrefixIndex(PrefixIndexOptions options = {});
  ~PrefixIndex();
  PrefixIndex(const PrefixIndex&) = delete;
  PrefixIndex& operator=(const PrefixIndex&) = delete;

  // §4.3: walks `hashes` in order and stops at the first hash no server holds; every server
  // holding a hash before that point gets +1 (it need not hold the earlier blocks).
  // `matched_blocks_by_server` is indexed by server id: it is zeroed, then filled; servers whose id
  // is not below its size are left out of the counts (the walk itself still sees them).
  // Allocation-free. Reader: see the threading notes above.
  PrefixMatch match(std::span<const BlockHash> hashes,
                    std::span<std::uint32_t> matched_blocks_by_server) const;

  // Records that `server` now holds `hashes`: in order, each hash is inserted into (or refreshed
  // at the front of) the server's LRU; when the LRU is full, its least recently used hash is
  // evicted first and the server leaves that hash's set. A server seen for the first time gets
  // the default capacity. Capacity 0 ignores adds.
  void add(ServerId server, std::span<const BlockHash> hashes);

  // Forgets everything about `server` and frees its memory; its capacity returns to the default
  // (the id may be reused for a new endpoint).
  void remove_server(ServerId server);

  // Sets the server's LRU capacity in blocks (autoTune: num_gpu_blocks), evicting its least
  // recently used hashes down to it.
  void set_capacity(ServerId server, std::size_t blocks);
  std::size_t capacity(ServerId server) const;

  // Current sizes and cumulative counters. Takes each lock briefly; not for the request path.
  PrefixIndexStats stats() const;
  std::size_t entry_count() const;
  // Every heap byte held: shard tables, shared-hash arrays, server slabs and bookkeeping (not the
  // allocator's own headers).
  std::size_t memory_bytes() const;

  // Introspection for tests and debugging (slow; locks).
  // The server's hashes, most recently used first.
  std::vector<BlockHash> server_hashes(ServerId server) const;
  // The servers holding `hash`, ascending.
  std::vector<ServerId> servers_holding(BlockHash hash) const;
  std::size_t distinct_hash_count() const;
  // Whole-structure consistency: LRU lists, free lists, sets and tables agree. Needs no
  // concurrent writers.
  bool check_invariants() const;

 private:
  struct Shard;
  struct Server;

  enum class Eviction { kBusy, kDone, kDoneInHeldShard };

  // The shard of a mixed hash.
  Shard& shard_for(std::uint64_t key) const;
  // Starts loading the cache line of the hash's home slot (no lock, no effect on the contents).
  void prefetch(BlockHash hash) const;
  // The same for the first few of `hashes`; a walk over them then prefetches a few ahead.
  void prefetch_first(std::span<const BlockHash> hashes) const;
  // The same for the hash a few evictions ahead. Requires the server's mutex.
  void prefetch_victim(const Server& server) const;
  Server* find_server(ServerId server) const;
  Server& server_or_create(ServerId server);
  // Evicts the server's least recently used hash. Requires the server's mutex.
  void evict_lru(ServerId server_id, Server& server);
  // The same while `held` is locked by the caller: evicts when the victim lives in `held` or its
  // own shard's lock is free right now (try_lock); kBusy (nothing done) otherwise.
  Eviction evict_lru_nested(ServerId server_id, Server& server, Shard& held);
  void clear_server(ServerId server_id, Server& server);

  std::size_t default_capacity_;
  std::size_t shard_mask_;
  std::unique_ptr<Shard[]> shards_;
  // match()'s statistics: calls, blocks looked up, blocks matched.
  enum MatchCounter : std::size_t {
    kMatchCalls,
    kLookedUpBlocks,
    kMatchedBlocks,
    kMatchCounterWords
  };
  mutable ThreadCells match_counters_;

  mutable std::shared_mutex servers_mu_;          // guards the directory, not the servers
  std::vector<std::unique_ptr<Server>> servers_;  // by id; never shrinks, entries never freed
};

}  // namespace infergate::scheduling
