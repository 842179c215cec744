#include "http/wire.h"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace infergate::http {
namespace {

namespace bhttp = boost::beast::http;
using boost::system::error_code;

enum class Outcome { kHead, kNeedMore, kError };

struct HeadCase {
  const char* description;
  std::size_t header_limit;
  // As reads bring them, each followed by a parse_head call until the head or an error comes.
  std::vector<std::string> pieces;
  Outcome outcome;
  error_code error = {};       // for kError
  std::size_t fields = 0;      // for kHead: the fields read
  std::string_view left = "";  // for kHead: the bytes after the head, left in the buffer
};

std::string many_lines(int count, std::size_t length) {
  std::string lines;
  for (int line_idx = 0; line_idx < count; ++line_idx) {
    lines += "X-" + std::to_string(line_idx) + ": " + std::string(length, 'v') + "\r\n";
  }
  return lines;
}

const std::vector<HeadCase>& head_cases() {
  static const std::vector<HeadCase> cases = {
      {.description = "a whole head, then a body",
       .header_limit = 1024,
       .pieces = {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"},
       .outcome = Outcome::kHead,
       .fields = 2,
       .left = "abc"},
      {.description = "a head in pieces cut inside lines",
       .header_limit = 1024,
       .pieces = {"GET / HT", "TP/1.1\r\nHo", "st: a\r\n", "\r", "\n"},
       .outcome = Outcome::kHead,
       .fields = 1},
      {.description = "a head that has not ended",
       .header_limit = 1024,
       .pieces = {"GET / HTTP/1.1\r\n", "Host: a\r\n"},
       .outcome = Outcome::kNeedMore},
      {.description = "a head of exactly the limit",
       .header_limit = 27,
       .pieces = {"GET / HTTP/1.1\r\nHost: a\r\n", "\r\n"},
       .outcome = Outcome::kHead,
       .fields = 1},
      {.description = "a head over the limit, at once",
       .header_limit = 64,
       .pieces = {"GET / HTTP/1.1\r\n" + many_lines(4, 20) + "\r\n"},
       .outcome = Outcome::kError,
       .error = bhttp::error::header_limit},
      // Beast's parser alone takes this 99-byte head: the start line and the field it takes in
      // its first call do not count towards the limit in its second.
      {.description = "a head over the limit, read in two parts each under it",
       .header_limit = 64,
       .pieces = {"GET / HTTP/1.1\r\n" + many_lines(1, 20) + "X-1: ",
                  std::string(20, 'v') + "\r\nX-2: " + std::string(20, 'v') + "\r\n\r\n"},
       .outcome = Outcome::kError,
       .error = bhttp::error::header_limit},
      {.description = "a whole head whose version is too short to read",
       .header_limit = 1024,
       .pieces = {"GET / 1.1\r\n\r\n"},
       .outcome = Outcome::kError,
       .error = bhttp::error::bad_version},
      {.description = "a short version whose blank line comes in a later read",
       .header_limit = 1024,
       .pieces = {"GET / 10", "\r\n\r\nabc"},
       .outcome = Outcome::kError,
       .error = bhttp::error::bad_version},
      {.description = "a malformed field before the head has ended",
       .header_limit = 1024,
       .pieces = {"GET / HTTP/1.1\r\nBad Field: x\r\n"},
       .outcome = Outcome::kError,
       .error = bhttp::error::bad_field},
  };
  return cases;
}

TEST(WireParseHeadTest, FollowsTheTable) {
  for (const HeadCase& head_case : head_cases()) {
    SCOPED_TRACE(head_case.description);
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(head_case.header_limit));
    boost::beast::flat_buffer buffer;
    wire::HeadProgress progress;
    error_code ec;
    bool done = false;
    for (const std::string& piece : head_case.pieces) {
      if (done || ec) break;  // as the server stops reading
      buffer.commit(
          boost::asio::buffer_copy(buffer.prepare(piece.size()), boost::asio::buffer(piece)));
      done = wire::parse_head(parser, buffer, head_case.header_limit, progress, ec);
    }
    switch (head_case.outcome) {
      case Outcome::kHead: {
        ASSERT_TRUE(done) << ec.message();
        const auto& request = parser.get();
        EXPECT_EQ(static_cast<std::size_t>(std::distance(request.begin(), request.end())),
                  head_case.fields);
        EXPECT_EQ(std::string_view(static_cast<const char*>(buffer.data().data()), buffer.size()),
                  head_case.left);
        break;
      }
      case Outcome::kNeedMore:
        EXPECT_FALSE(done);
        EXPECT_FALSE(ec) << ec.message();
        break;
      case Outcome::kError:
        EXPECT_FALSE(done);
        EXPECT_EQ(ec, head_case.error) << ec.message();
        break;
    }
  }
}

}  // namespace
}  // namespace infergate::http
