// StreamProcessor transcripts (epp-protocol facts §2–§5, §7, §9, §11): every case feeds a
// sequence of ProcessingRequest messages, written in protobuf text format, to one processor wired
// to a real Director, and compares each message's answers with the expected ProcessingResponse
// messages, the StreamAction, the in-flight accounting and the metrics text.
//
// The pool is three pods (10.0.0.1-3:8000) unless a case asks for one pod or none; picks are made
// deterministic with a single-endpoint subset hint or the one-pod pool. The model "food-review" is
// rewritten to "food-review-v2" by an InferenceModelRewrite, so every routed body shows the
// rewrite and every response the restore.
#include "extproc/stream_processor.h"

#include <fmt/format.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <regex>
#include <string>
#include <vector>

#include "api/endpoint_picker_config.h"
#include "api/types.h"
#include "common/clock.h"
#include "datastore/datastore.h"
#include "datastore/model_policies.h"
#include "director/director.h"
#include "prom/registry.h"
#include "scheduling/config_loader.h"

namespace infergate::extproc {
namespace {

// ---------------------------------------------------------------------------------------------
// The table's shape.

struct Step {
  std::string input;                  // one ProcessingRequest, text format
  std::vector<std::string> expected;  // its answers, text format; "{request_id}" and "{scores}"
                                      // stand for the routed request's generated id and scores
  StreamAction action = StreamAction::kContinue;
  std::string error = {};  // with kFinishError: a substring of error_message()
};

enum class Pool { kThreePods, kOnePod, kEmpty };

struct Transcript {
  std::string description;
  std::vector<Step> steps;
  ProcessorOptions options = {};
  Pool pool = Pool::kThreePods;
  bool conformance_hooks = false;
  // In-flight requests over all endpoints after the last step, before on_stream_end().
  int inflight_before_end = 0;
  // Lines (or line prefixes) expected in the metrics text after on_stream_end().
  std::vector<std::string> metrics = {};
  // More checks on the processor after the last step, before on_stream_end().
  std::function<void(const StreamProcessor&)> check = {};
};
void PrintTo(const Transcript& transcript, std::ostream* os) { *os << transcript.description; }

// ---------------------------------------------------------------------------------------------
// Text-format builders.

// A text-format string literal's contents for arbitrary bytes.
std::string escaped(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (const char c : bytes) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
    }
  }
  return out;
}

using HeaderList = std::vector<std::pair<std::string, std::string>>;

std::string header_map(const HeaderList& headers) {
  std::string out;
  for (const auto& [key, value] : headers) {
    out += fmt::format(R"(headers {{ key: "{}" raw_value: "{}" }} )", escaped(key), escaped(value));
  }
  return out;
}

// The client's POST as Envoy sends it (lower-case keys, values in raw_value).
HeaderList post_headers(HeaderList extra = {}) {
  HeaderList headers = {
      {":method", "POST"}, {":path", "/v1/chat/completions"},    {":authority", "gw.example.com"},
      {":scheme", "http"}, {"content-type", "application/json"}, {"x-request-id", "req-1"}};
  headers.insert(headers.end(), extra.begin(), extra.end());
  return headers;
}
// What the headers answer echoes of post_headers() (pseudo-headers never).
HeaderList post_echo(HeaderList extra = {}) {
  HeaderList headers = {{"content-type", "application/json"}, {"x-request-id", "req-1"}};
  headers.insert(headers.end(), extra.begin(), extra.end());
  return headers;
}

// `raw_headers`: HeaderValue entries written out in text format, appended to the map.
std::string request_headers(const HeaderList& headers, bool end_of_stream, std::string extra = {},
                            std::string_view raw_headers = {}) {
  return fmt::format("request_headers {{ headers {{ {} {} }} end_of_stream: {} }} {}",
                     header_map(headers), raw_headers, end_of_stream, extra);
}
std::string post(std::string extra = {}) {
  return request_headers(post_headers(), false, std::move(extra));
}
std::string get(std::string extra = {}) {
  return request_headers({{":method", "GET"},
                          {":path", "/v1/models"},
                          {":authority", "gw.example.com"},
                          {"x-request-id", "req-1"}},
                         true, std::move(extra));
}
std::string request_body(std::string_view bytes, bool end_of_stream, std::string extra = {}) {
  return fmt::format(R"(request_body {{ body: "{}" end_of_stream: {} }} {})", escaped(bytes),
                     end_of_stream, extra);
}
std::string response_headers(std::string_view content_type, std::string extra = {},
                             bool end_of_stream = false) {
  return fmt::format("response_headers {{ headers {{ {} }} end_of_stream: {} }} {}",
                     header_map({{":status", "200"},
                                 {"content-type", std::string(content_type)},
                                 {"content-length", "1234"},
                                 {"x-upstream", "vllm"}}),
                     end_of_stream, extra);
}
std::string response_body(std::string_view bytes, bool end_of_stream) {
  return fmt::format(R"(response_body {{ body: "{}" end_of_stream: {} }})", escaped(bytes),
                     end_of_stream);
}

// metadata_context with the subset hint; `value` is a google.protobuf.Value in text format.
std::string subset_hint(std::string_view value) {
  return fmt::format(
      R"(metadata_context {{ filter_metadata {{ key: "envoy.lb.subset_hint" value {{ )"
      R"(fields {{ key: "x-gateway-destination-endpoint-subset" value {{ {} }} }} }} }} }})",
      value);
}
std::string subset_list(const std::vector<std::string>& entries) {
  std::string values;
  for (const auto& entry : entries)
    values += fmt::format(R"(values {{ string_value: "{}" }} )", entry);
  return subset_hint(fmt::format("list_value {{ {} }}", values));
}
// metadata_context on the response path; `fields` are the envoy.lb struct's fields.
std::string lb_metadata(std::string_view fields) {
  return fmt::format(
      R"(metadata_context {{ filter_metadata {{ key: "envoy.lb" value {{ {} }} }} }})", fields);
}
std::string served(std::string_view endpoint) {
  return lb_metadata(fmt::format(
      R"(fields {{ key: "x-gateway-destination-endpoint-served" value {{ string_value: "{}" }} }})",
      endpoint));
}

std::string set_headers(const HeaderList& headers) {
  std::string out;
  for (const auto& [key, value] : headers) {
    out += fmt::format(R"(set_headers {{ header {{ key: "{}" raw_value: "{}" }} }} )", escaped(key),
                       escaped(value));
  }
  return out;
}

