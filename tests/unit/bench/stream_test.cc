#include "bench/stream.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace infergate::bench {
namespace {

using std::chrono::milliseconds;
using Kind = StreamChunk::Kind;

struct ChunkCase {
  std::string description;
  std::string data;
  Kind kind;
  bool has_text;
  std::optional<std::int64_t> completion_tokens;  // set when a usage object is expected
  std::optional<std::int64_t> cached_tokens;
};

TEST(ParseStreamChunkTest, GoldenTable) {
  const std::vector<ChunkCase> cases = {
      {"completions text",
       R"({"object":"text_completion","choices":[{"index":0,"text":" the"}]})",
       Kind::kData,
       true,
       {},
       {}},
      {"completions empty text",
       R"({"choices":[{"index":0,"text":"","finish_reason":"length"}]})",
       Kind::kData,
       false,
       {},
       {}},
      {"chat role only",
       R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})",
       Kind::kData,
       false,
       {},
       {}},
      {"chat null content",
       R"({"choices":[{"delta":{"content":null},"finish_reason":null}]})",
       Kind::kData,
       false,
       {},
       {}},
      {"chat content",
       R"({"choices":[{"index":0,"delta":{"content":" of"}}],"usage":null})",
       Kind::kData,
       true,
       {},
       {}},
      {"reasoning content",
       R"({"choices":[{"delta":{"reasoning_content":"hmm"}}]})",
       Kind::kData,
       true,
       {},
       {}},
      {"text in the second choice",
       R"({"choices":[{"text":""},{"text":"x"}]})",
       Kind::kData,
       true,
       {},
       {}},
      {"usage with cached tokens",
       R"({"choices":[],"usage":{"prompt_tokens":204,"completion_tokens":64,"total_tokens":268,)"
       R"("prompt_tokens_details":{"cached_tokens":128}}})",
       Kind::kData, false, 64, 128},
      {"usage without details",
       R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,)"
       R"("prompt_tokens_details":null}})",
       Kind::kData,
       false,
       3,
       {}},
      {"done", "[DONE]", Kind::kDone, false, {}, {}},
      {"error event",
       R"({"error":{"message":"boom","type":"InternalServerError","code":500}})",
       Kind::kError,
       false,
       {},
       {}},
      {"not json", "hello", Kind::kMalformed, false, {}, {}},
      {"json but not an object", "[1,2]", Kind::kMalformed, false, {}, {}},
      {"truncated json", R"({"choices":[{"text":" a"})", Kind::kMalformed, false, {}, {}},
      {"choices of the wrong type", R"({"choices":{"text":"a"}})", Kind::kMalformed, false, {}, {}},
  };
  for (const auto& test_case : cases) {
    const StreamChunk chunk = parse_stream_chunk(test_case.data);
    EXPECT_EQ(chunk.kind, test_case.kind) << test_case.description;
    EXPECT_EQ(chunk.has_text, test_case.has_text) << test_case.description;
    EXPECT_EQ(chunk.usage.has_value(), test_case.completion_tokens.has_value())
        << test_case.description;
    if (chunk.usage && test_case.completion_tokens) {
      EXPECT_EQ(chunk.usage->completion_tokens, *test_case.completion_tokens)
          << test_case.description;
      EXPECT_EQ(chunk.usage->cached_tokens, test_case.cached_tokens) << test_case.description;
    }
  }
  EXPECT_EQ(parse_stream_chunk(R"({"error":{"message":"boom"}})").error_message, "boom");
  EXPECT_EQ(parse_stream_chunk(R"({"usage":{"prompt_tokens":9,"completion_tokens":1}})")
                .usage->prompt_tokens,
            9);
}

std::string event(std::string_view data) { return http::sse_event(data); }

std::string text_event(std::string_view text) {
  return event(R"({"choices":[{"index":0,"delta":{"content":")" + std::string(text) + "\"}}]}");
}

TimePoint at_ms(int ms) { return milliseconds(ms); }

