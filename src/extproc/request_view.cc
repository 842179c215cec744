#include "extproc/request_view.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <cstdint>
#include <limits>
#include <string>

#include "director/protocol.h"

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
constexpr std::uint32_t kMetadataContextTag =
    tag_of(pb::ProcessingRequest::kMetadataContextFieldNumber, kBytes);  // 8
constexpr std::uint32_t kFilterMetadataTag = tag_of(1, kBytes);          // Metadata.filter_metadata
constexpr std::uint32_t kMapKeyTag = tag_of(1, kBytes);                  // a map entry's key
constexpr std::uint32_t kMapValueTag = tag_of(2, kBytes);                // a map entry's value
constexpr std::uint32_t kStructFieldsTag = tag_of(1, kBytes);            // Struct.fields
constexpr std::uint32_t kValueStringTag = tag_of(3, kBytes);             // Value.string_value
constexpr std::uint32_t kValueListTag = tag_of(6, kBytes);               // Value.list_value
constexpr std::uint32_t kListValuesTag = tag_of(1, kBytes);              // ListValue.values

namespace protocol = director::protocol;

CodedInputStream stream_over(std::string_view bytes) {
  return CodedInputStream(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                          static_cast<int>(bytes.size()));
}

// protobuf's parser reads a tag or a length in at most 5 bytes. CodedInputStream reads up to 10
// and drops the high bits, so a longer one is checked for here: it is malformed to the parser.
constexpr int kMaxVarint32Bytes = 5;

// The next tag, or 0 at the end of `in` (`size` bytes); false on a malformed or zero tag.
bool next_tag(CodedInputStream& in, std::size_t size, std::uint32_t& tag) {
  const int start = in.CurrentPosition();
  if (static_cast<std::size_t>(start) == size) {
    tag = 0;
    return true;
  }
  tag = in.ReadTagNoLastTag();
  return tag != 0 && in.CurrentPosition() - start <= kMaxVarint32Bytes &&
         WireFormatLite::GetTagFieldNumber(tag) != 0;
}

// A length-delimited field's payload, in place (the stream reads a flat array).
bool read_view(CodedInputStream& in, std::string_view& out) {
  std::uint32_t length = 0;
  const int start = in.CurrentPosition();
  if (!in.ReadVarint32(&length) || in.CurrentPosition() - start > kMaxVarint32Bytes) return false;
  const void* data = nullptr;
  int available = 0;
  in.GetDirectBufferPointerInline(&data, &available);
  if (length > static_cast<std::uint32_t>(available)) return false;
  out = std::string_view(static_cast<const char*>(data), length);
  return in.Skip(static_cast<int>(length));
}

// Skips a field the view does not read, checking what protobuf's parser would. false for a
// group (which Envoy never sends: protobuf's parser decides) and for anything malformed.
bool skip_field(CodedInputStream& in, std::uint32_t tag) {
  switch (WireFormatLite::GetTagWireType(tag)) {
    case kBytes: {
      std::string_view skipped;
      return read_view(in, skipped);
    }
    case WireFormatLite::WIRETYPE_START_GROUP:
    case WireFormatLite::WIRETYPE_END_GROUP:
      return false;
    default:
      return WireFormatLite::SkipField(&in, tag);
  }
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
        ok = skip_field(in, tag);
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
    } else if (!skip_field(in, tag)) {
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
      ok = skip_field(in, tag);
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
      ok = skip_field(in, tag);
    }
    if (!ok) return false;
  }
}

// --- metadata_context ---

// A map entry's key and value; false unless each is there at most once, alone, and the key is
// ASCII (a missing key is "", a missing value empty, as protobuf has them).
bool read_map_entry(std::string_view bytes, std::string_view& key, std::string_view& value) {
  CodedInputStream in = stream_over(bytes);
  bool has_key = false;
  bool has_value = false;
  key = value = {};
  for (std::uint32_t tag = 0;;) {
    if (!next_tag(in, bytes.size(), tag)) return false;
    if (tag == 0) return true;
    if (tag == kMapKeyTag && !has_key) {
      has_key = true;
      if (!read_view(in, key) || !is_ascii(key)) return false;
    } else if (tag == kMapValueTag && !has_value) {
      has_value = true;
      if (!read_view(in, value)) return false;
    } else {
      return false;
    }
  }
}

// A google.protobuf.Value holding nothing but an ASCII string_value.
bool read_string_value(std::string_view bytes, std::string_view& out) {
  CodedInputStream in = stream_over(bytes);
  std::uint32_t tag = 0;
  if (!next_tag(in, bytes.size(), tag) || tag != kValueStringTag) return false;
  if (!read_view(in, out) || !is_ascii(out)) return false;
  return next_tag(in, bytes.size(), tag) && tag == 0;
}

// A google.protobuf.Value's strings (see MetadataValue), for the shapes data planes send: no
// kind, one string_value, or one list_value of string_values. False for anything else.
bool read_value_strings(std::string_view bytes, std::vector<std::string_view>& out) {
  CodedInputStream in = stream_over(bytes);
  std::uint32_t tag = 0;
  if (!next_tag(in, bytes.size(), tag)) return false;
  if (tag == 0) return true;
  std::string_view payload;
  if ((tag != kValueStringTag && tag != kValueListTag) || !read_view(in, payload)) return false;
  if (tag == kValueStringTag) {
    if (!is_ascii(payload)) return false;
    out.push_back(payload);
  } else {
    CodedInputStream list = stream_over(payload);
    for (std::uint32_t item_tag = 0;;) {
      if (!next_tag(list, payload.size(), item_tag)) return false;
      if (item_tag == 0) break;
      std::string_view item;
      if (item_tag != kListValuesTag || !read_view(list, item) ||
          !read_string_value(item, out.emplace_back())) {
        return false;
      }
    }
  }
  return next_tag(in, bytes.size(), tag) && tag == 0;
}

