// Model servers' HTTP/1.1 responses, as the gateway's client reads them: the ResponseParser of
// http/response_parser.h (a plain reader for plain heads, a Beast basic_parser that fills a
// ResponseHead for the others), given the head through wire::parse_head as the client gives it.
// Input: one byte choosing the cut of the pieces (and, by its top bit, a HEAD request's
// response, whose body is skipped), then the bytes of the response.
// Properties (differential): fed whole, or in pieces, it ends as Beast's own response_parser fed
// the same does (the same error or none, at the same stage), with the same status, fields in the
// same order, chunked flag and keep-alive once the head is read, and the same body once it is
// whole; a response read whole without error reads the same in pieces.

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
#include "http/response_parser.h"

namespace {

using infergate::fuzz::FuzzInput;
using infergate::fuzz::require;
namespace bhttp = boost::beast::http;
using boost::system::error_code;

constexpr std::uint64_t kBodyLimit = 1 << 20;
constexpr std::size_t kHeadLimit = 8 << 10;  // the client's

// Feeds `pieces` to `parser` as the client's read loop does, then the end of the stream
// (end_of_stream when nothing came, as the client has it); the first error, or none.
template <typename Parser>
error_code feed(Parser& parser, const std::vector<std::string_view>& pieces) {
  if (auto ended = infergate::fuzz::feed_pieces(parser, pieces, kHeadLimit)) return *ended;
  if (!parser.got_some()) return bhttp::error::end_of_stream;
  error_code ec;
  parser.put_eof(ec);
  return ec;
}

struct Outcome {
  error_code ec;
  bool header_done = false;  // the head was read (the client hands it on)
  bool done = false;         // the whole message was read
  unsigned status = 0;
  std::vector<std::pair<std::string, std::string>> fields;
  bool chunked = false;
  bool keep_alive = false;
  std::string body;
};

// Reads `pieces` with `parser` set up as the client sets its parser up; the rest of the outcome
// is the caller's to fill in.
template <typename Parser>
Outcome read(Parser& parser, const std::vector<std::string_view>& pieces, bool head_request) {
  parser.body_limit(kBodyLimit);
  parser.skip(head_request);
  Outcome outcome;
  outcome.ec = feed(parser, pieces);
  outcome.header_done = parser.is_header_done();
  outcome.done = parser.is_done();
  return outcome;
}

Outcome ours(const std::vector<std::string_view>& pieces, bool head_request) {
  infergate::http::detail::ResponseParser parser;
  Outcome outcome = read(parser, pieces, head_request);
  const infergate::http::ResponseHead& head = parser.head();
  outcome.status = head.status;
  outcome.fields = head.headers;
  outcome.chunked = head.chunked;
  outcome.keep_alive = parser.header_keep_alive();
  outcome.body = parser.body();
  return outcome;
}

Outcome beasts(const std::vector<std::string_view>& pieces, bool head_request) {
  bhttp::response_parser<bhttp::string_body> parser;
  Outcome outcome = read(parser, pieces, head_request);
  const auto& message = parser.get();
  outcome.status = message.result_int();
  for (const auto& field : message) {
    outcome.fields.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  outcome.chunked = message.chunked();
  outcome.keep_alive = message.keep_alive();
  outcome.body = message.body();
  return outcome;
}

void require_same(const Outcome& a, const Outcome& b, const char* what) {
  require(a.ec == b.ec && a.header_done == b.header_done && a.done == b.done, what);
  // The client hands on a head once it is read, and a body once it is whole.
  if (a.header_done) {
    require(a.status == b.status && a.fields == b.fields && a.chunked == b.chunked &&
                a.keep_alive == b.keep_alive,
            what);
  }
  if (a.done && !a.ec) require(a.body == b.body, what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput input(data, size);
  const std::uint8_t choice = input.take_byte();
  const bool head_request = (choice & 0x80) != 0;
  const std::string_view response = input.rest();
  const std::vector<std::string_view> whole = {response};

  const std::vector<std::string_view> cut = infergate::fuzz::pieces(response, choice);

  const Outcome read_whole = ours(whole, head_request);
  const Outcome read_cut = ours(cut, head_request);
  require_same(read_whole, beasts(whole, head_request),
               "ResponseParser reads a response otherwise than Beast's parser");
  // Beast finds some malformed heads only once their end has arrived, so where a response is cut
  // may change which error it ends with: compared with Beast fed the same pieces.
  require_same(read_cut, beasts(cut, head_request),
               "ResponseParser reads a response in pieces otherwise than Beast's parser");
  if (read_whole.done && !read_whole.ec && read_cut.done && !read_cut.ec) {
    require_same(read_cut, read_whole, "ResponseParser reads a response in pieces otherwise");
  }
  return 0;
}
