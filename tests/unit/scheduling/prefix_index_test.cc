#include "scheduling/prefix_index.h"

#include <gtest/gtest.h>

#include <atomic>
#include <list>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/random.h"

namespace infergate::scheduling {
namespace {

// The §4.3/§4.4 semantics written the obvious way, as the oracle for PrefixIndex.
class NaiveIndex {
 public:
  explicit NaiveIndex(std::size_t default_capacity) : default_capacity_(default_capacity) {}

  PrefixMatch match(const std::vector<BlockHash>& hashes,
                    std::vector<std::uint32_t>& counts) const {
    std::fill(counts.begin(), counts.end(), 0u);
    PrefixMatch result;
    result.total_blocks = static_cast<std::uint32_t>(hashes.size());
    for (BlockHash hash : hashes) {
      auto it = holders_.find(hash);
      if (it == holders_.end()) break;
      ++result.matched_blocks;
      for (ServerId server : it->second) {
        if (server < counts.size()) {
          result.best_server_blocks = std::max(result.best_server_blocks, ++counts[server]);
        }
      }
    }
    return result;
  }

  void add(ServerId server, const std::vector<BlockHash>& hashes) {
    Lru& lru = servers_[server];
    const std::size_t capacity = capacity_of(server);
    if (capacity == 0) return;
    for (BlockHash hash : hashes) {
      auto found = lru.position.find(hash);
      if (found != lru.position.end()) {
        lru.order.splice(lru.order.begin(), lru.order, found->second);
        continue;
      }
      lru.order.push_front(hash);
      lru.position[hash] = lru.order.begin();
      holders_[hash].insert(server);
      while (lru.order.size() > capacity) evict(server, lru);
    }
  }

  void remove_server(ServerId server) {
    auto it = servers_.find(server);
    if (it != servers_.end()) {
      while (!it->second.order.empty()) evict(server, it->second);
    }
    capacities_.erase(server);
  }

  void set_capacity(ServerId server, std::size_t capacity) {
    capacities_[server] = capacity;
    Lru& lru = servers_[server];
    while (lru.order.size() > capacity) evict(server, lru);
  }

  std::vector<BlockHash> server_hashes(ServerId server) const {
    auto it = servers_.find(server);
    if (it == servers_.end()) return {};
    return {it->second.order.begin(), it->second.order.end()};
  }

  std::vector<ServerId> servers_holding(BlockHash hash) const {
    auto it = holders_.find(hash);
    if (it == holders_.end()) return {};
    return {it->second.begin(), it->second.end()};
  }

  std::size_t entries() const {
    std::size_t total = 0;
    for (const auto& [server, lru] : servers_) total += lru.order.size();
    return total;
  }
  std::size_t distinct_hashes() const { return holders_.size(); }

 private:
  struct Lru {
    std::list<BlockHash> order;  // most recently used first
    std::unordered_map<BlockHash, std::list<BlockHash>::iterator> position;
  };

  std::size_t capacity_of(ServerId server) const {
    auto it = capacities_.find(server);
    return it == capacities_.end() ? default_capacity_ : it->second;
  }

  void evict(ServerId server, Lru& lru) {
    const BlockHash victim = lru.order.back();
    lru.order.pop_back();
    lru.position.erase(victim);
    auto holders = holders_.find(victim);
    holders->second.erase(server);
    if (holders->second.empty()) holders_.erase(holders);
  }

