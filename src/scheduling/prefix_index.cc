#include "scheduling/prefix_index.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <utility>

namespace infergate::scheduling {
namespace {

constexpr std::uint32_t kNil = std::numeric_limits<std::uint32_t>::max();
constexpr std::size_t kMaxCapacity = kNil - 1;  // node indices are 32-bit
constexpr std::size_t kMaxShards = std::size_t{1} << 20;
// Slot positions use the mixed hash's bits above the shard bits.
constexpr int kHomeShift = 24;
constexpr std::size_t kInitialSlots = 16;
constexpr std::uint32_t kInitialSetCapacity = 4;
// Blocks ahead whose table slots (and whose LRU victims' slots) are prefetched: at steady state a
// new block misses the cache at its own slot and at its victim's, the tables being bigger than a
// core's caches, and most of an add's time was those waits.
constexpr std::size_t kPrefetchAhead = 4;

// murmur3's 64-bit finaliser: spreads keys over shards and slots even when they are not
// xxhash outputs (tests, adversarial prompts still land on well-mixed positions). A bijection, so
// the tables store mixed hashes as their keys and never mix a stored key again.
std::uint64_t mix(std::uint64_t key) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  key *= 0xc4ceb9fe1a85ec53ULL;
  key ^= key >> 33;
  return key;
}

// One (server, LRU node) pair of a hash's set. A heap set is an array whose element 0 is a header
// {size, capacity}, followed by `capacity` pairs sorted by server.
struct ServerNode {
  std::uint32_t server;
  std::uint32_t node;
};

// A slot's payload: 0 = empty slot; odd = one inline pair (server << 1 | 1, node << 32); even and
// non-zero = pointer to a heap set.
std::uint64_t inline_payload(ServerId server, std::uint32_t node) {
  return (std::uint64_t{node} << 32) | (std::uint64_t{server} << 1) | 1u;
}
bool is_inline(std::uint64_t payload) { return (payload & 1u) != 0; }
ServerId inline_server(std::uint64_t payload) { return static_cast<std::uint32_t>(payload) >> 1; }
std::uint32_t inline_node(std::uint64_t payload) {
  return static_cast<std::uint32_t>(payload >> 32);
}
ServerNode* heap_set(std::uint64_t payload) { return reinterpret_cast<ServerNode*>(payload); }
std::uint64_t heap_payload(ServerNode* set) { return reinterpret_cast<std::uintptr_t>(set); }
std::size_t heap_set_bytes(std::uint32_t capacity) {
  return (std::size_t{capacity} + 1) * sizeof(ServerNode);
}

ServerNode* heap_lower_bound(ServerNode* set, ServerId server) {
  return std::lower_bound(set + 1, set + 1 + set[0].server, server,
                          [](const ServerNode& pair, ServerId id) { return pair.server < id; });
}

std::uint32_t find_node(std::uint64_t payload, ServerId server) {
  if (is_inline(payload)) return inline_server(payload) == server ? inline_node(payload) : kNil;
  ServerNode* set = heap_set(payload);
  ServerNode* it = heap_lower_bound(set, server);
  return it != set + 1 + set[0].server && it->server == server ? it->node : kNil;
}

struct Slot {
  std::uint64_t key = 0;  // mix(block hash)
  std::uint64_t payload = 0;
};

struct Node {
  BlockHash hash = 0;
  std::uint32_t prev = kNil;  // towards the most recently used end
  std::uint32_t next = kNil;  // towards the least recently used end; free-list link when free
};

// A reader-writer lock for critical sections of a few dozen instructions (one table probe or
// update), taken once per prompt block: an uncontended acquire + release is two atomic operations
// instead of pthread_rwlock's two library calls. Waiters spin briefly, then yield, so a holder
// that was preempted does not cost a waiter its whole time slice. Writers are not preferred:
// with critical sections this short and one lock per 1/shard_count of the index, a writer
// waits at most for the readers already inside.
class SpinSharedMutex {
 public:
  void lock() {
    for (int attempt = 0;; ++attempt) {
      std::uint32_t expected = 0;
      if (state_.compare_exchange_weak(expected, kWriter, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return;
      }
      pause(attempt);
    }
  }
  bool try_lock() {
    std::uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, kWriter, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }
  void unlock() { state_.fetch_sub(kWriter, std::memory_order_release); }

  void lock_shared() {
    for (int attempt = 0;; ++attempt) {
      if ((state_.fetch_add(1, std::memory_order_acquire) & kWriter) == 0) return;
      state_.fetch_sub(1, std::memory_order_relaxed);
      while ((state_.load(std::memory_order_relaxed) & kWriter) != 0) pause(attempt++);
    }
  }
  void unlock_shared() { state_.fetch_sub(1, std::memory_order_release); }

 private:
  static constexpr std::uint32_t kWriter = 1u << 31;  // below it: the number of readers

  static void pause(int attempt) {
    if (attempt < 64) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }

  std::atomic<std::uint32_t> state_{0};
};

}  // namespace

// One shard of `hash -> set(server)`: linear probing with backward-shift deletion (no
// tombstones), load kept at or below 0.8. Keys are mixed hashes (see mix()): a key's shard is its
// low bits, its home slot the bits above kHomeShift.
struct alignas(64) PrefixIndex::Shard {
  mutable SpinSharedMutex mu;
  std::vector<Slot> slots;  // empty or a power of two
  std::size_t used = 0;
  std::size_t set_bytes = 0;  // heap sets' bytes
  // Where `slots` lives, for prefetching without the lock: written under the writer lock, read
  // relaxed. A stale pair only prefetches a useless line (a prefetch never faults).
  std::atomic<const Slot*> table_hint{nullptr};
  std::atomic<std::size_t> mask_hint{0};

