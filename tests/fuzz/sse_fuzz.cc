// Server-sent event streams relayed from model servers: http::SseParser.
// Input: one byte choosing the cut of the pieces, then the stream.
// Properties: the events (and whether a partial event is left) do not depend on how the stream
// is cut; an event's data written by sse_event() parses back to the same data.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "http/sse.h"

namespace {

using infergate::fuzz::FuzzInput;
using infergate::fuzz::require;
using infergate::http::SseParser;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput input(data, size);
  const std::uint8_t cut = input.take_byte();
  const std::string_view stream = input.rest();

  std::vector<std::string> whole_events;
  SseParser whole;
  whole.feed(stream, [&](std::string_view event) { whole_events.emplace_back(event); });

  std::vector<std::string> piece_events;
  SseParser in_pieces;
  for (std::string_view piece : infergate::fuzz::pieces(stream, cut)) {
    in_pieces.feed(piece, [&](std::string_view event) { piece_events.emplace_back(event); });
  }
  require(whole_events == piece_events, "SseParser's events depend on the cut");
  require(whole.has_partial_event() == in_pieces.has_partial_event(),
          "SseParser's partial event depends on the cut");

  std::vector<std::string> round_trip;
  SseParser writer_check;
  writer_check.feed(infergate::http::sse_event(stream),
                    [&](std::string_view event) { round_trip.emplace_back(event); });
  // A lone "\r" followed by "\n" in the data is one line break to the parser, as is "\r\n".
  if (stream.find('\r') == std::string_view::npos) {
    require(round_trip.size() == 1 && round_trip.front() == stream,
            "sse_event's data does not parse back");
  }
  return 0;
}