  std::size_t default_capacity_;
  std::map<BlockHash, std::set<ServerId>> holders_;
  std::map<ServerId, Lru> servers_;
  std::map<ServerId, std::size_t> capacities_;
};

std::vector<std::uint32_t> match_counts(const PrefixIndex& index,
                                        const std::vector<BlockHash>& hashes, std::size_t servers,
                                        PrefixMatch* result = nullptr) {
  std::vector<std::uint32_t> counts(servers, 7u);  // garbage: match must zero it
  PrefixMatch match = index.match(hashes, counts);
  if (result != nullptr) *result = match;
  return counts;
}

TEST(PrefixIndexTest, MatchWalksUntilTheFirstHashNoServerHolds) {
  PrefixIndex index;
  index.add(0, std::vector<BlockHash>{11, 12});
  index.add(1, std::vector<BlockHash>{12, 13, 15});
  index.add(2, std::vector<BlockHash>{13});
  PrefixMatch result;
  // 14 is held by nobody: 15 (held by server 1) does not count.
  auto counts = match_counts(index, {11, 12, 13, 14, 15}, 3, &result);
  EXPECT_EQ(counts, (std::vector<std::uint32_t>{2, 2, 1}));
  EXPECT_EQ(result.total_blocks, 5u);
  EXPECT_EQ(result.matched_blocks, 3u);
  EXPECT_EQ(result.best_server_blocks, 2u);
  // A server need not hold the earlier blocks: server 2 only holds the third one.
  EXPECT_EQ(match_counts(index, {13}, 3), (std::vector<std::uint32_t>{0, 1, 1}));
  EXPECT_EQ(match_counts(index, {99, 11}, 3), (std::vector<std::uint32_t>{0, 0, 0}));
  // Servers beyond the output's size are not counted, but they still extend the walk.
  counts = match_counts(index, {11, 12, 13}, 1, &result);
  EXPECT_EQ(counts, (std::vector<std::uint32_t>{2}));
  EXPECT_EQ(result.matched_blocks, 3u);
  EXPECT_TRUE(index.check_invariants());
}

TEST(PrefixIndexTest, EvictsTheLeastRecentlyUsedHash) {
  PrefixIndex index(PrefixIndexOptions{.default_capacity_per_server = 3});
  index.add(4, std::vector<BlockHash>{1, 2, 3});
  EXPECT_EQ(index.server_hashes(4), (std::vector<BlockHash>{3, 2, 1}));
  index.add(4, std::vector<BlockHash>{1});  // refresh
  index.add(4, std::vector<BlockHash>{5});  // evicts 2, the least recently used
  EXPECT_EQ(index.server_hashes(4), (std::vector<BlockHash>{5, 1, 3}));
  EXPECT_TRUE(index.servers_holding(2).empty());
  index.add(4, std::vector<BlockHash>{6, 7});  // evicts 3, then 1
  EXPECT_EQ(index.server_hashes(4), (std::vector<BlockHash>{7, 6, 5}));
  // A request longer than the capacity keeps its last blocks.
  index.add(4, std::vector<BlockHash>{20, 21, 22, 23, 24});
  EXPECT_EQ(index.server_hashes(4), (std::vector<BlockHash>{24, 23, 22}));
  EXPECT_EQ(index.entry_count(), 3u);
  EXPECT_TRUE(index.check_invariants());
}

TEST(PrefixIndexTest, EvictionOnlyRemovesThatServerFromTheHash) {
  PrefixIndex index(PrefixIndexOptions{.default_capacity_per_server = 2});
  index.add(0, std::vector<BlockHash>{1, 2});
  index.add(1, std::vector<BlockHash>{1, 2});
  index.add(2, std::vector<BlockHash>{1});
  EXPECT_EQ(index.servers_holding(1), (std::vector<ServerId>{0, 1, 2}));
  index.add(1, std::vector<BlockHash>{3});  // server 1 evicts 1
  EXPECT_EQ(index.servers_holding(1), (std::vector<ServerId>{0, 2}));
  EXPECT_EQ(index.servers_holding(2), (std::vector<ServerId>{0, 1}));
  EXPECT_TRUE(index.check_invariants());
}

TEST(PrefixIndexTest, RemoveServerForgetsItAndResetsItsCapacity) {
  PrefixIndex index(PrefixIndexOptions{.default_capacity_per_server = 100});
  index.set_capacity(3, 5);
  index.add(3, std::vector<BlockHash>{1, 2, 3});
  index.add(8, std::vector<BlockHash>{2, 3, 4});
  const std::size_t memory_before = index.memory_bytes();
  index.remove_server(3);
  EXPECT_TRUE(index.server_hashes(3).empty());
  EXPECT_TRUE(index.servers_holding(1).empty());
  EXPECT_EQ(index.servers_holding(2), (std::vector<ServerId>{8}));
  EXPECT_EQ(index.capacity(3), 100u);
  EXPECT_EQ(index.entry_count(), 3u);
  EXPECT_LT(index.memory_bytes(), memory_before);
  EXPECT_EQ(match_counts(index, {1, 2}, 9), (std::vector<std::uint32_t>(9, 0u)));
  index.remove_server(42);  // unknown: no-op
  EXPECT_TRUE(index.check_invariants());
}

TEST(PrefixIndexTest, SetCapacityEvictsDownToIt) {
  PrefixIndex index;
  EXPECT_EQ(index.capacity(0), kDefaultLruCapacityPerServer);
  index.add(0, std::vector<BlockHash>{1, 2, 3, 4});
  index.set_capacity(0, 2);
  EXPECT_EQ(index.server_hashes(0), (std::vector<BlockHash>{4, 3}));
  index.set_capacity(0, 0);
  index.add(0, std::vector<BlockHash>{9});
  EXPECT_EQ(index.entry_count(), 0u);
  EXPECT_EQ(index.distinct_hash_count(), 0u);
  EXPECT_TRUE(index.check_invariants());
}

TEST(PrefixIndexTest, StatsCountLookupsAndHits) {
  PrefixIndex index;
  index.add(0, std::vector<BlockHash>{1, 2});
  match_counts(index, {1, 2, 3, 4}, 1);
  match_counts(index, {1, 5}, 1);
  const PrefixIndexStats stats = index.stats();
  EXPECT_EQ(stats.match_calls, 2u);
  EXPECT_EQ(stats.looked_up_blocks, 6u);
  EXPECT_EQ(stats.matched_blocks, 3u);
  EXPECT_DOUBLE_EQ(stats.hit_ratio(), 0.5);
  EXPECT_EQ(stats.entries, 2u);
  EXPECT_EQ(stats.distinct_hashes, 2u);
  EXPECT_GT(stats.memory_bytes, 0u);
  EXPECT_EQ(prefix_hit_bytes(3, 16), 192u);
}

TEST(PrefixIndexTest, StaysUnder64BytesPerEntryWhenFilled) {
  PrefixIndex index(PrefixIndexOptions{.default_capacity_per_server = 4000});
  SplitMix64 random(7);
  std::vector<BlockHash> hashes(64);
  for (ServerId server = 0; server < 16; ++server) {
    for (int request = 0; request < 80; ++request) {
      for (BlockHash& hash : hashes) hash = random.next_u64();
      index.add(server, hashes);
    }
  }
  ASSERT_EQ(index.entry_count(), 16u * 4000u);
  const double bytes_per_entry = static_cast<double>(index.memory_bytes()) / index.entry_count();
  EXPECT_LE(bytes_per_entry, 64.0);
  EXPECT_TRUE(index.check_invariants());
}

struct RandomConfig {
  std::uint64_t seed;
  std::size_t shard_count;
  ServerId servers;
  std::size_t default_capacity;
};

class PrefixIndexRandomTest : public testing::TestWithParam<RandomConfig> {};

// Random adds, matches, removals and capacity changes, on request-like chains that share
// prefixes, checked step by step against NaiveIndex.
TEST_P(PrefixIndexRandomTest, AgreesWithTheNaiveIndex) {
  const RandomConfig config = GetParam();
  SplitMix64 random(config.seed);
  PrefixIndex index(PrefixIndexOptions{.default_capacity_per_server = config.default_capacity,
                                       .shard_count = config.shard_count});
  NaiveIndex naive(config.default_capacity);

  // Documents: chains of hashes; requests take a prefix of one, maybe with a random tail.
  std::vector<std::vector<BlockHash>> documents(24);
  std::set<BlockHash> universe;
  for (auto& document : documents) {
    document.resize(1 + random.next_below(40));
    for (BlockHash& hash : document) {
      hash = random.next_below(4) == 0 ? random.next_below(64) : random.next_u64();
      universe.insert(hash);
    }
  }
  auto make_request = [&] {
    const auto& document = documents[random.next_below(documents.size())];
    std::vector<BlockHash> request(document.begin(),
                                   document.begin() + 1 + random.next_below(document.size()));
    for (int tail = static_cast<int>(random.next_below(3)); tail > 0; --tail) {
      request.push_back(random.next_u64());
      universe.insert(request.back());
    }
    return request;
  };

  const std::size_t count_width = config.servers - config.servers / 4;  // some ids left out
  std::vector<std::uint32_t> expected_counts(count_width);
  std::vector<std::uint32_t> actual_counts(count_width);
  for (int step = 0; step < 4000; ++step) {
    const ServerId server = static_cast<ServerId>(random.next_below(config.servers));
    const std::uint64_t op = random.next_below(100);
    if (op < 55) {
      const auto request = make_request();
      index.add(server, request);
      naive.add(server, request);
    } else if (op < 90) {
      const auto request = make_request();
      const PrefixMatch expected = naive.match(request, expected_counts);
      const PrefixMatch actual = index.match(request, actual_counts);
      ASSERT_EQ(actual_counts, expected_counts) << "step " << step;
      ASSERT_EQ(actual.total_blocks, expected.total_blocks);
      ASSERT_EQ(actual.matched_blocks, expected.matched_blocks) << "step " << step;
      ASSERT_EQ(actual.best_server_blocks, expected.best_server_blocks);
    } else if (op < 93) {
      index.remove_server(server);
      naive.remove_server(server);
    } else {
      const std::size_t capacity = random.next_below(2 * config.default_capacity + 1);
      index.set_capacity(server, capacity);
      naive.set_capacity(server, capacity);
    }
    if (step % 250 == 0 || step == 3999) {
      ASSERT_TRUE(index.check_invariants()) << "step " << step;
      ASSERT_EQ(index.entry_count(), naive.entries());
      ASSERT_EQ(index.distinct_hash_count(), naive.distinct_hashes());
      for (ServerId id = 0; id < config.servers; ++id) {
        ASSERT_EQ(index.server_hashes(id), naive.server_hashes(id)) << "server " << id;
      }
      for (BlockHash hash : universe) {
        ASSERT_EQ(index.servers_holding(hash), naive.servers_holding(hash)) << "hash " << hash;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, PrefixIndexRandomTest,
                         testing::Values(RandomConfig{1, 128, 8, 30}, RandomConfig{2, 1, 8, 30},
                                         RandomConfig{3, 4, 48, 60}, RandomConfig{4, 2, 12, 5},
                                         RandomConfig{5, 16, 64, 200}, RandomConfig{6, 1, 3, 1}));

TEST(PrefixIndexTest, ConcurrentWritersAndReaders) {
  constexpr ServerId kServers = 32;
  PrefixIndex index(PrefixIndexOptions{.default_capacity_per_server = 200, .shard_count = 8});
  std::vector<std::vector<BlockHash>> documents(16);
  SplitMix64 setup(11);
  for (auto& document : documents) {
    document.resize(32);
    for (BlockHash& hash : document) hash = setup.next_u64();
  }
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int writer = 0; writer < 2; ++writer) {
    threads.emplace_back([&, writer] {
      SplitMix64 random(100 + writer);
      for (int step = 0; step < 3000; ++step) {
        const ServerId server = static_cast<ServerId>(random.next_below(kServers));
        const auto& document = documents[random.next_below(documents.size())];
        index.add(server, std::span(document).first(1 + random.next_below(document.size())));
        if (step % 500 == 499) index.set_capacity(server, 50 + random.next_below(200));
        if (step % 700 == 699) index.remove_server(server);
      }
    });
  }
  for (int reader = 0; reader < 2; ++reader) {
    threads.emplace_back([&, reader] {
      SplitMix64 random(200 + reader);
      std::vector<std::uint32_t> counts(kServers);
      for (int step = 0; step < 6000; ++step) {
        const auto& document = documents[random.next_below(documents.size())];
        const PrefixMatch result = index.match(document, counts);
        std::uint32_t best = 0;
        for (std::uint32_t count : counts) best = std::max(best, count);
        if (result.matched_blocks > result.total_blocks || best != result.best_server_blocks ||
            best > result.matched_blocks) {
          failed = true;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_FALSE(failed.load());
  EXPECT_TRUE(index.check_invariants());
  EXPECT_EQ(index.stats().match_calls, 12000u);
}

}  // namespace
}  // namespace infergate::scheduling