TEST(StreamRecorderTest, ComputesTtftTpotNtpotAndGapsFromEventTimes) {
  RequestRecord record;
  record.start = at_ms(100);
  StreamRecorder recorder(record);
  // The role chunk carries no text: it must not count as the first token.
  recorder.on_body(event(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})"),
                   at_ms(105));
  recorder.on_body(text_event(" a"), at_ms(120));
  // Two events in one read share its arrival time; an event may also span reads.
  const std::string split = text_event(" c");
  recorder.on_body(text_event(" b") + split.substr(0, 10), at_ms(130));
  recorder.on_body(split.substr(10), at_ms(131));
  recorder.on_body(text_event(" d"), at_ms(150));
  recorder.on_body(
      event(R"({"choices":[{"delta":{},"finish_reason":"length"}]})") +
          event(R"({"choices":[],"usage":{"prompt_tokens":10,)"
                R"("completion_tokens":5,"prompt_tokens_details":{"cached_tokens":8}}})"),
      at_ms(151));
  recorder.on_body(event("[DONE]"), at_ms(152));
  recorder.on_body_end(at_ms(153));

  EXPECT_TRUE(recorder.saw_done());
  EXPECT_EQ(record.outcome, Outcome::kSuccess);
  EXPECT_EQ(record.ttft(), milliseconds(20));
  EXPECT_EQ(record.e2e(), milliseconds(52));  // to [DONE], not to the end of the body
  EXPECT_EQ(record.text_events, 4u);
  EXPECT_EQ(record.text_event_gaps,
            (std::vector<Duration>{milliseconds(10), milliseconds(1), milliseconds(19)}));
  EXPECT_EQ(record.last_token, at_ms(150));
  EXPECT_EQ(record.output_tokens(), 5);  // usage wins over the number of text events
  EXPECT_EQ(record.prompt_tokens, 10);
  EXPECT_EQ(record.cached_tokens, 8);
  EXPECT_EQ(record.tpot(), Duration(milliseconds(32)) / 4);
  EXPECT_EQ(record.ntpot(), Duration(milliseconds(52)) / 5);
}

TEST(StreamRecorderTest, WithoutUsageOutputTokensAreTheTextEvents) {
  RequestRecord record;
  StreamRecorder recorder(record);
  recorder.on_body(
      event(R"({"choices":[{"text":" x"}]})") + event(R"({"choices":[{"text":" y"}]})"), at_ms(10));
  recorder.on_body_end(at_ms(12));  // no [DONE]: the body end is the end
  EXPECT_EQ(record.outcome, Outcome::kSuccess);
  EXPECT_FALSE(record.completion_tokens.has_value());
  EXPECT_EQ(record.output_tokens(), 2);
  EXPECT_EQ(record.e2e(), milliseconds(12));
  EXPECT_EQ(record.tpot(), Duration(milliseconds(2)));
}

TEST(StreamRecorderTest, OneTokenHasNoTpot) {
  RequestRecord record;
  StreamRecorder recorder(record);
  recorder.on_body(text_event(" x") + event("[DONE]"), at_ms(10));
  recorder.on_body_end(at_ms(10));
  EXPECT_EQ(record.outcome, Outcome::kSuccess);
  EXPECT_FALSE(record.tpot().has_value());
  EXPECT_EQ(record.ntpot(), Duration(milliseconds(10)));
}

TEST(StreamRecorderTest, FailuresAreCategorised) {
  struct Case {
    std::string description;
    std::string body;
    Outcome outcome;
    std::string label;
  };
  const std::vector<Case> cases = {
      {"error event mid-stream",
       text_event(" a") + event(R"({"error":{"message":"engine died"}})") + event("[DONE]"),
       Outcome::kStreamError, "stream_error"},
      {"malformed event", text_event(" a") + event("{oops"), Outcome::kProtocolError, "protocol"},
      {"stream cut inside an event", text_event(" a") + "data: {\"choi", Outcome::kProtocolError,
       "protocol"},
      {"no generated text", event(R"({"choices":[{"text":""}]})") + event("[DONE]"),
       Outcome::kProtocolError, "protocol"},
  };
  for (const auto& test_case : cases) {
    RequestRecord record;
    StreamRecorder recorder(record);
    recorder.on_body(test_case.body, at_ms(1));
    recorder.on_body_end(at_ms(2));
    EXPECT_EQ(record.outcome, test_case.outcome) << test_case.description;
    EXPECT_EQ(error_label(record), test_case.label) << test_case.description;
    EXPECT_FALSE(record.error_message.empty()) << test_case.description;
  }
  RequestRecord http_error;
  http_error.outcome = Outcome::kHttpError;
  http_error.http_status = 429;
  EXPECT_EQ(error_label(http_error), "http_429");
}

}  // namespace
}  // namespace infergate::bench