  ~Shard() {
    for (const Slot& slot : slots) {
      if (slot.payload != 0 && !is_inline(slot.payload)) delete[] heap_set(slot.payload);
    }
  }

  std::size_t home(std::uint64_t key) const { return (key >> kHomeShift) & (slots.size() - 1); }

  void prefetch(std::uint64_t key) const {
    const Slot* table = table_hint.load(std::memory_order_relaxed);
    if (table == nullptr) return;
    __builtin_prefetch(table + ((key >> kHomeShift) & mask_hint.load(std::memory_order_relaxed)));
  }

  // The slot holding `key`, or else the empty slot where its probe sequence ends (payload 0,
  // where insert_at can put it); nullptr when the table has no slots yet.
  const Slot* probe(std::uint64_t key) const {
    if (slots.empty()) return nullptr;
    const std::size_t mask = slots.size() - 1;
    for (std::size_t pos = home(key);; pos = (pos + 1) & mask) {
      const Slot& slot = slots[pos];
      if (slot.payload == 0 || slot.key == key) return &slot;
    }
  }
  Slot* probe(std::uint64_t key) { return const_cast<Slot*>(std::as_const(*this).probe(key)); }

  const Slot* find(std::uint64_t key) const {
    const Slot* slot = probe(key);
    return slot != nullptr && slot->payload != 0 ? slot : nullptr;
  }
  Slot* find(std::uint64_t key) { return const_cast<Slot*>(std::as_const(*this).find(key)); }

  // Inserts the absent `key` at `end`, the empty slot its probe() returned (or nullptr), unless
  // the table must grow first.
  void insert_at(Slot* end, std::uint64_t key, std::uint64_t payload) {
    if (end == nullptr || (used + 1) * 5 > slots.size() * 4) {
      grow();
      end = probe(key);
    }
    *end = Slot{key, payload};
    ++used;
  }

