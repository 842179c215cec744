#include "request/tokenizer.h"

#include <array>
#include <limits>

#include "common/random.h"

// Inlining lets the compiler specialise XXH3 for the 1-4 byte pieces we hash; the hash values are
// the same as the library's.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace infergate::request {
namespace {

constexpr std::size_t kMaxPieceBytes = 4;

constexpr std::array<bool, 256> kIsWhitespace = [] {
  std::array<bool, 256> table{};
  for (unsigned char byte : {' ', '\t', '\n', '\v', '\f', '\r'}) table[byte] = true;
  return table;
}();

bool is_whitespace(char byte) { return kIsWhitespace[static_cast<unsigned char>(byte)]; }

// Rules 2 and 3 of tokenizer.h restated per byte: a word starts at byte 0 and at every
// whitespace byte that follows a non-whitespace byte; a token starts at every 4th byte of a word.
// Kept free of data-dependent branches (the ternary compiles to a conditional move): word
// boundaries every few bytes would defeat the branch predictor.
class TokenStarts {
 public:
  // Whether a token starts at byte `index`; call for bytes 0, 1, 2, ... in order.
  bool at(std::size_t index, char byte) {
    const bool whitespace = is_whitespace(byte);
    word_start_ = whitespace && !previous_is_whitespace_ ? index : word_start_;
    previous_is_whitespace_ = whitespace;
    return (index - word_start_) % kMaxPieceBytes == 0;
  }

 private:
  std::size_t word_start_ = 0;
  bool previous_is_whitespace_ = true;
};

}  // namespace

std::uint32_t token_id(std::string_view piece) {
  return static_cast<std::uint32_t>(XXH3_64bits(piece.data(), piece.size()));
}

std::size_t count_tokens(std::string_view text) {
  TokenStarts starts;
  std::size_t count = 0;
  for (std::size_t index = 0; index < text.size(); ++index) count += starts.at(index, text[index]);
  return count;
}

std::vector<std::uint32_t> encode(std::string_view text) {
  // Pass 1 records where tokens start, pass 2 hashes the pieces between those offsets. The offsets
  // live in the output itself (pass 2 overwrites each with its id), so nothing else is allocated;
  // pass 1 stores on every byte and advances conditionally instead of branching per byte.
  // Offsets are kept mod 2^32: differences of neighbours (piece lengths, 1..4) stay exact, so
  // texts over 4 GiB need no separate path.
  const std::size_t count = count_tokens(text);
  std::vector<std::uint32_t> ids(count + 1);
  TokenStarts starts;
  std::size_t written = 0;
  for (std::size_t index = 0; index < text.size(); ++index) {
    ids[written] = static_cast<std::uint32_t>(index);
    written += starts.at(index, text[index]);
  }
  std::size_t piece_start = 0;
  for (std::size_t token_index = 0; token_index < count; ++token_index) {
    const std::size_t piece_length = token_index + 1 < count
                                         ? std::uint32_t{ids[token_index + 1] - ids[token_index]}
                                         : text.size() - piece_start;
    ids[token_index] = token_id(text.substr(piece_start, piece_length));
    piece_start += piece_length;
  }
  ids.pop_back();
  return ids;
}

const std::vector<std::string>& output_vocabulary() {
  // Never reorder or edit: generated text, and so golden tests and recorded benchmarks, depend on
  // the order.
  static const std::vector<std::string> kVocabulary = {
      " a",   " am",  " an",  " as",  " at",  " be",  " by",  " do",  " go",  " he",  " if",
      " in",  " is",  " it",  " me",  " my",  " no",  " of",  " oh",  " ok",  " on",  " or",
      " so",  " to",  " up",  " us",  " we",  " the", " and", " for", " are", " but", " not",
      " you", " all", " any", " can", " had", " her", " was", " one", " our", " out", " day",
      " get", " has", " him", " his", " how", " man", " new", " now", " old", " see", " two",
      " way", " who", " boy", " did", " its", " let", " put", " say", " she", " too", " use",
      " act", " add", " age", " ago", " aid", " aim", " air", " arm", " art", " ask", " bad",
      " bag", " bar", " bed", " bet", " big", " bit", " box", " bus", " buy", " car", " cat",
      " cow", " cry", " cup", " cut", " dad", " dog", " dry", " due", " ear", " eat", " egg",
      " end", " eye", " far", " fat", " few", " fit", " fix", " fly", " fog", " fox", " fun",
      " gap", " gas", " gun", " guy", " hat", " hen", " hit", " hot", " ice", " ink", " job",
      " joy", " key", " kid", " lab", " law", " lay", " leg", " lid", " lie", " lip", " log",
      " lot", " low", " map", " mix", " mom", " mud", " net", " nor", " nut", " oak", " odd",
      " off", " oil", " own", " pan", " pay", " pen", " per", " pet", " pie", " pig", " pin",
      " pit", " pop", " pot", " raw", " ray", " red", " rid", " row", " rub", " run", " sad",
      " sat", " sea", " set", " sit", " six", " sky", " son", " sum", " sun", " tab", " tax",
      " tea", " ten", " tie", " tin", " tip", " toe", " top", " toy", " try", " van", " via",
      " war", " wax", " web", " wet", " why", " win", " wit", " yes", " yet", " zoo", " ant",
      " ape", " arc", " ash", " bat", " bay", " bee", " bow", " bud", " bug", " cab", " cap",
      " cod", " cot", " cub", " dew", " dim", " dip", " dot", " dug", " elf", " elk", " elm",
      " fan", " fed", " fig", " fin", " fir", " fur", " gem", " gum", " hay", " hem", " hip",
      " hog", " hop", " hub", " hug", " hut", " ivy", " jam", " jar", " jaw", " jet", " jog",
      " jug", " kit", " lad", " lap", " led", " lit", " mat", " mop", " mug", " nap", " nod",
      " oar", " oat", " orb",
  };
  return kVocabulary;
}

const std::vector<std::uint32_t>& output_vocabulary_ids() {
  static const std::vector<std::uint32_t> kIds = [] {
    std::vector<std::uint32_t> ids;
    ids.reserve(output_vocabulary().size());
    for (const std::string& word : output_vocabulary()) ids.push_back(token_id(word));
    return ids;
  }();
  return kIds;
}

std::string make_text_with_tokens(std::size_t num_tokens, std::uint64_t seed) {
  const std::vector<std::string>& vocabulary = output_vocabulary();
  std::string text;
  text.reserve(num_tokens * kMaxPieceBytes);
  SplitMix64 rng(seed);
  for (std::size_t token_index = 0; token_index < num_tokens; ++token_index) {
    text += vocabulary[rng.next_below(vocabulary.size())];
  }
  return text;
}

}  // namespace infergate::request
