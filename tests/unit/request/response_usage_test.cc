#include "request/response_usage.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace infergate::request {
namespace {

TokenUsage usage(std::int64_t prompt, std::int64_t completion, std::int64_t total,
                 std::int64_t cached = 0) {
  return {prompt, completion, total, cached};
}

struct JsonCase {
  std::string description;
  std::string body;
  std::optional<TokenUsage> expected;
};

TEST(ParseResponseUsageTest, GoldenTable) {
  const std::vector<JsonCase> cases = {
      {"chat completion",
       R"({"id":"c","object":"chat.completion","choices":[{"message":{"content":"x"}}],)"
       R"("usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}})",
       usage(12, 5, 17)},
      {"OpenAI spelling of cached tokens",
       R"({"usage":{"prompt_tokens":100,"total_tokens":110,"completion_tokens":10,)"
       R"("prompt_tokens_details":{"cached_tokens":64,"audio_tokens":0}}})",
       usage(100, 10, 110, 64)},
      {"GIE spelling of cached tokens",
       R"({"usage":{"prompt_tokens":100,"completion_tokens":10,"total_tokens":110,)"
       R"("prompt_token_details":{"cached_tokens":32}}})",
       usage(100, 10, 110, 32)},
      {"null details",
       R"({"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":null}})",
       usage(1, 2, 3)},
      {"total computed when absent", R"({"usage":{"prompt_tokens":7,"completion_tokens":3}})",
       usage(7, 3, 10)},
      {"usage before choices, escaped key", R"({"\u0075sage":{"prompt_tokens":2},"choices":[]})",
       usage(2, 0, 2)},
      {"Responses API object",
       R"({"id":"resp_1","object":"response","status":"completed","output":[],)"
       R"("usage":{"input_tokens":20,"input_tokens_details":{"cached_tokens":16},)"
       R"("output_tokens":8,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":28}})",
       usage(20, 8, 28, 16)},
      {"response.completed event",
       R"({"type":"response.completed","sequence_number":9,"response":{"id":"r","model":"m",)"
       R"("output":[{"content":[{"text":"usage"}]}],"usage":{"input_tokens":5,"output_tokens":6,"total_tokens":11}}})",
       usage(5, 6, 11)},
      {"response.created event has null usage",
       R"({"type":"response.created","response":{"id":"r","usage":null}})", std::nullopt},
      {"streamed chunk with null usage", R"({"choices":[{"delta":{}}],"usage":null})",
       std::nullopt},
      {"no usage", R"({"id":"x","choices":[]})", std::nullopt},
      {"usage not an object", R"({"usage":"lots"})", std::nullopt},
      {"bad counts ignored",
       R"({"usage":{"prompt_tokens":-1,"completion_tokens":1.5,"total_tokens":"3","prompt_tokens_details":{"cached_tokens":true}}})",
       usage(0, 0, 0)},
      {"nested usage elsewhere ignored", R"({"meta":{"usage":{"prompt_tokens":9}}})", std::nullopt},
  };
  for (const JsonCase& test_case : cases) {
    SCOPED_TRACE(test_case.description);
    Result<std::optional<TokenUsage>> result = parse_response_usage(test_case.body);
    ASSERT_TRUE(result.ok()) << result.status().message();
    EXPECT_EQ(*result, test_case.expected);
  }
}

TEST(ParseResponseUsageTest, Errors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "response body is not valid JSON: "},
      {"[1]", "response body must be a JSON object"},
      {R"({"usage":{"prompt_tokens":1)", "response body is not valid JSON: "},
      {R"({"usage":{}} x)", "response body is not valid JSON: "},
  };
  for (const auto& [body, expected] : cases) {
    SCOPED_TRACE(body);
    Result<std::optional<TokenUsage>> result = parse_response_usage(body);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().http_status(), 502);
    if (expected.ends_with(": ")) {
      EXPECT_TRUE(result.status().message().starts_with(expected)) << result.status().message();
      EXPECT_GT(result.status().message().size(), expected.size());
    } else {
      EXPECT_EQ(result.status().message(), expected);
    }
  }
}

// Bodies that could mislead a reader looking for the usage object without scanning the whole
// body: the usage found (the last top-level one wins) or the error.
struct AdversarialCase {
  std::string description;
  std::string body;
  std::optional<TokenUsage> expected;
  std::string error_prefix;  // not empty: the body is an error with a message starting so
};

