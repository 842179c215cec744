// Client request bodies (untrusted): parse_openai_request, rewrite_model and the streamed
// response's ModelNameRestorer.
// Input: one byte choosing the API kind and the cut of the pieces, then the body.
// Properties:
// - a body the parser rejects is a 400;
// - a body the parser accepts can have its model rewritten, and the rewritten body parses to the
//   same request with the new model: the picker and the model server never read different models
//   or different requests from one body;
// - the restorer gives the same bytes however the stream is cut.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_input.h"
#include "request/body_rewrite.h"
#include "request/openai_request.h"

namespace {

using infergate::fuzz::FuzzInput;
using infergate::fuzz::require;
namespace request = infergate::request;

constexpr std::array kKinds = {request::ApiKind::kCompletions, request::ApiKind::kChatCompletions,
                               request::ApiKind::kResponses, request::ApiKind::kConversations,
                               request::ApiKind::kEmbeddings};
// Needs escaping both ways: a quote, a backslash, a control character and UTF-8.
constexpr std::string_view kNewModel = "fuzz/\"model\"\\\x01-\xc3\xa9";

void check_restorer(std::string_view stream, std::string_view target, std::string_view incoming,
                    std::uint8_t cut) {
  request::ModelNameRestorer whole_restorer(target, incoming);
  std::string whole;
  whole_restorer.feed(stream, whole);
  whole_restorer.finish(whole);

  request::ModelNameRestorer piece_restorer(target, incoming);
  std::string in_pieces;
  for (std::string_view piece : infergate::fuzz::pieces(stream, cut)) {
    piece_restorer.feed(piece, in_pieces);
  }
  piece_restorer.finish(in_pieces);
  require(whole == in_pieces, "ModelNameRestorer depends on how the stream is cut");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput input(data, size);
  const std::uint8_t choice = input.take_byte();
  const request::ApiKind kind = kKinds[choice % kKinds.size()];
  const std::string_view body = input.rest();

  check_restorer(body, "m", kNewModel, choice);

  const auto parsed = request::parse_openai_request(kind, body);
  if (!parsed.ok()) {
    require(parsed.status().http_status() == 400, "a rejected body is not a 400");
    return 0;
  }
  require(!parsed->model.empty(), "an accepted body has no model");

  const auto rewritten = request::rewrite_model(body, kNewModel);
  require(rewritten.ok(), "an accepted body cannot have its model rewritten");
  const auto reparsed = request::parse_openai_request(kind, *rewritten);
  require(reparsed.ok(), "a rewritten body is rejected");
  request::OpenAiRequest expected = *parsed;
  expected.model = std::string(kNewModel);
  require(*reparsed == expected, "a rewritten body says something else than the original");
  return 0;
}
