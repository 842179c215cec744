// ext_proc ProcessingRequest messages from the data plane, as the native transport reads them:
// extproc::decode_request (headers, body and two metadata values read in place from the wire).
// Input: the serialised message.
// Property (differential): decode_request accepts exactly the bytes protobuf parses, and what
// it gives equals view_of(the message protobuf parsed), field by field; of `rest`, the fields the
// view does not hold equal protobuf's (metadata_context but for the two namespaces the view
// reads, which decode_request may leave out of it).

#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "extproc/request_view.h"
#include "fuzz/fuzz_input.h"

namespace {

using infergate::fuzz::require;
namespace extproc = infergate::extproc;
namespace pb = extproc::pb;
using google::protobuf::util::MessageDifferencer;

bool same_value(const extproc::MetadataValue& a, const extproc::MetadataValue& b) {
  if (a.namespace_present != b.namespace_present || a.present != b.present) return false;
  if (a.strings.size() != b.strings.size()) return false;
  for (std::size_t item_idx = 0; item_idx < a.strings.size(); ++item_idx) {
    if (a.strings[item_idx] != b.strings[item_idx]) return false;
  }
  return true;
}

// The message's metadata_context without the namespaces RequestView reads.
envoy::config::core::v3::Metadata other_metadata(const pb::ProcessingRequest& message) {
  envoy::config::core::v3::Metadata metadata = message.metadata_context();
  metadata.mutable_filter_metadata()->erase("envoy.lb.subset_hint");
  metadata.mutable_filter_metadata()->erase("envoy.lb");
  return metadata;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view wire(reinterpret_cast<const char*>(data), size);
  pb::ProcessingRequest parsed;
  const bool parses = parsed.ParseFromArray(data, static_cast<int>(size));

  pb::ProcessingRequest rest;
  extproc::ViewStorage storage;
  extproc::RequestView decoded;
  const bool accepted = extproc::decode_request(wire, rest, storage, decoded);
  require(accepted == parses, "decode_request and protobuf disagree on whether bytes parse");
  if (!parses) return 0;

  extproc::ViewStorage expected_storage;
  const extproc::RequestView expected = extproc::view_of(parsed, expected_storage);
  require(decoded.part == expected.part, "the request part differs");
  require(decoded.headers.size() == expected.headers.size(), "the header count differs");
  for (std::size_t header_idx = 0; header_idx < expected.headers.size(); ++header_idx) {
    require(decoded.headers[header_idx].key == expected.headers[header_idx].key &&
                decoded.headers[header_idx].value == expected.headers[header_idx].value,
            "a header differs");
  }
  require(decoded.body == expected.body, "the body differs");
  require(decoded.end_of_stream == expected.end_of_stream, "end_of_stream differs");
  require(same_value(decoded.subset_hint, expected.subset_hint), "the subset hint differs");
  require(same_value(decoded.served, expected.served), "the served endpoint differs");

  require(decoded.rest != nullptr, "no rest");
  const pb::ProcessingRequest& decoded_rest = *decoded.rest;
  require(decoded_rest.observability_mode() == parsed.observability_mode(),
          "observability_mode differs");
  require(MessageDifferencer::Equals(decoded_rest.protocol_config(), parsed.protocol_config()),
          "protocol_config differs");
  pb::ProcessingRequest decoded_attributes;
  *decoded_attributes.mutable_attributes() = decoded_rest.attributes();
  pb::ProcessingRequest parsed_attributes;
  *parsed_attributes.mutable_attributes() = parsed.attributes();
  require(MessageDifferencer::Equals(decoded_attributes, parsed_attributes), "attributes differ");
  require(MessageDifferencer::Equals(other_metadata(decoded_rest), other_metadata(parsed)),
          "the rest of metadata_context differs");
  if (parsed.has_request_trailers() || parsed.has_response_trailers()) {
    require(decoded_rest.request_case() == parsed.request_case(), "the trailers part differs");
    require(
        parsed.has_request_trailers()
            ? MessageDifferencer::Equals(decoded_rest.request_trailers(), parsed.request_trailers())
            : MessageDifferencer::Equals(decoded_rest.response_trailers(),
                                         parsed.response_trailers()),
        "the trailers differ");
  }
  return 0;
}
