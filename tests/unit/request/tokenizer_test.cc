#include "request/tokenizer.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace infergate::request {
namespace {

std::vector<std::uint32_t> ids_of(const std::vector<std::string>& pieces) {
  std::vector<std::uint32_t> ids;
  for (const std::string& piece : pieces) ids.push_back(token_id(piece));
  return ids;
}

struct SplitCase {
  std::string description;
  std::string text;
  std::vector<std::string> expected_pieces;
};

TEST(TokenizerTest, SplitRules) {
  const std::vector<SplitCase> cases = {
      {"empty text", "", {}},
      {"one short word", "the", {"the"}},
      {"word with leading space is one token up to 4 bytes", " the", {" the"}},
      {"long word is cut into 4-byte pieces", "hello", {"hell", "o"}},
      {"leading space counts towards the piece", " hello", {" hel", "lo"}},
      {"two words", "Hello world", {"Hell", "o", " wor", "ld"}},
      {"12-byte word", "tokenization", {"toke", "niza", "tion"}},
      {"whitespace run joins the next word", "a  b", {"a", "  b"}},
      {"trailing whitespace is its own word", "abc   ", {"abc", "   "}},
      {"long whitespace is cut too", "      ", {"    ", "  "}},
      {"leading newlines", "\n\nfoo", {"\n\nfo", "o"}},
      {"tabs and CRLF", "x\ty\r\nz", {"x", "\ty", "\r\nz"}},
      {"vertical tab and form feed are whitespace", "a\vb\fc", {"a", "\vb", "\fc"}},
      {"punctuation is not a separator", "a,b.c!", {"a,b.", "c!"}},
      {"UTF-8 is cut at byte boundaries", "caf\xC3\xA9", {"caf\xC3", "\xA9"}},
      {"no-break space is not whitespace",
       "a\xC2\xA0"
       "b",
       {"a\xC2\xA0"
        "b"}},
      {"NUL is not whitespace", std::string("a\0b", 3), {std::string("a\0b", 3)}},
      {"chat markers",
       "<|user|>Hi\n<|assistant|>",
       {"<|us", "er|>", "Hi", "\n<|a", "ssis", "tant", "|>"}},
  };
  for (const SplitCase& test_case : cases) {
    SCOPED_TRACE(test_case.description);
    EXPECT_EQ(encode(test_case.text), ids_of(test_case.expected_pieces));
    EXPECT_EQ(count_tokens(test_case.text), test_case.expected_pieces.size());
  }
}

// The rules of tokenizer.h written the obvious way, word by word, to check the branch-free
// implementation against.
std::vector<std::string> reference_pieces(std::string_view text) {
  auto is_space = [](char byte) {
    return std::string_view(" \t\n\v\f\r").find(byte) != std::string_view::npos;
  };
  std::vector<std::string> pieces;
  std::size_t position = 0;
  while (position < text.size()) {
    const std::size_t word_start = position;
    while (position < text.size() && is_space(text[position])) ++position;
    while (position < text.size() && !is_space(text[position])) ++position;
    for (std::size_t piece_start = word_start; piece_start < position; piece_start += 4) {
      pieces.emplace_back(
          text.substr(piece_start, std::min<std::size_t>(4, position - piece_start)));
    }
  }
  return pieces;
}

TEST(TokenizerTest, MatchesWordByWordReferenceOnRandomText) {
  std::mt19937 random(2024);
  const std::string alphabet("ab \t\n\r\v\f.\xC3\xA9\0", 12);
  for (int round = 0; round < 2000; ++round) {
    std::string text(random() % 40, ' ');
    for (char& byte : text) byte = alphabet[random() % alphabet.size()];
    SCOPED_TRACE(round);
    const std::vector<std::string> pieces = reference_pieces(text);
    ASSERT_EQ(encode(text), ids_of(pieces));
    ASSERT_EQ(count_tokens(text), pieces.size());
  }
}

TEST(TokenizerTest, TokenIdIsLow32BitsOfXxh3) {
  for (std::string_view piece : {"", "a", " the", "\n<|a", "toke"}) {
    EXPECT_EQ(token_id(piece), static_cast<std::uint32_t>(XXH3_64bits(piece.data(), piece.size())));
  }
  EXPECT_NE(token_id(" the"), token_id("the "));
}

TEST(TokenizerTest, CountMatchesEncode) {
  const std::string text =
      "The quick brown fox jumps over the lazy dog.\n\n  Indented line\twith tabs   \n"
      "Supercalifragilisticexpialidocious! \xE2\x9C\x93 done   ";
  for (std::size_t length = 0; length <= text.size(); ++length) {
    const std::string_view prefix = std::string_view(text).substr(0, length);
    EXPECT_EQ(count_tokens(prefix), encode(prefix).size()) << length;
  }
}

TEST(TokenizerTest, EnglishTextIsAboutFourBytesPerToken) {
  const std::string text =
      "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
      "age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was "
      "the season of Light, it was the season of Darkness, it was the spring of hope, it was the "
      "winter of despair.";
  const double bytes_per_token = static_cast<double>(text.size()) / count_tokens(text);
  EXPECT_GT(bytes_per_token, 3.0);
  EXPECT_LT(bytes_per_token, 5.0);
}

// Texts sharing a prefix share all tokens of the prefix's encoding but possibly its last.
TEST(TokenizerTest, PrefixProperty) {
  const std::string text =
      "<|system|>You are helpful.\n<|user|>Summarise   this:\tlorem ipsum dolor sit amet, "
      "consectetur adipiscing elit   \n\n<|assistant|> the cat sat";
  const std::vector<std::uint32_t> full = encode(text);
  for (std::size_t length = 0; length <= text.size(); ++length) {
    const std::vector<std::uint32_t> prefix = encode(std::string_view(text).substr(0, length));
    ASSERT_LE(prefix.size(), full.size());
    const std::size_t stable = prefix.empty() ? 0 : prefix.size() - 1;
    EXPECT_TRUE(std::equal(prefix.begin(), prefix.begin() + stable, full.begin()))
        << "prefix length " << length;
  }
}

TEST(TokenizerTest, ConcatenationIsExactAtAWordBoundary) {
  const std::string left = "first part ends here.";
  const std::string right = " second\tpart\n";
  std::vector<std::uint32_t> expected = encode(left);
  const std::vector<std::uint32_t> right_ids = encode(right);
  expected.insert(expected.end(), right_ids.begin(), right_ids.end());
  EXPECT_EQ(encode(left + right), expected);
}

TEST(TokenizerTest, OutputVocabularyWordsAreSingleDistinctTokens) {
  const std::vector<std::string>& vocabulary = output_vocabulary();
  ASSERT_EQ(vocabulary.size(), 256u);
  EXPECT_EQ(vocabulary.front(), " a");
  EXPECT_EQ(vocabulary[27], " the");
  EXPECT_EQ(vocabulary.back(), " orb");
  std::set<std::string> words;
  std::set<std::uint32_t> ids;
  for (std::size_t index = 0; index < vocabulary.size(); ++index) {
    const std::string& word = vocabulary[index];
    SCOPED_TRACE(word);
    ASSERT_GE(word.size(), 2u);
    ASSERT_LE(word.size(), 4u);
    EXPECT_EQ(word[0], ' ');
    for (std::size_t position = 1; position < word.size(); ++position) {
      EXPECT_TRUE(word[position] >= 'a' && word[position] <= 'z');
    }
    EXPECT_EQ(encode(word), std::vector<std::uint32_t>{token_id(word)});
    EXPECT_EQ(output_vocabulary_ids()[index], token_id(word));
    words.insert(word);
    ids.insert(token_id(word));
  }
  EXPECT_EQ(words.size(), vocabulary.size());
  EXPECT_EQ(ids.size(), vocabulary.size()) << "token ids of vocabulary words collide";
  for (std::string_view common : {" the", " of", " and", " cat", " to"}) {
    EXPECT_TRUE(words.count(std::string(common))) << common;
  }
}

// Generated text fed back as a prompt reproduces the generated token ids.
TEST(TokenizerTest, VocabularyTextRoundTrips) {
  const std::vector<std::string>& vocabulary = output_vocabulary();
  std::string text;
  std::vector<std::uint32_t> generated;
  for (std::size_t step = 0; step < 3000; ++step) {
    const std::size_t index = (step * 37 + step / 5) % vocabulary.size();
    text += vocabulary[index];
    generated.push_back(output_vocabulary_ids()[index]);
  }
  EXPECT_EQ(encode(text), generated);
}

TEST(TokenizerTest, MakeTextWithTokensHasExactCounts) {
  for (std::size_t num_tokens = 0; num_tokens <= 300; ++num_tokens) {
    const std::string text = make_text_with_tokens(num_tokens, num_tokens * 31 + 7);
    ASSERT_EQ(count_tokens(text), num_tokens);
    ASSERT_EQ(encode(text).size(), num_tokens);
  }
  for (std::size_t num_tokens : {1000u, 4096u, 8191u, 100000u}) {
    EXPECT_EQ(count_tokens(make_text_with_tokens(num_tokens, 1)), num_tokens);
  }
}

TEST(TokenizerTest, MakeTextWithTokensIsDeterministic) {
  EXPECT_EQ(make_text_with_tokens(64, 5), make_text_with_tokens(64, 5));
  EXPECT_NE(make_text_with_tokens(64, 5), make_text_with_tokens(64, 6));
  // A longer text from the same seed extends the shorter one.
  const std::string short_text = make_text_with_tokens(10, 9);
  EXPECT_EQ(make_text_with_tokens(20, 9).substr(0, short_text.size()), short_text);
  // Frozen: load-generator workloads and recorded benchmarks depend on this text.
  EXPECT_EQ(make_text_with_tokens(8, 0), " tax lad bed ivy pop hug fur let");
  EXPECT_EQ(make_text_with_tokens(0, 3), "");
}

TEST(TokenizerTest, MadeTextsConcatenateWithoutChangingTokens) {
  const std::string first = make_text_with_tokens(33, 1);
  const std::string second = make_text_with_tokens(17, 2);
  std::vector<std::uint32_t> expected = encode(first);
  const std::vector<std::uint32_t> second_ids = encode(second);
  expected.insert(expected.end(), second_ids.begin(), second_ids.end());
  EXPECT_EQ(encode(first + second), expected);
}

}  // namespace
}  // namespace infergate::request
