// decode_request (the native transport's in-place reading of a ProcessingRequest) against
// protobuf's own parser: for well-formed messages of every part, for unusual but valid wire
// shapes (concatenated messages, repeated fields, unknown fields, wrong wire types, non-ASCII
// header text) and for corrupted bytes, the view must equal view_of() of what protobuf parses, and
// the bytes must be rejected exactly when protobuf rejects them.
#include "extproc/request_view.h"

#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

namespace infergate::extproc {
namespace {

pb::ProcessingRequest parse_text(const std::string& text) {
  pb::ProcessingRequest message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message)) << text;
  return message;
}

// Text-format builders for metadata_context: a filter_metadata namespace holding Struct
// `fields`, and one such field.
constexpr std::string_view kSubsetNamespace = "envoy.lb.subset_hint";
constexpr std::string_view kSubsetKey = "x-gateway-destination-endpoint-subset";
constexpr std::string_view kLbNamespace = "envoy.lb";
constexpr std::string_view kServedKey = "x-gateway-destination-endpoint-served";

std::string namespace_text(std::string_view name, std::string_view fields) {
  return fmt::format("filter_metadata {{ key: \"{}\" value {{ {} }} }}", name, fields);
}
std::string field_text(std::string_view key, std::string_view value) {
  return fmt::format("fields {{ key: \"{}\" value {{ {} }} }}", key, value);
}
std::string metadata_text(std::string_view entries) {
  return fmt::format("metadata_context {{ {} }}", entries);
}
std::string subset_text(std::string_view value) {
  return namespace_text(kSubsetNamespace, field_text(kSubsetKey, value));
}
std::string served_text(std::string_view value) {
  return namespace_text(kLbNamespace, field_text(kServedKey, value));
}

std::vector<std::pair<std::string, std::string>> pairs(const RequestView& view) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const HeaderView& header : view.headers) {
    out.emplace_back(std::string(header.key), std::string(header.value));
  }
  return out;
}

std::vector<std::string> strings(const MetadataValue& value) {
  return {value.strings.begin(), value.strings.end()};
}

// The fields a view leaves in `rest`: the message without its headers or body part, and without
// the metadata namespaces the view reads (decoded in place, `rest` does not have them).
pb::ProcessingRequest without_view_part(pb::ProcessingRequest message) {
  if (message.has_metadata_context()) {
    auto& namespaces = *message.mutable_metadata_context()->mutable_filter_metadata();
    namespaces.erase("envoy.lb");
    namespaces.erase("envoy.lb.subset_hint");
    if (message.metadata_context().ByteSizeLong() == 0) message.clear_metadata_context();
  }
  switch (message.request_case()) {
    case pb::ProcessingRequest::kRequestHeaders:
    case pb::ProcessingRequest::kResponseHeaders:
    case pb::ProcessingRequest::kRequestBody:
    case pb::ProcessingRequest::kResponseBody:
      message.clear_request();
      break;
    default:
      break;
  }
  return message;
}

// Decodes `wire` and checks the result against protobuf's parse of the same bytes.
void expect_same_as_protobuf(const std::string& wire) {
  pb::ProcessingRequest parsed;
  const bool protobuf_ok = parsed.ParseFromString(wire);
  pb::ProcessingRequest rest;
  ViewStorage storage;
  RequestView view;
  const bool ok = decode_request(wire, rest, storage, view);
  ASSERT_EQ(ok, protobuf_ok);
  if (!ok) return;
  ViewStorage expected_storage;
  const RequestView expected = view_of(parsed, expected_storage);
  EXPECT_EQ(view.part, expected.part);
  EXPECT_EQ(pairs(view), pairs(expected));
  EXPECT_EQ(view.body, expected.body);
  EXPECT_EQ(view.end_of_stream, expected.end_of_stream);
  for (const auto& [actual, wanted] : {std::pair{view.subset_hint, expected.subset_hint},
                                       std::pair{view.served, expected.served}}) {
    EXPECT_EQ(actual.namespace_present, wanted.namespace_present);
    EXPECT_EQ(actual.present, wanted.present);
    EXPECT_EQ(strings(actual), strings(wanted));
  }
  ASSERT_NE(view.rest, nullptr);
  std::string differences;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&differences);
  EXPECT_TRUE(differencer.Compare(without_view_part(parsed), without_view_part(*view.rest)))
      << differences;
}

