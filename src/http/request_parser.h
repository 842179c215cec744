#pragma once

// The HTTP/1.1 request parser of the server (server.cc), in a header of its own so that a fuzz
// target can compare it with Beast's request_parser. Not part of the http module's interface.
//
// Threads: one parser per request, used by one thread at a time.

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

#include "http/head_scan.h"
#include "http/message.h"

namespace infergate::http::detail {

// Parses a request into a Request. A plain head that arrives whole with its first bytes (the
// usual case) is read by take_head (head_scan.h), and then a body framed by Content-Length by
// put_body; every other request, and every error, goes through Beast's request_parser, which then
// reads the message from its first byte. The interface is the part of Beast's parser's that the
// server and wire::parse_head use, with its meaning.
class RequestParser {
 public:
  RequestParser() = default;
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  void header_limit(std::uint32_t bytes) {
    beast_.header_limit(bytes);
    header_limit_ = bytes;
  }
  void body_limit(std::uint64_t bytes) {
    beast_.body_limit(bytes);
    body_limit_ = bytes;
  }

  std::size_t put(boost::asio::const_buffer buffer, boost::system::error_code& ec) {
    return head_scan::put_plain_first(
        reader_, std::string_view(static_cast<const char*>(buffer.data()), buffer.size()), ec,
        [this](std::string_view bytes) { return take_head(bytes); },
        [this](std::string_view bytes, boost::system::error_code& body_ec) {
          return put_body(bytes, body_ec);
        },
        [&](auto& beast_ec) { return beast_.put(buffer, beast_ec); });
  }

  bool is_header_done() const { return read_plain() || beast_.is_header_done(); }
  bool is_done() const { return read_plain() ? plain_body_done() : beast_.is_done(); }
  // Whether the connection stays open after the request (Beast's basic_parser::keep_alive).
  bool keep_alive() const {
    return read_plain() ? framing_.keep_alive(message_.version()) : beast_.keep_alive();
  }
  // Whether the plain reader (take_head) read the head rather than Beast's parser.
  bool read_plain() const { return reader_ == head_scan::Reader::kPlain; }

  Request& get() { return read_plain() ? message_ : beast_.get(); }
  Request release() { return read_plain() ? std::move(message_) : beast_.release(); }

 private:
  static constexpr std::uint32_t kDefaultHeaderLimit = 8 << 10;  // Beast's
  static constexpr std::uint64_t kDefaultBodyLimit = 1 << 20;    // Beast's for requests

  // Reads a plain head at the front of `bytes` as Beast's parser would: the head's size, or 0
  // (nothing read, nothing kept) when the head is not all there, not plain, or has a body that is
  // not framed by Content-Length within the body limit. Plain: a token method, a target of
  // target characters and `HTTP/1.0` or `HTTP/1.1`, each after one SP; field lines as
  // head_scan::scan_field reads them, the framing fields among them as head_scan::Framing takes.
  std::size_t take_head(std::string_view bytes) {
    const char* const begin = bytes.data();
    const char* const end = begin + std::min<std::size_t>(bytes.size(), header_limit_);
    const char* const method_end = head_scan::skip_token_chars(begin, end);
    if (method_end == begin || method_end == end || *method_end != ' ') return 0;
    const char* const target = method_end + 1;
    const char* const target_end = head_scan::skip_target_chars(target, end);
    constexpr std::size_t kVersionLine = 11;  // " HTTP/1.1\r\n"
    if (target_end == target || end - target_end < static_cast<std::ptrdiff_t>(kVersionLine) ||
        std::memcmp(target_end, " HTTP/1.", 8) != 0 ||
        (target_end[8] != '0' && target_end[8] != '1') || target_end[9] != '\r' ||
        target_end[10] != '\n') {
      return 0;
    }
    const char* p = target_end + kVersionLine;
    if (!head_scan::scan_fields(p, end, framing_, [this](const head_scan::Field& field, auto) {
          message_.insert(field.name, field.value);
        })) {
      forget_head();
      return 0;
    }
    // Beast's framing of a request (basic_parser::finish_header), Transfer-Encoding left to it.
    if (framing_.has_content_length()) {
      const std::uint64_t length = framing_.content_length();
      if (length > body_limit_) {  // Beast's error to report
        forget_head();
        return 0;
      }
      message_.body().reserve(static_cast<std::size_t>(length));
    }
    const std::string_view method(begin, static_cast<std::size_t>(method_end - begin));
    const beast::http::verb verb = beast::http::string_to_verb(method);
    if (verb != beast::http::verb::unknown) {
      message_.method(verb);
    } else {
      message_.method_string(method);
    }
    message_.target(std::string_view(target, static_cast<std::size_t>(target_end - target)));
    message_.version(target_end[8] == '1' ? 11 : 10);
    return static_cast<std::size_t>(p - begin);
  }

  // Drops what take_head noted of a head it left to Beast's parser.
  void forget_head() {
    message_ = {};
    framing_ = {};
  }

  // Whether the body after a plain head is whole (none when there is no Content-Length).
  bool plain_body_done() const { return message_.body().size() == framing_.content_length(); }

  // The body after a plain head: Beast's parse_body (Content-Length).
  std::size_t put_body(std::string_view bytes, boost::system::error_code& ec) {
    ec = {};
    if (plain_body_done()) {
      ec = beast::http::error::stale_parser;
      return 0;
    }
    std::string& body = message_.body();
    const std::size_t taken = static_cast<std::size_t>(
        std::min<std::uint64_t>(bytes.size(), framing_.content_length() - body.size()));
    body.append(bytes.data(), taken);
    return taken;
  }

  beast::http::request_parser<beast::http::string_body> beast_;
  head_scan::Reader reader_ = head_scan::Reader::kUndecided;
  Request message_;
  head_scan::Framing framing_;
  std::uint32_t header_limit_ = kDefaultHeaderLimit;
  std::uint64_t body_limit_ = kDefaultBodyLimit;
};

}  // namespace infergate::http::detail
