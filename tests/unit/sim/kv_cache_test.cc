#include "sim/kv_cache.h"

#include <gtest/gtest.h>

namespace infergate::sim {
namespace {

TEST(KvCacheTest, ReservesTheNullBlockAndReportsUsageLikeVllm) {
  KvCache cache(11, 16, true);
  EXPECT_EQ(cache.usable_blocks(), 10);
  EXPECT_EQ(cache.free_blocks(), 10);
  std::vector<BlockId> table;
  ASSERT_TRUE(cache.allocate(table, {}, 4));
  EXPECT_DOUBLE_EQ(cache.usage(), 0.4);
  EXPECT_FALSE(cache.allocate(table, {}, 7));
  EXPECT_EQ(table.size(), 4u) << "a failed allocation changes nothing";
  cache.release(table);
  EXPECT_DOUBLE_EQ(cache.usage(), 0.0);
  EXPECT_TRUE(cache.check_invariants());
}

TEST(KvCacheTest, CachedIdleBlocksCountAsFreeAndCanBeRevived) {
  KvCache cache(5, 16, true);
  std::vector<BlockId> first;
  ASSERT_TRUE(cache.allocate(first, {}, 2));
  cache.cache_block(first[0], 111);
  cache.cache_block(first[1], 222);
  const std::vector<BlockId> blocks = first;
  cache.release(first);
  EXPECT_EQ(cache.free_blocks(), 4);

  const std::vector<BlockHash> hashes = {111, 222, 333};
  auto hits = cache.find_cached_prefix(hashes);
  ASSERT_EQ(hits, blocks);
  std::vector<BlockId> second;
  ASSERT_TRUE(cache.allocate(second, hits, 1));
  EXPECT_EQ(cache.ref_count(blocks[0]), 1);
  EXPECT_EQ(cache.free_blocks(), 1);
  EXPECT_TRUE(cache.check_invariants());
}

TEST(KvCacheTest, ReleaseInReverseOrderEvictsTheLongestPrefixFirst) {
  KvCache cache(4, 16, true);  // 3 usable
  std::vector<BlockId> table;
  ASSERT_TRUE(cache.allocate(table, {}, 3));
  for (std::size_t i = 0; i < 3; ++i) cache.cache_block(table[i], 100 + i);
  cache.release(table);
  // One new block evicts the request's last block (hash 102), keeping the prefix 100, 101.
  std::vector<BlockId> other;
  ASSERT_TRUE(cache.allocate(other, {}, 1));
  const std::vector<BlockHash> chain = {100, 101, 102};
  EXPECT_EQ(cache.find_cached_prefix(chain).size(), 2u);
  EXPECT_EQ(cache.cached_block_count(), 2u);
  EXPECT_TRUE(cache.check_invariants());
}

TEST(KvCacheTest, RevivedBlocksCountAgainstTheFreeQueue) {
  KvCache cache(4, 16, true);  // 3 usable
  std::vector<BlockId> table;
  ASSERT_TRUE(cache.allocate(table, {}, 2));
  cache.cache_block(table[0], 7);
  cache.cache_block(table[1], 8);
  cache.release(table);
  const std::vector<BlockHash> chain = {7, 8};
  auto hits = cache.find_cached_prefix(chain);
  std::vector<BlockId> next;
  EXPECT_FALSE(cache.allocate(next, hits, 2)) << "2 revived + 2 new > 3 free";
  EXPECT_TRUE(cache.allocate(next, hits, 1));
  EXPECT_TRUE(cache.check_invariants());
}

TEST(KvCacheTest, PrefixCachingOffNeverHits) {
  KvCache cache(4, 16, false);
  std::vector<BlockId> table;
  ASSERT_TRUE(cache.allocate(table, {}, 1));
  cache.cache_block(table[0], 5);
  const std::vector<BlockHash> chain = {5};
  EXPECT_TRUE(cache.find_cached_prefix(chain).empty());
}

TEST(KvCacheTest, ChainedHashesDependOnParentAndRoot) {
  const std::vector<std::uint32_t> tokens(16, 42);
  const BlockHash a = chain_block_hash(root_block_hash("m", ""), tokens);
  EXPECT_EQ(a, chain_block_hash(root_block_hash("m", ""), tokens));
  EXPECT_NE(a, chain_block_hash(root_block_hash("m", "salt"), tokens));
  EXPECT_NE(a, chain_block_hash(root_block_hash("adapter", ""), tokens));
  EXPECT_NE(chain_block_hash(a, tokens), a);
}

}  // namespace
TEST(KvCacheTest, ResetPrefixCacheDropsOnlyTheHashesOfFreeBlocks) {
  KvCache cache(6, 16, true);  // 5 usable
  std::vector<BlockId> idle;
  ASSERT_TRUE(cache.allocate(idle, {}, 2));
  cache.cache_block(idle[0], 10);
  cache.cache_block(idle[1], 11);
  cache.release(idle);
  std::vector<BlockId> held;
  ASSERT_TRUE(cache.allocate(held, {}, 2));
  cache.cache_block(held[0], 20);
  cache.cache_block(held[1], 21);
  ASSERT_EQ(cache.cached_block_count(), 4u);

  EXPECT_EQ(cache.reset_prefix_cache(), 2);
  EXPECT_EQ(cache.cached_block_count(), 2u);
  const std::vector<BlockHash> idle_chain = {10, 11};
  const std::vector<BlockHash> held_chain = {20, 21};
  EXPECT_TRUE(cache.find_cached_prefix(idle_chain).empty());
  EXPECT_EQ(cache.find_cached_prefix(held_chain), held) << "blocks in use stay cached";
  EXPECT_EQ(cache.free_blocks(), 3);
  EXPECT_TRUE(cache.check_invariants());

  // Once released, the held blocks are free cached blocks like any other: a second reset drops
  // them.
  cache.release(held);
  EXPECT_EQ(cache.reset_prefix_cache(), 2);
  EXPECT_EQ(cache.cached_block_count(), 0u);
  EXPECT_EQ(cache.reset_prefix_cache(), 0);
  EXPECT_EQ(cache.free_blocks(), 5);
  EXPECT_TRUE(cache.check_invariants());
}

}  // namespace infergate::sim
