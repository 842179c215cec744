#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/request_parser.h"
#include "http/response_parser.h"

namespace infergate::http {
namespace {

namespace bhttp = boost::beast::http;
using boost::system::error_code;
using detail::RequestParser;
using detail::ResponseParser;

constexpr std::uint64_t kBodyLimit = 1000;

// The response parser (ResponseParser) and the request parser (RequestParser) each against
// Beast's parser, and which of their readers takes which heads.

// What a parser made of a response given whole, then the end of the stream if it wanted more.
struct Reading {
  error_code ec;
  bool done = false;
  unsigned status = 0;
  Headers fields;
  bool keep_alive = false;
  bool chunked = false;
  std::optional<std::uint64_t> content_length;
  std::string body;

  bool operator==(const Reading&) const = default;
};

template <typename Parser>
error_code feed(Parser& parser, std::string_view bytes) {
  error_code ec;
  while (!parser.is_done()) {
    const std::size_t used = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
    bytes.remove_prefix(used);
    if (ec == bhttp::error::need_more) ec = {};
    if (ec) return ec;
    if (used == 0) break;
  }
  if (!parser.is_done()) parser.put_eof(ec);
  return ec;
}

template <typename Parser>
void finish_reading(Parser& parser, Reading& reading) {
  reading.done = parser.is_done();
  if (!parser.is_header_done()) return;
  reading.keep_alive = parser.keep_alive();
  if (auto length = parser.content_length()) reading.content_length = *length;
}

Reading read_ours(std::string_view response, bool head_request, bool* plain = nullptr) {
  ResponseParser parser;
  parser.body_limit(kBodyLimit);
  parser.skip(head_request);
  Reading reading;
  reading.ec = feed(parser, response);
  if (plain != nullptr) *plain = parser.read_plain();
  finish_reading(parser, reading);
  if (!parser.is_header_done()) return reading;
  reading.status = parser.head().status;
  reading.fields = parser.head().headers;
  reading.chunked = parser.head().chunked;
  reading.body = parser.body();
  return reading;
}

Reading read_beasts(std::string_view response, bool head_request) {
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(kBodyLimit);
  parser.skip(head_request);
  Reading reading;
  reading.ec = feed(parser, response);
  finish_reading(parser, reading);
  if (!parser.is_header_done()) return reading;
  const auto& message = parser.get();
  reading.status = message.result_int();
  for (const auto& field : message) {
    reading.fields.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  reading.chunked = message.chunked();
  reading.body = message.body();
  return reading;
}

struct ResponseCase {
  const char* description;
  std::string response;
  bool plain;  // read by the plain reader rather than Beast's parser
  bool head_request = false;
};

const std::vector<ResponseCase>& response_cases() {
  static const std::vector<ResponseCase> all = {
      {"nginx",
       "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 15:20:00 GMT\r\n"
       "Content-Type: application/json\r\nContent-Length: 4\r\nConnection: "
       "keep-alive\r\n\r\n{}\r\n",
       true},
      {"uvicorn (vLLM)",
       "HTTP/1.1 200 OK\r\ndate: Mon, 23 Nov 2026 15:20:00 GMT\r\nserver: uvicorn\r\n"
       "content-length: 2\r\ncontent-type: application/json\r\n\r\n{}",
       true},
      {"HTTP/1.0 keep-alive",
       "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", true},
      {"HTTP/1.0 without keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", true},
      {"Connection: close", "HTTP/1.1 503 Busy\r\nCONNECTION: CLOSE\r\ncontent-LENGTH: 0\r\n\r\n",
       true},
      {"another Connection token",
       "HTTP/1.1 200 OK\r\nConnection: te\r\nContent-Length: 1\r\n\r\nx", true},
      {"body to the end of the connection", "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nall of it", true},
      {"empty reason and value, blanks around values",
       "HTTP/1.1 204 \r\nX-Empty:\r\nX-Blanks: \t a b \t\r\n\r\n", true},
      {"obs-text in a value", "HTTP/1.1 200 OK\r\nX-Text: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n",
       true},
      {"a name repeated after others (kept together)",
       "HTTP/1.1 200 OK\r\nSet-Cookie: a\r\nX-B: b\r\nset-cookie: c\r\nContent-Length: 0\r\n\r\n",
       true},
      {"304 and 1xx have no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", true},
      {"interim", "HTTP/1.1 100 Continue\r\n\r\n", true},
      {"HEAD response", "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true, true},
      {"body longer than its length (the rest is left)",
       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1", true},
      {"body cut short", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", true},
      {"body to the end over the limit",
       "HTTP/1.1 200 OK\r\n\r\n" + std::string(kBodyLimit + 1, 'x'), true},
      // Left to Beast's parser.
      {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
       false},
      {"folded line", "HTTP/1.1 200 OK\r\nX-Fold: a\r\n b\r\nContent-Length: 0\r\n\r\n", false},
      {"Connection list", "HTTP/1.1 200 OK\r\nConnection: keep-alive, te\r\n\r\n", false},
      {"Connection: upgrade", "HTTP/1.1 101 Switching\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
       false},
      {"two Connection fields", "HTTP/1.1 200 OK\r\nConnection: te\r\nConnection: close\r\n\r\n",
       false},
      {"Proxy-Connection", "HTTP/1.0 200 OK\r\nProxy-Connection: keep-alive\r\n\r\n", false},
      {"Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", false},
      {"two Content-Length fields",
       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", false},
      {"Content-Length not a number", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", false},
      {"Content-Length over the body limit", "HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n",
       false},
      {"a control character in a value", "HTTP/1.1 200 OK\r\nX-A: a\x01z\r\n\r\n", false},
      {"a blank before the colon", "HTTP/1.1 200 OK\r\nX-A : a\r\n\r\n", false},
      {"a bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", false},
      {"no reason separator", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false},
      {"HTTP/2.0", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
      {"head not all there", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", false},
      {"head over the header limit",
       "HTTP/1.1 200 OK\r\nX-Big: " + std::string(9000, 'v') + "\r\n\r\n", false},
  };
  return all;
}

TEST(ResponseParserTest, ReadsAsBeastsParserDoesWhicheverReaderTakesTheHead) {
  for (const ResponseCase& test_case : response_cases()) {
    SCOPED_TRACE(test_case.description);
    bool plain = false;
    const Reading ours = read_ours(test_case.response, test_case.head_request, &plain);
    EXPECT_EQ(plain, test_case.plain);
    const Reading beasts = read_beasts(test_case.response, test_case.head_request);
    EXPECT_EQ(ours.ec, beasts.ec) << ours.ec.message() << " vs " << beasts.ec.message();
    EXPECT_EQ(ours, beasts);
  }
}

TEST(ResponseParserTest, PlainReaderKeepsFieldsInBeastsOrderAndTheFramingItRead) {
  const Reading reading = read_ours(
      "HTTP/1.1 200 OK\r\nSet-Cookie: a\r\nX-B: b\r\nset-cookie: c\r\nConnection: close\r\n"
      "Content-Length: 3\r\n\r\nabc",
      false);
  EXPECT_FALSE(reading.ec);
  EXPECT_TRUE(reading.done);
  EXPECT_EQ(reading.status, 200u);
  const Headers expected = {{"Set-Cookie", "a"},
                            {"set-cookie", "c"},
                            {"X-B", "b"},
                            {"Connection", "close"},
                            {"Content-Length", "3"}};
  EXPECT_EQ(reading.fields, expected);
  EXPECT_FALSE(reading.keep_alive);
  EXPECT_EQ(reading.content_length, 3u);
  EXPECT_EQ(reading.body, "abc");
}

TEST(ResponseParserTest, PlainReaderTakesTheBodyInPiecesAndStopsAtItsLength) {
  ResponseParser parser;
  parser.body_limit(kBodyLimit);
  error_code ec;
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  EXPECT_EQ(parser.put(boost::asio::buffer(head + "ab"), ec), head.size());
  EXPECT_TRUE(parser.read_plain());
  EXPECT_TRUE(parser.is_header_done());
  EXPECT_FALSE(parser.is_done());
  EXPECT_EQ(parser.put(boost::asio::buffer(std::string_view("ab")), ec), 2u);
  EXPECT_FALSE(parser.is_done());
  EXPECT_EQ(parser.put(boost::asio::buffer(std::string_view("cdeHTTP")), ec), 3u);
  EXPECT_FALSE(ec);
  EXPECT_TRUE(parser.is_done());
  EXPECT_TRUE(parser.keep_alive());
  EXPECT_EQ(parser.body(), "abcde");
}

TEST(ResponseParserTest, HeadThatArrivesInPiecesIsLeftToBeastsParser) {
  ResponseParser parser;
  error_code ec;
  const std::string_view first = "HTTP/1.1 200 OK\r\nContent-Le";
  const std::size_t used = parser.put(boost::asio::buffer(first), ec);
  EXPECT_FALSE(parser.read_plain());
  EXPECT_EQ(ec, bhttp::error::need_more);
  const std::string rest =
      std::string(first.substr(used)) + "ngth: 2\r\nConnection: close\r\n\r\nok";
  EXPECT_EQ(feed(parser, rest), error_code());
  EXPECT_TRUE(parser.is_done());
  EXPECT_FALSE(parser.keep_alive());
  EXPECT_EQ(parser.body(), "ok");
}

// What a request parser made of a request given whole.
struct RequestReading {
  error_code ec;
  bool done = false;
  std::string method;
  std::string target;
  unsigned version = 0;
  Headers fields;
  bool keep_alive = false;
  std::string body;

  bool operator==(const RequestReading&) const = default;
};

template <typename Parser>
RequestReading read_request(Parser& parser, std::string_view request) {
  parser.body_limit(kBodyLimit);
  RequestReading reading;
  while (!parser.is_done() && !request.empty()) {
    const std::size_t used =
        parser.put(boost::asio::buffer(request.data(), request.size()), reading.ec);
    request.remove_prefix(used);
    if (reading.ec == bhttp::error::need_more) reading.ec = {};
    if (reading.ec || used == 0) break;
  }
  reading.done = parser.is_done();
  if (!parser.is_header_done()) return reading;
  reading.keep_alive = parser.keep_alive();
  const Request& message = parser.get();
  reading.method = std::string(message.method_string());
  reading.target = std::string(message.target());
  reading.version = message.version();
  for (const auto& field : message) {
    reading.fields.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  reading.body = message.body();
  return reading;
}

struct RequestCase {
  const char* description;
  std::string request;
  bool plain;  // read by the plain reader rather than Beast's parser
};

const std::vector<RequestCase>& request_cases() {
  static const std::vector<RequestCase> all = {
      {"wrk's POST",
       "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
       "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
       true},
      {"GET without a body", "GET /v1/models?x=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n", true},
      {"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
      {"HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", true},
      {"Connection: close", "GET / HTTP/1.1\r\nconnection: Close\r\n\r\n", true},
      {"a method Beast does not know", "BREW /pot HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", true},
      {"repeated names and blanks", "GET / HTTP/1.1\r\nA: 1\r\nB:\t2 \r\na: 3\r\n\r\n", true},
      {"body cut short", "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", true},
      {"pipelined after the body", "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nxGET /", true},
      {"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
       false},
      {"Content-Length over the body limit", "POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n",
       false},
      {"two Content-Length fields",
       "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
      {"Upgrade", "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", false},
      {"folded line", "GET / HTTP/1.1\r\nA: 1\r\n 2\r\n\r\n", false},
      {"a control character in the target", "GET /a\x01 HTTP/1.1\r\n\r\n", false},
      {"two spaces", "GET  / HTTP/1.1\r\n\r\n", false},
      {"HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", false},
      {"short version", "GET / 1.1\r\n\r\n", false},
      {"head not all there", "GET / HTTP/1.1\r\nHost: h\r\n", false},
  };
  return all;
}

TEST(RequestParserTest, ReadsAsBeastsParserDoesWhicheverReaderTakesTheHead) {
  for (const RequestCase& test_case : request_cases()) {
    SCOPED_TRACE(test_case.description);
    RequestParser ours;
    const RequestReading ours_reading = read_request(ours, test_case.request);
    EXPECT_EQ(ours.read_plain(), test_case.plain);
    bhttp::request_parser<bhttp::string_body> beasts;
    const RequestReading beasts_reading = read_request(beasts, test_case.request);
    EXPECT_EQ(ours_reading.ec, beasts_reading.ec)
        << ours_reading.ec.message() << " vs " << beasts_reading.ec.message();
    EXPECT_EQ(ours_reading, beasts_reading);
  }
}

TEST(RequestParserTest, ReleasesTheMessageThePlainReaderRead) {
  RequestParser parser;
  const RequestReading reading =
      read_request(parser, "PUT /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  ASSERT_TRUE(parser.read_plain());
  EXPECT_TRUE(reading.done);
  const Request request = parser.release();
  EXPECT_EQ(request.method(), bhttp::verb::put);
  EXPECT_EQ(request.target(), "/x");
  EXPECT_EQ(request[bhttp::field::content_length], "3");
  EXPECT_EQ(request.body(), "abc");
}

}  // namespace
}  // namespace infergate::http