// A namespace's Struct holding at most `key` (anything else there: false).
bool read_namespace(std::string_view bytes, std::string_view key,
                    std::vector<std::string_view>& strings, MetadataValue& out) {
  CodedInputStream in = stream_over(bytes);
  for (std::uint32_t tag = 0;;) {
    if (!next_tag(in, bytes.size(), tag)) return false;
    if (tag == 0) break;
    std::string_view entry;
    std::string_view field;
    std::string_view value;
    if (tag != kStructFieldsTag || !read_view(in, entry) || !read_map_entry(entry, field, value) ||
        field != key || out.present || !read_value_strings(value, strings)) {
      return false;
    }
    out.present = true;
  }
  out.namespace_present = true;
  out.strings = strings;
  return true;
}

// One metadata_context field's payload: the namespaces the view reads are read in place, every
// other Metadata field (other namespaces, typed_filter_metadata, unknown fields) is merged into
// rest.metadata_context by protobuf.
bool decode_metadata(std::string_view bytes, pb::ProcessingRequest& rest, ViewStorage& storage,
                     RequestView& out) {
  CodedInputStream in = stream_over(bytes);
  for (;;) {
    const int start = in.CurrentPosition();
    std::uint32_t tag = 0;
    if (!next_tag(in, bytes.size(), tag)) return false;
    if (tag == 0) return true;
    if (tag == kFilterMetadataTag) {
      std::string_view entry;
      std::string_view name;
      std::string_view value;
      if (!read_view(in, entry) || !read_map_entry(entry, name, value)) return false;
      MetadataValue* target = nullptr;
      std::string_view key;
      std::vector<std::string_view>* strings = nullptr;
      if (name == protocol::kSubsetNamespace) {
        target = &out.subset_hint;
        key = protocol::kSubsetKey;
        strings = &storage.subset_strings;
      } else if (name == protocol::kDestinationNamespace) {
        target = &out.served;
        key = protocol::kServedKey;
        strings = &storage.served_strings;
      }
      if (target != nullptr) {
        // Given twice, the later replaces the earlier: protobuf's rules, protobuf's parser.
        if (target->namespace_present || !read_namespace(value, key, *strings, *target)) {
          return false;
        }
        continue;
      }
    } else if (!skip_field(in, tag)) {
      return false;
    }
    CodedInputStream field = stream_over(bytes.substr(
        static_cast<std::size_t>(start), static_cast<std::size_t>(in.CurrentPosition() - start)));
    if (!rest.mutable_metadata_context()->MergePartialFromCodedStream(&field)) return false;
  }
}

// The common shape: at most one request part. False sends the caller to protobuf's parser.
bool decode_in_place(std::string_view wire, pb::ProcessingRequest& rest, ViewStorage& storage,
                     RequestView& out) {
  std::vector<HeaderView>& headers = storage.headers;
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
        if (tag == kMetadataContextTag) {
          ok = read_view(in, payload) && decode_metadata(payload, rest, storage, out);
          break;
        }
        // Everything else (attributes, observability_mode, protocol_config, the trailers, unknown
        // fields): the field's bytes, tag included, merged by protobuf.
        if (!skip_field(in, tag)) return false;
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

// The parsed message's value for MetadataValue (protobuf map lookups take `const std::string&`).
void read_metadata_value(const pb::ProcessingRequest& message, const std::string& name,
                         const std::string& key, std::vector<std::string_view>& strings,
                         MetadataValue& out) {
  if (!message.has_metadata_context()) return;
  const auto& namespaces = message.metadata_context().filter_metadata();
  const auto found = namespaces.find(name);
  if (found == namespaces.end()) return;
  out.namespace_present = true;
  const auto field = found->second.fields().find(key);
  if (field == found->second.fields().end()) return;
  out.present = true;
  const google::protobuf::Value& value = field->second;
  if (value.has_string_value()) {
    strings.push_back(value.string_value());
  } else if (value.has_list_value()) {
    for (const google::protobuf::Value& item : value.list_value().values()) {
      strings.push_back(item.has_string_value() ? std::string_view(item.string_value()) : "");
    }
  }
  out.strings = strings;
}

}  // namespace

RequestView view_of(const pb::ProcessingRequest& message, ViewStorage& storage) {
  static const std::string kSubsetNamespace(protocol::kSubsetNamespace);
  static const std::string kSubsetKey(protocol::kSubsetKey);
  static const std::string kDestinationNamespace(protocol::kDestinationNamespace);
  static const std::string kServedKey(protocol::kServedKey);
  std::vector<HeaderView>& headers = storage.headers;
  storage.clear();
  RequestView view;
  read_metadata_value(message, kSubsetNamespace, kSubsetKey, storage.subset_strings,
                      view.subset_hint);
  read_metadata_value(message, kDestinationNamespace, kServedKey, storage.served_strings,
                      view.served);
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

bool decode_request(std::string_view wire, pb::ProcessingRequest& rest, ViewStorage& storage,
                    RequestView& out) {
  storage.clear();
  out = RequestView{};
  if (wire.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) return false;
  if (decode_in_place(wire, rest, storage, out)) return true;
  rest.Clear();
  if (!rest.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) return false;
  out = view_of(rest, storage);
  return true;
}

}  // namespace infergate::extproc