  void grow() {
    std::vector<Slot> old = std::move(slots);
    slots.assign(old.empty() ? kInitialSlots : old.size() * 2, Slot{});
    const std::size_t mask = slots.size() - 1;
    for (const Slot& slot : old) {
      if (slot.payload == 0) continue;
      std::size_t pos = home(slot.key);
      while (slots[pos].payload != 0) pos = (pos + 1) & mask;
      slots[pos] = slot;
    }
    table_hint.store(slots.data(), std::memory_order_relaxed);
    mask_hint.store(mask, std::memory_order_relaxed);
  }

  void erase(Slot* slot) {
    const std::size_t mask = slots.size() - 1;
    std::size_t hole = static_cast<std::size_t>(slot - slots.data());
    for (std::size_t pos = (hole + 1) & mask; slots[pos].payload != 0; pos = (pos + 1) & mask) {
      // An entry may move back into the hole unless its home lies cyclically in (hole, pos].
      const std::size_t entry_home = home(slots[pos].key);
      const bool stays = hole < pos ? (hole < entry_home && entry_home <= pos)
                                    : (hole < entry_home || entry_home <= pos);
      if (stays) continue;
      slots[hole] = slots[pos];
      hole = pos;
    }
    slots[hole] = Slot{};
    --used;
  }

  // Adds (server, node) for `key`, given where probe(key) ended: at the key's slot (the server
  // not yet in its set) or at the empty slot after its probe sequence.
  void add_at(Slot* probed, std::uint64_t key, ServerId server, std::uint32_t node) {
    if (probed != nullptr && probed->payload != 0) {
      add_pair(*probed, server, node);
    } else {
      insert_at(probed, key, inline_payload(server, node));
    }
  }

  // Adds a server that is not yet in the slot's set.
  void add_pair(Slot& slot, ServerId server, std::uint32_t node) {
    if (is_inline(slot.payload)) {
      ServerNode* set = new ServerNode[kInitialSetCapacity + 1];
      set_bytes += heap_set_bytes(kInitialSetCapacity);
      ServerNode existing{inline_server(slot.payload), inline_node(slot.payload)};
      ServerNode added{server, node};
      if (added.server < existing.server) std::swap(added, existing);
      set[0] = {2, kInitialSetCapacity};
      set[1] = existing;
      set[2] = added;
      slot.payload = heap_payload(set);
      return;
    }
    ServerNode* set = heap_set(slot.payload);
    if (set[0].server == set[0].node) set = resize_set(slot, set, set[0].node * 2);
    ServerNode* it = heap_lower_bound(set, server);
    ServerNode* end = set + 1 + set[0].server;
    std::copy_backward(it, end, end + 1);
    *it = {server, node};
    ++set[0].server;
  }

  // Removes a server present in the slot's set; true when the set became empty (the caller then
  // erases the slot).
  bool remove_pair(Slot& slot, ServerId server) {
    if (is_inline(slot.payload)) return true;
    ServerNode* set = heap_set(slot.payload);
    ServerNode* it = heap_lower_bound(set, server);
    ServerNode* end = set + 1 + set[0].server;
    std::copy(it + 1, end, it);
    const std::uint32_t remaining = --set[0].server;
    if (remaining == 1) {
      slot.payload = inline_payload(set[1].server, set[1].node);
      set_bytes -= heap_set_bytes(set[0].node);
      delete[] set;
    } else if (set[0].node > kInitialSetCapacity && remaining * 4 <= set[0].node) {
      resize_set(slot, set, set[0].node / 2);
    }
    return false;
  }

  ServerNode* resize_set(Slot& slot, ServerNode* set, std::uint32_t capacity) {
    ServerNode* resized = new ServerNode[capacity + 1];
    std::copy(set, set + 1 + set[0].server, resized);
    set_bytes += heap_set_bytes(capacity);
    set_bytes -= heap_set_bytes(set[0].node);
    resized[0].node = capacity;
    delete[] set;
    slot.payload = heap_payload(resized);
    return resized;
  }
};

// One server's LRU: an intrusive doubly-linked list over a slab of 16-byte nodes addressed by
// 32-bit indices, with a free list. The slab grows by doubling, capped at the capacity.
struct PrefixIndex::Server {
  explicit Server(std::size_t initial_capacity) : capacity(initial_capacity) {}