struct HeadersAnswer {
  std::string destination;
  std::size_t body_bytes = 0;  // 0: no content-length
  HeaderList echoed = post_echo();
  bool generated_request_id = false;
  bool scores = false;  // x-gateway-destination-endpoint-scores in the metadata
};
std::string headers_answer(const HeadersAnswer& answer) {
  HeaderList headers = {{"x-gateway-destination-endpoint", answer.destination}};
  if (answer.body_bytes > 0)
    headers.emplace_back("content-length", std::to_string(answer.body_bytes));
  if (answer.generated_request_id) headers.emplace_back("x-request-id", "{request_id}");
  headers.insert(headers.end(), answer.echoed.begin(), answer.echoed.end());
  const std::string scores = answer.scores
                                 ? R"(fields { key: "x-gateway-destination-endpoint-scores" )"
                                   R"(value { string_value: "{scores}" } })"
                                 : "";
  return fmt::format(
      R"(request_headers {{ response {{ header_mutation {{ {} }} clear_route_cache: true }} }} )"
      R"(dynamic_metadata {{ fields {{ key: "envoy.lb" value {{ struct_value {{ )"
      R"(fields {{ key: "x-gateway-destination-endpoint" value {{ string_value: "{}" }} }} )"
      R"({} }} }} }} }})",
      set_headers(headers), answer.destination, scores);
}
std::string body_answer(std::string_view direction, std::string_view bytes, bool end_of_stream) {
  return fmt::format(R"({} {{ response {{ body_mutation {{ )"
                     R"(streamed_response {{ body: "{}" end_of_stream: {} }} }} }} }})",
                     direction, escaped(bytes), end_of_stream);
}
std::string request_body_answer(std::string_view bytes, bool end_of_stream = true) {
  return body_answer("request_body", bytes, end_of_stream);
}
std::string response_body_answer(std::string_view bytes, bool end_of_stream = false) {
  return body_answer("response_body", bytes, end_of_stream);
}
std::string response_headers_answer(const HeaderList& added = {}) {
  if (added.empty()) return "response_headers { response {} }";
  return fmt::format("response_headers {{ response {{ header_mutation {{ {} }} }} }}",
                     set_headers(added));
}
std::string local_reply(int code, std::string_view code_name, std::string_view message) {
  return fmt::format(R"(immediate_response {{ status {{ code: {} }} headers {{ {} }} )"
                     R"(body: "inference error: {} - {}" details: "inference_error_{}" }})",
                     code, set_headers({{"content-type", "text/plain; charset=utf-8"}}), code_name,
                     escaped(message), code_name);
}
std::string protocol_error(std::string_view reason) {
  return fmt::format(R"(infergate_extproc_protocol_errors_total{{reason="{}"}} 1.0)", reason);
}
std::string immediate_metric(int code) {
  return fmt::format(R"(infergate_extproc_immediate_responses_total{{code="{}"}} 1.0)", code);
}

// ---------------------------------------------------------------------------------------------
// Bodies.

const std::string kBody =
    R"({"model":"food-review","messages":[{"role":"user","content":"Is the soup good?"}]})";
const std::string kRewritten =
    R"({"model":"food-review-v2","messages":[{"role":"user","content":"Is the soup good?"}]})";
const std::string kStreamBody =
    R"({"model":"food-review","stream":true,"messages":[{"role":"user","content":"hi"}]})";
const std::string kStreamRewritten =
    R"({"model":"food-review-v2","stream":true,"messages":[{"role":"user","content":"hi"}]})";
const std::string kPod2 = subset_list({"10.0.0.2:8000"});

std::string big_body(std::size_t content_bytes) {
  return R"({"model":"food-review","messages":[{"role":"user","content":")" +
         std::string(content_bytes, 'x') + R"("}]})";
}
std::string big_rewritten(std::size_t content_bytes) {
  return R"({"model":"food-review-v2","messages":[{"role":"user","content":")" +
         std::string(content_bytes, 'x') + R"("}]})";
}

