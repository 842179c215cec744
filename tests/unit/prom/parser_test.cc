#include "prom/parser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/random.h"
#include "prom/exposition.h"
#include "prom/registry.h"

namespace infergate::prom {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

using Labels = std::vector<std::pair<std::string, std::string>>;

// A Sample copied out of the callback.
struct OwnedSample {
  std::string name;
  Labels labels;
  double value = 0;
  std::optional<std::int64_t> timestamp_ms;

  bool operator==(const OwnedSample& other) const {
    const bool same_value = (std::isnan(value) && std::isnan(other.value)) || value == other.value;
    return name == other.name && labels == other.labels && same_value &&
           timestamp_ms == other.timestamp_ms;
  }
};

void PrintTo(const OwnedSample& sample, std::ostream* out) {
  *out << sample.name << '{';
  for (const auto& [name, value] : sample.labels) *out << name << "=\"" << value << "\",";
  *out << "} " << format_value(sample.value);
  if (sample.timestamp_ms) *out << ' ' << *sample.timestamp_ms;
}

OwnedSample own(const Sample& sample) {
  OwnedSample owned{std::string(sample.name), {}, sample.value, sample.timestamp_ms};
  for (const Label& label : sample.labels) {
    owned.labels.emplace_back(std::string(label.name), std::string(label.value));
  }
  return owned;
}

struct Parsed {
  std::vector<OwnedSample> samples;
  std::vector<FamilyType> family_types;  // one per sample
  std::vector<std::string> metadata;     // "HELP name text" / "TYPE name type"
  ParseStats stats;
};

// Feeds `text` cut at the given offsets (ascending), then finishes.
Parsed parse_in_pieces(std::string_view text, const std::vector<std::size_t>& cuts,
                       TextParser::Options options = {}) {
  Parsed parsed;
  TextParser parser(options, [&parsed](const FamilyMetadata& metadata) {
    std::string line = metadata.kind == FamilyMetadata::Kind::kHelp ? "HELP " : "TYPE ";
    line += metadata.family_name;
    line += ' ';
    line += metadata.kind == FamilyMetadata::Kind::kHelp ? metadata.help
                                                         : family_type_name(metadata.type);
    parsed.metadata.push_back(std::move(line));
  });
  const SampleCallback on_sample = [&parsed](const Sample& sample) {
    parsed.samples.push_back(own(sample));
    parsed.family_types.push_back(sample.family_type);
  };
  std::size_t start = 0;
  for (std::size_t cut : cuts) {
    parser.feed(text.substr(start, cut - start), on_sample);
    start = cut;
  }
  parser.feed(text.substr(start), on_sample);
  parsed.stats = parser.finish(on_sample);
  return parsed;
}

Parsed parse_whole(std::string_view text, TextParser::Options options = {}) {
  return parse_in_pieces(text, {}, options);
}

struct GoldenCase {
  const char* description;
  std::string input;
  std::vector<OwnedSample> expected;
};

std::vector<GoldenCase> golden_cases() {
  return {
      {"counter with _total, HELP and TYPE",
       "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
       "# TYPE vllm:prompt_tokens_total counter\n"
       "vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} 1234.0\n",
       {{"vllm:prompt_tokens_total", {{"engine", "0"}, {"model_name", "m"}}, 1234, {}}}},
      {"gauge with a colon in its name and no labels",
       "vllm:num_requests_running 3\n",
       {{"vllm:num_requests_running", {}, 3, {}}}},
      {"histogram buckets with le, then count and sum",
       "# TYPE ttft histogram\n"
       "ttft_bucket{le=\"0.5\",model_name=\"m\"} 1.0\n"
       "ttft_bucket{le=\"+Inf\",model_name=\"m\"} 3.0\n"
       "ttft_count{model_name=\"m\"} 3.0\n"
       "ttft_sum{model_name=\"m\"} 4.25\n",
       {{"ttft_bucket", {{"le", "0.5"}, {"model_name", "m"}}, 1, {}},
        {"ttft_bucket", {{"le", "+Inf"}, {"model_name", "m"}}, 3, {}},
        {"ttft_count", {{"model_name", "m"}}, 3, {}},
        {"ttft_sum", {{"model_name", "m"}}, 4.25, {}}}},
      {"number forms",
       "a 1\nb 1.5e-3\nc -0.5\nd .5\ne +3\nf 1e+015\ng 1.7e+09\nh 5.\ni 1E3\n",
       {{"a", {}, 1, {}},
        {"b", {}, 1.5e-3, {}},
        {"c", {}, -0.5, {}},
        {"d", {}, 0.5, {}},
        {"e", {}, 3, {}},
        {"f", {}, 1e15, {}},
        {"g", {}, 1.7e9, {}},
        {"h", {}, 5, {}},
        {"i", {}, 1000, {}}}},
      {"infinities and NaN, any case",
       "a +Inf\nb -Inf\nc Inf\nd NaN\ne Nan\nf nan\ng -inf\nh +Infinity\n",
       {{"a", {}, kInf, {}},
        {"b", {}, -kInf, {}},
        {"c", {}, kInf, {}},
        {"d", {}, kNaN, {}},
        {"e", {}, kNaN, {}},
        {"f", {}, kNaN, {}},
        {"g", {}, -kInf, {}},
        {"h", {}, kInf, {}}}},
      {"timestamps",
       "a 1 1712345678901\nb{x=\"y\"} 2 -5\nc 3 +7\n",
       {{"a", {}, 1, 1712345678901}, {"b", {{"x", "y"}}, 2, -5}, {"c", {}, 3, 7}}},
      {"spaces and tabs everywhere they are allowed",
       "  x \t{ a = \"1\" ,\tb=\"2\" , } \t 7 \t 99 \t\n",
       {{"x", {{"a", "1"}, {"b", "2"}}, 7, 99}}},
      {"empty label set and trailing comma",
       "a{} 1\nb{c=\"d\",} 2\nc{a=\"b\"}3\n",
       {{"a", {}, 1, {}}, {"b", {{"c", "d"}}, 2, {}}, {"c", {{"a", "b"}}, 3, {}}}},
      {"CRLF line endings and no final newline",
       "# TYPE a gauge\r\na 1\r\nb{c=\"d\"} 2 5\r\nc 3",
       {{"a", {}, 1, {}}, {"b", {{"c", "d"}}, 2, 5}, {"c", {}, 3, {}}}},
      {"escaped label values, several on one line",
       "x{a=\"back\\\\slash\",b=\"say \\\"hi\\\"\",c=\"one\\ntwo\",d=\"plain\"} 1\n",
       {{"x",
         {{"a", "back\\slash"}, {"b", "say \"hi\""}, {"c", "one\ntwo"}, {"d", "plain"}},
         1,
         {}}}},
      {"label values holding syntax characters and UTF-8",
       "x{a=\"{},=# 1 2\",b=\"caf\xc3\xa9\",c=\"\"} 1\n",
       {{"x", {{"a", "{},=# 1 2"}, {"b", "caf\xc3\xa9"}, {"c", ""}}, 1, {}}}},
      {"blank lines and comments are ignored",
       "\n\n# just a comment\n#\n#HELPFUL note\n   \n\t\n# HELP\n# TYPE\nx 1\n",
       {{"x", {}, 1, {}}}},
      {"empty body", "", {}},
      {"LoRA info gauge as vLLM serves it",
       "vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"a, b\","
       "waiting_lora_adapters=\"\"} 1.7123456789e+09\n",
       {{"vllm:lora_requests_info",
         {{"max_lora", "4"}, {"running_lora_adapters", "a, b"}, {"waiting_lora_adapters", ""}},
         1.7123456789e9,
         {}}}},
  };
}

TEST(TextParserTest, GoldenSamples) {
  for (const GoldenCase& test_case : golden_cases()) {
    const Parsed parsed = parse_whole(test_case.input);
    EXPECT_EQ(parsed.samples, test_case.expected) << test_case.description;
    EXPECT_EQ(parsed.stats.samples, test_case.expected.size()) << test_case.description;
    EXPECT_EQ(parsed.stats.skipped_lines, 0u) << test_case.description;
    EXPECT_TRUE(parsed.stats.errors.empty()) << test_case.description;
  }
}

TEST(TextParserTest, HelpAndTypeLines) {
  const std::string text =
      "# HELP c_total Requests.\\nSecond line with a \\\\ backslash, \\t kept and \"quotes\".\n"
      "# TYPE c_total counter\n"
      "c_total{a=\"x\"} 1\n"
      "c_created{a=\"x\"} 1.7e+09\n"
      "# HELP g Gauge.\n"
      "# TYPE g gauge\n"
      "g 2\n"
      "g_sum 3\n"
      "#  TYPE   h\thistogram  \n"
      "h_bucket{le=\"+Inf\"} 1\n"
      "h_count 1\n"
      "h_sum 0.5\n"
      "h_total 1\n"
      "# TYPE s summary\n"
      "s{quantile=\"0.5\"} 1\n"
      "s_count 1\n"
      "s_bucket 1\n"
      "# TYPE u untyped\n"
      "u 1\n"
      "# TYPE k unknown\n"
      "k 1\n"
      "# HELP other Other help resets the family type.\n"
      "h_count 2\n"
      "# TYPE r counter\n"
      "r_total 1\n"
      "r_created 2\n";
  const Parsed parsed = parse_whole(text);
  EXPECT_EQ(parsed.metadata,
            (std::vector<std::string>{
                "HELP c_total Requests.\nSecond line with a \\ backslash, \\t kept and \"quotes\".",
                "TYPE c_total counter", "HELP g Gauge.", "TYPE g gauge", "TYPE h histogram",
                "TYPE s summary", "TYPE u untyped", "TYPE k untyped",
                "HELP other Other help resets the family type.", "TYPE r counter"}));
  EXPECT_EQ(parsed.stats.metadata_lines, 10u);
  using enum FamilyType;
  EXPECT_EQ(parsed.family_types,
            (std::vector<FamilyType>{kCounter, kCounter, kGauge, kUntyped, kHistogram, kHistogram,
                                     kHistogram, kUntyped, kSummary, kSummary, kUntyped, kUntyped,
                                     kUntyped, kUntyped, kCounter, kCounter}));
  EXPECT_EQ(parsed.stats.skipped_lines, 0u);
  EXPECT_EQ(parsed.stats.lines, 26u);
}

struct MalformedCase {
  const char* description;
  std::string line;
  const char* expected_reason;
};

TEST(TextParserTest, MalformedLinesAreSkippedWithTheirReason) {
  const std::vector<MalformedCase> cases = {
      {"missing value", "x", "missing sample value"},
      {"missing value after labels", "x{a=\"b\"}", "missing sample value"},
      {"missing value after blanks", "x{a=\"b\"}  \t", "missing sample value"},
      {"bad number", "x abc", "bad sample value"},
      {"number with two dots", "x 1.5.5", "bad sample value"},
      {"hexadecimal float", "x 0x10", "bad sample value"},
      {"signed NaN", "x -NaN", "bad sample value"},
      {"C's nan with payload", "x nan(1)", "bad sample value"},
      {"double sign", "x +-1", "bad sample value"},
      {"exponent without digits", "x 1e", "bad sample value"},
      {"out of range", "x 1e999", "bad sample value"},
      {"fractional timestamp", "x 1 1.5", "bad timestamp"},
      {"timestamp with double sign", "x 1 +-5", "bad timestamp"},
      {"timestamp out of range", "x 1 99999999999999999999", "bad timestamp"},
      {"text after timestamp", "x 1 2 3", "unexpected text after timestamp"},
      {"unterminated label value", "x{a=\"b} 1", "unterminated label value"},
      {"unterminated label value ending in backslash", "x{a=\"b\\", "unterminated label value"},
      {"unterminated escaped label value", "x{a=\"\\\\b} 1", "unterminated label value"},
      {"unterminated label set", "x{a=\"b\",", "unterminated label set"},
      {"label set without '}'", "x{a=\"b\" 1", "expected ',' or '}' after label value"},
      {"bad escape", "x{a=\"\\t\"} 1", "invalid escape in label value"},
      {"unquoted label value", "x{a=b} 1", "label value must be quoted"},
      {"single-quoted label value", "x{a='b'} 1", "label value must be quoted"},
      {"missing '='", "x{a \"b\"} 1", "expected '=' after label name"},
      {"colon in label name", "x{a:b=\"c\"} 1", "expected '=' after label name"},
      {"duplicate label", "x{a=\"1\",a=\"2\"} 1", "duplicate label name"},
      {"stray closing brace", "x} 1", "invalid metric name"},
      {"stray closing brace after a blank", "x } 1", "bad sample value"},
      {"label set without a name", "{a=\"b\"} 1", "invalid metric name"},
      {"double opening brace", "x{{a=\"b\"}} 1", "invalid label name"},
      {"empty label name", "x{=\"b\"} 1", "invalid label name"},
      {"lone comma in label set", "x{,} 1", "invalid label name"},
      {"label name starting with a digit", "x{1a=\"b\"} 1", "invalid label name"},
      {"metric name starting with a digit", "1x 2", "invalid metric name"},
      {"dash in metric name", "x-y 1", "invalid metric name"},
      {"NUL after the name", std::string("x\0 1", 4), "invalid metric name"},
      {"control bytes", "\x01\x02 1", "invalid metric name"},
      {"unknown TYPE", "# TYPE x countr", "unknown metric type in TYPE line"},
      {"TYPE with trailing words", "# TYPE x counter extra", "unknown metric type in TYPE line"},
      {"TYPE without a type", "# TYPE x", "unknown metric type in TYPE line"},
      {"uppercase TYPE", "# TYPE x COUNTER", "unknown metric type in TYPE line"},
      {"invalid HELP name", "# HELP 1x help", "invalid metric name in HELP line"},
      {"invalid TYPE name", "# TYPE x{} gauge", "invalid metric name in TYPE line"},
  };
  for (const MalformedCase& test_case : cases) {
    const std::string text = "before 1\n" + test_case.line + "\nafter{a=\"b\"} 2\n";
    const Parsed parsed = parse_whole(text);
    EXPECT_EQ(parsed.samples,
              (std::vector<OwnedSample>{{"before", {}, 1, {}}, {"after", {{"a", "b"}}, 2, {}}}))
        << test_case.description;
    EXPECT_EQ(parsed.stats.skipped_lines, 1u) << test_case.description;
    EXPECT_EQ(parsed.stats.errors,
              std::vector<std::string>{std::string("line 2: ") + test_case.expected_reason})
        << test_case.description;
  }
}

TEST(TextParserTest, RecordsOnlyTheFirstErrorsButCountsAll) {
  std::string text;
  for (int i = 0; i < 20; ++i) text += "bad\n";
  text += "good 1\n";
  const Parsed parsed = parse_whole(text, TextParser::Options{.max_recorded_errors = 3});
  EXPECT_EQ(parsed.stats.skipped_lines, 20u);
  EXPECT_EQ(parsed.stats.errors, (std::vector<std::string>{"line 1: missing sample value",
                                                           "line 2: missing sample value",
                                                           "line 3: missing sample value"}));
  EXPECT_EQ(parsed.samples, (std::vector<OwnedSample>{{"good", {}, 1, {}}}));
}

// Everything the other tests parse, in one body: the reference for the split tests.
std::string corpus() {
  std::string text;
  for (const GoldenCase& test_case : golden_cases()) {
    text += test_case.input;
    if (!text.empty() && text.back() != '\n') text += '\n';
  }
  text += "x{a=\"unterminated} 1\nbad value\n# TYPE x nonsense\r\n\x01\x02\x03\nlast{a=\"\\\\\"} 9";
  return text;
}

void expect_same(const Parsed& actual, const Parsed& expected, const std::string& context) {
  EXPECT_EQ(actual.samples, expected.samples) << context;
  EXPECT_EQ(actual.family_types, expected.family_types) << context;
  EXPECT_EQ(actual.metadata, expected.metadata) << context;
  EXPECT_EQ(actual.stats.lines, expected.stats.lines) << context;
  EXPECT_EQ(actual.stats.samples, expected.stats.samples) << context;
  EXPECT_EQ(actual.stats.metadata_lines, expected.stats.metadata_lines) << context;
  EXPECT_EQ(actual.stats.skipped_lines, expected.stats.skipped_lines) << context;
  EXPECT_EQ(actual.stats.errors, expected.stats.errors) << context;
}

TEST(TextParserTest, SplittingTheInputAnywhereGivesTheSameResult) {
  const std::string text = corpus();
  const Parsed whole = parse_whole(text);
  ASSERT_GT(whole.stats.samples, 30u);
  ASSERT_EQ(whole.stats.skipped_lines, 4u);
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    expect_same(parse_in_pieces(text, {cut}), whole, "cut at " + std::to_string(cut));
    if (::testing::Test::HasFailure()) return;  // one broken offset is enough to see
  }
  std::vector<std::size_t> every_byte;
  for (std::size_t cut = 1; cut < text.size(); ++cut) every_byte.push_back(cut);
  expect_same(parse_in_pieces(text, every_byte), whole, "one byte at a time");
}

