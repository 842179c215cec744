// Model server responses: the usage of a whole JSON body (parse_body_usage, which reads only a
// trailing usage object when it can) and of a streamed one (SseUsageScanner).
// Input: one byte choosing the cut of the pieces, then the body.
// Properties:
// - whenever the body is valid JSON (as simdjson's DOM parser, which validates everything, finds
//   it), the trailing-object shortcut gives what parsing the whole body gives (the same counts,
//   or an error as well);
// - a failure is a 502;
// - the stream scanner finds the same usage and counts the same malformed events however the
//   stream is cut.

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_input.h"
#include "request/response_usage.h"

namespace {

using infergate::fuzz::FuzzInput;
using infergate::fuzz::require;
namespace request = infergate::request;

void check_stream(std::string_view stream, std::uint8_t cut) {
  request::SseUsageScanner whole;
  whole.feed(stream);
  whole.finish();

  request::SseUsageScanner in_pieces;
  for (std::string_view piece : infergate::fuzz::pieces(stream, cut)) in_pieces.feed(piece);
  in_pieces.finish();
  require(whole.usage() == in_pieces.usage(), "SseUsageScanner's usage depends on the cut");
  require(whole.malformed_events() == in_pieces.malformed_events(),
          "SseUsageScanner's malformed events depend on the cut");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput input(data, size);
  const std::uint8_t cut = input.take_byte();
  const std::string_view body = input.rest();

  const auto whole = request::parse_response_usage(body);
  const auto shortcut = request::parse_body_usage(body);
  static simdjson::dom::parser validator;
  if (!validator.parse(body.data(), body.size()).error()) {
    // (A root that is not an object is an error for both.)
    require(shortcut.ok() == whole.ok(), "the usage shortcut fails where the whole body does not");
    require(!whole.ok() || *shortcut == *whole,
            "the usage shortcut reads other counts than the whole body");
  }
  if (!whole.ok()) {
    require(whole.status().http_status() == 502, "a bad response body is not a 502");
  }
  if (!shortcut.ok()) {
    require(shortcut.status().http_status() == 502, "a bad response body is not a 502");
  }

  check_stream(body, cut);
  return 0;
}