// Valid messages of every part, as an Envoy configured for FULL_DUPLEX_STREAMED sends them.
const std::vector<std::string>& samples() {
  static const std::vector<std::string> kSamples = {
      R"pb(request_headers {
             headers {
               headers { key: ":method" raw_value: "POST" }
               headers { key: ":path" raw_value: "/v1/completions" }
               headers { key: "Content-Type" raw_value: "application/json" }
               headers { key: "x-legacy" value: "from value" }
               headers { key: "x-both" value: "ignored" raw_value: "wins" }
               headers { key: "x-empty" }
             }
           }
           protocol_config {
             request_body_mode: FULL_DUPLEX_STREAMED
             response_body_mode: FULL_DUPLEX_STREAMED
           })pb" +
          metadata_text(subset_text(R"pb(string_value: "10.0.0.1:8000")pb")),
      R"pb(request_headers {
             headers { headers { key: ":method" raw_value: "GET" } }
             end_of_stream: true
           })pb",
      R"pb(request_body { body: "{\"model\":\"m\",\"prompt\":\"hello\"}" end_of_stream: true })pb",
      R"pb(request_body { body: "" })pb",
      R"pb(request_trailers { trailers { headers { key: "grpc-status" raw_value: "0" } } })pb",
      R"pb(response_headers { headers { headers { key: ":status" raw_value: "200" } } })pb" +
          metadata_text(served_text(R"pb(string_value: "10.0.0.2:8000")pb")),
      R"pb(request_headers { headers { headers { key: ":method" raw_value: "POST" } } })pb" +
          metadata_text(
              subset_text(R"pb(list_value {
                                 values { string_value: "10.0.0.1:8000" }
                                 values { string_value: "10.0.0.2:8000,10.0.0.3:8000" }
                               })pb") +
              namespace_text("envoy.filters.http.other", field_text("k", "number_value: 3")) +
              R"pb(typed_filter_metadata {
                     key: "typed"
                     value { type_url: "type.googleapis.com/x" value: "\001\002" }
                   })pb"),
      R"pb(response_headers { headers { headers { key: ":status" raw_value: "200" } } })pb" +
          metadata_text(
              served_text(R"pb(list_value { values { string_value: "10.0.0.2:8000" } })pb")),
      R"pb(response_body { body: "data: {}\n\n" end_of_stream: true })pb",
      R"pb(response_trailers {})pb",
      R"pb(request_body { body: "x" }
           observability_mode: true)pb",
      R"pb(attributes {
             key: "envoy.filters.http.ext_proc"
             value {
               fields {
                 key: "request.path"
                 value { string_value: "/v1" }
               }
             }
           })pb",
      R"pb()pb",
  };
  return kSamples;
}

TEST(RequestView, WellFormedMessagesOfEveryPart) {
  for (const std::string& text : samples()) {
    SCOPED_TRACE(text);
    expect_same_as_protobuf(parse_text(text).SerializeAsString());
  }
}

// A sample decoded from its wire bytes, with everything its view points into.
struct Decoded {
  explicit Decoded(const std::string& text) : wire(parse_text(text).SerializeAsString()) {
    ok = decode_request(wire, rest, storage, view);
  }
  // Whether `text` lies within the wire bytes (a view, not a copy).
  bool in_wire(std::string_view text) const {
    return text.data() >= wire.data() && text.data() + text.size() <= wire.data() + wire.size();
  }

  std::string wire;
  pb::ProcessingRequest rest;
  ViewStorage storage;
  RequestView view;
  bool ok = false;
};