TEST(TextParserTest, OverlongLinesAreSkippedWhereverTheyAreCut) {
  const TextParser::Options options{.max_line_bytes = 16};
  // 16 bytes is the limit (the \r counts, the \n does not); 17 is too long.
  const std::string text =
      "ok_sixteen_b 1.0\n"
      "too_long_line 1.5\n"
      "crlf_sixteen 10\r\n"
      "crlf_seventeen 1\r\n"
      "x 1\n"
      "a_line_far_too_long_to_keep{a=\"b\"} 1\n"
      "y 2";
  const Parsed whole = parse_whole(text, options);
  EXPECT_EQ(whole.samples, (std::vector<OwnedSample>{{"ok_sixteen_b", {}, 1, {}},
                                                     {"crlf_sixteen", {}, 10, {}},
                                                     {"x", {}, 1, {}},
                                                     {"y", {}, 2, {}}}));
  EXPECT_EQ(whole.stats.errors,
            (std::vector<std::string>{"line 2: line too long", "line 4: line too long",
                                      "line 6: line too long"}));
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    expect_same(parse_in_pieces(text, {cut}, options), whole, "cut at " + std::to_string(cut));
  }
  std::vector<std::size_t> every_byte;
  for (std::size_t cut = 1; cut < text.size(); ++cut) every_byte.push_back(cut);
  expect_same(parse_in_pieces(text, every_byte, options), whole, "one byte at a time");
}

