#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace infergate::request {

// Returns `body` with the value of every top-level "model" key (keys compared after unescaping, so
// "\u006dodel" counts; keys of nested objects never do) replaced by `new_model` as a JSON string
// literal. Every other byte of the body, whitespace included, is copied unchanged.
//
// Used on request bodies (target model) and on whole non-streaming JSON response bodies (incoming
// model restored, epp-protocol §7.7). Any thread; one output allocation. The body is expected to
// have been accepted by parse_openai_request (or to be a server's response): only the top-level
// structure and the replaced values are checked, other values are skipped, not validated.
// `new_model` is escaped: '"', '\\' and control characters; other bytes, UTF-8 included, are kept.
//
// Errors (Status::bad_request, 400):
//   "model name must be a non-empty string"        `new_model` is empty
//   "model name is not valid UTF-8"
//   "request body is not valid JSON: <why>"
//   "request body must be a JSON object"
//   "'model' is required"                          no top-level "model" key
Result<std::string> rewrite_model(std::string_view body, std::string_view new_model);

// Restores the incoming model name in a streamed (SSE) response, byte-wise as the GIE reference
// does (epp-protocol §7.7): every `"model":"<target>"` and `"model": "<target>"` becomes the same
// with `<incoming>` (both names JSON-escaped as above, so they match how servers write them).
// Unlike a per-chunk replace, a match split across chunks is still found: when a chunk ends with a
// proper prefix of a match, those bytes (at most the match length - 1) are held back until the
// next chunk or finish(). Responses-API events nest the model ("response":{"model":...}) and are
// covered too, since matching ignores structure. One instance per response; not thread-safe.
class ModelNameRestorer {
 public:
  ModelNameRestorer(std::string_view target_model, std::string_view incoming_model);

  // Appends the rewritten bytes of `chunk` that are final to `out`.
  void feed(std::string_view chunk, std::string& out);
  // Appends whatever was held back; call at end of stream.
  void finish(std::string& out);

 private:
  std::string colon_;           // "model":
  std::string target_value_;    // "<target>" (escaped, quoted)
  std::string incoming_value_;  // "<incoming>"
  std::string held_;
};

}  // namespace infergate::request