// The request routed to 10.0.0.2 with kBody, as the first two steps of response-path cases.
std::vector<Step> routed_to_pod2(const std::string& body = kBody,
                                 const std::string& rewritten = kRewritten) {
  return {{post(kPod2), {}},
          {request_body(body, true),
           {headers_answer({.destination = "10.0.0.2:8000", .body_bytes = rewritten.size()}),
            request_body_answer(rewritten)}}};
}
std::vector<Step> concat(std::vector<Step> head, const std::vector<Step>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

// ---------------------------------------------------------------------------------------------
// The cases.

std::vector<Transcript> request_path_cases() {
  std::vector<Transcript> all;

  all.push_back(
      {.description = "body-less request (GET): routed and answered at once, no "
                      "content-length, no body answers",
       .steps = {{get(),
                  {headers_answer(
                      {.destination = "10.0.0.1:8000", .echoed = {{"x-request-id", "req-1"}}})}}},
       .pool = Pool::kOnePod,
       .inflight_before_end = 1,
       .metrics = {"infergate_extproc_streams_total 1.0", "infergate_extproc_active_streams 0.0"}});

  all.push_back({.description = "body in one chunk: headers answer held until eos, then the "
                                "headers answer and the rewritten body with eos",
                 .steps = routed_to_pod2(),
                 .inflight_before_end = 1,
                 .check = [](const StreamProcessor& processor) {
                   ASSERT_NE(processor.routed(), nullptr);
                   EXPECT_EQ(processor.routed()->incoming_model(), "food-review");
                   EXPECT_EQ(processor.routed()->target_model(), "food-review-v2");
                 }});

  all.push_back({.description = "body in three chunks: nothing answered before eos",
                 .steps = {{post(kPod2), {}},
                           {request_body(kBody.substr(0, 9), false), {}},
                           {request_body(kBody.substr(9, 30), false), {}},
                           {request_body(kBody.substr(39), true),
                            {headers_answer(
                                 {.destination = "10.0.0.2:8000", .body_bytes = kRewritten.size()}),
                             request_body_answer(kRewritten)}}},
                 .inflight_before_end = 1});

  {
    // 150,000 content bytes: the rewritten body goes back as 62,000 + 62,000 + the rest.
    const std::string body = big_body(150000);
    const std::string rewritten = big_rewritten(150000);
    all.push_back(
        {.description = "body over 62,000 bytes (content-length declared), sent in 3 chunks, "
                        "answered in chunks of 62,000 / 62,000 / rest",
         .steps = {{request_headers(post_headers({{"content-length", std::to_string(body.size())}}),
                                    false, kPod2),
                    {}},
                   {request_body(body.substr(0, 65536), false), {}},
                   {request_body(body.substr(65536, 65536), false), {}},
                   {request_body(body.substr(131072), true),
                    {headers_answer(
                         {.destination = "10.0.0.2:8000", .body_bytes = rewritten.size()}),
                     request_body_answer(rewritten.substr(0, 62000), false),
                     request_body_answer(rewritten.substr(62000, 62000), false),
                     request_body_answer(rewritten.substr(124000))}}},
         .inflight_before_end = 1});
  }

  all.push_back({.description = "body_chunk_bytes option: an 85-byte body in chunks of 40 / 40 / 5",
                 .steps = {{post(kPod2), {}},
                           {request_body(kBody, true),
                            {headers_answer(
                                 {.destination = "10.0.0.2:8000", .body_bytes = kRewritten.size()}),
                             request_body_answer(kRewritten.substr(0, 40), false),
                             request_body_answer(kRewritten.substr(40, 40), false),
                             request_body_answer(kRewritten.substr(80))}}},
                 .options = {.body_chunk_bytes = 40},
                 .inflight_before_end = 1});

  {
    // The client's content-length (the original size) is replaced by the new body's length; a
    // missing x-request-id is generated and added right after it.
    HeaderList headers = post_headers({{"content-length", std::to_string(kBody.size())}});
    std::erase_if(headers, [](const auto& header) { return header.first == "x-request-id"; });
    all.push_back(
        {.description = "content-length replaced by the rewritten length; x-request-id generated "
                        "when missing",
         .steps = {{request_headers(headers, false, kPod2), {}},
                   {request_body(kBody, true),
                    {headers_answer({.destination = "10.0.0.2:8000",
                                     .body_bytes = kRewritten.size(),
                                     .echoed = {{"content-type", "application/json"}},
                                     .generated_request_id = true}),
                     request_body_answer(kRewritten)}}},
         .inflight_before_end = 1,
         .check = [](const StreamProcessor& processor) {
           ASSERT_NE(processor.routed(), nullptr);
           EXPECT_TRUE(processor.routed()->request_id_generated());
           EXPECT_TRUE(std::regex_match(
               processor.routed()->request_id(),
               std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
               << processor.routed()->request_id();
         }});
  }

  {
    // Every control header, host, pseudo-headers: not echoed. Upper-case keys are lower-cased;
    // a value sent in `value` (older data planes) is read and written back in raw_value.
    HeaderList headers = post_headers({{"host", "gw.example.com"},
                                       {"x-gateway-inference-fairness-id", "tenant-a"},
                                       {"x-gateway-inference-objective", "chat"},
                                       {"x-gateway-model-name-rewrite", "other-model"},
                                       {"x-llm-d-inference-fairness-id", "tenant-a"},
                                       {"x-llm-d-inference-objective", "chat"},
                                       {"x-llm-d-model-name-rewrite", "other-model"},
                                       {"x-gateway-destination-endpoint", "6.6.6.6:80"},
                                       {"x-gateway-destination-endpoint-subset", "6.6.6.6:80"},
                                       {"x-gateway-destination-endpoint-served", "6.6.6.6:80"},
                                       {"content-length", "999"},
                                       {"x-keep", "kept"}});
    all.push_back(
        {.description = "control headers, host and pseudo-headers stripped; keys lower-cased; "
                        "value read as a fallback, written to raw_value only",
         .steps = {{request_headers(headers, false, kPod2,
                                    R"(headers { key: "X-Legacy" value: "from-value" })"),
                    {}},
                   {request_body(kBody, true),
                    {headers_answer(
                         {.destination = "10.0.0.2:8000",
                          .body_bytes = kRewritten.size(),
                          .echoed = post_echo({{"x-keep", "kept"}, {"x-legacy", "from-value"}})}),
                     request_body_answer(kRewritten)}}},
         .inflight_before_end = 1});
  }

  all.push_back(
      {.description = "subset hint as a list: only its endpoint is picked (address match)",
       .steps = {{post(subset_list({"10.0.0.3"})), {}},
                 {request_body(kBody, true),
                  {headers_answer(
                       {.destination = "10.0.0.3:8000", .body_bytes = kRewritten.size()}),
                   request_body_answer(kRewritten)}}},
       .inflight_before_end = 1});

  all.push_back({.description = "subset hint as one comma-separated string",
                 .steps = {{post(subset_hint(R"(string_value: "10.0.0.3:8000, 10.9.9.9:1")")), {}},
                           {request_body(kBody, true),
                            {headers_answer(
                                 {.destination = "10.0.0.3:8000", .body_bytes = kRewritten.size()}),
                             request_body_answer(kRewritten)}}},
                 .inflight_before_end = 1});

  all.push_back(
      {.description = "subset hint arriving on a body message (later hint wins)",
       .steps = {{post(kPod2), {}},
                 {request_body(kBody.substr(0, 20), false, subset_list({"10.0.0.1:8000"})), {}},
                 {request_body(kBody.substr(20), true),
                  {headers_answer(
                       {.destination = "10.0.0.1:8000", .body_bytes = kRewritten.size()}),
                   request_body_answer(kRewritten)}}},
       .inflight_before_end = 1});

  const std::string no_match = "no endpoint of the pool matches the request's subset";
  all.push_back(
      {.description = "empty subset list: 503",
       .steps = {{post(subset_hint("list_value {}")), {}},
                 {request_body(kBody, true),
                  {local_reply(503, "ServiceUnavailable", no_match)},
                  StreamAction::kFinishOk}},
       .metrics = {immediate_metric(503),
                   R"(inference_objective_request_error_total{error_code="ServiceUnavailable",)"
                   R"(model_name="food-review",target_model_name="food-review-v2"} 1.0)"}});

  all.push_back({.description = "subset hint neither a list nor a string: matches nothing, 503",
                 .steps = {{post(subset_hint("number_value: 1")), {}},
                           {request_body(kBody, true),
                            {local_reply(503, "ServiceUnavailable", no_match)},
                            StreamAction::kFinishOk}}});

  all.push_back({.description = "subset hint matching no endpoint: 503",
                 .steps = {{post(subset_list({"10.9.9.9:8000"})), {}},
                           {request_body(kBody, true),
                            {local_reply(503, "ServiceUnavailable", no_match)},
                            StreamAction::kFinishOk}},
                 .metrics = {immediate_metric(503)}});

  all.push_back({.description = "body-less request with an unmatched subset hint: 503",
                 .steps = {{get(subset_list({"10.9.9.9:8000"})),
                            {local_reply(503, "ServiceUnavailable", no_match)},
                            StreamAction::kFinishOk}},
                 .metrics = {immediate_metric(503)}});

  all.push_back(
      {.description = "malformed JSON: 400; later messages are dropped",
       .steps = {{post(), {}},
                 {request_body(R"({"model":)", true),
                  {local_reply(400, "BadRequest",
                               "request body is not valid JSON: JSON document ended early in the "
                               "middle of an object or array.")},
                  StreamAction::kFinishOk},
                 {request_body("more", true), {}},
                 {response_headers("application/json"), {}}},
       .metrics = {immediate_metric(400),
                   R"(infergate_extproc_protocol_errors_total{reason="after_local_reply"} 2.0)"}});

  all.push_back({.description = "missing model: 400",
                 .steps = {{post(), {}},
                           {request_body(R"({"messages":[{"role":"user","content":"hi"}]})", true),
                            {local_reply(400, "BadRequest", "'model' is required")},
                            StreamAction::kFinishOk}},
                 .metrics = {immediate_metric(400)}});

  all.push_back({.description =
                     "empty body: a request needs a JSON body, so 400 (the empty-chunk answer is "
                     "exercised on the response path)",
                 .steps = {{post(), {}},
                           {request_body("", true),
                            {local_reply(400, "BadRequest",
                                         "request body is not valid JSON: Empty: no JSON found")},
                            StreamAction::kFinishOk}}});

  all.push_back({.description = "empty pool: 503",
                 .steps = {{post(), {}},
                           {request_body(kBody, true),
                            {local_reply(503, "ServiceUnavailable",
                                         "no ready endpoints in the inference pool")},
                            StreamAction::kFinishOk}},
                 .pool = Pool::kEmpty,
                 .metrics = {immediate_metric(503)}});

  all.push_back({.description = "empty pool, body-less request: 503",
                 .steps = {{get(),
                            {local_reply(503, "ServiceUnavailable",
                                         "no ready endpoints in the inference pool")},
                            StreamAction::kFinishOk}},
                 .pool = Pool::kEmpty});

  all.push_back(
      {.description = "oversize body: 413 once the chunks pass max_body_bytes",
       .steps = {{post(), {}},
                 {request_body(std::string(40, 'a'), false), {}},
                 {request_body(std::string(40, 'a'), false),
                  {local_reply(413, "PayloadTooLarge",
                               "the request body exceeds the limit of 64 bytes")},
                  StreamAction::kFinishOk},
                 {request_body("", true), {}}},
       .options = {.max_body_bytes = 64},
       .metrics = {immediate_metric(413),
                   R"(inference_objective_request_error_total{error_code="PayloadTooLarge",)"
                   R"(model_name="",target_model_name=""} 1.0)",
                   protocol_error("after_local_reply")}});

  all.push_back({.description = "oversize body declared by content-length: 413 at request_headers",
                 .steps = {{request_headers(post_headers({{"content-length", "65"}}), false),
                            {local_reply(413, "PayloadTooLarge",
                                         "the request body exceeds the limit of 64 bytes")},
                            StreamAction::kFinishOk}},
                 .options = {.max_body_bytes = 64},
                 .metrics = {immediate_metric(413)}});

  all.push_back({.description = "body within max_body_bytes is routed",
                 .steps = routed_to_pod2(),
                 .options = {.max_body_bytes = 1024},
                 .inflight_before_end = 1});

  all.push_back(
      {.description = "request body mode NONE: routed at request_headers (random endpoint of the "
                      "hint); its request trailers are answered",
       .steps = {{post(kPod2 + " protocol_config { request_body_mode: NONE response_body_mode: "
                               "FULL_DUPLEX_STREAMED }"),
                  {headers_answer({.destination = "10.0.0.2:8000"})}},
                 {"request_trailers {}", {"request_trailers {}"}}},
       .inflight_before_end = 1,
       .metrics = {"infergate_extproc_streams_total 1.0"}});

  all.push_back(
      {.description = "FULL_DUPLEX_STREAMED advertised: the normal held answer",
       .steps = concat({{post(kPod2 + " protocol_config { request_body_mode: FULL_DUPLEX_STREAMED "
                                      "response_body_mode: FULL_DUPLEX_STREAMED }"),
                         {}}},
                       {routed_to_pod2()[1]}),
       .inflight_before_end = 1});

  all.push_back({.description = "request body mode BUFFERED refused",
                 .steps = {{post("protocol_config { request_body_mode: BUFFERED }"),
                            {},
                            StreamAction::kFinishError,
                            "request_body_mode BUFFERED is not supported"}},
                 .metrics = {protocol_error("unsupported_body_mode")}});

  all.push_back({.description = "response body mode STREAMED refused",
                 .steps = {{post("protocol_config { request_body_mode: FULL_DUPLEX_STREAMED "
                                 "response_body_mode: STREAMED }"),
                            {},
                            StreamAction::kFinishError,
                            "response_body_mode STREAMED is not supported"}},
                 .metrics = {protocol_error("unsupported_body_mode")}});

  all.push_back(
      {.description = "request trailers end the body: last body chunk without eos, then an empty "
                      "trailers answer",
       .steps =
           {{post(kPod2), {}},
            {request_body(kBody, false), {}},
            {"request_trailers { trailers { headers { key: \"x-checksum\" raw_value: \"1\" } } }",
             {headers_answer({.destination = "10.0.0.2:8000", .body_bytes = kRewritten.size()}),
              request_body_answer(kRewritten, false), "request_trailers {}"}}},
       .inflight_before_end = 1});

  all.push_back({.description = "request trailers that fail routing: only the local reply",
                 .steps = {{post(subset_hint("list_value {}")), {}},
                           {request_body(kBody, false), {}},
                           {"request_trailers {}",
                            {local_reply(503, "ServiceUnavailable", no_match)},
                            StreamAction::kFinishOk}}});

  all.push_back(
      {.description = "conformance test header picks the endpoint (takes precedence over the "
                      "subset hint) and is echoed",
       .steps = {{request_headers(post_headers({{"test-epp-endpoint-selection", "10.0.0.3"}}),
                                  false, kPod2),
                  {}},
                 {request_body(kBody, true),
                  {headers_answer(
                       {.destination = "10.0.0.3:8000",
                        .body_bytes = kRewritten.size(),
                        .echoed = post_echo({{"test-epp-endpoint-selection", "10.0.0.3"}})}),
                   request_body_answer(kRewritten)}}},
       .conformance_hooks = true,
       .inflight_before_end = 1});

  all.push_back(
      {.description = "endpoint scores: metadata on the request-headers answer and a response "
                      "header",
       .steps = concat(
           {{post(), {}},
            {request_body(kBody, true),
             {headers_answer({.destination = "10.0.0.1:8000",
                              .body_bytes = kRewritten.size(),
                              .scores = true}),
              request_body_answer(kRewritten)}}},
           {{response_headers("application/json"),
             {response_headers_answer({{"x-gateway-destination-endpoint-scores", "{scores}"}})}}}),
       .options = {.emit_endpoint_scores = true},
       .pool = Pool::kOnePod,
       .inflight_before_end = 1,
       .check = [](const StreamProcessor& processor) {
         ASSERT_NE(processor.routed(), nullptr);
         EXPECT_EQ(processor.routed()->endpoint_scores().rfind(R"({"10.0.0.1:8000":{"total":)", 0),
                   0u)
             << processor.routed()->endpoint_scores();
       }});

  all.push_back(
      {.description = "observability mode: processed (routed, accounted) but never answered",
       .steps = {{post(kPod2 + " observability_mode: true"), {}},
                 {request_body(kBody, true, "observability_mode: true"), {}},
                 {response_headers("application/json", "observability_mode: true"), {}},
                 {response_body(R"({"model":"food-review-v2"})", true) +
                      " observability_mode: true",
                  {}}},
       .check = [](const StreamProcessor& processor) {
         ASSERT_NE(processor.routed(), nullptr);
         EXPECT_EQ(processor.routed()->destination(), "10.0.0.2:8000");
         EXPECT_TRUE(processor.routed()->finished());
       }});

  all.push_back(
      {.description = "observability mode with a local reply: nothing sent, stream still ends",
       .steps = {{post("observability_mode: true"), {}},
                 {request_body("{", true, "observability_mode: true"),
                  {},
                  StreamAction::kFinishOk}},
       .metrics = {immediate_metric(400)}});
  return all;
}

std::vector<Transcript> response_path_cases() {
  std::vector<Transcript> all;

  // An SSE stream whose model name is split across two chunks; usage in the last data line.
  const std::string sse_1 = R"(data: {"id":"c1","model":"food-revi)";
  const std::string sse_2 = "ew-v2\",\"choices\":[{\"delta\":{\"content\":\"yes\"}}]}\n\n";
  const std::string sse_3 =
      "data: {\"id\":\"c1\",\"model\":\"food-review-v2\",\"choices\":[],\"usage\":{\"prompt_"
      "tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\ndata: [DONE]\n\n";
  all.push_back(
      {.description = "streamed SSE response: model restored across a chunk split, usage read, "
                      "served endpoint reported (conformance)",
       .steps = concat(
           routed_to_pod2(kStreamBody, kStreamRewritten),
           {{response_headers("text/event-stream", served("10.0.0.2:8000")),
             {response_headers_answer({{"x-conformance-test-served-endpoint", "10.0.0.2:8000"}})}},
            {response_body(sse_1, false), {response_body_answer(R"(data: {"id":"c1",)")}},
            {response_body(sse_2, false),
             {response_body_answer("\"model\":\"food-review\",\"choices\":[{\"delta\":{\"content\":"
                                   "\"yes\"}}]}\n\n")}},
            {response_body(sse_3, true),
             {response_body_answer("data: {\"id\":\"c1\",\"model\":\"food-review\",\"choices\":[],"
                                   "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_"
                                   "tokens\":10}}\n\ndata: [DONE]\n\n",
                                   true)}}}),
       .conformance_hooks = true,
       .check = [](const StreamProcessor& processor) {
         ASSERT_NE(processor.routed(), nullptr);
         EXPECT_TRUE(processor.routed()->finished());
         EXPECT_EQ(processor.routed()->served_endpoint(), "10.0.0.2:8000");
         ASSERT_TRUE(processor.routed()->usage().has_value());
         EXPECT_EQ(processor.routed()->usage()->prompt_tokens, 7);
         EXPECT_EQ(processor.routed()->usage()->completion_tokens, 3);
       }});

  const std::string json_1 = R"({"id":"c2","model":"food-review-v2",)";
  const std::string json_2 = R"("choices":[{"message":{"content":"yes"}}],)"
                             R"("usage":{"prompt_tokens":7,"completion_tokens":1}})";
  const std::string json_restored =
      R"({"id":"c2","model":"food-review","choices":[{"message":{"content":"yes"}}],)"
      R"("usage":{"prompt_tokens":7,"completion_tokens":1}})";
  all.push_back({.description = "JSON response: held until eos, then restored and sent with eos",
                 .steps = concat(
                     routed_to_pod2(),
                     {{response_headers("application/json", served("10.0.0.2:8000")),
                       {response_headers_answer()}},
                      {response_body(json_1, false), {}},
                      {response_body(json_2, true), {response_body_answer(json_restored, true)}}}),
                 .check = [](const StreamProcessor& processor) {
                   ASSERT_NE(processor.routed(), nullptr);
                   EXPECT_TRUE(processor.routed()->finished());
                   ASSERT_TRUE(processor.routed()->usage().has_value());
                   EXPECT_EQ(processor.routed()->usage()->completion_tokens, 1);
                 }});

  all.push_back(
      {.description = "JSON response larger than a chunk: restored at eos, sent in chunks",
       .steps = concat(routed_to_pod2(),
                       {{response_headers("application/json"), {response_headers_answer()}},
                        {response_body(json_1 + json_2, true),
                         {response_body_answer(json_restored.substr(0, 100)),
                          response_body_answer(json_restored.substr(100), true)}}}),
       .options = {.body_chunk_bytes = 100}});

  all.push_back(
      {.description = "response trailers: held bytes flushed without eos, then the trailers "
                      "answer; the request completes",
       .steps = concat(routed_to_pod2(),
                       {{response_headers("application/json"), {response_headers_answer()}},
                        {response_body(json_1, false), {}},
                        {response_body(json_2, false), {}},
                        {"response_trailers { trailers { headers { key: \"grpc-status\" "
                         "raw_value: \"0\" } } }",
                         {response_body_answer(json_restored, false), "response_trailers {}"}}}),
       .check = [](const StreamProcessor& processor) {
         ASSERT_NE(processor.routed(), nullptr);
         EXPECT_TRUE(processor.routed()->finished());
       }});

  all.push_back(
      {.description = "empty response body: one empty chunk with eos",
       .steps = concat(routed_to_pod2(),
                       {{response_headers("application/json"), {response_headers_answer()}},
                        {response_body("", true), {response_body_answer("", true)}}})});

  all.push_back({.description = "response headers with end_of_stream complete the request",
                 .steps = concat(routed_to_pod2(), {{response_headers("application/json", "", true),
                                                     {response_headers_answer()}}}),
                 .check = [](const StreamProcessor& processor) {
                   ASSERT_NE(processor.routed(), nullptr);
                   EXPECT_TRUE(processor.routed()->finished());
                 }});

  all.push_back(
      {.description = "conformance: no envoy.lb metadata on the response headers",
       .steps = concat(routed_to_pod2(),
                       {{response_headers("application/json"),
                         {response_headers_answer({{"x-conformance-test-served-endpoint",
                                                    "fail: missing envoy lb metadata"}})}}}),
       .conformance_hooks = true,
       .inflight_before_end = 1});

  all.push_back(
      {.description = "conformance: envoy.lb metadata without the served key",
       .steps = concat(
           routed_to_pod2(),
           {{response_headers(
                 "application/json",
                 lb_metadata(R"(fields { key: "other" value { string_value: "x" } })")),
             {response_headers_answer({{"x-conformance-test-served-endpoint",
                                        "fail: missing destination endpoint served metadata"}})}}}),
       .conformance_hooks = true,
       .inflight_before_end = 1});

  all.push_back(
      {.description = "without conformance hooks the served endpoint is recorded, not echoed",
       .steps =
           concat(routed_to_pod2(), {{response_headers("application/json", served("10.0.0.2:8000")),
                                      {response_headers_answer()}}}),
       .inflight_before_end = 1,
       .check = [](const StreamProcessor& processor) {
         ASSERT_NE(processor.routed(), nullptr);
         EXPECT_EQ(processor.routed()->served_endpoint(), "10.0.0.2:8000");
       }});

  all.push_back(
      {.description = "stream ends mid-response: on_stream_end releases the in-flight request",
       .steps = concat(routed_to_pod2(kStreamBody, kStreamRewritten),
                       {{response_headers("text/event-stream"), {response_headers_answer()}},
                        {response_body("data: {\"choices\":[]}\n\n", false),
                         {response_body_answer("data: {\"choices\":[]}\n\n")}}}),
       .inflight_before_end = 1,
       .metrics = {"infergate_extproc_active_streams 0.0"}});
  return all;
}

std::vector<Transcript> out_of_order_cases() {
  std::vector<Transcript> all;
  auto violation = [](std::string input, std::string error) {
    return Step{std::move(input), {}, StreamAction::kFinishError, std::move(error)};
  };

  all.push_back({.description = "request_body before request_headers",
                 .steps = {violation(request_body(kBody, true), "before request_headers")},
                 .metrics = {protocol_error("body_before_headers")}});
  all.push_back({.description = "second request_headers",
                 .steps = {{post(), {}}, violation(post(), "request_headers received twice")},
                 .metrics = {protocol_error("duplicate_request_headers")}});
  all.push_back({.description = "request_trailers before request_headers",
                 .steps = {violation("request_trailers {}", "before request_headers")},
                 .metrics = {protocol_error("trailers_before_headers")}});
  all.push_back(
      {.description = "request_body after the body's end_of_stream",
       .steps = concat(routed_to_pod2(),
                       {violation(request_body("x", true), "after the request's end_of_stream")}),
       .metrics = {protocol_error("body_after_end_of_stream")}});
  all.push_back({.description = "request_body after a body-less request_headers",
                 .steps = {{get(kPod2),
                            {headers_answer({.destination = "10.0.0.2:8000",
                                             .echoed = {{"x-request-id", "req-1"}}})}},
                           violation(request_body("x", true), "after the request's end_of_stream")},
                 .metrics = {protocol_error("body_after_end_of_stream")}});
  all.push_back({.description = "request_body in request body mode NONE",
                 .steps = {{post(kPod2 + " protocol_config { request_body_mode: NONE }"),
                            {headers_answer({.destination = "10.0.0.2:8000"})}},
                           violation(request_body("x", true), "request_body_mode is NONE")},
                 .metrics = {protocol_error("body_in_mode_none")}});
  all.push_back(
      {.description = "request_trailers after the body's end_of_stream: answered anyway, counted",
       .steps = concat(routed_to_pod2(), {{"request_trailers {}", {"request_trailers {}"}}}),
       .inflight_before_end = 1,
       .metrics = {protocol_error("trailers_after_end_of_stream")}});
  all.push_back(
      {.description = "response_headers while the request body is still arriving",
       .steps = {{post(kPod2), {}},
                 {request_body(kBody.substr(0, 10), false), {}},
                 violation(response_headers("application/json"), "before the request was routed")},
       .metrics = {protocol_error("response_before_routing")}});
  all.push_back({.description = "response_body before any request",
                 .steps = {violation(response_body("x", true), "before the request was routed")},
                 .metrics = {protocol_error("response_before_routing")}});
  all.push_back(
      {.description = "response_trailers before the request was routed",
       .steps = {{post(), {}}, violation("response_trailers {}", "before the request was routed")},
       .metrics = {protocol_error("response_before_routing")}});
  all.push_back({.description = "response_body before response_headers",
                 .steps = concat(routed_to_pod2(),
                                 {violation(response_body("x", true), "before response_headers")}),
                 .metrics = {protocol_error("response_body_before_headers")}});
  all.push_back({.description = "response_trailers before response_headers",
                 .steps = concat(routed_to_pod2(),
                                 {violation("response_trailers {}", "before response_headers")}),
                 .metrics = {protocol_error("response_trailers_before_headers")}});
  all.push_back(
      {.description = "second response_headers",
       .steps = concat(
           routed_to_pod2(),
           {{response_headers("application/json"), {response_headers_answer()}},
            violation(response_headers("application/json"), "response_headers received twice")}),
       .metrics = {protocol_error("duplicate_response_headers")}});
  all.push_back(
      {.description = "response_body after the response's end_of_stream",
       .steps = concat(routed_to_pod2(),
                       {{response_headers("application/json"), {response_headers_answer()}},
                        {response_body("{}", true), {response_body_answer("{}", true)}},
                        violation(response_body("x", true), "after the response's end_of_stream")}),
       .metrics = {protocol_error("body_after_end_of_stream")}});
  all.push_back(
      {.description = "response_trailers after the response's end_of_stream: answered, counted",
       .steps = concat(routed_to_pod2(),
                       {{response_headers("application/json"), {response_headers_answer()}},
                        {response_body("{}", true), {response_body_answer("{}", true)}},
                        {"response_trailers {}", {"response_trailers {}"}}}),
       .metrics = {protocol_error("trailers_after_end_of_stream")}});
  all.push_back({.description = "a message with no part set",
                 .steps = {violation("", "must carry one request part")},
                 .metrics = {protocol_error("empty_message")}});
  all.push_back({.description = "protocol_config alone (no part set)",
                 .steps = {violation("protocol_config { request_body_mode: FULL_DUPLEX_STREAMED }",
                                     "must carry one request part")},
                 .metrics = {protocol_error("empty_message")}});
  all.push_back(
      {.description = "protocol_config on a later message",
       .steps = {{post(), {}},
                 violation(request_body(kBody, true, "protocol_config {}"), "first message")},
       .metrics = {protocol_error("late_protocol_config")}});
  all.push_back(
      {.description = "messages after a protocol violation are dropped",
       .steps = {violation(request_body(kBody, true), "before request_headers"),
                 {post(), {}},
                 {request_body(kBody, true), {}}},
       .metrics = {
           protocol_error("body_before_headers"),
           R"(infergate_extproc_protocol_errors_total{reason="after_protocol_error"} 2.0)"}});
  all.push_back(
      {.description = "a violation after routing releases the in-flight request at once",
       .steps = concat(routed_to_pod2(), {violation(post(), "request_headers received twice")}),
       .metrics = {protocol_error("duplicate_request_headers")}});
  return all;
}

std::vector<Transcript> all_cases() {
  std::vector<Transcript> all = request_path_cases();
  for (std::vector<Transcript> more : {response_path_cases(), out_of_order_cases()}) {
    all.insert(all.end(), more.begin(), more.end());
  }
  return all;
}

// ---------------------------------------------------------------------------------------------
// The runner.

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

// The exposition lines of the metric named `name`.
std::string lines_of(const std::string& text, std::string_view name) {
  std::string out;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = std::min(text.find('\n', start), text.size());
    const std::string_view line = std::string_view(text).substr(start, end - start);
    if (line.starts_with(name)) out.append(line).append("\n");
    start = end + 1;
  }
  return out;
}

std::string describe(const Answers& answers) {
  std::string all;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    all += fmt::format("--- answer {} ---\n{}", i, answers[i].DebugString());
  }
  return all.empty() ? "(none)\n" : all;
}