TEST(TextParserTest, DefaultLineLimitIs64KiB) {
  const std::string huge_value(70 * 1024, 'v');
  const std::string text = "a 1\nb{x=\"" + huge_value + "\"} 2\nc 3\n";
  const Parsed whole = parse_whole(text);
  EXPECT_EQ(whole.samples, (std::vector<OwnedSample>{{"a", {}, 1, {}}, {"c", {}, 3, {}}}));
  EXPECT_EQ(whole.stats.errors, std::vector<std::string>{"line 2: line too long"});
  expect_same(parse_in_pieces(text, {10, 1000, 40000}), whole, "cut in three");
}

TEST(TextParserTest, LabelValuesAreCopiedOnlyWhenEscaped) {
  const std::string text = "x{plain=\"abc\",escaped=\"a\\\"c\"} 1\n";
  const char* const text_begin = text.data();
  const char* const text_end = text.data() + text.size();
  int samples = 0;
  TextParser parser;
  const SampleCallback on_sample = [&](const Sample& sample) {
    ++samples;
    const auto points_into_text = [&](std::string_view view) {
      return view.data() >= text_begin && view.data() + view.size() <= text_end;
    };
    EXPECT_TRUE(points_into_text(sample.name));
    EXPECT_TRUE(points_into_text(*sample.labels.find("plain")));
    EXPECT_EQ(*sample.labels.find("escaped"), "a\"c");
    EXPECT_FALSE(points_into_text(*sample.labels.find("escaped")));
    EXPECT_EQ(sample.labels.find("missing"), std::nullopt);
  };
  parser.feed(text, on_sample);
  parser.finish(on_sample);
  EXPECT_EQ(samples, 1);
}

