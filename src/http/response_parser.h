#pragma once

// The HTTP/1.1 response parser of ClientConnection (client.cc), in a header of its own so that the
// fuzz target tests/fuzz/response_parser_fuzz.cc can compare it with Beast's response_parser.
// Not part of the http module's interface.
//
// Threads: one parser per response, used by one thread at a time.

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/optional/optional.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "common/text.h"
#include "http/head_scan.h"
#include "http/message.h"

namespace infergate::http::detail {

namespace bhttp = beast::http;
using boost::system::error_code;

// Parses a response straight into a ResponseHead and a body string, instead of Beast's
// basic_fields (which a ResponseHead would then copy). The fields keep Beast's order: a field
// whose name (case-insensitive) came before is placed after the last field of that name, and
// values are trimmed as Beast stores them. `chunked` and the Connection field used by keep-alive
// follow Beast's message rules (the first such field). One parser per response.
//
// A plain head that arrives whole with its first bytes (the usual case) is read by take_head
// (head_scan.h), and then a body framed by Content-Length or by the end of the connection by
// put_body; every other response, and every error, goes through Beast's basic_parser, which then
// reads the message from its first byte. The interface is the part of basic_parser's that the
// client and wire::parse_head use, with its meaning.
class ResponseParser {
 public:
  ResponseParser() : beast_(*this) { head_.headers.reserve(kReservedFields); }
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  void header_limit(std::uint32_t bytes) {
    beast_.header_limit(bytes);
    header_limit_ = bytes;
  }
  void body_limit(boost::optional<std::uint64_t> bytes) {
    beast_.body_limit(bytes);
    body_limit_ = bytes;
  }
  // Before the first put: the response has no body whatever its head says (a HEAD request's).
  void skip(bool skip_body) {
    beast_.skip(skip_body);
    skip_body_ = skip_body;
  }

  std::size_t put(boost::asio::const_buffer buffer, error_code& ec) {
    return head_scan::put_plain_first(
        reader_, std::string_view(static_cast<const char*>(buffer.data()), buffer.size()), ec,
        [this](std::string_view bytes) { return take_head(bytes); },
        [this](std::string_view bytes, error_code& body_ec) { return put_body(bytes, body_ec); },
        [&](auto& beast_ec) { return beast_.put(buffer, beast_ec); });
  }
  void put_eof(error_code& ec) {
    if (!read_plain()) {
      beast_.put_eof(ec);
      return;
    }
    ec = {};
    if (framing_.has_content_length()) {
      if (!done_) ec = bhttp::error::partial_message;
      return;
    }
    done_ = true;
  }

  bool got_some() const { return read_plain() || beast_.got_some(); }
  bool is_header_done() const { return read_plain() || beast_.is_header_done(); }
  bool is_done() const { return read_plain() ? done_ : beast_.is_done(); }
  // Whether the connection stays open after the response (Beast's basic_parser::keep_alive).
  bool keep_alive() const {
    if (!read_plain()) return beast_.keep_alive();
    return framing_.keep_alive(version_) && !need_eof_;
  }
  // Whether the body ends with the connection.
  bool need_eof() const { return read_plain() ? need_eof_ : beast_.need_eof(); }
  boost::optional<std::uint64_t> content_length() const {
    if (!read_plain()) return beast_.content_length();
    return framing_.has_content_length() ? boost::optional<std::uint64_t>(framing_.content_length())
                                         : boost::none;
  }

  // Whether the plain reader (take_head) read the head rather than Beast's parser.
  bool read_plain() const { return reader_ == head_scan::Reader::kPlain; }

  ResponseHead& head() { return head_; }
  // What the header says of keep-alive (Beast's message::keep_alive: the first Connection field).
  bool header_keep_alive() const {
    if (version_ < 11) {
      return connection_field_ != kNoField &&
             bhttp::token_list{head_.headers[connection_field_].second}.exists("keep-alive");
    }
    return connection_field_ == kNoField ||
           !bhttp::token_list{head_.headers[connection_field_].second}.exists("close");
  }
  // The body bytes parsed so far (the caller may take or clear them between reads).
  std::string& body() { return body_; }