class StreamProcessorTranscript : public ::testing::TestWithParam<Transcript> {};

TEST_P(StreamProcessorTranscript, Answers) {
  const Transcript& transcript = GetParam();
  // Each transcript twice: messages handed over parsed (gRPC's callback transport) and as wire
  // bytes decoded in place (the native transport).
  for (const bool from_wire : {false, true}) {
    SCOPED_TRACE(from_wire ? "decoded from the wire" : "parsed message");
    ManualClock clock;
    datastore::Datastore store;
    std::vector<datastore::EndpointSpec> pods;
    if (transcript.pool != Pool::kEmpty) {
      pods.push_back(
          {.pod_name = "pod-1", .namespace_name = "default", .address = "10.0.0.1", .port = 8000});
    }
    if (transcript.pool == Pool::kThreePods) {
      pods.push_back(
          {.pod_name = "pod-2", .namespace_name = "default", .address = "10.0.0.2", .port = 8000});
      pods.push_back(
          {.pod_name = "pod-3", .namespace_name = "default", .address = "10.0.0.3", .port = 8000});
    }
    store.set_endpoints(pods);

    api::InferenceModelRewrite rewrite;
    rewrite.metadata.name = "food-review-canary";
    rewrite.rules.push_back({.matches = {{.value = "food-review"}},
                             .targets = {{.model_rewrite = "food-review-v2", .weight = 1}}});
    auto policies = std::make_shared<const datastore::ModelPolicies>(
        std::vector<api::InferenceObjective>{}, std::vector<api::InferenceModelRewrite>{rewrite});
    auto setup = scheduling::build_scheduler(api::default_endpoint_picker_config());
    ASSERT_TRUE(setup.ok()) << setup.status().message();
    prom::Registry registry;
    director::Director director(store, std::move(*setup), policies, clock, registry,
                                {.conformance_hooks = transcript.conformance_hooks, .seed = 7});
    ProcessorMetrics metrics(registry);

    auto inflight = [&] {
      std::int64_t total = 0;
      for (const auto& endpoint : store.snapshot()->endpoints) {
        total += endpoint.state->inflight_requests.load();
      }
      return total;
    };

    {
      StreamProcessor processor(director, transcript.options, metrics);
      for (std::size_t step_idx = 0; step_idx < transcript.steps.size(); ++step_idx) {
        const Step& step = transcript.steps[step_idx];
        SCOPED_TRACE(fmt::format("step {}: {:.300}", step_idx, step.input));
        pb::ProcessingRequest message;
        ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(step.input, &message))
            << "the input does not parse";
        Answers out;
        StreamAction action = StreamAction::kContinue;
        if (from_wire) {
          // As the native transport reads it: decoded in place from the serialised bytes.
          const std::string wire = message.SerializeAsString();
          pb::ProcessingRequest rest;
          ViewStorage storage;
          RequestView view;
          ASSERT_TRUE(decode_request(wire, rest, storage, view));
          action = processor.on_message(view, out);
        } else {
          action = processor.on_message(message, out);
        }
        EXPECT_EQ(action, step.action) << "error message: " << processor.error_message();
        if (step.action == StreamAction::kFinishError) {
          EXPECT_NE(processor.error_message().find(step.error), std::string::npos)
              << "error message: " << processor.error_message();
        }
        ASSERT_EQ(out.size(), step.expected.size()) << "answers:\n" << describe(out);
        for (std::size_t answer_idx = 0; answer_idx < out.size(); ++answer_idx) {
          std::string expected_text = step.expected[answer_idx];
          if (const auto* routed = processor.routed()) {
            replace_all(expected_text, "{request_id}", routed->request_id());
            replace_all(expected_text, "{scores}", escaped(routed->endpoint_scores()));
          }
          pb::ProcessingResponse expected;
          ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(expected_text, &expected))
              << "expected answer " << answer_idx << " does not parse: " << expected_text;
          std::string differences;
          google::protobuf::util::MessageDifferencer differencer;
          differencer.ReportDifferencesToString(&differences);
          EXPECT_TRUE(differencer.Compare(expected, out[answer_idx]))
              << "answer " << answer_idx << " differs:\n"
              << differences << "got:\n"
              << out[answer_idx].DebugString() << "want:\n"
              << expected.DebugString();
        }
      }
      if (transcript.check) transcript.check(processor);
      EXPECT_EQ(inflight(), transcript.inflight_before_end) << "in-flight before the stream end";
      EXPECT_NE(registry.expose().find("infergate_extproc_active_streams 1.0"), std::string::npos);
      processor.on_stream_end();
      processor.on_stream_end();  // idempotent
      EXPECT_EQ(inflight(), 0) << "in-flight after the stream end";
    }
    EXPECT_EQ(inflight(), 0);
    const std::string text = registry.expose();
    EXPECT_NE(text.find("infergate_extproc_streams_total 1.0"), std::string::npos) << text;
    EXPECT_NE(text.find("infergate_extproc_active_streams 0.0"), std::string::npos) << text;
    for (const std::string& line : transcript.metrics) {
      EXPECT_NE(text.find(line), std::string::npos)
          << "missing in /metrics: " << line << "\nthat metric's lines:\n"
          << lines_of(text, line.substr(0, line.find_first_of("{ ")));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, StreamProcessorTranscript, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Transcript>& info) {
                           std::string name = fmt::format("{:02}_", info.index);
                           for (const char c : info.param.description.substr(0, 60)) {
                             name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           }
                           return name;
                         });