TEST(TextParserTest, FinishResetsTheParserForTheNextBody) {
  TextParser parser;
  std::vector<FamilyType> types;
  const SampleCallback on_sample = [&types](const Sample& sample) {
    types.push_back(sample.family_type);
  };
  parser.feed("# TYPE x counter\nx 1\nbad\nunfinished", on_sample);
  const ParseStats first = parser.finish(on_sample);
  EXPECT_EQ(first.lines, 4u);
  EXPECT_EQ(first.samples, 1u);
  EXPECT_EQ(first.errors,
            (std::vector<std::string>{"line 3: missing sample value",
                                      "line 4: missing sample value"}));  // `unfinished` too

  parser.feed("x 2\nbad\n", on_sample);
  const ParseStats second = parser.finish(on_sample);
  EXPECT_EQ(second.lines, 2u);
  EXPECT_EQ(second.samples, 1u);
  EXPECT_EQ(second.errors, std::vector<std::string>{"line 2: missing sample value"});
  EXPECT_EQ(types, (std::vector<FamilyType>{FamilyType::kCounter, FamilyType::kUntyped}));
}

std::string random_bytes(std::uint64_t seed, std::size_t size) {
  SplitMix64 random(seed);
  std::string bytes(size, '\0');
  for (char& byte : bytes) byte = static_cast<char>(random.next_below(256));
  return bytes;
}