  mutable std::mutex mu;
  std::vector<Node> nodes;
  std::uint32_t head = kNil;  // most recently used
  std::uint32_t tail = kNil;  // least recently used
  std::uint32_t free_head = kNil;
  std::size_t size = 0;
  std::size_t capacity;

  std::uint32_t allocate(BlockHash hash) {
    std::uint32_t idx = free_head;
    if (idx != kNil) {
      free_head = nodes[idx].next;
    } else {
      if (nodes.size() == nodes.capacity()) {
        nodes.reserve(std::max(nodes.size() + 1,
                               std::min(std::max<std::size_t>(16, nodes.size() * 2), capacity)));
      }
      idx = static_cast<std::uint32_t>(nodes.size());
      nodes.emplace_back();
    }
    nodes[idx] = Node{hash, kNil, kNil};
    return idx;
  }

  void release(std::uint32_t idx) {
    nodes[idx].next = free_head;
    free_head = idx;
  }

  void push_front(std::uint32_t idx) {
    nodes[idx].prev = kNil;
    nodes[idx].next = head;
    if (head != kNil) nodes[head].prev = idx;
    head = idx;
    if (tail == kNil) tail = idx;
  }

  void unlink(std::uint32_t idx) {
    Node& node = nodes[idx];
    (node.prev != kNil ? nodes[node.prev].next : head) = node.next;
    (node.next != kNil ? nodes[node.next].prev : tail) = node.prev;
  }

