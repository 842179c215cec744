#include "http/sse.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace infergate::http {
namespace {

std::vector<std::string> parse_in_pieces(std::string_view stream,
                                         const std::vector<std::size_t>& cuts) {
  SseParser parser;
  std::vector<std::string> events;
  auto on_event = [&](std::string_view data) { events.emplace_back(data); };
  std::size_t start = 0;
  for (std::size_t cut : cuts) {
    parser.feed(stream.substr(start, cut - start), on_event);
    start = cut;
  }
  parser.feed(stream.substr(start), on_event);
  return events;
}

struct SseCase {
  std::string description;
  std::string input;
  std::vector<std::string> expected;
};

const std::vector<SseCase> kCases = {
    {"single event", "data: {\"id\":1}\n\n", {"{\"id\":1}"}},
    {"done marker", "data: [DONE]\n\n", {"[DONE]"}},
    {"several events in one read", "data: a\n\ndata: b\n\ndata: [DONE]\n\n", {"a", "b", "[DONE]"}},
    {"CRLF separators", "data: a\r\n\r\ndata: b\r\n\r\n", {"a", "b"}},
    {"bare CR separators", "data: a\r\rdata: b\r\r", {"a", "b"}},
    {"multi-line data joined with newline", "data: line1\ndata: line2\n\n", {"line1\nline2"}},
    {"comments are skipped", ": keep-alive\n\ndata: x\n: inside\n\n", {"x"}},
    {"other fields are skipped", "event: message\nid: 7\nretry: 10\ndata: y\n\n", {"y"}},
    {"only one leading space is dropped",
     "data:  two spaces\ndata:none\n\n",
     {" two spaces\nnone"}},
    {"field without colon is an empty data line", "data\ndata: z\n\n", {"\nz"}},
    {"event without data yields nothing", "event: ping\n\n\n\ndata: q\n\n", {"q"}},
    {"unterminated event is held back", "data: done\n\ndata: partial\n", {"done"}},
    {"colon inside the value is kept", "data: {\"a\":\"b:c\"}\n\n", {"{\"a\":\"b:c\"}"}},
    {"empty data value", "data:\n\n", {""}},
};

TEST(SseParserTest, GoldenTableWholeInput) {
  for (const auto& test_case : kCases) {
    EXPECT_EQ(parse_in_pieces(test_case.input, {}), test_case.expected) << test_case.description;
  }
}

TEST(SseParserTest, GoldenTableSplitAtEveryOffset) {
  for (const auto& test_case : kCases) {
    for (std::size_t cut = 0; cut <= test_case.input.size(); ++cut) {
      EXPECT_EQ(parse_in_pieces(test_case.input, {cut}), test_case.expected)
          << test_case.description << ", split at " << cut;
    }
  }
}

TEST(SseParserTest, ChatStreamFedByteByByte) {
  const std::string stream =
      sse_event(
          R"({"id":"c1","object":"chat.completion.chunk","choices":[{"delta":{"role":"assistant"}}]})") +
      ": comment\r\n\r\n" + sse_event(R"({"choices":[{"delta":{"content":"Hi"}}]})") +
      "data: {\"usage\":\r\ndata: 3}\r\n\r\n" + sse_event("[DONE]");
  const std::vector<std::string> expected = {
      R"({"id":"c1","object":"chat.completion.chunk","choices":[{"delta":{"role":"assistant"}}]})",
      R"({"choices":[{"delta":{"content":"Hi"}}]})", "{\"usage\":\n3}", "[DONE]"};
  std::vector<std::size_t> every_byte;
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    every_byte.push_back(cut);
  }
  EXPECT_EQ(parse_in_pieces(stream, every_byte), expected);
  // And every two-way split.
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    EXPECT_EQ(parse_in_pieces(stream, {cut}), expected) << "split at " << cut;
  }
}

TEST(SseParserTest, PartialEventIsReportedAndReset) {
  SseParser parser;
  std::vector<std::string> events;
  auto on_event = [&](std::string_view data) { events.emplace_back(data); };
  parser.feed("data: a\n\ndata: trunc", on_event);
  EXPECT_TRUE(parser.has_partial_event());
  parser.reset();
  EXPECT_FALSE(parser.has_partial_event());
  parser.feed("data: b\n\n", on_event);
  EXPECT_EQ(events, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(parser.has_partial_event());
}

TEST(SseEventTest, FormatsDataAndRoundTrips) {
  EXPECT_EQ(sse_event(R"({"id":1})"), "data: {\"id\":1}\n\n");
  EXPECT_EQ(sse_event("[DONE]"), "data: [DONE]\n\n");
  EXPECT_EQ(sse_event("a\nb"), "data: a\ndata: b\n\n");
  for (const std::string data : {"", "x", "two\nlines", "trailing\n"}) {
    EXPECT_EQ(parse_in_pieces(sse_event(data), {}), std::vector<std::string>{data}) << data;
  }
}

}  // namespace
}  // namespace infergate::http
