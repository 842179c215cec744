#include "gateway/headers.h"

#include <array>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

#include "common/text.h"
#include "director/protocol.h"

namespace infergate::gateway {
namespace {

namespace bhttp = boost::beast::http;

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Headers a client may not set: the gateway (or the picker) owns them.
bool is_reserved_request_header(std::string_view lower_case_name) {
  return lower_case_name == director::protocol::kDestinationHeader ||
         lower_case_name == director::protocol::kServedKey ||
         lower_case_name == director::protocol::kSubsetKey ||
         lower_case_name == director::protocol::kTestSelectionHeader;
}

// Whether `lower_case_name` is one of the tokens of the Connection header values in `fields`.
template <typename Fields>
bool named_by_connection(const Fields& fields, std::string_view lower_case_name) {
  for (const auto& [name, value] : fields) {
    if (!boost::beast::iequals(name, "connection")) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      if (boost::beast::iequals(trim_blanks(rest.substr(0, comma)), lower_case_name)) return true;
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  return false;
}

// The request's fields as (name, value) views, for named_by_connection.
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
  headers.emplace_back(":method", std::string(request.method_string()));
  headers.emplace_back(":path", std::string(request.target()));
  if (auto host = request.find(bhttp::field::host); host != request.end()) {
    headers.emplace_back(":authority", std::string(host->value()));
  }
  if (for_epp) headers.emplace_back(":scheme", "http");
  for (const auto& field : request) {
    std::string name = lower(field.name_string());
    if (is_reserved_request_header(name) &&
        !(for_epp && name == director::protocol::kTestSelectionHeader)) {
      continue;
    }
    headers.emplace_back(std::move(name), std::string(field.value()));
  }
  return headers;
}

}  // namespace

director::Headers director_headers(const http::Request& request) {
  return request_headers(request, /*for_epp=*/false);
}

director::Headers epp_request_headers(const http::Request& request) {
  return request_headers(request, /*for_epp=*/true);
}

void copy_mutated_headers(const director::Headers& headers, http::Request& upstream) {
  for (const auto& [name, value] : headers) {
    if (name.empty() || name.front() == ':' || is_hop_by_hop(name) ||
        is_reserved_request_header(name) || director::protocol::is_control_header(name) ||
        name == "host" || name == "expect" || named_by_connection(headers, name)) {
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
  const RequestFieldView view{client};
  for (const auto& field : client) {
    const std::string name = lower(field.name_string());
    if (is_hop_by_hop(name) || is_reserved_request_header(name) ||
        director::protocol::is_control_header(name) || name == "host" || name == "expect" ||
        named_by_connection(view, name)) {
      continue;
    }
    upstream.insert(field.name_string(), field.value());
  }
}

http::Headers relayed_response_headers(const http::Headers& upstream) {
  http::Headers relayed;
  relayed.reserve(upstream.size());
  for (const auto& [name, value] : upstream) {
    const std::string lower_name = lower(name);
    if (is_hop_by_hop(lower_name) || lower_name == "content-length" ||
        lower_name == "content-type" || lower_name == "server" ||
        director::protocol::is_control_header(lower_name) ||
        is_reserved_request_header(lower_name) || named_by_connection(upstream, lower_name)) {
      continue;
    }
    relayed.emplace_back(name, value);
  }
  return relayed;
}

director::Headers director_response_headers(const http::ResponseHead& head) {
  director::Headers headers;
  headers.reserve(head.headers.size() + 1);
  headers.emplace_back(":status", std::to_string(head.status));
  for (const auto& [name, value] : head.headers) headers.emplace_back(lower(name), value);
  return headers;
}

bool is_event_stream(std::string_view content_type) {
  const std::string_view media_type = trim_blanks(content_type.substr(0, content_type.find(';')));
  return boost::beast::iequals(media_type, "text/event-stream");
}

}  // namespace infergate::gateway
