#pragma once

// What the load generator learns from one streamed response: the per-request record and the
// pure logic that fills it from SSE bytes and their arrival times (no I/O, no clock; the caller
// passes timestamps, so tests drive it with exact times).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "http/sse.h"

namespace infergate::bench {

enum class Outcome {
  kPending,        // still running (never seen in a finished run)
  kSuccess,        // 200, stream ended cleanly with generated text and no error event
  kConnectError,   // no connection could be opened (refused, unresolvable, connect timed out)
  kTimeout,        // the request's --timeout passed after it was connected
  kHttpError,      // the response status was not 200 (RequestRecord::http_status says which)
  kStreamError,    // the server sent an error event ({"error": ...}) inside the stream
  kProtocolError,  // malformed response or event, connection closed mid-stream, or no text
};

// One request's life, all times on the run's clock (steady, origin at the start of the run).
struct RequestRecord {
  std::uint64_t index = 0;      // sequence number (also the workload's request index)
  bool measured = false;        // launched inside the measured window (after the warm-up)
  bool new_connection = false;  // needed a new connection (no idle keep-alive one was free)
  TimePoint scheduled{};        // when the arrival schedule wanted it launched
  TimePoint start{};            // when it was launched: the origin of TTFT and e2e
  std::optional<TimePoint> first_token;  // arrival of the first event carrying generated text
  TimePoint last_token{};                // arrival of the last such event
  TimePoint end{};  // arrival of `data: [DONE]` (else the end of the body, or the error)
  Outcome outcome = Outcome::kPending;
  unsigned http_status = 0;     // 0 when no response head arrived
  std::string error_message;    // why it failed (at most ~200 bytes of the server's words)
  std::size_t text_events = 0;  // events carrying generated text
  // From the usage chunk (stream_options.include_usage); absent if the server sent none.
  std::optional<std::int64_t> prompt_tokens;
  std::optional<std::int64_t> completion_tokens;
  std::optional<std::int64_t> cached_tokens;  // usage.prompt_tokens_details.cached_tokens
  // Gaps between consecutive text events (the ITL samples: per event, as inference-perf counts
  // them, so tokens coalesced into one event make one gap).
  std::vector<Duration> text_event_gaps;

  bool ok() const { return outcome == Outcome::kSuccess; }
  Duration schedule_lag() const { return start - scheduled; }
  Duration e2e() const { return end - start; }
  // Meaningful for successful requests (which always have a first token).
  Duration ttft() const { return first_token.value_or(end) - start; }
  // completion_tokens from usage, else the number of text events (a lower bound).
  std::int64_t output_tokens() const;
  // (e2e - TTFT) / (output_tokens - 1); absent with fewer than 2 output tokens.
  std::optional<Duration> tpot() const;
  // e2e / output_tokens; absent with no output tokens.
  std::optional<Duration> ntpot() const;
};

// Error category of a failed record, used as the key of report error counts: "connect",
// "timeout", "http_<status>", "stream_error", "protocol". Empty for successes.
std::string error_label(const RequestRecord& record);

// One SSE event's data from an OpenAI-style stream, decoded.
struct StreamChunk {
  enum class Kind {
    kData,       // a JSON object chunk
    kDone,       // the literal [DONE]
    kError,      // a JSON object with an "error" member
    kMalformed,  // not a JSON object
  };
  struct Usage {
    std::int64_t prompt_tokens = 0;
    std::int64_t completion_tokens = 0;
    std::optional<std::int64_t> cached_tokens;
  };
  Kind kind = Kind::kData;
  // Some choice has non-empty generated text: completions `choices[].text`; chat
  // `choices[].delta.content` (or `reasoning_content` / `reasoning` of reasoning models).
  bool has_text = false;
  std::optional<Usage> usage;  // a non-null `usage` object
  std::string error_message;   // kError: error.message (or the raw error); kMalformed: why
};

// Decodes one event's data with simdjson On-Demand (a per-thread parser; no DOM). Never throws.
StreamChunk parse_stream_chunk(std::string_view data);

// Fills a RequestRecord from the body of a 200 streaming response. The caller owns the record
// and the I/O; it feeds body bytes with their arrival time, then reports the end of the body.
// Once an error event or a malformed event is seen the record keeps that failure; the caller
// should still read the body to its end to keep the connection reusable.
class StreamRecorder {
 public:
  explicit StreamRecorder(RequestRecord& record) : record_(record) {}

  // Body bytes that arrived at `received_at` (every event completed by them gets that time).
  void on_body(std::string_view bytes, TimePoint received_at);
  // The body ended cleanly at `now`: sets the outcome (success needs generated text, no error
  // event, and no partial event left over) and `end` (the [DONE] time if one was seen).
  void on_body_end(TimePoint now);

  bool saw_done() const { return done_at_.has_value(); }

 private:
  void on_event(std::string_view data, TimePoint received_at);
  void fail(Outcome outcome, std::string message);

  RequestRecord& record_;
  http::SseParser parser_;
  std::optional<TimePoint> done_at_;
};

}  // namespace infergate::bench