TEST(TextParserTest, BinaryGarbageYieldsErrorsNotACrash) {
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    const std::string garbage = random_bytes(seed, 16 * 1024 + seed * 977);
    int samples = 0;
    const auto result = parse_text(garbage, [&samples](const Sample&) { ++samples; });
    ASSERT_FALSE(result.ok()) << "seed " << seed;
    EXPECT_EQ(result.status().http_status(), 502);
    EXPECT_TRUE(result.status().message().starts_with("not Prometheus text: line "))
        << result.status().message();
    EXPECT_EQ(samples, 0);

    // Good lines after garbage still parse, in any chunking.
    const std::string mixed = garbage + "\nup{job=\"x\"} 1\n" + garbage + "\ndown 0";
    const Parsed whole = parse_whole(mixed);
    EXPECT_EQ(whole.samples,
              (std::vector<OwnedSample>{{"up", {{"job", "x"}}, 1, {}}, {"down", {}, 0, {}}}));
    EXPECT_GT(whole.stats.skipped_lines, 0u);
    expect_same(parse_in_pieces(mixed, {7, 500, 501, 9000, mixed.size() - 3}), whole,
                "seed " + std::to_string(seed));
  }
}

TEST(TextParserTest, EveryByteValueInEveryPosition) {
  // Each byte value inside the name, the labels, the value and the timestamp: parsed or
  // rejected, never a crash (the sanitizer build checks the "never").
  const std::string templ = "ab{c=\"d\",e=\"f\\\\\"} 1.5 100";
  for (int byte = 0; byte < 256; ++byte) {
    for (std::size_t pos = 0; pos < templ.size(); ++pos) {
      std::string line = templ;
      line[pos] = static_cast<char>(byte);
      const Parsed parsed = parse_whole(line + "\nz 1\n");
      ASSERT_FALSE(parsed.samples.empty());
      EXPECT_EQ(parsed.samples.back(), (OwnedSample{"z", {}, 1, {}}));
      // Every line but a blank or comment one is either a sample or a recorded error.
      const std::size_t accounted = parsed.stats.samples + parsed.stats.skipped_lines;
      const std::size_t unaccounted_at_most = (byte == '\n' || byte == '#') ? 1 : 0;
      EXPECT_LE(accounted, parsed.stats.lines);
      EXPECT_GE(accounted + unaccounted_at_most, parsed.stats.lines)
          << "byte " << byte << " at " << pos;
    }
  }
}