std::vector<AdversarialCase> adversarial_cases() {
  const std::string kNotJson = "response body is not valid JSON: ";
  const std::string kDeep = std::string(70, '[') + std::string(70, ']');
  const std::string kVeryDeep = std::string(5000, '[') + std::string(5000, ']');
  return {
      {"a usage key inside the text, the real one last",
       R"({"choices":[{"text":"\"usage\":{\"prompt_tokens\":99}"}],)"
       R"("usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}})",
       usage(1, 2, 3), ""},
      {"a usage key inside the text only",
       R"({"choices":[{"text":"\"usage\":{\"prompt_tokens\":99}"}]})", std::nullopt, ""},
      {"usage first",
       R"({"usage":{"prompt_tokens":4,"completion_tokens":1},"choices":[{"text":"x"}]})",
       usage(4, 1, 5), ""},
      {"nested usage keys before the top-level one",
       R"({"choices":[{"usage":{"prompt_tokens":9}}],"usage":{"prompt_tokens":1}})", usage(1, 0, 1),
       ""},
      {"usage nested in usage",
       R"({"usage":{"usage":{"prompt_tokens":5},"prompt_tokens":2,"x":[{"completion_tokens":7}]}})",
       usage(2, 0, 2), ""},
      {"escaped quotes around a usage key in the text",
       R"({"text":"a \"usage\": {\"prompt_tokens\": 5} b","usage":{"prompt_tokens":3}})",
       usage(3, 0, 3), ""},
      {"a text ending with a backslash", R"({"text":"ends with \\","usage":{"prompt_tokens":4}})",
       usage(4, 0, 4), ""},
      {"escaped backslash then quote", R"({"text":"\\\"usage\\\":{}","usage":{"prompt_tokens":6}})",
       usage(6, 0, 6), ""},
      {"two usage keys: the last wins",
       R"({"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}})", usage(2, 0, 2), ""},
      {"an earlier usage with a bad key fails the body",
       R"({"usage":{"\ud800":1},"usage":{"prompt_tokens":2}})", std::nullopt, kNotJson},
      {"nesting deeper than the strict scan follows",
       R"({"usage":{"prompt_tokens":1},"x":)" + kVeryDeep + "}", usage(1, 0, 1), ""},
      {"a later null usage wins", R"({"usage":{"prompt_tokens":1},"usage":null})", std::nullopt,
       ""},
      {"a response object's usage when the top level's is null",
       R"({"response":{"usage":{"input_tokens":5}},"usage":null})", usage(5, 0, 5), ""},
      {"an escaped count key", R"({"usage":{"prompt\u005ftokens":7}})", usage(7, 0, 7), ""},
      {"minus zero", R"({"usage":{"prompt_tokens":-0}})", usage(0, 0, 0), ""},
      {"an exponent", R"({"usage":{"prompt_tokens":1e2}})", usage(0, 0, 0), ""},
      {"a fraction", R"({"usage":{"prompt_tokens":1.0,"completion_tokens":2}})", usage(0, 2, 2),
       ""},
      {"beyond int64", R"({"usage":{"prompt_tokens":12345678901234567890}})", usage(0, 0, 0), ""},
      {"18 digits", R"({"usage":{"prompt_tokens":999999999999999999}})",
       usage(999999999999999999, 0, 999999999999999999), ""},
      {"the largest int64", R"({"usage":{"prompt_tokens":9223372036854775807}})",
       usage(INT64_MAX, 0, INT64_MAX), ""},
      {"UTF-8 text",
       "{\"text\":\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\",\"usage\":{\"prompt_tokens\":8}}",
       usage(8, 0, 8), ""},
      {"invalid UTF-8 in the text", "{\"text\":\"\xff\",\"usage\":{\"prompt_tokens\":1}}",
       std::nullopt, kNotJson},
      {"an encoded surrogate in the text",
       "{\"text\":\"\xed\xa0\x80\",\"usage\":{\"prompt_tokens\":1}}", std::nullopt, kNotJson},
      {"a raw newline in the text", "{\"text\":\"a\nb\",\"usage\":{\"prompt_tokens\":1}}",
       std::nullopt, kNotJson},
      {"a NUL byte in the text", std::string("{\"text\":\"a\0b\",\"usage\":{}}", 25), std::nullopt,
       kNotJson},
      {"pretty-printed",
       "{\n  \"usage\" : {\n    \"prompt_tokens\" : 10 ,\n    \"completion_tokens\":\t2\r\n  "
       "}\n}\n",
       usage(10, 2, 12), ""},
      {"a bad literal that is skipped", R"({"choices":[tru],"usage":{"prompt_tokens":1}})",
       usage(1, 0, 1), ""},
      {"a missing comma in what is skipped", R"({"choices":[1 2],"usage":{"prompt_tokens":1}})",
       usage(1, 0, 1), ""},
      {"a bad escape in a value", R"({"a":"\q","usage":{"prompt_tokens":1}})", usage(1, 0, 1), ""},
      {"a lone surrogate in a top-level key", R"({"\ud800":1,"usage":{"prompt_tokens":1}})",
       std::nullopt, kNotJson},
      {"a lone surrogate in a usage key", R"({"usage":{"prompt_tokens":1,"\ud800":2}})",
       std::nullopt, kNotJson},
      {"trailing space", "{\"usage\":{\"prompt_tokens\":1}} \n", usage(1, 0, 1), ""},
      {"a trailing brace", R"({"usage":{"prompt_tokens":1}}})", std::nullopt, kNotJson},
      {"a trailing comma", R"({"usage":{"prompt_tokens":1},})", std::nullopt, kNotJson},
      {"a comma before the brace", R"({"usage":{"prompt_tokens":1,}})", std::nullopt, kNotJson},
      {"not an object", R"("usage")", std::nullopt, "response body must be a JSON object"},
      {"empty usage", R"({"usage":{}})", usage(0, 0, 0), ""},
      {"usage as an array", R"({"usage":[{"prompt_tokens":1}]})", std::nullopt, ""},
      {"details of every spelling and shape",
       R"({"usage":{"prompt_tokens_details":{"cached_tokens":3},)"
       R"("input_tokens_details":{"cached_tokens":"x"},"prompt_token_details":[1]}})",
       usage(0, 0, 0, 3), ""},
      {"repeated and invalid counts",
       R"({"usage":{"prompt_tokens":5,"prompt_tokens":"x","input_tokens":-1,"total_tokens":null}})",
       usage(5, 0, 5), ""},
      {"both spellings: the last valid one wins",
       R"({"usage":{"prompt_tokens":5,"input_tokens":6,"output_tokens":1,"completion_tokens":2,)"
       R"("total_tokens":1}})",
       usage(6, 2, 1), ""},
      {"deep nesting beside the usage", R"({"usage":{"prompt_tokens":1},"x":)" + kDeep + "}",
       usage(1, 0, 1), ""},
      {"every kind of value beside the usage",
       R"({"usage":{"prompt_tokens":1},"a":true,"b":false,"c":null,"d":-1.5e+3,"e":0.25,"f":[],)"
       R"("g":{}})",
       usage(1, 0, 1), ""},
      {"a bad number after the usage", R"({"usage":{"prompt_tokens":1},"a":.5})", usage(1, 0, 1),
       ""},
      {"an unclosed string after the usage", R"({"usage":{"prompt_tokens":1},"a":"x})",
       std::nullopt, kNotJson},
      {"truncated in the usage", R"({"usage":{"prompt_tokens":1})", std::nullopt, kNotJson},
      {"truncated in a key", R"({"usage":{"prompt_tokens)", std::nullopt, kNotJson},
  };
}