// The families are registered once, with their HELP and TYPE lines, even before any stream.
TEST(ProcessorMetricsTest, FamiliesExposed) {
  prom::Registry registry;
  ProcessorMetrics metrics(registry);
  metrics.immediate_response(418);
  metrics.immediate_response(503);
  metrics.protocol_error("empty_message");
  const std::string text = registry.expose();
  for (const char* expected :
       {"# TYPE infergate_extproc_streams_total counter", "infergate_extproc_streams_total 0.0",
        "# TYPE infergate_extproc_active_streams gauge", "infergate_extproc_active_streams 0.0",
        "# TYPE infergate_extproc_immediate_responses_total counter",
        R"(infergate_extproc_immediate_responses_total{code="418"} 1.0)",
        R"(infergate_extproc_immediate_responses_total{code="503"} 1.0)",
        R"(infergate_extproc_immediate_responses_total{code="400"} 0.0)",
        "# TYPE infergate_extproc_protocol_errors_total counter",
        R"(infergate_extproc_protocol_errors_total{reason="empty_message"} 1.0)"}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << "\n" << text;
  }
}

// Streams that end without any message, and processors destroyed without on_stream_end().
TEST(StreamProcessorLifetimeTest, DestructorEndsTheStreamAndReleasesTheRequest) {
  ManualClock clock;
  datastore::Datastore store;
  store.set_endpoints(
      {{.pod_name = "pod-1", .namespace_name = "default", .address = "10.0.0.1", .port = 8000}});
  auto setup = scheduling::build_scheduler(api::default_endpoint_picker_config());
  ASSERT_TRUE(setup.ok());
  prom::Registry registry;
  director::Director director(store, std::move(*setup), nullptr, clock, registry, {.seed = 7});
  ProcessorMetrics metrics(registry);
  const ProcessorOptions options;
  {
    StreamProcessor processor(director, options, metrics);
    pb::ProcessingRequest message;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(get(), &message));
    Answers out;
    EXPECT_EQ(processor.on_message(message, out), StreamAction::kContinue);
    EXPECT_EQ(out.size(), 1u);
    EXPECT_EQ(store.snapshot()->endpoints.front().state->inflight_requests.load(), 1);
    StreamProcessor idle(director, options, metrics);
    EXPECT_NE(registry.expose().find("infergate_extproc_active_streams 2.0"), std::string::npos);
  }
  EXPECT_EQ(store.snapshot()->endpoints.front().state->inflight_requests.load(), 0);
  const std::string text = registry.expose();
  EXPECT_NE(text.find("infergate_extproc_streams_total 2.0"), std::string::npos) << text;
  EXPECT_NE(text.find("infergate_extproc_active_streams 0.0"), std::string::npos) << text;
}