 private:
  static constexpr std::size_t kReservedFields = 8;
  static constexpr std::size_t kNoField = static_cast<std::size_t>(-1);
  // Beast's defaults for responses.
  static constexpr std::uint32_t kDefaultHeaderLimit = 8 << 10;
  static constexpr std::uint64_t kDefaultBodyLimit = 8 << 20;

  // Beast's parser, reporting into the ResponseParser.
  class BeastParser final : public bhttp::basic_parser<false> {
   public:
    explicit BeastParser(ResponseParser& owner) : owner_(owner) {}

   private:
    void on_request_impl(bhttp::verb, beast::string_view, beast::string_view, int,
                         error_code&) override {}
    void on_response_impl(int code, beast::string_view, int version, error_code&) override {
      owner_.head_.status = static_cast<unsigned>(code);
      owner_.version_ = static_cast<unsigned>(version);
    }
    void on_field_impl(bhttp::field name, beast::string_view name_string, beast::string_view value,
                       error_code&) override {
      owner_.add_field(name, name_string, trim_blanks(value));
    }
    void on_header_impl(error_code&) override {}
    void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                           error_code& ec) override {
      if (content_length) {
        if (*content_length > owner_.body_.max_size()) {
          ec = bhttp::error::buffer_overflow;
          return;
        }
        owner_.body_.reserve(static_cast<std::size_t>(*content_length));
      }
    }
    std::size_t on_body_impl(beast::string_view data, error_code& ec) override {
      return owner_.append(data, ec);
    }
    void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view data,
                                   error_code& ec) override {
      return owner_.append(data, ec);
    }
    void on_finish_impl(error_code&) override {}

