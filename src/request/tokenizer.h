#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

// infergate's approximate tokenizer: a deterministic stand-in for a model's BPE tokenizer, shared
// by the simulated model server (prompt_tokens, prefix cache), the load generator (prompts of a
// given length) and the picker. It is not any real model's tokenizer; it only has the properties
// that matter for serving: ~4 bytes per token on English text, identical text gives identical
// tokens, and texts sharing a prefix share a token prefix.
//
// Rules (also in src/request/README.md, since users read them to understand prompt_tokens):
//  1. Whitespace is the ASCII bytes ' ', '\t', '\n', '\v', '\f', '\r'; every other byte (including
//     UTF-8 multi-byte sequences) is non-whitespace.
//  2. Text splits into words: a word is a run of whitespace followed by a run of non-whitespace.
//     The first word may have no whitespace; whitespace at the end of the text is a word of its
//     own.
//  3. Each word is cut left to right into pieces of 4 bytes; the last piece has 1-4 bytes. Each
//     piece is one token: " hello" -> " hel" "lo"; " the" -> " the"; "  \n" -> "  \n".
//  4. A token's id is token_id(piece) = the low 32 bits of XXH3-64 (seed 0) of the piece's bytes.
//
// Consequence: if B = A + C, encode(B) starts with all of encode(A) except possibly its last token
// (the word at the boundary may grow). When A ends with a non-whitespace byte and C starts with a
// whitespace byte (or either is empty), encode(A + C) == encode(A) + encode(C) exactly.
//
// All functions are pure and thread-safe.
namespace infergate::request {

// The id of one piece (any bytes; normally 1-4 bytes produced by encode()).
std::uint32_t token_id(std::string_view piece);

// The ids of `text`'s tokens under the rules above. Allocates only the returned vector.
std::vector<std::uint32_t> encode(std::string_view text);

// encode(text).size(), without allocating.
std::size_t count_tokens(std::string_view text);

// The fixed vocabulary the simulator generates from: 256 distinct lowercase English words, each a
// space followed by 1-3 letters (" a", " of", " the", ...), so each is exactly one token and a
// concatenation of them encodes to exactly the sequence of their ids. Generated text fed back as a
// prompt (the next chat turn) therefore reproduces the generated tokens, and the prefix cache
// keeps working across turns. The list and its order never change (golden-tested).
const std::vector<std::string>& output_vocabulary();

// token_id() of each output_vocabulary() word, in the same order.
const std::vector<std::uint32_t>& output_vocabulary_ids();

// Deterministic text of exactly `num_tokens` tokens: `num_tokens` output_vocabulary() words,
// word i chosen by a SplitMix64 stream seeded with `seed` (same seed, same text, on every
// platform). Text from different calls concatenates without changing either's tokens.
std::string make_text_with_tokens(std::size_t num_tokens, std::uint64_t seed);

}  // namespace infergate::request
