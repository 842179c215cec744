#include "scheduling/prefix_hash.h"

// XXH64 compiled into this file: a call per block to the shared library's generic entry point
// costs about as much as hashing the default 64-byte block inline.
#define XXH_INLINE_ALL
// GCC 12 misreads the streaming update's pointer arithmetic on an 8-byte input as out of bounds.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#include <xxhash.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <array>
#include <cstring>

namespace infergate::scheduling {
namespace {

// Blocks up to this size are hashed one-shot from a stack copy (faster than the streaming API for
// the default 64-byte block); larger blocks stream.
constexpr std::size_t kStackBlockBytes = 1024;

void store_le64(std::uint64_t value, unsigned char* out) {
  for (int byte_idx = 0; byte_idx < 8; ++byte_idx) {
    out[byte_idx] = static_cast<unsigned char>(value >> (8 * byte_idx));
  }
}

BlockHash seed_hash(std::string_view target_model, std::string_view cache_salt) {
  XXH64_state_t state;
  XXH64_reset(&state, 0);
  XXH64_update(&state, target_model.data(), target_model.size());
  XXH64_update(&state, cache_salt.data(), cache_salt.size());
  return XXH64_digest(&state);
}

BlockHash chain_hash(std::string_view block, BlockHash previous) {
  if (block.size() <= kStackBlockBytes) {
    std::array<unsigned char, kStackBlockBytes + 8> buffer;
    std::memcpy(buffer.data(), block.data(), block.size());
    store_le64(previous, buffer.data() + block.size());
    return XXH64(buffer.data(), block.size() + 8, 0);
  }
  unsigned char previous_le[8];
  store_le64(previous, previous_le);
  XXH64_state_t state;
  XXH64_reset(&state, 0);
  XXH64_update(&state, block.data(), block.size());
  XXH64_update(&state, previous_le, sizeof(previous_le));
  return XXH64_digest(&state);
}

}  // namespace

void compute_prefix_hashes(std::string_view prompt, std::string_view target_model,
                           std::string_view cache_salt, int block_size_tokens, int max_blocks,
                           std::vector<BlockHash>& out) {
  out.clear();
  if (block_size_tokens <= 0 || max_blocks <= 0) return;
  const std::size_t block_bytes = static_cast<std::size_t>(block_size_tokens) * kCharsPerToken;
  if (prompt.size() < block_bytes) return;
  prompt =
      prompt.substr(0, std::min(prompt.size(), block_bytes * static_cast<std::size_t>(max_blocks)));

  BlockHash previous = seed_hash(target_model, cache_salt);
  for (std::size_t offset = 0; offset < prompt.size(); offset += block_bytes) {
    previous = chain_hash(prompt.substr(offset, block_bytes), previous);
    out.push_back(previous);
  }
}

}  // namespace infergate::scheduling