    ResponseParser& owner_;
  };

  // Adds a field whose value has no blanks around it.
  void add_field(bhttp::field name, std::string_view name_string, std::string_view trimmed) {
    Headers& headers = head_.headers;
    // Beast keeps fields of one name together: after the last earlier field of that name.
    std::size_t position = headers.size();
    bool first_of_name = true;
    for (std::size_t i = headers.size(); i-- > 0;) {
      const std::string& earlier = headers[i].first;
      if (earlier.size() == name_string.size() && beast::iequals(earlier, name_string)) {
        position = i + 1;
        first_of_name = false;
        break;
      }
    }
    if (position == headers.size()) {
      headers.emplace_back(std::piecewise_construct, std::forward_as_tuple(name_string),
                           std::forward_as_tuple(trimmed));
    } else {
      headers.emplace(headers.begin() + static_cast<std::ptrdiff_t>(position),
                      std::string(name_string), std::string(trimmed));
      if (connection_field_ != kNoField && connection_field_ >= position) ++connection_field_;
    }
    if (!first_of_name) return;
    if (name == bhttp::field::connection) {
      connection_field_ = position;
    } else if (name == bhttp::field::transfer_encoding) {
      head_.chunked = last_coding_is_chunked(trimmed);
    }
  }

  // Reads a plain head at the front of `bytes` as Beast's parser would: the head's size, or 0
  // (nothing read, nothing kept) when the head is not all there, not plain, or its framing is not
  // one put_body reads. Plain: `HTTP/1.0` or `HTTP/1.1`, a status of three digits and a reason
  // of value characters; field lines as head_scan::scan_field reads them, the framing fields
  // among them as head_scan::Framing takes them.
  std::size_t take_head(std::string_view bytes) {
    const char* const begin = bytes.data();
    const char* const end = begin + std::min<std::size_t>(bytes.size(), header_limit_);
    constexpr std::size_t kStatusLineStart = 13;  // "HTTP/1.1 200 "
    if (end - begin < static_cast<std::ptrdiff_t>(kStatusLineStart) ||
        std::memcmp(begin, "HTTP/1.", 7) != 0 || (begin[7] != '0' && begin[7] != '1') ||
        begin[8] != ' ' || !is_digit(begin[9]) || !is_digit(begin[10]) || !is_digit(begin[11]) ||
        begin[12] != ' ') {
      return 0;
    }
    const char* p = head_scan::skip_value_chars(begin + kStatusLineStart, end);
    if (!head_scan::at_crlf(p, end)) return 0;
    p += 2;
    version_ = begin[7] == '1' ? 11 : 10;
    head_.status =
        static_cast<unsigned>((begin[9] - '0') * 100 + (begin[10] - '0') * 10 + (begin[11] - '0'));
    const auto on_field = [this](const head_scan::Field& field, head_scan::Framing::Kind kind) {
      add_field(kind == head_scan::Framing::Kind::kConnection ? bhttp::field::connection
                                                              : bhttp::field::unknown,
                field.name, field.value);
    };
    if (!head_scan::scan_fields(p, end, framing_, on_field)) {
      forget_head();
      return 0;
    }
    // Beast's framing of a response (basic_parser::finish_header).
    const unsigned status = head_.status;
    if (skip_body_ || status / 100 == 1 || status == 204 || status == 304) {
      done_ = true;
    } else if (framing_.has_content_length()) {
      const std::uint64_t length = framing_.content_length();
      if ((body_limit_ && length > *body_limit_) || length > body_.max_size()) {  // Beast's error
        forget_head();
        return 0;
      }
      done_ = length == 0;
      body_.reserve(static_cast<std::size_t>(length));
    } else {
      need_eof_ = true;
    }
    return static_cast<std::size_t>(p - begin);
  }

  // Drops what take_head noted of a head it left to Beast's parser.
  void forget_head() {
    head_.headers.clear();
    head_.status = 0;
    version_ = 11;
    connection_field_ = kNoField;
    framing_ = {};
  }

  // The body after a plain head: Beast's parse_body (Content-Length) and parse_body_to_eof.
  std::size_t put_body(std::string_view bytes, error_code& ec) {
    ec = {};
    if (done_) {
      ec = bhttp::error::stale_parser;
      return 0;
    }
    if (need_eof_) {
      if (body_limit_) {
        if (bytes.size() > *body_limit_) {
          ec = bhttp::error::body_limit;
          return 0;
        }
        *body_limit_ -= bytes.size();
      }
      return append(bytes, ec);
    }
    const std::uint64_t length = framing_.content_length();
    const std::size_t taken =
        static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), length - read_));
    const std::size_t appended = append(bytes.substr(0, taken), ec);
    read_ += appended;
    done_ = read_ == length;
    return appended;
  }

  std::size_t append(std::string_view data, error_code& ec) {
    if (data.size() > body_.max_size() - body_.size()) {
      ec = bhttp::error::buffer_overflow;
      return 0;
    }
    body_.append(data.data(), data.size());
    return data.size();
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  // Beast's message::chunked: the last transfer coding is "chunked".
  static bool last_coding_is_chunked(std::string_view value) {
    const bhttp::token_list codings{value};
    bool chunked = false;
    for (const auto& coding : codings) chunked = beast::iequals(coding, "chunked");
    return chunked;
  }

  BeastParser beast_;
  head_scan::Reader reader_ = head_scan::Reader::kUndecided;
  ResponseHead head_;
  std::string body_;
  unsigned version_ = 11;
  std::size_t connection_field_ = kNoField;  // index of the first Connection field in head_
  // Settings, as given to Beast's parser too.
  std::uint32_t header_limit_ = kDefaultHeaderLimit;
  boost::optional<std::uint64_t> body_limit_ = kDefaultBodyLimit;
  bool skip_body_ = false;
  // A plain head's framing (take_head) and the body read after it.
  head_scan::Framing framing_;
  bool need_eof_ = false;
  bool done_ = false;
  std::uint64_t read_ = 0;  // body bytes of a Content-Length
};

}  // namespace infergate::http::detail