TEST(ParseResponseUsageTest, AdversarialBodies) {
  for (const AdversarialCase& test_case : adversarial_cases()) {
    SCOPED_TRACE(test_case.description);
    const Result<std::optional<TokenUsage>> result = parse_response_usage(test_case.body);
    if (test_case.error_prefix.empty()) {
      ASSERT_TRUE(result.ok()) << result.status().message();
      EXPECT_EQ(*result, test_case.expected);
    } else {
      ASSERT_FALSE(result.ok());
      EXPECT_TRUE(result.status().message().starts_with(test_case.error_prefix))
          << result.status().message();
    }
  }
}

// parse_body_usage gives parse_response_usage's answer for every valid body, whether it reads
// only the trailing usage object or falls back to the whole body.
TEST(ParseBodyUsageTest, ValidBodiesReadAsTheWholeBodyParserReadsThem) {
  std::vector<std::string> bodies = {
      R"({"id":"x","choices":[{"text":"y"}],"usage":{"prompt_tokens":3,"completion_tokens":1}})",
      R"({"a":{"usage":{"prompt_tokens":9}}})",
      R"({"usage":{"prompt_tokens":1},"a":{"usage":{"prompt_tokens":9}}})",
      R"({"usage":{"prompt_tokens":1},"a":{"b":{},"usage":{"prompt_tokens":9}}})",
      R"({"response":{"usage":{"input_tokens":5}},"usage":null})",
      R"({"usage":{"prompt_tokens":1},"usage" : { "prompt_tokens" : 2 } })",
      R"({"usage":{"prompt_tokens":1},"x":"\"usage\":{\"prompt_tokens\":5}"})",
      R"({"x":["\"usage\":{\"prompt_tokens\":5}"],"y":{}})",
      // The last key's name ends with a quote and usage: it is not the usage key.
      R"({"a":1,"x\"usage":{"prompt_tokens":5}})",
      R"({"a":1,"x\\\"usage" : {"prompt_tokens":5}})",
      // The usage key further back than the window looked at: the whole body is read.
      R"({"usage":{"prompt_tokens":4,"x":")" + std::string(5000, 'a') + R"("}})",
  };
  for (const AdversarialCase& test_case : adversarial_cases()) {
    if (test_case.error_prefix.empty()) bodies.push_back(test_case.body);
  }
  for (const std::string& body : bodies) {
    SCOPED_TRACE(body.substr(0, 200));
    const Result<std::optional<TokenUsage>> whole = parse_response_usage(body);
    ASSERT_TRUE(whole.ok()) << whole.status().message();
    const Result<std::optional<TokenUsage>> fast = parse_body_usage(body);
    ASSERT_TRUE(fast.ok()) << fast.status().message();
    EXPECT_EQ(*fast, *whole);
  }
}

