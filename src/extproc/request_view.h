#pragma once

// A ProcessingRequest as the stream processor reads it: the part it carries, the header pairs
// and body bytes of that part as views, the two metadata values it reads (the subset hint, the
// served endpoint), and a protobuf message holding everything else (protocol_config,
// observability_mode, attributes, trailers, the rest of metadata_context).
//
// Two ways to get one:
// - `view_of(message, ...)`: over an already parsed message (gRPC's callback transport, tests);
//   the views point into the message.
// - `decode_request(wire, ...)`: straight from the serialised bytes (the native transport). The
//   header and body fields are read in place with protobuf's CodedInputStream (no sub-message or
//   string objects built: the headers and the body are most of a message's bytes and of its
//   parsing cost), and so are the two metadata namespaces the view reads (a Struct of
//   google.protobuf.Values is a map of maps to protobuf: most of the rest of the parsing cost);
//   every other field is merged into `rest` by protobuf itself. The views point into `wire`.
//   Whatever the in-place reading does not fully check (more than one request part, non-ASCII
//   header names or values or metadata strings, which protobuf validates as UTF-8, the
//   deprecated HttpHeaders.attributes, a namespace given twice, other keys or kinds of values in
//   the namespaces read, groups, malformed bytes, tags and lengths longer than protobuf's parser
//   takes) sends the whole message to protobuf's parser instead, so the result always equals
//   `view_of(parsed message)` (but for `rest`'s metadata_context, which then lacks the two
//   namespaces); false only when protobuf cannot parse the bytes either.
//
// Protobuf semantics kept: a header's value is raw_value when non-empty, else value (what the
// processor has always read); of a repeated singular field the last occurrence wins; repeated
// HeaderMap fields append; fields of the wrong wire type and unknown fields are skipped.
//
// Threads: none of its own; the caller owns `rest` and the storage and keeps `wire` alive while
// the view is used.

#include <span>
#include <string_view>
#include <vector>

#include "envoy/service/ext_proc/v3/external_processor.pb.h"

namespace infergate::extproc {

namespace pb = ::envoy::service::ext_proc::v3;

struct HeaderView {
  std::string_view key;    // as sent (not lower-cased)
  std::string_view value;  // raw_value, or value when raw_value is empty
};

// A value the processor reads from metadata_context.filter_metadata (a namespace's Struct, one of
// its keys), reduced to what it uses: the value's strings. A string_value is one item; a
// list_value's items are items in order, "" for an item that is not a string; other kinds of
// value have none.
struct MetadataValue {
  bool namespace_present = false;  // filter_metadata has the namespace
  bool present = false;            // and its Struct has the key
  std::span<const std::string_view> strings;
};

struct RequestView {
  pb::ProcessingRequest::RequestCase part = pb::ProcessingRequest::REQUEST_NOT_SET;
  // request_headers / response_headers: the headers, in order; empty for other parts.
  std::span<const HeaderView> headers;
  // request_body / response_body: the bytes; empty for other parts.
  std::string_view body;
  // end_of_stream of the headers or the body part (false for other parts).
  bool end_of_stream = false;
  // filter_metadata["envoy.lb.subset_hint"]["x-gateway-destination-endpoint-subset"]: the
  // subset hint (request path).
  MetadataValue subset_hint;
  // filter_metadata["envoy.lb"]["x-gateway-destination-endpoint-served"]: the endpoint the data
  // plane sent the request to (response path).
  MetadataValue served;
  // Everything else (never null). For the trailers parts, rest->request_case() is `part`.
  const pb::ProcessingRequest* rest = nullptr;
};

// What a view points into besides the message or the wire bytes; reused from message to message
// (each call replaces the contents).
struct ViewStorage {
  std::vector<HeaderView> headers;
  std::vector<std::string_view> subset_strings;
  std::vector<std::string_view> served_strings;

  void clear() {
    headers.clear();
    subset_strings.clear();
    served_strings.clear();
  }
};

// Views of `message` (which must outlive the view).
RequestView view_of(const pb::ProcessingRequest& message, ViewStorage& storage);

// Decodes `wire` into `out`; `rest` must be empty (freshly created or cleared) and receives the
// fields the view does not hold. See the file comment.
bool decode_request(std::string_view wire, pb::ProcessingRequest& rest, ViewStorage& storage,
                    RequestView& out);

}  // namespace infergate::extproc
