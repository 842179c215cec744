#include "extproc/request_view.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <cstdint>
#include <limits>

namespace infergate::extproc {
namespace {

using ::google::protobuf::internal::WireFormatLite;
using ::google::protobuf::io::CodedInputStream;

constexpr std::uint32_t tag_of(int field, WireFormatLite::WireType type) {
  return (static_cast<std::uint32_t>(field) << 3) | static_cast<std::uint32_t>(type);
}
constexpr auto kBytes = WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
constexpr auto kVarint = WireFormatLite::WIRETYPE_VARINT;

// Fields and tags (external_processor.proto, base.proto).
constexpr int kFirstPartField = pb::ProcessingRequest::kRequestHeaders;   // 2
constexpr int kLastPartField = pb::ProcessingRequest::kResponseTrailers;  // 7
constexpr std::uint32_t kHttpHeadersMapTag = tag_of(1, kBytes);           // HttpHeaders.headers
constexpr std::uint32_t kHttpHeadersAttributesTag = tag_of(2, kBytes);    // (deprecated)
constexpr std::uint32_t kHttpHeadersEndTag = tag_of(3, kVarint);  // HttpHeaders.end_of_stream
constexpr std::uint32_t kHeaderMapValueTag = tag_of(1, kBytes);   // HeaderMap.headers
constexpr std::uint32_t kHeaderKeyTag = tag_of(1, kBytes);        // HeaderValue.key
constexpr std::uint32_t kHeaderValueTag = tag_of(2, kBytes);      // HeaderValue.value
constexpr std::uint32_t kHeaderRawValueTag = tag_of(3, kBytes);   // HeaderValue.raw_value
constexpr std::uint32_t kHttpBodyBytesTag = tag_of(1, kBytes);    // HttpBody.body
constexpr std::uint32_t kHttpBodyEndTag = tag_of(2, kVarint);     // HttpBody.end_of_stream

CodedInputStream stream_over(std::string_view bytes) {
  return CodedInputStream(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                          static_cast<int>(bytes.size()));
}

// The next tag, or 0 at the end of `in` (`size` bytes); false on a malformed or zero tag.
bool next_tag(CodedInputStream& in, std::size_t size, std::uint32_t& tag) {
  if (static_cast<std::size_t>(in.CurrentPosition()) == size) {
    tag = 0;
    return true;
  }
  tag = in.ReadTagNoLastTag();
  return tag != 0 && WireFormatLite::GetTagFieldNumber(tag) != 0;
}

// A length-delimited field's payload, in place (the stream reads a flat array).
bool read_view(CodedInputStream& in, std::string_view& out) {
  std::uint32_t length = 0;
  if (!in.ReadVarint32(&length)) return false;
  const void* data = nullptr;
  int available = 0;
  in.GetDirectBufferPointerInline(&data, &available);
  if (length > static_cast<std::uint32_t>(available)) return false;
  out = std::string_view(static_cast<const char*>(data), length);
  return in.Skip(static_cast<int>(length));
}

// proto3 `string` fields must be UTF-8, which protobuf's parser checks; ASCII needs no check,
// anything else is left to protobuf.
bool is_ascii(std::string_view text) {
  unsigned char high = 0;
  for (const char c : text) high |= static_cast<unsigned char>(c);
  return high < 0x80;
}

bool read_bool(CodedInputStream& in, bool& out) {
  std::uint64_t value = 0;
  if (!in.ReadVarint64(&value)) return false;
  out = value != 0;
  return true;
}

bool decode_header_value(std::string_view bytes, HeaderView& out) {
  CodedInputStream in = stream_over(bytes);
  std::string_view value;
  std::string_view raw_value;
  for (std::uint32_t tag = 0;;) {
    if (!next_tag(in, bytes.size(), tag)) return false;
    if (tag == 0) break;
    bool ok = false;
    switch (tag) {
      case kHeaderKeyTag:
        ok = read_view(in, out.key) && is_ascii(out.key);
        break;
      case kHeaderValueTag:
        ok = read_view(in, value) && is_ascii(value);
        break;
      case kHeaderRawValueTag:
        ok = read_view(in, raw_value);
        break;
      default:
        ok = WireFormatLite::SkipField(&in, tag);
    }
    if (!ok) return false;
  }
  out.value = raw_value.empty() ? value : raw_value;
  return true;
}

bool decode_header_map(std::string_view bytes, std::vector<HeaderView>& headers) {
  CodedInputStream in = stream_over(bytes);
  for (std::uint32_t tag = 0;;) {
    if (!next_tag(in, bytes.size(), tag)) return false;
    if (tag == 0) return true;
    if (tag == kHeaderMapValueTag) {
      std::string_view entry;
      if (!read_view(in, entry) || !decode_header_value(entry, headers.emplace_back())) {
        return false;
      }
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
}

bool decode_http_headers(std::string_view bytes, std::vector<HeaderView>& headers,
                         bool& end_of_stream) {
  CodedInputStream in = stream_over(bytes);
  for (std::uint32_t tag = 0;;) {
    if (!next_tag(in, bytes.size(), tag)) return false;
    if (tag == 0) return true;
    bool ok = false;
    if (tag == kHttpHeadersMapTag) {
      std::string_view map;
      ok = read_view(in, map) && decode_header_map(map, headers);
    } else if (tag == kHttpHeadersEndTag) {
      ok = read_bool(in, end_of_stream);
    } else if (tag == kHttpHeadersAttributesTag) {
      ok = false;  // a known field protobuf would parse (and might reject): its parser decides
    } else {
      ok = WireFormatLite::SkipField(&in, tag);
    }
    if (!ok) return false;
  }
}

bool decode_http_body(std::string_view bytes, std::string_view& body, bool& end_of_stream) {
  CodedInputStream in = stream_over(bytes);
  for (std::uint32_t tag = 0;;) {
    if (!next_tag(in, bytes.size(), tag)) return false;
    if (tag == 0) return true;
    bool ok = false;
    if (tag == kHttpBodyBytesTag) {
      ok = read_view(in, body);
    } else if (tag == kHttpBodyEndTag) {
      ok = read_bool(in, end_of_stream);
    } else {
      ok = WireFormatLite::SkipField(&in, tag);
    }
    if (!ok) return false;
  }
}

// The common shape: at most one request part. False sends the caller to protobuf's parser.
bool decode_in_place(std::string_view wire, pb::ProcessingRequest& rest,
                     std::vector<HeaderView>& headers, RequestView& out) {
  CodedInputStream in = stream_over(wire);
  for (;;) {
    const int start = in.CurrentPosition();
    std::uint32_t tag = 0;
    if (!next_tag(in, wire.size(), tag)) return false;
    if (tag == 0) break;
    // The request parts are fields 2-7 of the oneof, whose case values are the field numbers.
    const int field = WireFormatLite::GetTagFieldNumber(tag);
    const auto part = field >= kFirstPartField && field <= kLastPartField &&
                              WireFormatLite::GetTagWireType(tag) == kBytes
                          ? static_cast<pb::ProcessingRequest::RequestCase>(field)
                          : pb::ProcessingRequest::REQUEST_NOT_SET;
    if (part != pb::ProcessingRequest::REQUEST_NOT_SET) {
      // A second part would replace or merge into the first: protobuf's rules, protobuf's parser.
      if (out.part != pb::ProcessingRequest::REQUEST_NOT_SET) return false;
      out.part = part;
    }
    bool ok = false;
    std::string_view payload;
    switch (part) {
      case pb::ProcessingRequest::kRequestHeaders:
      case pb::ProcessingRequest::kResponseHeaders:
        ok = read_view(in, payload) && decode_http_headers(payload, headers, out.end_of_stream);
        break;
      case pb::ProcessingRequest::kRequestBody:
      case pb::ProcessingRequest::kResponseBody:
        ok = read_view(in, payload) && decode_http_body(payload, out.body, out.end_of_stream);
        break;
      default: {
        // Everything else (metadata_context, attributes, observability_mode, protocol_config,
        // the trailers, unknown fields): the field's bytes, tag included, merged by protobuf.
        if (!WireFormatLite::SkipField(&in, tag)) return false;
        CodedInputStream field =
            stream_over(wire.substr(static_cast<std::size_t>(start),
                                    static_cast<std::size_t>(in.CurrentPosition() - start)));
        ok = rest.MergePartialFromCodedStream(&field);
      }
    }
    if (!ok) return false;
  }
  out.headers = headers;
  out.rest = &rest;
  return true;
}

}  // namespace

RequestView view_of(const pb::ProcessingRequest& message, std::vector<HeaderView>& headers) {
  headers.clear();
  RequestView view;
  view.part = message.request_case();
  view.rest = &message;
  auto add_headers = [&](const pb::HttpHeaders& part) {
    headers.reserve(static_cast<std::size_t>(part.headers().headers_size()));
    for (const auto& header : part.headers().headers()) {
      headers.push_back(
          {header.key(), header.raw_value().empty() ? header.value() : header.raw_value()});
    }
    view.headers = headers;
    view.end_of_stream = part.end_of_stream();
  };
  switch (view.part) {
    case pb::ProcessingRequest::kRequestHeaders:
      add_headers(message.request_headers());
      break;
    case pb::ProcessingRequest::kResponseHeaders:
      add_headers(message.response_headers());
      break;
    case pb::ProcessingRequest::kRequestBody:
      view.body = message.request_body().body();
      view.end_of_stream = message.request_body().end_of_stream();
      break;
    case pb::ProcessingRequest::kResponseBody:
      view.body = message.response_body().body();
      view.end_of_stream = message.response_body().end_of_stream();
      break;
    default:
      break;
  }
  return view;
}

bool decode_request(std::string_view wire, pb::ProcessingRequest& rest,
                    std::vector<HeaderView>& headers, RequestView& out) {
  headers.clear();
  out = RequestView{};
  if (wire.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) return false;
  if (decode_in_place(wire, rest, headers, out)) return true;
  rest.Clear();
  if (!rest.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) return false;
  out = view_of(rest, headers);
  return true;
}

}  // namespace infergate::extproc