// Random valid JSON objects, with usage keys nested at any depth, strings that spell usage keys,
// and any whitespace: both parsers agree on every one.
class RandomBody {
 public:
  explicit RandomBody(unsigned seed) : random_(seed) {}

  std::string object(int depth) {
    std::string out = "{" + space();
    const int members = pick(0, 4);
    for (int i = 0; i < members; ++i) {
      if (i > 0) out += "," + space();
      out += key() + space() + ":" + space() + value(depth) + space();
    }
    if (pick(0, 2) == 0) {  // usage last, as servers write it
      if (members > 0) out += "," + space();
      out += "\"usage\"" + space() + ":" + space() + value(depth) + space();
    }
    return out + "}";
  }

 private:
  int pick(int low, int high) { return std::uniform_int_distribution<int>(low, high)(random_); }
  std::string space() {
    static const char* const kSpaces[] = {"", "", "", " ", "\n", " \t\r\n "};
    return kSpaces[pick(0, 5)];
  }
  std::string key() {
    static const char* const kKeys[] = {
        "\"usage\"",         "\"prompt_tokens\"", "\"completion_tokens\"",
        "\"total_tokens\"",  "\"input_tokens\"",  "\"prompt_tokens_details\"",
        "\"cached_tokens\"", "\"response\"",      "\"tag\"",
        "\"\\u0075sage\""};
    return kKeys[pick(0, 9)];
  }
  std::string value(int depth) {
    static const char* const kScalars[] = {"0",
                                           "7",
                                           "-3",
                                           "1.5",
                                           "1e2",
                                           "null",
                                           "true",
                                           "false",
                                           "\"g\"",
                                           "\"usage\"",
                                           "\"\\\"usage\\\":{\\\"prompt_tokens\\\":9}\"",
                                           "\"x\\\\\"",
                                           "\"}\""};
    const int kind = depth >= 3 ? 0 : pick(0, 3);
    if (kind == 1) return object(depth + 1);
    if (kind == 2) {
      std::string out = "[" + space();
      const int items = pick(0, 3);
      for (int i = 0; i < items; ++i) {
        if (i > 0) out += "," + space();
        out += value(depth + 1);
      }
      return out + space() + "]";
    }
    return kScalars[pick(0, 12)];
  }

  std::mt19937 random_;
};

TEST(ParseBodyUsageTest, RandomValidBodiesReadAsTheWholeBodyParserReadsThem) {
  RandomBody random(20261123);
  int bodies_with_usage = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string body = random.object(0);
    SCOPED_TRACE(body);
    const Result<std::optional<TokenUsage>> whole = parse_response_usage(body);
    ASSERT_TRUE(whole.ok()) << whole.status().message();
    const Result<std::optional<TokenUsage>> fast = parse_body_usage(body);
    ASSERT_TRUE(fast.ok()) << fast.status().message();
    ASSERT_EQ(*fast, *whole);
    if (whole->has_value()) ++bodies_with_usage;
  }
  EXPECT_GT(bodies_with_usage, 300);  // the generator writes usage objects often enough
}

TEST(ParseBodyUsageTest, ATrailingUsageIsReadWithoutValidatingWhatPrecedesIt) {
  // Invalid UTF-8 in the text; the second usage object has letters its key is found by.
  for (const std::string body :
       {"{\"text\":\"\xff\",\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n",
        "{\"text\":\"\xff gg\",\"usage\" : {\"prompt_tokens\":7,\"completion_tokens\":2,"
        "\"completion_tokens_details\":{\"reasoning_tokens\":1},\"tag\":\"g\"} }"}) {
    SCOPED_TRACE(body);
    EXPECT_FALSE(parse_response_usage(body).ok());
    const Result<std::optional<TokenUsage>> fast = parse_body_usage(body);
    ASSERT_TRUE(fast.ok()) << fast.status().message();
    EXPECT_EQ(*fast, usage(7, 2, 9));
  }
}

