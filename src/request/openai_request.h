#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/status.h"

namespace infergate::request {

// Which OpenAI endpoint a body was sent to; it decides which fields are read.
enum class ApiKind {
  kCompletions,      // POST /v1/completions
  kChatCompletions,  // POST /v1/chat/completions
  kResponses,        // POST /v1/responses
  kConversations,    // POST /v1/conversations
  kEmbeddings,       // POST /v1/embeddings
};

// The API a request path addresses, by suffix as the GIE reference parser does (epp-protocol §8):
// "/conversations", "/responses", "/chat/completions", "/completions", "/embeddings", tried in that
// order; anything else is kCompletions. A query string ("?...") is ignored; the match is
// case-sensitive and a trailing '/' is not stripped. Pure, thread-safe, no allocation.
ApiKind api_kind_from_path(std::string_view path);

// One chat message. `content` is the message's text: a string content as is, or the "text" of
// every {"type":"text"} part of an array content joined with "\n" (as vLLM does); parts of other
// types ("image_url", "input_audio", "video_url", or any other) are accepted and ignored. Empty
// when an assistant message has null/no content.
struct ChatMessage {
  std::string role;
  std::string content;

  friend bool operator==(const ChatMessage&, const ChatMessage&) = default;
};

// The fields of an OpenAI request body that infergate acts on. Unknown fields are ignored (but
// must still be valid JSON). Every kind reads model, stream, stream_options, max_tokens,
// ignore_eos, min_tokens, cache_salt, seed and n; then, per kind:
//   completions    `prompt`
//   chat           `messages`, `max_completion_tokens` (wins over max_tokens)
//   responses      `input` (a string or a non-empty array), `instructions` (a string),
//                  `tools` (any JSON), `max_output_tokens` (wins over max_tokens)
//   conversations  `items` (a non-empty array; the items themselves are not interpreted)
//   embeddings     `input` (a string or a non-empty array)
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
  // Completions: the prompt is either text (`prompt`) or token ids (`prompt_token_ids`, set only
  // when the body gave integers; `prompt` is then empty).
  // Responses / embeddings: a string `input` is also copied here (an array `input` leaves it
  // empty), so prompt_text() and the simulator see it.
  std::string prompt;
  std::optional<std::vector<std::uint32_t>> prompt_token_ids;
  std::vector<ChatMessage> messages;  // chat only, non-empty
  std::int64_t n = 1;                 // only 1 is accepted
  // Backing store of prefix_bytes() for every case but a completions text prompt (which is
  // `prompt` itself and is not copied twice). Empty otherwise.
  std::string prefix_json;

  // The bytes the approximate prefix-cache scorer hashes (scheduling §4.2), built in the same pass:
  //   completions, text prompt   the prompt text, unescaped (== `prompt`)
  //   completions, token ids     the raw JSON of the `prompt` value, as in the body
  //   chat                       the raw JSON of the `messages` array, as in the body
  //   responses                  "[" I "," T "," N "]" where I, T, N are the raw JSON of
  //                              `instructions`, `tools`, `input` as in the body, `null` if absent
  //   conversations              the raw JSON of the `items` array, as in the body
  //   embeddings                 the raw JSON of the `input` value, as in the body
  // "Raw JSON as in the body" is the exact byte range of the value (from its first to its last
  // byte; no surrounding whitespace), escapes and inner whitespace kept. It costs one copy and no
  // re-serialisation. The GIE reference re-serialises these values instead, so the bytes (and hence
  // block hashes) differ from the reference's, and two bodies that differ only in formatting hash
  // differently; hashes are deterministic for identical bytes, which is all a scorer that hashes
  // both the request and its own index with this function needs. Multi-turn chat keeps the prefix
  // property: `[m1,m2` is a byte prefix of `[m1,m2,m3]` when clients re-send earlier messages as
  // they sent them. With a later duplicate key, the value that wins is the one hashed.
  std::string_view prefix_bytes() const {
    if (kind == ApiKind::kCompletions && !prompt_token_ids) return prompt;
    return prefix_json;
  }

  // Compares what the body means, not `prefix_json`: that depends on how the body was formatted
  // (whitespace, escapes), and two bodies that say the same thing are the same request.
  friend bool operator==(const OpenAiRequest& a, const OpenAiRequest& b) {
    auto fields = [](const OpenAiRequest& r) {
      return std::tie(r.kind, r.model, r.stream, r.include_usage, r.max_tokens, r.ignore_eos,
                      r.min_tokens, r.cache_salt, r.seed, r.prompt, r.prompt_token_ids, r.messages,
                      r.n);
    };
    return fields(a) == fields(b);
  }
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
//   "'input' is required", "'input' must be a string or a non-empty array"  (responses, embeddings)
//   "'instructions' must be a string", "'max_output_tokens' must be an integer >= 1"  (responses)
//   "'items' is required", "'items' must be a non-empty array"  (conversations)
// JSON null for an optional field means "absent". Completions `prompt` accepts a string, an array
// of one string, an array of token ids, or an array of one array of token ids (ids in
// [0, 2^32-1]); an empty token-id list is rejected. Later duplicates of a key win, as in Python.
Result<OpenAiRequest> parse_openai_request(ApiKind kind, std::string_view body);

}  // namespace infergate::request
