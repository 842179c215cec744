#pragma once

// A ProcessingRequest as the stream processor reads it: the part it carries, the header pairs
// and body bytes of that part as views, and a protobuf message holding everything else
// (metadata_context, protocol_config, observability_mode, attributes, trailers).
//
// Two ways to get one:
// - `view_of(message, ...)`: over an already parsed message (gRPC's callback transport, tests);
//   the views point into the message.
// - `decode_request(wire, ...)`: straight from the serialised bytes (the native transport). The
//   header and body fields are read in place with protobuf's CodedInputStream (no sub-message or
//   string objects built: the headers and the body are most of a message's bytes and of its
//   parsing cost); every other field is merged into `rest` by protobuf itself. The views point
//   into `wire`. Whatever the in-place reading does not fully check (more than one request part,
//   non-ASCII header names or values, which protobuf validates as UTF-8, the deprecated
//   HttpHeaders.attributes, malformed bytes) sends the whole message to protobuf's parser
//   instead, so the result always equals `view_of(parsed message)`; false only when protobuf
//   cannot parse the bytes either.
//
// Protobuf semantics kept: a header's value is raw_value when non-empty, else value (what the
// processor has always read); of a repeated singular field the last occurrence wins; repeated
// HeaderMap fields append; fields of the wrong wire type and unknown fields are skipped.
//
// Threads: none of its own; the caller owns `rest` and `headers` and keeps `wire` alive while the
// view is used.

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

struct RequestView {
  pb::ProcessingRequest::RequestCase part = pb::ProcessingRequest::REQUEST_NOT_SET;
  // request_headers / response_headers: the headers, in order; empty for other parts.
  std::span<const HeaderView> headers;
  // request_body / response_body: the bytes; empty for other parts.
  std::string_view body;
  // end_of_stream of the headers or the body part (false for other parts).
  bool end_of_stream = false;
  // Everything else (never null). For the trailers parts, rest->request_case() is `part`.
  const pb::ProcessingRequest* rest = nullptr;
};

// Views of `message` (which must outlive the view); `headers` is storage, replaced.
RequestView view_of(const pb::ProcessingRequest& message, std::vector<HeaderView>& headers);

// Decodes `wire` into `out`; `rest` must be empty (freshly created or cleared) and receives the
// fields the view does not hold; `headers` is storage, replaced. See the file comment.
bool decode_request(std::string_view wire, pb::ProcessingRequest& rest,
                    std::vector<HeaderView>& headers, RequestView& out);

}  // namespace infergate::extproc
