#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace infergate::request {

// Token counts a model server reports for one response (epp-protocol §7.7, model-server §1.3).
// A field missing from the server's usage object is 0.
struct TokenUsage {
  std::int64_t prompt_tokens = 0;      // `prompt_tokens`, or Responses API `input_tokens`
  std::int64_t completion_tokens = 0;  // `completion_tokens`, or `output_tokens`
  std::int64_t total_tokens = 0;       // `total_tokens`; prompt + completion when absent
  // `cached_tokens` under `prompt_tokens_details` (OpenAI, vLLM), `prompt_token_details` (GIE's
  // spelling) or `input_tokens_details` (Responses API).
  std::int64_t cached_tokens = 0;

  friend bool operator==(const TokenUsage&, const TokenUsage&) = default;
};

// The usage of one JSON response body: the top-level `usage` object (completions, chat,
// embeddings, a Responses-API `response` object) or, for a Responses-API stream event such as
// `response.completed`, the `usage` of its top-level `response` object. nullopt when there is no
// usage or it is null (e.g. a streamed chunk before the last). Count fields that are not
// non-negative integers are ignored (read as absent), as are unknown fields; other values are
// skipped, not validated. Any thread; no allocation on success.
//
// Errors (HTTP 502, the server sent something unusable):
//   "response body is not valid JSON: <simdjson error>"
//   "response body must be a JSON object"
Result<std::optional<TokenUsage>> parse_response_usage(std::string_view body);

// The usage of a whole JSON response body that is relayed as received, where only the counts
// matter. When the body ends with its top-level `usage` object, as vLLM, SGLang and OpenAI write
// it, only that object is parsed: the rest of the body is not validated, so a body that is not
// valid JSON before its usage still gives its counts. Otherwise, and when that object is not
// valid JSON by itself, the result is parse_response_usage's. Any thread; no allocation.
Result<std::optional<TokenUsage>> parse_body_usage(std::string_view body);

// Finds the usage in a streamed (text/event-stream) response fed in arbitrary chunks: a line may
// straddle chunks. Lines end with "\n" (a "\r" before it is dropped); lines starting "data:" (one
// space after the colon dropped) are joined with "\n" into an event's data, dispatched at a blank
// line or at finish(); other fields and comments are ignored. Events whose data is "[DONE]" or
// does not contain `"usage"` are not parsed; the others go through parse_response_usage and the
// last usage found wins (servers send it once, near the end). One instance per response; not
// thread-safe. Memory: the current partial line and event data, reused across events.
class SseUsageScanner {
 public:
  void feed(std::string_view chunk);
  void finish();

  const std::optional<TokenUsage>& usage() const { return usage_; }
  // Events that mentioned "usage" but were not valid JSON objects (the caller counts these).
  std::size_t malformed_events() const { return malformed_events_; }

 private:
  void on_line(std::string_view line);
  void dispatch();

  std::string partial_line_;
  std::string event_data_;
  bool event_has_data_ = false;
  std::optional<TokenUsage> usage_;
  std::size_t malformed_events_ = 0;
};

}  // namespace infergate::request
