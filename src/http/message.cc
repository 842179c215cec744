#include "http/message.h"

#include <boost/beast/core/string.hpp>

namespace infergate::http {

std::optional<std::string_view> find_header(const Headers& headers, std::string_view name) {
  for (const auto& [field_name, value] : headers) {
    if (beast::iequals(field_name, name)) {
      return std::string_view(value);
    }
  }
  return std::nullopt;
}

Request make_request(beast::http::verb method, std::string_view target, std::string body,
                     std::string_view content_type) {
  Request request(method, target, 11);
  if (!body.empty() && !content_type.empty()) {
    request.set(beast::http::field::content_type, content_type);
  }
  request.body() = std::move(body);
  request.prepare_payload();
  return request;
}

}  // namespace infergate::http
