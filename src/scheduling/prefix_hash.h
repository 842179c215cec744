#pragma once

// Block hashes of a request's prompt for the approximate prefix-cache index (scheduling facts
// §4.2). The one prefix-hash function of the project: the picker, the simulator's routing checks
// and the benchmarks all call this.

#include <cstdint>
#include <string_view>
#include <vector>

namespace infergate::scheduling {

using BlockHash = std::uint64_t;

// Average characters per token: a block of `block_size_tokens` tokens covers
// `block_size_tokens * kCharsPerToken` prompt bytes.
inline constexpr int kCharsPerToken = 4;
inline constexpr int kDefaultBlockSizeTokens = 16;
inline constexpr int kDefaultMaxPrefixBlocks = 256;

// Computes the chained block hashes of `prompt` (the per-API bytes of §4.2) into `out`, replacing
// its contents; `out` keeps its capacity, so a vector reused across requests does not allocate.
// - block = block_size_tokens * 4 bytes; a prompt shorter than one block yields no hashes;
// - the prompt is truncated to max_blocks * block bytes;
// - h0 = XXH64(target_model ‖ cache_salt), then h_i = XXH64(block_i ‖ LE64(h_{i-1})), all with
//   seed 0; a trailing partial block is hashed the same way. `out` holds h_1..h_n (not h0).
// Non-positive block_size_tokens or max_blocks yield no hashes. Pure; thread-safe; never copies
// the prompt (one stack buffer per block, or XXH64 streaming for blocks over 1 KiB).
void compute_prefix_hashes(std::string_view prompt, std::string_view target_model,
                           std::string_view cache_salt, int block_size_tokens, int max_blocks,
                           std::vector<BlockHash>& out);

}  // namespace infergate::scheduling
