#include "scheduling/prefix_hash.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <string>
#include <vector>

namespace infergate::scheduling {
namespace {

// The §4.2 rules written out naively, with XXH64 over explicitly concatenated buffers.
std::vector<BlockHash> reference_hashes(const std::string& prompt, const std::string& model,
                                        const std::string& salt, int block_size_tokens,
                                        int max_blocks) {
  const std::size_t block_chars = static_cast<std::size_t>(block_size_tokens) * 4;
  std::vector<BlockHash> hashes;
  if (prompt.size() < block_chars) return hashes;
  const std::string truncated = prompt.substr(0, block_chars * max_blocks);
  const std::string seed = model + salt;
  BlockHash previous = XXH64(seed.data(), seed.size(), 0);
  for (std::size_t offset = 0; offset < truncated.size(); offset += block_chars) {
    std::string buffer = truncated.substr(offset, block_chars);
    for (int byte_idx = 0; byte_idx < 8; ++byte_idx) {
      buffer.push_back(static_cast<char>((previous >> (8 * byte_idx)) & 0xff));
    }
    previous = XXH64(buffer.data(), buffer.size(), 0);
    hashes.push_back(previous);
  }
  return hashes;
}

std::string text(std::size_t length) {
  std::string out;
  for (std::size_t pos = 0; pos < length; ++pos) out.push_back(static_cast<char>('a' + pos % 26));
  return out;
}

std::vector<BlockHash> compute(const std::string& prompt, const std::string& model,
                               const std::string& salt, int block_size_tokens = 16,
                               int max_blocks = 256) {
  std::vector<BlockHash> out;
  compute_prefix_hashes(prompt, model, salt, block_size_tokens, max_blocks, out);
  return out;
}

TEST(PrefixHashTest, InputShorterThanOneBlockHasNoHashes) {
  EXPECT_TRUE(compute("", "m", "").empty());
  EXPECT_TRUE(compute(text(63), "m", "").empty());
  EXPECT_EQ(compute(text(64), "m", "").size(), 1u);
  EXPECT_TRUE(compute(text(100), "m", "", 0, 256).empty());
  EXPECT_TRUE(compute(text(100), "m", "", 16, 0).empty());
}

TEST(PrefixHashTest, MatchesTheSpecOnGoldenTable) {
  struct Case {
    const char* description;
    std::size_t prompt_length;
    const char* model;
    const char* salt;
    int block_size_tokens;
    int max_blocks;
    std::size_t expected_count;
  };
  const Case cases[] = {
      {"exactly one block", 64, "llama", "", 16, 256, 1},
      {"two full blocks and a partial one", 150, "llama", "", 16, 256, 3},
      {"salted", 150, "llama", "tenant-a", 16, 256, 3},
      {"truncated to max blocks, no partial", 300, "llama", "", 16, 2, 2},
      {"truncation lands exactly on a block edge", 130, "llama", "", 16, 2, 2},
      {"partial block inside the limit", 130, "llama", "", 16, 3, 3},
      {"block of 8 tokens", 100, "m", "s", 8, 256, 4},
      {"streamed large block (2 KiB)", 5000, "m", "s", 512, 256, 3},
      {"default limit", 20000, "m", "", 16, 256, 256},
  };
  for (const Case& test_case : cases) {
    const std::string prompt = text(test_case.prompt_length);
    const auto expected = reference_hashes(prompt, test_case.model, test_case.salt,
                                           test_case.block_size_tokens, test_case.max_blocks);
    const auto actual = compute(prompt, test_case.model, test_case.salt,
                                test_case.block_size_tokens, test_case.max_blocks);
    EXPECT_EQ(actual.size(), test_case.expected_count) << test_case.description;
    EXPECT_EQ(actual, expected) << test_case.description;
  }
}

TEST(PrefixHashTest, FrozenValues) {
  // XXH64("", seed 0): the well-known constant, i.e. h0 for an empty model and salt.
  EXPECT_EQ(XXH64("", 0, 0), 0xEF46DB3751D8E999ULL);
  // Frozen outputs (checked against the spec by MatchesTheSpecOnGoldenTable when first recorded):
  // a change here means the hashing changed.
  const auto hashes = compute(text(150), "llama", "tenant-a");
  ASSERT_EQ(hashes.size(), 3u);
  EXPECT_EQ(hashes[0], 0x48fb05b88325cd4eULL);
  EXPECT_EQ(hashes[1], 0x9ca6a9cfeae84d97ULL);
  EXPECT_EQ(hashes[2], 0x43cb3dec9876b6d8ULL);
}

TEST(PrefixHashTest, ModelAndSaltAreConcatenated) {
  const std::string prompt = text(200);
  EXPECT_NE(compute(prompt, "model-a", ""), compute(prompt, "model-b", ""));
  EXPECT_NE(compute(prompt, "model", "salt-1"), compute(prompt, "model", "salt-2"));
  // h0 hashes model ‖ salt with no separator, as specified.
  EXPECT_EQ(compute(prompt, "ab", "c"), compute(prompt, "a", "bc"));
}

TEST(PrefixHashTest, SharedPrefixesShareLeadingHashes) {
  const std::string base = text(640);
  auto first = compute(base + "first user question", "m", "");
  auto second = compute(base + "a different one", "m", "");
  ASSERT_EQ(first.size(), 11u);
  ASSERT_EQ(second.size(), 11u);
  EXPECT_TRUE(std::equal(first.begin(), first.begin() + 10, second.begin()));
  EXPECT_NE(first[10], second[10]);
}

TEST(PrefixHashTest, ReplacesTheOutputAndKeepsItsCapacity) {
  std::vector<BlockHash> out;
  compute_prefix_hashes(text(16384), "m", "", 16, 256, out);
  ASSERT_EQ(out.size(), 256u);
  const BlockHash* storage = out.data();
  compute_prefix_hashes(text(128), "m", "", 16, 256, out);
  EXPECT_EQ(out.size(), 2u);
  EXPECT_EQ(out.data(), storage);
  compute_prefix_hashes(text(10), "m", "", 16, 256, out);
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace infergate::scheduling
