#pragma once

// Message types shared by the HTTP server and client. Requests are Beast messages so that the
// gateway can forward them without copying; responses seen by client code are plain structs.

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace infergate::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

// An HTTP/1.1 request with its whole body in memory (the server reads bodies whole, up to
// ServerOptions::body_limit_bytes).
using Request = beast::http::request<beast::http::string_body>;

// Header fields in wire order (a received response keeps Beast's order: a repeated field follows
// the earlier ones of its name); names keep the sender's spelling and compare case-insensitively.
using Headers = std::vector<std::pair<std::string, std::string>>;

// The status line and header of a response, as read by ClientConnection::read_response_head.
struct ResponseHead {
  unsigned status = 0;
  Headers headers;
  bool keep_alive = true;  // the server will keep the connection open after this response
  bool chunked = false;    // body uses chunked transfer coding
  std::optional<std::uint64_t> content_length;  // absent for chunked or close-delimited bodies
};

// A whole response, as returned by ClientConnection::request, fetch and fetch_blocking.
struct ClientResponse {
  unsigned status = 0;
  Headers headers;
  std::string body;
};

// The value of the first field called `name` (case-insensitive), or nullopt.
std::optional<std::string_view> find_header(const Headers& headers, std::string_view name);

// An HTTP/1.1 request for `target` with `body`. Content-Type is set only when the body is not
// empty; Content-Length is always set. Host is filled in by ClientConnection when absent.
Request make_request(beast::http::verb method, std::string_view target, std::string body = {},
                     std::string_view content_type = "application/json");

}  // namespace infergate::http
