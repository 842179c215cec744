#pragma once

// The HTTP/1.1 response parser of ClientConnection (client.cc), in a header of its own so that the
// fuzz target tests/fuzz/response_parser_fuzz.cc can compare it with Beast's response_parser.
// Not part of the http module's interface.
//
// Threads: one parser per response, used by one thread at a time.

#include <boost/beast/core/error.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/optional/optional.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/text.h"
#include "http/message.h"

namespace infergate::http::detail {

namespace bhttp = beast::http;
using boost::system::error_code;

// Parses a response straight into a ResponseHead and a body string, instead of Beast's
// basic_fields (which a ResponseHead would then copy). The fields keep Beast's order: a field
// whose name (case-insensitive) came before is placed after the last field of that name, and
// values are trimmed as Beast stores them. `chunked` and the Connection field used by keep-alive
// follow Beast's message rules (the first such field). One parser per response.
class ResponseParser final : public bhttp::basic_parser<false> {
 public:
  ResponseParser() { head_.headers.reserve(kReservedFields); }

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

  void on_request_impl(bhttp::verb, beast::string_view, beast::string_view, int,
                       error_code&) override {}
  void on_response_impl(int code, beast::string_view, int version, error_code&) override {
    head_.status = static_cast<unsigned>(code);
    version_ = static_cast<unsigned>(version);
  }
  void on_field_impl(bhttp::field name, beast::string_view name_string, beast::string_view value,
                     error_code&) override {
    const std::string_view trimmed = trim_blanks(value);
    Headers& headers = head_.headers;
    // Beast keeps fields of one name together: after the last earlier field of that name.
    std::size_t position = headers.size();
    bool first_of_name = true;
    for (std::size_t i = headers.size(); i-- > 0;) {
      if (beast::iequals(headers[i].first, name_string)) {
        position = i + 1;
        first_of_name = false;
        break;
      }
    }
    if (position == headers.size()) {
      headers.emplace_back(std::string(name_string), std::string(trimmed));
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
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                         error_code& ec) override {
    if (content_length) {
      if (*content_length > body_.max_size()) {
        ec = bhttp::error::buffer_overflow;
        return;
      }
      body_.reserve(static_cast<std::size_t>(*content_length));
    }
  }
  std::size_t on_body_impl(beast::string_view data, error_code& ec) override {
    return append(data, ec);
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view data, error_code& ec) override {
    return append(data, ec);
  }
  void on_finish_impl(error_code&) override {}

  std::size_t append(beast::string_view data, error_code& ec) {
    if (data.size() > body_.max_size() - body_.size()) {
      ec = bhttp::error::buffer_overflow;
      return 0;
    }
    body_.append(data.data(), data.size());
    return data.size();
  }

  // Beast's message::chunked: the last transfer coding is "chunked".
  static bool last_coding_is_chunked(std::string_view value) {
    const bhttp::token_list codings{value};
    bool chunked = false;
    for (const auto& coding : codings) chunked = beast::iequals(coding, "chunked");
    return chunked;
  }

  ResponseHead head_;
  std::string body_;
  unsigned version_ = 11;
  std::size_t connection_field_ = kNoField;  // index of the first Connection field in head_
};

}  // namespace infergate::http::detail