TEST(RequestView, ReadsInPlace) {
  const Decoded decoded(samples()[0]);
  ASSERT_TRUE(decoded.ok);
  const RequestView& view = decoded.view;
  EXPECT_EQ(view.part, pb::ProcessingRequest::kRequestHeaders);
  ASSERT_EQ(view.headers.size(), 6u);
  EXPECT_EQ(view.headers[2].key, "Content-Type");  // as sent: lower-casing is the processor's
  EXPECT_EQ(view.headers[3].value, "from value");
  EXPECT_EQ(view.headers[4].value, "wins");
  EXPECT_EQ(view.headers[5].value, "");
  for (const HeaderView& header : view.headers) EXPECT_TRUE(decoded.in_wire(header.key));
  EXPECT_FALSE(view.end_of_stream);
  EXPECT_FALSE(view.rest->has_request_headers());
  // The subset hint was the only metadata: read in place, nothing left for protobuf.
  EXPECT_FALSE(view.rest->has_metadata_context());
  EXPECT_TRUE(view.rest->has_protocol_config());
  ASSERT_TRUE(view.subset_hint.present);
  ASSERT_EQ(strings(view.subset_hint), std::vector<std::string>{"10.0.0.1:8000"});
  EXPECT_TRUE(decoded.in_wire(view.subset_hint.strings[0]));
  EXPECT_FALSE(view.served.namespace_present);
}

TEST(RequestView, ReadsMetadataOfOtherNamespacesIntoRest) {
  const Decoded decoded(samples()[6]);
  ASSERT_TRUE(decoded.ok);
  EXPECT_EQ(strings(decoded.view.subset_hint),
            (std::vector<std::string>{"10.0.0.1:8000", "10.0.0.2:8000,10.0.0.3:8000"}));
  const auto& namespaces = decoded.rest.metadata_context().filter_metadata();
  EXPECT_EQ(namespaces.size(), 1u);
  EXPECT_TRUE(namespaces.contains("envoy.filters.http.other"));
  EXPECT_EQ(decoded.rest.metadata_context().typed_filter_metadata().size(), 1u);
}

TEST(RequestView, UnusualButValidShapes) {
  auto wire_of = [](const std::string& text) { return parse_text(text).SerializeAsString(); };
  const std::vector<std::pair<std::string, std::string>> cases = {
      // Concatenated messages merge: a second part replaces the first (oneof), the same part
      // twice merges (headers appended), later scalars win.
      {"two parts", wire_of(samples()[0]) + wire_of(samples()[2])},
      {"body then headers", wire_of(samples()[2]) + wire_of(samples()[1])},
      {"headers twice",
       wire_of(R"pb(request_headers { headers { headers { key: "a" raw_value: "1" } } })pb") +
           wire_of(R"pb(request_headers {
                          headers { headers { key: "b" raw_value: "2" } }
                          end_of_stream: true
                        })pb")},
      {"body twice", wire_of(R"pb(request_body { body: "first" end_of_stream: true })pb") +
                         wire_of(R"pb(request_body { body: "second" })pb")},
      {"trailers then body", wire_of(samples()[4]) + wire_of(samples()[2])},
      {"metadata twice", wire_of(samples()[5]) + wire_of(samples()[0])},
      {"a namespace twice", wire_of(samples()[0]) + wire_of(samples()[6])},
      {"another key in a namespace read in place",
       wire_of(metadata_text(namespace_text(
           kLbNamespace, field_text(kServedKey, R"pb(string_value: "10.0.0.2:8000")pb") +
                             field_text("other", "bool_value: true"))))},
      {"values that are not strings",
       wire_of(metadata_text(subset_text(R"pb(list_value {
                                                values { number_value: 1 }
                                                values { string_value: "10.0.0.1:8000" }
                                                values { struct_value {} }
                                              })pb") +
                             served_text("bool_value: true")))},
      {"a value of no kind and an empty namespace",
       wire_of(metadata_text(subset_text("") + namespace_text(kLbNamespace, "")))},
      {"non-ASCII metadata string",
       wire_of(metadata_text(served_text(R"pb(string_value: "caf\303\251")pb")))},
      // Unknown fields at every level, and known field numbers with the wrong wire type.
      {"unknown top-level field", wire_of(samples()[2]) + std::string("\xa0\x06\x01", 3)},
      {"wrong wire type for request_body", std::string("\x20\x01", 2) + wire_of(samples()[1])},
      {"unknown field in HttpBody",
       std::string("\x22\x05\x0a\x01x\x28\x07", 7)},  // request_body { body: "x" 5: 7 }
      {"unknown field in HeaderValue",
       std::string("\x12\x09\x0a\x07\x0a\x05\x0a\x01k\x30\x01", 11)},  // key "k", 6: 1
      {"non-ASCII header value",
       wire_of(R"pb(request_headers { headers { headers { key: "x" value: "caf\303\251" } } })pb")},
      {"non-ASCII header name",
       wire_of(
           R"pb(request_headers { headers { headers { key: "\303\251" raw_value: "v" } } })pb")},
      {"bytes raw_value, not UTF-8",
       wire_of(
           R"pb(request_headers { headers { headers { key: "x" raw_value: "\377\376" } } })pb")},
      {"deprecated HttpHeaders.attributes",
       wire_of(R"pb(request_headers {
                      headers { headers { key: "x" raw_value: "v" } }
                      attributes {
                        key: "a"
                        value {
                          fields {
                            key: "k"
                            value { bool_value: true }
                          }
                        }
                      }
                    })pb")},
  };
  for (const auto& [description, wire] : cases) {
    SCOPED_TRACE(description);
    expect_same_as_protobuf(wire);
  }
}

