#pragma once

// Internal to the request module: the one place that turns a body into a padded simdjson
// On-Demand document, and small JSON byte helpers shared by the request parser, the body rewriter
// and the response usage parser. Not part of the module's public interface.

#include <simdjson.h>

#include <cstring>
#include <string>
#include <string_view>

namespace infergate::request::json_scan {

namespace od = simdjson::ondemand;

// Bodies up to this size reuse the thread's parser and scratch buffer; larger ones get their own
// so that one huge body does not pin memory on the thread forever.
inline constexpr std::size_t kMaxReusedBodyBytes = std::size_t{1} << 20;

struct Scratch {
  od::parser parser;
  std::string buffer;
};

// This thread's parser and buffer. One document at a time per thread: callers must finish with a
// document (copy out what they keep) before starting another.
Scratch& thread_scratch();

// Copies `body` into padded scratch memory, starts an On-Demand document over it and calls
// `on_document(document, base)`, where `base` is the scratch copy of body[0] (so a pointer `p`
// into the document is body offset `p - base`); if simdjson refuses to start, calls
// `on_error(error)` instead. Both must return the same type.
template <typename OnDocument, typename OnError>
auto with_document(std::string_view body, OnDocument&& on_document, OnError&& on_error) {
  auto run = [&](Scratch& scratch) {
    // simdjson reads up to SIMDJSON_PADDING bytes past the end of the input.
    const std::size_t padded_size = body.size() + simdjson::SIMDJSON_PADDING;
    if (scratch.buffer.size() < padded_size) scratch.buffer.resize(padded_size);
    if (!body.empty()) std::memcpy(scratch.buffer.data(), body.data(), body.size());
    std::memset(scratch.buffer.data() + body.size(), 0, simdjson::SIMDJSON_PADDING);
    simdjson::padded_string_view padded(scratch.buffer.data(), body.size(), scratch.buffer.size());
    od::document document;
    if (auto error = scratch.parser.iterate(padded).get(document)) return on_error(error);
    return on_document(document, static_cast<const char*>(scratch.buffer.data()));
  };
  if (body.size() > kMaxReusedBodyBytes) {
    Scratch scratch;
    return run(scratch);
  }
  return run(thread_scratch());
}

inline bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// [start, end) with JSON whitespace removed from the end.
inline std::string_view trimmed_range(const char* start, const char* end) {
  while (end > start && is_json_space(end[-1])) --end;
  return {start, static_cast<std::size_t>(end - start)};
}

// Appends `text` as a JSON string literal (quotes included): '"', '\\' and control characters are
// escaped (\b \f \n \r \t, else \u00XX); every other byte, UTF-8 included, is copied as is.
void append_json_string(std::string& out, std::string_view text);

}  // namespace infergate::request::json_scan