TEST(ParseBodyUsageTest, BodiesThatDoNotEndWithAValidUsageObjectGetTheWholeBodyError) {
  for (const std::string body :
       {R"({"usage":{"prompt_tokens":1}}})", R"({"usage":{"prompt_tokens":1,}})",
        R"({"usage":{"prompt_tokens":1} x})", "not json", ""}) {
    SCOPED_TRACE(body);
    const Result<std::optional<TokenUsage>> fast = parse_body_usage(body);
    ASSERT_FALSE(fast.ok());
    EXPECT_EQ(fast.status().message(), parse_response_usage(body).status().message());
  }
}

struct SseCase {
  std::string description;
  std::string stream;
  std::optional<TokenUsage> expected;
  std::size_t malformed = 0;
};

std::vector<SseCase> sse_cases() {
  return {
      {"chat stream with include_usage",
       "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"role\":"
       "\"assistant\"}}],\"usage\":null}\n\n"
       "data: {\"choices\":[{\"delta\":{\"content\":\" usage\"}}]}\n\n"
       "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
       "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,"
       "\"total_tokens\":12,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n"
       "data: [DONE]\n\n",
       usage(9, 3, 12, 4)},
      {"CRLF lines, no space after data:, comments and other fields",
       ": keep-alive\r\n\r\nevent: message\r\nid: 7\r\ndata:{\"usage\":{\"prompt_tokens\":1,"
       "\"completion_tokens\":2,\"total_tokens\":3,\"prompt_token_details\":{\"cached_tokens\":1}}}"
       "\r\n\r\ndata:[DONE]\r\n\r\n",
       usage(1, 2, 3, 1)},
      {"Responses API events",
       "event: response.created\ndata: "
       "{\"type\":\"response.created\",\"response\":{\"usage\":null}}"
       "\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
       "\"delta\":\"x\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\","
       "\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":30,\"input_tokens_"
       "details\":"
       "{\"cached_tokens\":0},\"output_tokens\":7,\"total_tokens\":37}}}\n\n",
       usage(30, 7, 37)},
      {"data split over two lines", "data: {\"usage\":\ndata: {\"prompt_tokens\":5}}\n\n",
       usage(5, 0, 5)},
      {"no usage", "data: {\"choices\":[]}\n\ndata: [DONE]\n\n", std::nullopt},
      {"last event without trailing blank line",
       "data: {\"choices\":[]}\n\ndata: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":2}}",
       usage(2, 2, 4)},
      {"malformed usage event is counted",
       "data: {\"usage\":{\"prompt_tokens\":1}\n\ndata: {\"usage\":{\"prompt_tokens\":3}}\n\n",
       usage(3, 0, 3), 1},
  };
}

std::optional<TokenUsage> scan(std::string_view stream, const std::vector<std::size_t>& cuts,
                               std::size_t* malformed) {
  SseUsageScanner scanner;
  std::size_t begin = 0;
  for (std::size_t cut : cuts) {
    scanner.feed(stream.substr(begin, cut - begin));
    begin = cut;
  }
  scanner.feed(stream.substr(begin));
  scanner.finish();
  if (malformed) *malformed = scanner.malformed_events();
  return scanner.usage();
}

TEST(SseUsageScannerTest, GoldenTableSplitAtEveryOffset) {
  for (const SseCase& test_case : sse_cases()) {
    SCOPED_TRACE(test_case.description);
    std::size_t malformed = 0;
    EXPECT_EQ(scan(test_case.stream, {}, &malformed), test_case.expected);
    EXPECT_EQ(malformed, test_case.malformed);
    for (std::size_t cut = 0; cut <= test_case.stream.size(); ++cut) {
      EXPECT_EQ(scan(test_case.stream, {cut}, &malformed), test_case.expected) << "cut " << cut;
      EXPECT_EQ(malformed, test_case.malformed) << "cut " << cut;
    }
    std::vector<std::size_t> every_byte;
    for (std::size_t cut = 1; cut < test_case.stream.size(); ++cut) every_byte.push_back(cut);
    EXPECT_EQ(scan(test_case.stream, every_byte, nullptr), test_case.expected);
  }
}

}  // namespace
}  // namespace infergate::request
