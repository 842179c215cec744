#include "gateway/headers.h"

#include <algorithm>
#include <array>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "common/text.h"
#include "director/protocol.h"

namespace infergate::gateway {
namespace {

namespace bhttp = boost::beast::http;

char lower_ascii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// A header name lower-cased, for the checks below, without allocating for usual names.
class LowerName {
 public:
  explicit LowerName(std::string_view name) {
    char* out = inline_;
    if (name.size() > sizeof(inline_)) {
      heap_.resize(name.size());
      out = heap_.data();
    }
    for (std::size_t i = 0; i < name.size(); ++i) out[i] = lower_ascii(name[i]);
    view_ = std::string_view(out, name.size());
  }
  LowerName(const LowerName&) = delete;
  LowerName& operator=(const LowerName&) = delete;

  std::string_view view() const { return view_; }

 private:
  char inline_[64];
  std::string heap_;
  std::string_view view_;
};

// Headers a client may not set: the gateway (or the picker) owns them.
bool is_reserved_request_header(std::string_view lower_case_name) {
  return lower_case_name == director::protocol::kDestinationHeader ||
         lower_case_name == director::protocol::kServedKey ||
         lower_case_name == director::protocol::kSubsetKey ||
         lower_case_name == director::protocol::kTestSelectionHeader;
}

// The tokens of a message's Connection fields, read once: each names a field that ends at this
// hop. The fields must outlive it (it keeps views).
class ConnectionTokens {
 public:
  template <typename Fields>
  explicit ConnectionTokens(const Fields& fields) {
    for (const auto& [name, value] : fields) {
      if (!boost::beast::iequals(name, "connection")) continue;
      std::string_view rest = value;
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        const std::string_view token = trim_blanks(rest.substr(0, comma));
        if (!token.empty()) add(token);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
    }
  }
  ConnectionTokens(const ConnectionTokens&) = delete;
  ConnectionTokens& operator=(const ConnectionTokens&) = delete;

  bool names(std::string_view lower_case_name) const {
    for (std::size_t i = 0; i < std::min(count_, kInline); ++i) {
      if (boost::beast::iequals(inline_[i], lower_case_name)) return true;
    }
    for (std::string_view token : more_) {
      if (boost::beast::iequals(token, lower_case_name)) return true;
    }
    return false;
  }

 private:
  static constexpr std::size_t kInline = 8;

  void add(std::string_view token) {
    if (count_ < kInline) {
      inline_[count_] = token;
    } else {
      more_.push_back(token);
    }
    ++count_;
  }