  void move_to_front(std::uint32_t idx) {
    if (head == idx) return;
    unlink(idx);
    push_front(idx);
  }
};

PrefixIndex::PrefixIndex(PrefixIndexOptions options)
    : default_capacity_(std::min(options.default_capacity_per_server, kMaxCapacity)),
      shard_mask_(std::bit_ceil(std::clamp<std::size_t>(options.shard_count, 1, kMaxShards)) - 1),
      shards_(new Shard[shard_mask_ + 1]),
      match_counters_(kMatchCounterWords) {}

PrefixIndex::~PrefixIndex() = default;

PrefixIndex::Shard& PrefixIndex::shard_for(std::uint64_t key) const {
  return shards_[key & shard_mask_];
}

void PrefixIndex::prefetch(BlockHash hash) const {
  const std::uint64_t key = mix(hash);
  shard_for(key).prefetch(key);
}

void PrefixIndex::prefetch_first(std::span<const BlockHash> hashes) const {
  for (std::size_t ahead = 0; ahead < std::min(kPrefetchAhead, hashes.size()); ++ahead) {
    prefetch(hashes[ahead]);
  }
}

PrefixMatch PrefixIndex::match(std::span<const BlockHash> hashes,
                               std::span<std::uint32_t> matched_blocks_by_server) const {
  std::fill(matched_blocks_by_server.begin(), matched_blocks_by_server.end(), 0u);
  const std::size_t server_bound = matched_blocks_by_server.size();
  PrefixMatch result;
  result.total_blocks = static_cast<std::uint32_t>(hashes.size());
  prefetch_first(hashes);
  for (std::size_t idx = 0; idx < hashes.size(); ++idx) {
    if (idx + kPrefetchAhead < hashes.size()) prefetch(hashes[idx + kPrefetchAhead]);
    const std::uint64_t key = mix(hashes[idx]);
    const Shard& shard = shard_for(key);
    std::shared_lock lock(shard.mu);
    const Slot* slot = shard.find(key);
    if (slot == nullptr) break;
    ++result.matched_blocks;
    auto count = [&](ServerId server) {
      result.best_server_blocks =
          std::max(result.best_server_blocks, ++matched_blocks_by_server[server]);
    };
    if (is_inline(slot->payload)) {
      if (inline_server(slot->payload) < server_bound) count(inline_server(slot->payload));
      continue;
    }
    const ServerNode* set = heap_set(slot->payload);
    for (const ServerNode* it = set + 1; it != set + 1 + set[0].server; ++it) {
      if (it->server >= server_bound) break;  // sorted by server
      count(it->server);
    }
  }
  bool owned = false;
  ThreadCells::Word* counters = match_counters_.mine(owned);
  ThreadCells::add_count(counters[kMatchCalls], 1, owned);
  ThreadCells::add_count(counters[kLookedUpBlocks], result.total_blocks, owned);
  ThreadCells::add_count(counters[kMatchedBlocks], result.matched_blocks, owned);
  return result;
}

PrefixIndex::Server* PrefixIndex::find_server(ServerId server) const {
  std::shared_lock lock(servers_mu_);
  return server < servers_.size() ? servers_[server].get() : nullptr;
}

PrefixIndex::Server& PrefixIndex::server_or_create(ServerId server) {
  if (Server* existing = find_server(server)) return *existing;
  std::unique_lock lock(servers_mu_);
  if (server >= servers_.size()) servers_.resize(std::size_t{server} + 1);
  if (!servers_[server]) servers_[server] = std::make_unique<Server>(default_capacity_);
  return *servers_[server];
}

void PrefixIndex::prefetch_victim(const Server& server) const {
  std::uint32_t victim = server.tail;
  for (std::size_t step = 0; step < kPrefetchAhead && victim != kNil; ++step) {
    victim = server.nodes[victim].prev;
  }
  if (victim != kNil) prefetch(server.nodes[victim].hash);
}

void PrefixIndex::add(ServerId server_id, std::span<const BlockHash> hashes) {
  if (server_id > kMaxServerId || hashes.empty()) return;
  Server& server = server_or_create(server_id);
  std::lock_guard server_lock(server.mu);
  if (server.capacity == 0) return;
  prefetch_first(hashes);
  for (std::size_t idx = 0; idx < hashes.size(); ++idx) {
    if (idx + kPrefetchAhead < hashes.size()) prefetch(hashes[idx + kPrefetchAhead]);
    if (server.size >= server.capacity) prefetch_victim(server);
    const std::uint64_t key = mix(hashes[idx]);
    Shard& shard = shard_for(key);
    std::uint32_t node = kNil;
    bool inserted = false;
    {
      std::unique_lock lock(shard.mu);
      Slot* slot = shard.probe(key);
      if (slot != nullptr && slot->payload != 0) node = find_node(slot->payload, server_id);
      if (node == kNil && server.size >= server.capacity &&
          evict_lru_nested(server_id, server, shard) == Eviction::kDoneInHeldShard) {
        slot = shard.probe(key);  // the backward shift may have moved it
      }
      if (node == kNil && server.size < server.capacity) {
        node = server.allocate(hashes[idx]);
        inserted = true;
        shard.add_at(slot, key, server_id, node);
      }
    }
    if (node == kNil) {
      // Full, and the victim's shard was busy: make room first with this shard's lock dropped;
      // no other writer can add this server to `hash` meanwhile (we hold its mutex).
      evict_lru(server_id, server);
      std::unique_lock lock(shard.mu);
      node = server.allocate(hashes[idx]);
      inserted = true;
      shard.add_at(shard.probe(key), key, server_id, node);
    }
    if (inserted) {
      server.push_front(node);
      ++server.size;
    } else {
      server.move_to_front(node);
    }
  }
}

void PrefixIndex::evict_lru(ServerId server_id, Server& server) {
  const std::uint32_t victim = server.tail;
  const std::uint64_t key = mix(server.nodes[victim].hash);
  server.unlink(victim);
  server.release(victim);
  --server.size;
  Shard& shard = shard_for(key);
  std::unique_lock lock(shard.mu);
  Slot* slot = shard.find(key);
  if (shard.remove_pair(*slot, server_id)) shard.erase(slot);
}

PrefixIndex::Eviction PrefixIndex::evict_lru_nested(ServerId server_id, Server& server,
                                                    Shard& held) {
  const std::uint32_t victim = server.tail;
  const std::uint64_t key = mix(server.nodes[victim].hash);
  Shard& shard = shard_for(key);
  // Never blocks while holding `held`, so two shard locks at once cannot deadlock.
  if (&shard != &held && !shard.mu.try_lock()) return Eviction::kBusy;
  server.unlink(victim);
  server.release(victim);
  --server.size;
  Slot* slot = shard.find(key);
  if (shard.remove_pair(*slot, server_id)) shard.erase(slot);
  if (&shard == &held) return Eviction::kDoneInHeldShard;
  shard.mu.unlock();
  return Eviction::kDone;
}

void PrefixIndex::clear_server(ServerId server_id, Server& server) {
  while (server.size > 0) evict_lru(server_id, server);
  std::vector<Node>().swap(server.nodes);
  server.head = server.tail = server.free_head = kNil;
}

void PrefixIndex::remove_server(ServerId server_id) {
  Server* server = find_server(server_id);
  if (server == nullptr) return;
  std::lock_guard lock(server->mu);
  clear_server(server_id, *server);
  server->capacity = default_capacity_;
}

void PrefixIndex::set_capacity(ServerId server_id, std::size_t blocks) {
  if (server_id > kMaxServerId) return;
  Server& server = server_or_create(server_id);
  std::lock_guard lock(server.mu);
  server.capacity = std::min(blocks, kMaxCapacity);
  if (server.capacity == 0) {
    clear_server(server_id, server);
    return;
  }
  while (server.size > server.capacity) evict_lru(server_id, server);
}

std::size_t PrefixIndex::capacity(ServerId server_id) const {
  Server* server = find_server(server_id);
  if (server == nullptr) return default_capacity_;
  std::lock_guard lock(server->mu);
  return server->capacity;
}

std::size_t PrefixIndex::entry_count() const {
  std::shared_lock lock(servers_mu_);
  std::size_t entries = 0;
  for (const auto& server : servers_) {
    if (!server) continue;
    std::lock_guard server_lock(server->mu);
    entries += server->size;
  }
  return entries;
}

std::size_t PrefixIndex::distinct_hash_count() const {
  std::size_t hashes = 0;
  for (std::size_t shard_idx = 0; shard_idx <= shard_mask_; ++shard_idx) {
    std::shared_lock lock(shards_[shard_idx].mu);
    hashes += shards_[shard_idx].used;
  }
  return hashes;
}

std::size_t PrefixIndex::memory_bytes() const {
  std::size_t bytes =
      sizeof(PrefixIndex) + (shard_mask_ + 1) * sizeof(Shard) + match_counters_.heap_bytes();
  for (std::size_t shard_idx = 0; shard_idx <= shard_mask_; ++shard_idx) {
    const Shard& shard = shards_[shard_idx];
    std::shared_lock lock(shard.mu);
    bytes += shard.slots.capacity() * sizeof(Slot) + shard.set_bytes;
  }
  std::shared_lock lock(servers_mu_);
  bytes += servers_.capacity() * sizeof(std::unique_ptr<Server>);
  for (const auto& server : servers_) {
    if (!server) continue;
    std::lock_guard server_lock(server->mu);
    bytes += sizeof(Server) + server->nodes.capacity() * sizeof(Node);
  }
  return bytes;
}

PrefixIndexStats PrefixIndex::stats() const {
  PrefixIndexStats stats;
  stats.match_calls = match_counters_.count_total(kMatchCalls);
  stats.looked_up_blocks = match_counters_.count_total(kLookedUpBlocks);
  stats.matched_blocks = match_counters_.count_total(kMatchedBlocks);
  stats.entries = entry_count();
  stats.distinct_hashes = distinct_hash_count();
  stats.memory_bytes = memory_bytes();
  return stats;
}

std::vector<BlockHash> PrefixIndex::server_hashes(ServerId server_id) const {
  std::vector<BlockHash> hashes;
  Server* server = find_server(server_id);
  if (server == nullptr) return hashes;
  std::lock_guard lock(server->mu);
  for (std::uint32_t idx = server->head; idx != kNil; idx = server->nodes[idx].next) {
    hashes.push_back(server->nodes[idx].hash);
  }
  return hashes;
}

std::vector<ServerId> PrefixIndex::servers_holding(BlockHash hash) const {
  std::vector<ServerId> servers;
  const std::uint64_t key = mix(hash);
  const Shard& shard = shard_for(key);
  std::shared_lock lock(shard.mu);
  const Slot* slot = shard.find(key);
  if (slot == nullptr) return servers;
  if (is_inline(slot->payload)) {
    servers.push_back(inline_server(slot->payload));
  } else {
    const ServerNode* set = heap_set(slot->payload);
    for (std::uint32_t pos = 1; pos <= set[0].server; ++pos) servers.push_back(set[pos].server);
  }
  return servers;
}

bool PrefixIndex::check_invariants() const {
  std::size_t pairs_in_shards = 0;
  for (std::size_t shard_idx = 0; shard_idx <= shard_mask_; ++shard_idx) {
    const Shard& shard = shards_[shard_idx];
    std::shared_lock lock(shard.mu);
    std::size_t used = 0;
    std::size_t set_bytes = 0;
    for (const Slot& slot : shard.slots) {
      if (slot.payload == 0) continue;
      ++used;
      if ((slot.key & shard_mask_) != shard_idx) return false;
      if (shard.find(slot.key) != &slot) return false;  // reachable from home
      if (is_inline(slot.payload)) {
        ++pairs_in_shards;
        continue;
      }
      const ServerNode* set = heap_set(slot.payload);
      const std::uint32_t size = set[0].server;
      if (size < 2 || size > set[0].node) return false;
      for (std::uint32_t pos = 2; pos <= size; ++pos) {
        if (set[pos - 1].server >= set[pos].server) return false;
      }
      pairs_in_shards += size;
      set_bytes += heap_set_bytes(set[0].node);
    }
    if (used != shard.used || set_bytes != shard.set_bytes) return false;
    if (!shard.slots.empty() && used * 5 > shard.slots.size() * 4) return false;
  }

  std::size_t entries = 0;
  std::shared_lock lock(servers_mu_);
  for (ServerId server_id = 0; server_id < servers_.size(); ++server_id) {
    const Server* server = servers_[server_id].get();
    if (server == nullptr) continue;
    std::lock_guard server_lock(server->mu);
    if (server->size > server->capacity) return false;
    std::size_t listed = 0;
    std::uint32_t prev = kNil;
    for (std::uint32_t idx = server->head; idx != kNil; idx = server->nodes[idx].next) {
      const Node& node = server->nodes[idx];
      if (node.prev != prev || ++listed > server->nodes.size()) return false;
      const Shard& shard = shard_for(mix(node.hash));
      std::shared_lock shard_lock(shard.mu);
      const Slot* slot = shard.find(mix(node.hash));
      if (slot == nullptr || find_node(slot->payload, server_id) != idx) return false;
      prev = idx;
    }
    if (prev != server->tail || listed != server->size) return false;
    std::size_t free_nodes = 0;
    for (std::uint32_t idx = server->free_head; idx != kNil; idx = server->nodes[idx].next) {
      if (++free_nodes > server->nodes.size()) return false;
    }
    if (free_nodes + listed != server->nodes.size()) return false;
    entries += listed;
  }
  return entries == pairs_in_shards;
}

}  // namespace infergate::scheduling