TEST(RequestView, MalformedBytesAreRejectedAsProtobufRejectsThem) {
  const google::protobuf::LogSilencer quiet;  // protobuf logs each invalid UTF-8 string it meets
  std::mt19937 random(42);
  for (const std::string& text : samples()) {
    const std::string wire = parse_text(text).SerializeAsString();
    for (std::size_t length = 0; length < wire.size(); ++length) {
      SCOPED_TRACE(fmt::format("{:.60} truncated to {} bytes", text, length));
      expect_same_as_protobuf(wire.substr(0, length));
    }
    for (int round = 0; round < 300 && !wire.empty(); ++round) {
      std::string corrupted = wire;
      const int flips = 1 + static_cast<int>(random() % 3);
      for (int flip = 0; flip < flips; ++flip) {
        corrupted[random() % corrupted.size()] = static_cast<char>(random() % 256);
      }
      SCOPED_TRACE(fmt::format("{:.60} corrupted, round {}", text, round));
      expect_same_as_protobuf(corrupted);
    }
  }
  expect_same_as_protobuf(std::string("\x00", 1));              // field number 0
  expect_same_as_protobuf(std::string("\x12\xff\xff\xff", 4));  // length past the end
  expect_same_as_protobuf(std::string("\x0b\x0c", 2));          // a group (field 1)
  // Tags and lengths longer than 5 bytes, which CodedInputStream reads (dropping the high bits)
  // and protobuf's parser rejects: a 9-byte tag in a response body, a 6-byte length of an unknown
  // field in a request body and at the top level.
  expect_same_as_protobuf(
      std::string("\x2a\x10\x10\x10\x10\x65\x10\x10\xf0\xef\xef\xef\xfe\xfe\x94\xed\x1a\x76", 18));
  expect_same_as_protobuf(std::string("\x22\x08\x2a\x81\x80\x80\x80\x80\x00x", 10));
  expect_same_as_protobuf(std::string("\xa2\x01\x81\x80\x80\x80\x80\x00x", 9));
  // An unknown group inside a request body: valid, and left to protobuf's parser.
  expect_same_as_protobuf(std::string("\x22\x02\x2b\x2c", 4));
}

}  // namespace
}  // namespace infergate::extproc