  std::array<std::string_view, kInline> inline_{};
  std::vector<std::string_view> more_;  // tokens past kInline (unusual)
  std::size_t count_ = 0;
};

// The request's fields as (name, value) views, for ConnectionTokens.
struct RequestFieldView {
  const http::Request& request;
  struct Iterator {
    http::Request::const_iterator it;
    std::pair<std::string_view, std::string_view> operator*() const {
      return {std::string_view(it->name_string()), std::string_view(it->value())};
    }
    Iterator& operator++() {
      ++it;
      return *this;
    }
    bool operator!=(const Iterator& other) const { return it != other.it; }
  };
  Iterator begin() const { return {request.begin()}; }
  Iterator end() const { return {request.end()}; }
};

}  // namespace

bool is_hop_by_hop(std::string_view lower_case_name) {
  static constexpr std::array<std::string_view, 9> kHopByHop = {
      "connection",          "keep-alive",         "proxy-connection", "te", "trailer", "upgrade",
      "proxy-authorization", "proxy-authenticate", "transfer-encoding"};
  for (std::string_view name : kHopByHop) {
    if (name == lower_case_name) return true;
  }
  return false;
}

namespace {

director::Headers request_headers(const http::Request& request, bool for_epp) {
  director::Headers headers;
  headers.reserve(static_cast<std::size_t>(std::distance(request.begin(), request.end())) + 4);
  headers.emplace_back(":method", std::string_view(request.method_string()));
  headers.emplace_back(":path", std::string_view(request.target()));
  if (auto host = request.find(bhttp::field::host); host != request.end()) {
    headers.emplace_back(":authority", std::string_view(host->value()));
  }
  if (for_epp) headers.emplace_back(":scheme", "http");
  for (const auto& field : request) {
    const LowerName name(field.name_string());
    if (is_reserved_request_header(name.view()) &&
        !(for_epp && name.view() == director::protocol::kTestSelectionHeader)) {
      continue;
    }
    headers.emplace_back(name.view(), std::string_view(field.value()));
  }
  return headers;
}

// Whether an upstream response field called `lower_case_name` goes back to the client.
bool is_relayed_response_field(std::string_view lower_case_name,
                               const ConnectionTokens& connection) {
  return !(is_hop_by_hop(lower_case_name) || lower_case_name == "content-length" ||
           lower_case_name == "content-type" || lower_case_name == "server" ||
           director::protocol::is_control_header(lower_case_name) ||
           is_reserved_request_header(lower_case_name) || connection.names(lower_case_name));
}

}  // namespace

director::Headers director_headers(const http::Request& request) {
  return request_headers(request, /*for_epp=*/false);
}

director::Headers epp_request_headers(const http::Request& request) {
  return request_headers(request, /*for_epp=*/true);
}

void copy_mutated_headers(const director::Headers& headers, http::Request& upstream) {
  const ConnectionTokens connection(headers);
  for (const auto& [name, value] : headers) {
    if (name.empty() || name.front() == ':' || is_hop_by_hop(name) ||
        is_reserved_request_header(name) || director::protocol::is_control_header(name) ||
        name == "host" || name == "expect" || connection.names(name)) {
      continue;
    }
    upstream.insert(name, value);
  }
}

http::Headers without_pseudo_headers(const director::Headers& headers) {
  http::Headers out;
  out.reserve(headers.size());
  for (const auto& [name, value] : headers) {
    if (!name.empty() && name.front() != ':') out.emplace_back(name, value);
  }
  return out;
}

void set_director_header(director::Headers& headers, std::string_view lower_case_name,
                         std::string value) {
  std::erase_if(headers, [&](const auto& header) { return header.first == lower_case_name; });
  if (!value.empty()) headers.emplace_back(std::string(lower_case_name), std::move(value));
}

void copy_forwarded_headers(const http::Request& client, http::Request& upstream) {
  const ConnectionTokens connection(RequestFieldView{client});
  for (const auto& field : client) {
    const LowerName lower_name(field.name_string());
    const std::string_view name = lower_name.view();
    if (is_hop_by_hop(name) || is_reserved_request_header(name) ||
        director::protocol::is_control_header(name) || name == "host" || name == "expect" ||
        connection.names(name)) {
      continue;
    }
    upstream.insert(field.name(), field.name_string(), field.value());
  }
}

http::Headers relayed_response_headers(const http::Headers& upstream) {
  const ConnectionTokens connection(upstream);
  http::Headers relayed;
  relayed.reserve(upstream.size());
  for (const auto& [name, value] : upstream) {
    if (is_relayed_response_field(LowerName(name).view(), connection)) {
      relayed.emplace_back(name, value);
    }
  }
  return relayed;
}

http::Headers relayed_response_headers(http::Headers&& upstream) {
  // Which fields stay is decided on the fields as received (Connection names others), then the
  // kept ones are moved forward in place.
  constexpr std::size_t kMaxMarked = 64;
  if (upstream.size() > kMaxMarked) return relayed_response_headers(std::as_const(upstream));
  std::uint64_t kept = 0;
  {
    const ConnectionTokens connection(upstream);
    for (std::size_t i = 0; i < upstream.size(); ++i) {
      if (is_relayed_response_field(LowerName(upstream[i].first).view(), connection)) {
        kept |= std::uint64_t{1} << i;
      }
    }
  }
  std::size_t out = 0;
  for (std::size_t i = 0; i < upstream.size(); ++i) {
    if ((kept >> i & 1) == 0) continue;
    if (out != i) upstream[out] = std::move(upstream[i]);
    ++out;
  }
  upstream.resize(out);
  return std::move(upstream);
}

director::Headers director_response_headers(const http::ResponseHead& head) {
  director::Headers headers;
  headers.reserve(head.headers.size() + 1);
  headers.emplace_back(":status", std::to_string(head.status));
  for (const auto& [name, value] : head.headers) {
    headers.emplace_back(LowerName(name).view(), value);
  }
  return headers;
}

bool is_event_stream(std::string_view content_type) {
  const std::string_view media_type = trim_blanks(content_type.substr(0, content_type.find(';')));
  return boost::beast::iequals(media_type, "text/event-stream");
}

}  // namespace infergate::gateway