// The request body is moved out of the message, not copied.
TEST(StreamProcessorLifetimeTest, TheMessageIsOnlyRead) {
  ManualClock clock;
  datastore::Datastore store;
  store.set_endpoints(
      {{.pod_name = "pod-1", .namespace_name = "default", .address = "10.0.0.1", .port = 8000}});
  auto setup = scheduling::build_scheduler(api::default_endpoint_picker_config());
  ASSERT_TRUE(setup.ok());
  prom::Registry registry;
  director::Director director(store, std::move(*setup), nullptr, clock, registry, {.seed = 7});
  ProcessorMetrics metrics(registry);
  const ProcessorOptions options;
  StreamProcessor processor(director, options, metrics);
  Answers out;
  pb::ProcessingRequest message;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(post(), &message));
  ASSERT_EQ(processor.on_message(message, out), StreamAction::kContinue);
  message.Clear();
  message.mutable_request_body()->set_body(kBody);
  message.mutable_request_body()->set_end_of_stream(true);
  const pb::ProcessingRequest sent = message;
  ASSERT_EQ(processor.on_message(message, out), StreamAction::kContinue);
  EXPECT_EQ(message.SerializeAsString(), sent.SerializeAsString());
  ASSERT_EQ(out.size(), 2u);
  // No rewrite configured: the body goes back byte for byte.
  EXPECT_EQ(out[1].request_body().response().body_mutation().streamed_response().body(), kBody);
}

