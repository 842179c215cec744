#pragma once

// Server-sent events (text/event-stream), as used by OpenAI-style streaming responses.

#include <functional>
#include <string>
#include <string_view>

namespace infergate::http {

// Splits a text/event-stream into events and yields each event's data, following the WHATWG
// event-stream rules: lines end with "\r\n", "\n" or "\r" (also when split across feeds); an
// empty line ends an event; `data:` lines are joined with "\n" (one space after the colon is
// dropped); comment lines (starting with ':') and other fields (event, id, retry) are skipped;
// an event without data lines yields nothing.
//
// Owned and used by one reader at a time. Input is buffered only up to the end of the current
// event, so the caller bounds memory by bounding the body it feeds.
class SseParser {
 public:
  // Feeds the next bytes of the stream; calls `on_event` once per event completed by them, in
  // order. The view passed to `on_event` is valid only during the call.
  void feed(std::string_view bytes, const std::function<void(std::string_view data)>& on_event);

  // True when bytes of an unfinished event are buffered (a stream that ends here was truncated).
  bool has_partial_event() const { return !line_.empty() || has_data_; }

  // Forgets any partial event.
  void reset();

 private:
  void process_line(std::string_view line,
                    const std::function<void(std::string_view data)>& on_event);

  std::string line_;             // the current line, when it spans feeds
  std::string data_;             // the current event's data lines, joined
  bool has_data_ = false;        // the current event has at least one data line
  bool skip_line_feed_ = false;  // the previous feed ended with '\r'; a leading '\n' belongs to it
};

// One event carrying `data`: "data: <data>\n\n". Data containing line breaks is sent as several
// data lines, which a parser joins back into the same text.
std::string sse_event(std::string_view data);

}  // namespace infergate::http
