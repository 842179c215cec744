#include "request/response_usage.h"

#include <gtest/gtest.h>

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