TEST(Answers, KeepOrderTruncateAndLiveOnTheArenaWhenGiven) {
  google::protobuf::Arena arena;
  Answers on_heap;
  Answers on_arena(&arena);
  for (Answers* answers : {&on_heap, &on_arena}) {
    answers->emplace_back().mutable_request_headers();
    answers->emplace_back().mutable_request_body();
    answers->emplace_back().mutable_response_trailers();
    ASSERT_EQ(answers->size(), 3u);
    answers->pop_back();
    answers->truncate(5);  // never grows
    ASSERT_EQ(answers->size(), 2u);
    EXPECT_TRUE((*answers)[0].has_request_headers());
    EXPECT_TRUE((*answers)[1].has_request_body());
    std::size_t seen = 0;
    for (const pb::ProcessingResponse& answer : *answers) {
      EXPECT_EQ(answer.has_request_headers(), seen == 0);
      ++seen;
    }
    EXPECT_EQ(seen, 2u);
    answers->truncate(1);
    EXPECT_EQ(answers->size(), 1u);
  }
  EXPECT_EQ(on_heap[0].GetArena(), nullptr);
  EXPECT_EQ(on_arena[0].GetArena(), &arena);
  on_arena.clear();
  EXPECT_TRUE(on_arena.empty());
}

}  // namespace
}  // namespace infergate::extproc
