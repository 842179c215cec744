// Clients' HTTP/1.1 requests, as the server reads them: the RequestParser of
// http/request_parser.h (a plain reader for plain heads, Beast's request_parser for the others),
// given the head through wire::parse_head as the server gives it.
// Input: one byte choosing the cut of the pieces, then the bytes of the request.
// Properties (differential): fed whole, or in pieces, it ends as Beast's own request_parser fed
// the same does (the same error or none, at the same stage), with the same method, target,
// version, fields in the same order and keep-alive once the head is read, and the same body once
// it is whole; a request read whole without error reads the same in pieces.

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "fuzz/parser_feed.h"
#include "http/request_parser.h"

namespace {

using infergate::fuzz::FuzzInput;
using infergate::fuzz::require;
namespace bhttp = boost::beast::http;
using boost::system::error_code;

constexpr std::uint64_t kBodyLimit = 1 << 20;
constexpr std::size_t kHeadLimit = 8 << 10;  // the server's default

struct Outcome {
  error_code ec;
  bool ended = false;        // an error, or the whole message (else the pieces ran out)
  bool header_done = false;  // the head was read (the server goes on to the body)
  bool done = false;         // the whole message was read
  std::string method;
  std::string target;
  unsigned version = 0;
  std::vector<std::pair<std::string, std::string>> fields;
  bool keep_alive = false;
  std::string body;
};

// Reads `pieces` with `parser` set up as the server sets its parser up.
template <typename Parser>
Outcome read(Parser& parser, const std::vector<std::string_view>& pieces) {
  parser.body_limit(kBodyLimit);
  parser.header_limit(kHeadLimit);
  Outcome outcome;
  if (auto ended = infergate::fuzz::feed_pieces(parser, pieces, kHeadLimit)) {
    outcome.ended = true;
    outcome.ec = *ended;
  }
  outcome.header_done = parser.is_header_done();
  outcome.done = parser.is_done();
  if (!outcome.header_done) return outcome;
  outcome.keep_alive = parser.keep_alive();
  const auto& message = parser.get();
  outcome.method = std::string(message.method_string());
  outcome.target = std::string(message.target());
  outcome.version = message.version();
  for (const auto& field : message) {
    outcome.fields.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  outcome.body = message.body();
  return outcome;
}

Outcome ours(const std::vector<std::string_view>& pieces) {
  infergate::http::detail::RequestParser parser;
  return read(parser, pieces);
}

Outcome beasts(const std::vector<std::string_view>& pieces) {
  bhttp::request_parser<bhttp::string_body> parser;
  return read(parser, pieces);
}

void require_same(const Outcome& a, const Outcome& b, const char* what) {
  require(a.ec == b.ec && a.ended == b.ended && a.header_done == b.header_done && a.done == b.done,
          what);
  // The server hands on a request once it is whole.
  if (a.done && !a.ec) {
    require(a.method == b.method && a.target == b.target && a.version == b.version &&
                a.fields == b.fields && a.keep_alive == b.keep_alive && a.body == b.body,
            what);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput input(data, size);
  const std::uint8_t choice = input.take_byte();
  const std::string_view request = input.rest();
  const std::vector<std::string_view> whole = {request};
  const std::vector<std::string_view> cut = infergate::fuzz::pieces(request, choice);

  const Outcome read_whole = ours(whole);
  const Outcome read_cut = ours(cut);
  require_same(read_whole, beasts(whole),
               "RequestParser reads a request otherwise than Beast's parser");
  // Beast finds some malformed heads only once their end has arrived, so where a request is cut
  // may change which error it ends with: compared with Beast fed the same pieces.
  require_same(read_cut, beasts(cut),
               "RequestParser reads a request in pieces otherwise than Beast's parser");
  if (read_whole.done && !read_whole.ec && read_cut.done && !read_cut.ec) {
    require_same(read_cut, read_whole, "RequestParser reads a request in pieces otherwise");
  }
  return 0;
}
