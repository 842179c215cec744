#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace infergate::request {

// Which OpenAI endpoint a body was sent to; it decides which fields are read.
enum class ApiKind {
  kCompletions,      // POST /v1/completions
  kChatCompletions,  // POST /v1/chat/completions
};

// One chat message. `content` is the message's text: a string content as is, or the "text" of
// every {"type":"text"} part of an array content joined with "\n" (as vLLM does); parts of other
// types (images, audio, ...) are ignored. Empty when an assistant message has null/no content.
struct ChatMessage {
  std::string role;
  std::string content;

  friend bool operator==(const ChatMessage&, const ChatMessage&) = default;
};

// The fields of an OpenAI Completions / Chat Completions body that infergate acts on. Unknown
// fields are ignored (but must still be valid JSON).
struct OpenAiRequest {
  ApiKind kind = ApiKind::kCompletions;
  std::string model;                       // required, non-empty
  bool stream = false;                     // `stream`
  bool include_usage = false;              // `stream_options.include_usage`
  std::optional<std::int64_t> max_tokens;  // `max_tokens`; chat: `max_completion_tokens` wins
  bool ignore_eos = false;                 // `ignore_eos` (vLLM extension)
  std::optional<std::int64_t> min_tokens;  // `min_tokens` (vLLM extension), <= max_tokens
  std::string cache_salt;                  // `cache_salt` (vLLM extension), empty if absent
  std::optional<std::uint64_t> seed;  // `seed`; a negative seed is kept as its two's complement
  // Completions only: the prompt is either text (`prompt`) or token ids (`prompt_token_ids`, set
  // only when the body gave integers; `prompt` is then empty).
  std::string prompt;
  std::optional<std::vector<std::uint32_t>> prompt_token_ids;
  std::vector<ChatMessage> messages;  // chat only, non-empty
  std::int64_t n = 1;                 // only 1 is accepted

  friend bool operator==(const OpenAiRequest&, const OpenAiRequest&) = default;
};

// Parses and validates an OpenAI request body of the given kind.
//
// Callers: the simulated model server and, later, the gateway/picker; any thread, concurrently.
// The body is copied into a per-thread padded scratch buffer and scanned with simdjson On-Demand
// (no DOM); each thread keeps one parser and one buffer, grown to the largest body (up to 1 MiB)
// it has parsed. Bodies over 1 MiB use a temporary parser. Nothing refers to `body` afterwards.
//
// Never throws for bad input and never crashes on any byte sequence. Errors are
// Status::bad_request (HTTP 400) with a message naming the offending field, e.g.
//   "request body is not valid JSON: <simdjson error>"   malformed, truncated, invalid UTF-8,
//                                                          trailing content, > 128 levels deep
//   "request body must be a JSON object"
//   "'model' is required", "'model' must be a non-empty string"
//   "'stream' must be a boolean"  (likewise ignore_eos, stream_options.include_usage)
//   "'max_tokens' must be an integer >= 1"  (likewise max_completion_tokens)
//   "'min_tokens' must be an integer >= 0", "'min_tokens' must be <= 'max_tokens'"
//   "'prompt' is required", "batched prompts are not supported", "only n=1 is supported"
//   "'messages' is required", "'messages' must be a non-empty array",
//   "'messages[2].content' is required", ...
// JSON null for an optional field means "absent". Completions `prompt` accepts a string, an array
// of one string, an array of token ids, or an array of one array of token ids (ids in
// [0, 2^32-1]); an empty token-id list is rejected. Later duplicates of a key win, as in Python.
Result<OpenAiRequest> parse_openai_request(ApiKind kind, std::string_view body);

}  // namespace infergate::request