TEST(ParseTextTest, AcceptsEmptyAndCommentOnlyBodies) {
  const auto empty = parse_text("", [](const Sample&) {});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->lines, 0u);
  const auto comments = parse_text("# nothing here\n\n", [](const Sample&) {});
  ASSERT_TRUE(comments.ok());
  EXPECT_EQ(comments->lines, 2u);
  // Metadata alone is valid Prometheus text, even next to a bad line.
  const auto metadata_only = parse_text("# TYPE x gauge\nx\n", [](const Sample&) {});
  ASSERT_TRUE(metadata_only.ok());
  EXPECT_EQ(metadata_only->skipped_lines, 1u);
  const auto html = parse_text("<html>\n<body>oops</body>\n</html>\n", [](const Sample&) {});
  ASSERT_FALSE(html.ok());
  EXPECT_EQ(html.status().message(),
            "not Prometheus text: line 1: invalid metric name (and 2 more malformed lines)");
}

// What the project's own /metrics serves must parse back to the same values.
TEST(ParseTextTest, RoundTripsTheRegistryExposition) {
  Registry registry;
  auto& tokens = registry.counter("vllm:prompt_tokens", "Prefill tokens.", {"model_name"});
  tokens.with({"m"}).inc(5);
  tokens.with({"we\"ird\\\nname"}).inc(0.5);
  auto& gauges = registry.gauge("g", "Gauges.\nWith \\ escapes.", {"case"});
  const std::vector<std::pair<std::string, double>> gauge_values = {
      {"ratio", 0.1 + 0.2},
      {"tiny", 1e-05},
      {"timestamp", 1.7e9},
      {"go_form", 1e15},
      {"repr_form", 1.5e16},
      {"negative", -1e6},
      {"seven", 1234567.0},
      {"inf", kInf},
      {"minus_inf", -kInf},
      {"nan", kNaN},
      {"max", std::numeric_limits<double>::max()},
      {"min", std::numeric_limits<double>::denorm_min()}};
  for (const auto& [label, value] : gauge_values) gauges.with({label}).set(value);
  auto& ttft = registry.histogram("vllm:time_to_first_token_seconds", "TTFT.", {"model_name"},
                                  {0.001, 0.5, 1, 2.5});
  Histogram& histogram = ttft.with({"m"});
  for (double seconds : {0.0009765625, 0.125, 0.5, 3.0}) histogram.observe(seconds);

  std::map<std::string, double> expected;
  std::map<std::string, FamilyType> expected_types;
  const auto add = [&](const std::string& key, double value, FamilyType type) {
    expected[key] = value;
    expected_types[key] = type;
  };
  add("vllm:prompt_tokens_total{model_name=m}", 5, FamilyType::kCounter);
  add("vllm:prompt_tokens_total{model_name=we\"ird\\\nname}", 0.5, FamilyType::kCounter);
  for (const auto& [label, value] : gauge_values) {
    add("g{case=" + label + "}", value, FamilyType::kGauge);
  }
  const std::vector<std::uint64_t> counts = histogram.cumulative_counts();
  for (std::size_t i = 0; i < counts.size(); ++i) {
    add("vllm:time_to_first_token_seconds_bucket{le=" + format_value(ttft.upper_bounds()[i]) +
            ",model_name=m}",
        static_cast<double>(counts[i]), FamilyType::kHistogram);
  }
  add("vllm:time_to_first_token_seconds_count{model_name=m}", 4, FamilyType::kHistogram);
  add("vllm:time_to_first_token_seconds_sum{model_name=m}", histogram.sum(),
      FamilyType::kHistogram);

  std::map<std::string, double> parsed;
  std::map<std::string, FamilyType> parsed_types;
  std::vector<std::string> helps;
  const auto result = parse_text(
      registry.expose(),
      [&](const Sample& sample) {
        std::string key(sample.name);
        key += '{';
        for (const Label& label : sample.labels) {
          if (key.back() != '{') key += ',';
          key.append(label.name).append("=").append(label.value);
        }
        key += '}';
        EXPECT_EQ(parsed.count(key), 0u) << key;
        parsed[key] = sample.value;
        parsed_types[key] = sample.family_type;
      },
      [&helps](const FamilyMetadata& metadata) {
        if (metadata.kind == FamilyMetadata::Kind::kHelp) helps.emplace_back(metadata.help);
      });
  ASSERT_TRUE(result.ok()) << result.status().message();
  EXPECT_EQ(result->skipped_lines, 0u);
  ASSERT_EQ(parsed.size(), expected.size());
  for (const auto& [key, value] : expected) {
    ASSERT_EQ(parsed.count(key), 1u) << key;
    if (std::isnan(value)) {
      EXPECT_TRUE(std::isnan(parsed[key])) << key;
    } else {
      EXPECT_EQ(parsed[key], value) << key;  // exact: the exposition prints round-trip digits
    }
  }
  EXPECT_EQ(parsed_types, expected_types);
  EXPECT_EQ(helps,
            (std::vector<std::string>{"Prefill tokens.", "Gauges.\nWith \\ escapes.", "TTFT."}));
}

struct SpecCase {
  const char* description;
  std::string input;
  std::optional<MetricSpec> expected;  // nullopt: must fail
  const char* expected_error = "";     // substring of the error message
};

TEST(MetricSpecTest, ParsesSelectors) {
  const std::vector<SpecCase> cases = {
      {"bare name", "vllm:num_requests_waiting", MetricSpec{"vllm:num_requests_waiting", {}}},
      {"unquoted value", "nv_trt_llm_request_metrics{request_type=waiting}",
       MetricSpec{"nv_trt_llm_request_metrics", {{"request_type", "waiting"}}}},
      {"double-quoted value with escapes", "x{a=\"q\\\"\\\\,}\\n\"}",
       MetricSpec{"x", {{"a", "q\"\\,}\n"}}}},
      {"single-quoted value", "x{a='it\\'s'}", MetricSpec{"x", {{"a", "it's"}}}},
      {"several matchers, spaces and trailing comma", "  x { a = b c , d=\"e\", }  ",
       MetricSpec{"x", {{"a", "b c"}, {"d", "e"}}}},
      {"empty matcher set", "x{}", MetricSpec{"x", {}}},
      {"empty values", "x{a=,b=\"\"}", MetricSpec{"x", {{"a", ""}, {"b", ""}}}},
      {"empty text", "  ", std::nullopt, "empty"},
      {"no name", "{a=b}", std::nullopt, "invalid metric name"},
      {"invalid name", "1x", std::nullopt, "invalid metric name"},
      {"text after the name", "x y", std::nullopt, "unexpected text after selector"},
      {"text after the braces", "x{a=b} 1", std::nullopt, "unexpected text after selector"},
      {"missing closing brace", "x{a=b", std::nullopt, "expected ',' or '}'"},
      {"missing closing brace after comma", "x{a=b,", std::nullopt, "missing '}'"},
      {"not-equal matcher", "x{a!=b}", std::nullopt, "only '=' matchers"},
      {"regex matcher", "x{a=~b}", std::nullopt, "only '=' matchers"},
      {"double equals", "x{a==b}", std::nullopt, "only '=' matchers"},
      {"missing '='", "x{a}", std::nullopt, "expected '=' after label name"},
      {"invalid label name", "x{1a=b}", std::nullopt, "invalid label name"},
      {"duplicate label", "x{a=b,a=c}", std::nullopt, "duplicate label name"},
      {"unterminated quote", "x{a=\"b}", std::nullopt, "unterminated quoted label value"},
      {"bad escape", "x{a=\"\\t\"}", std::nullopt, "invalid escape"},
      {"quote inside unquoted value", "x{a=b\"c\"}", std::nullopt, "unexpected character"},
  };
  for (const SpecCase& test_case : cases) {
    const Result<MetricSpec> result = parse_metric_spec(test_case.input);
    if (test_case.expected) {
      ASSERT_TRUE(result.ok()) << test_case.description << ": " << result.status().message();
      EXPECT_EQ(*result, *test_case.expected) << test_case.description;
    } else {
      ASSERT_FALSE(result.ok()) << test_case.description;
      EXPECT_EQ(result.status().http_status(), 400) << test_case.description;
      EXPECT_NE(result.status().message().find(test_case.expected_error), std::string::npos)
          << test_case.description << ": " << result.status().message();
    }
  }
}

TEST(MetricSpecTest, ToStringParsesBackToTheSameSpec) {
  const MetricSpec spec{"x", {{"a", "q\"\\\n,}"}, {"b", ""}}};
  EXPECT_EQ(spec.to_string(), "x{a=\"q\\\"\\\\\\n,}\",b=\"\"}");
  const auto reparsed = parse_metric_spec(spec.to_string());
  ASSERT_TRUE(reparsed.ok()) << reparsed.status().message();
  EXPECT_EQ(*reparsed, spec);
  EXPECT_EQ(MetricSpec{"bare"}.to_string(), "bare");
}

struct MatchCase {
  const char* description;
  const char* spec;
  const char* sample_line;
  bool expected;
};

TEST(MetricSpecTest, MatchesSamples) {
  const std::vector<MatchCase> cases = {
      {"same name", "vllm:num_requests_waiting", "vllm:num_requests_waiting{model_name=\"m\"} 1",
       true},
      {"other name", "vllm:num_requests_waiting", "vllm:num_requests_running 1", false},
      {"name prefix is not enough", "x", "x_total 1", false},
      {"label equal", "t{request_type=waiting}", "t{request_type=\"waiting\",x=\"1\"} 1", true},
      {"label differs", "t{request_type=waiting}", "t{request_type=\"scheduled\"} 1", false},
      {"label missing", "t{request_type=waiting}", "t{x=\"waiting\"} 1", false},
      {"all matchers must hold", "t{a=1,b=2}", "t{b=\"2\",a=\"1\"} 1", true},
      {"one matcher fails", "t{a=1,b=2}", "t{a=\"1\",b=\"3\"} 1", false},
      {"empty value matches a missing label", "t{a=\"\"}", "t{b=\"1\"} 1", true},
      {"empty value matches an empty label", "t{a=\"\"}", "t{a=\"\"} 1", true},
      {"empty value does not match a set label", "t{a=\"\"}", "t{a=\"1\"} 1", false},
      {"escaped value compared unescaped", "t{a=\"x\\\"y\"}", "t{a=\"x\\\"y\"} 1", true},
      {"values are case-sensitive", "t{a=Waiting}", "t{a=\"waiting\"} 1", false},
  };
  for (const MatchCase& test_case : cases) {
    const auto spec = parse_metric_spec(test_case.spec);
    ASSERT_TRUE(spec.ok()) << test_case.description;
    int samples = 0;
    const auto result = parse_text(test_case.sample_line, [&](const Sample& sample) {
      ++samples;
      EXPECT_EQ(spec->matches(sample), test_case.expected) << test_case.description;
    });
    ASSERT_TRUE(result.ok()) << test_case.description;
    EXPECT_EQ(samples, 1) << test_case.description;
  }
}

}  // namespace
}  // namespace infergate::prom
