// ext_proc transcripts: each case feeds a sequence of ProcessingRequest messages (protobuf text
// format) to one StreamProcessor and compares every answer with the expected ProcessingResponse
// sequence, message by message.
#include <fmt/format.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "api/endpoint_picker_config.h"
#include "extproc/stream_processor.h"
#include "prom/registry.h"

namespace infergate::extproc {
namespace {

struct Step {
  std::string input;                  // one ProcessingRequest, text format
  std::vector<std::string> expected;  // its answers, text format
  StreamAction action = StreamAction::kContinue;
};

struct Transcript {
  std::string description;
  std::vector<Step> steps;
  ProcessorOptions options{};
  bool conformance_hooks = false;
};
void PrintTo(const Transcript& transcript, std::ostream* os) { *os << transcript.description; }

// Text-format snippets.
std::string header(std::string_view key, std::string_view value) {
  return fmt::format(R"(headers {{ key: "{}" raw_value: "{}" }})", key, value);
}
std::string set_header(std::string_view key, std::string_view value) {
  return fmt::format(R"(set_headers {{ header {{ key: "{}" raw_value: "{}" }} }})", key, value);
}
std::string escaped(std::string_view bytes) {
  std::string out;
  for (char c : bytes) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}
std::string request_headers(bool end_of_stream, std::string extra = {}) {
  return fmt::format(
      R"(request_headers {{ headers {{ {} {} {} {} {} {} }} end_of_stream: {} }} {})",
      header(":method", end_of_stream ? "GET" : "POST"),
      header(":path", end_of_stream ? "/v1/models" : "/v1/chat/completions"),
      header(":authority", "gw.example.com"), header("content-type", "application/json"),
      header("x-request-id", "req-1"), header("x-gateway-inference-objective", "chat"),
      end_of_stream ? "true" : "false", extra);
}
std::string request_body(std::string_view bytes, bool end_of_stream) {
  return fmt::format(R"(request_body {{ body: "{}" end_of_stream: {} }})", escaped(bytes),
                     end_of_stream ? "true" : "false");
}
std::string subset(std::string_view value_text) {
  return fmt::format(
      R"(metadata_context {{ filter_metadata {{ key: "envoy.lb.subset_hint" value {{ fields {{ key: "x-gateway-destination-endpoint-subset" value {{ {} }} }} }} }} }})",
      value_text);
}
// The request-headers answer for `destination` and a body of `length` bytes.
std::string headers_answer(std::string_view destination, std::size_t length,
                           std::string extra_metadata = {}) {
  std::string headers = set_header("x-gateway-destination-endpoint", destination);
  if (length > 0) headers += " " + set_header("content-length", std::to_string(length));
  headers += " " + set_header("content-type", "application/json") + " " +
             set_header("x-request-id", "req-1");
  return fmt::format(
      R"(request_headers {{ response {{ header_mutation {{ {} }} clear_route_cache: true }} }} dynamic_metadata {{ fields {{ key: "envoy.lb" value {{ struct_value {{ fields {{ key: "x-gateway-destination-endpoint" value {{ string_value: "{}" }} }} {} }} }} }} }})",
      headers, destination, extra_metadata);
}
std::string body_answer(std::string_view direction, std::string_view bytes, bool end_of_stream) {
  return fmt::format(
      R"({} {{ response {{ body_mutation {{ streamed_response {{ body: "{}" end_of_stream: {} }} }} }} }})",
      direction, escaped(bytes), end_of_stream ? "true" : "false");
}
std::string immediate(int code, std::string_view body, std::string_view name) {
  return fmt::format(
      R"(immediate_response {{ status {{ code: {} }} headers {{ {} }} body: "{}" details: "inference_error_{}" }})",
      code, set_header("content-type", "text/plain; charset=utf-8"), escaped(body), name);
}
std::string response_headers(std::string_view content_type, std::string served_metadata) {
  return fmt::format(R"(response_headers {{ headers {{ {} {} }} }} {})", header(":status", "200"),
                     header("content-type", content_type), served_metadata);
}
std::string served(std::string_view endpoint) {
  return fmt::format(
      R"(metadata_context {{ filter_metadata {{ key: "envoy.lb" value {{ fields {{ key: "x-gateway-destination-endpoint-served" value {{ string_value: "{}" }} }} }} }} }})",
      endpoint);
}

const std::string kBody = R"({"model":"food-review","messages":[{"role":"user","content":"hi"}]})";
const std::string kRewritten =
    R"({"model":"food-review-v2","messages":[{"role":"user","content":"hi"}]})";
const std::string kOnePod = subset(R"(list_value { values { string_value: "10.0.0.2:8000" } })");

class TranscriptTest : public ::testing::TestWithParam<Transcript> {};

// A pool of three endpoints; model "food-review" is rewritten to "food-review-v2".
TEST_P(TranscriptTest, AnswersMatch) {
  const Transcript& transcript = GetParam();
  ManualClock clock;
  datastore::Datastore store;
  store.set_endpoints(
      {{.pod_name = "a", .namespace_name = "default", .address = "10.0.0.1", .port = 8000},
       {.pod_name = "b", .namespace_name = "default", .address = "10.0.0.2", .port = 8000},
       {.pod_name = "c", .namespace_name = "default", .address = "10.0.0.3", .port = 8000}});
  api::InferenceModelRewrite rewrite;
  rewrite.metadata.name = "canary";
  rewrite.rules.push_back({.matches = {{.value = "food-review"}},
                           .targets = {{.model_rewrite = "food-review-v2", .weight = 1}}});
  auto policies = std::make_shared<const datastore::ModelPolicies>(
      std::vector<api::InferenceObjective>{}, std::vector<api::InferenceModelRewrite>{rewrite});
  auto setup = scheduling::build_scheduler(api::default_endpoint_picker_config());
  ASSERT_TRUE(setup.ok());
  prom::Registry registry;
  director::Director director(store, std::move(*setup), policies, clock, registry,
                              {.conformance_hooks = transcript.conformance_hooks, .seed = 3});
  ProcessorMetrics metrics(registry);
  {
    StreamProcessor processor(director, transcript.options, metrics);
    for (std::size_t i = 0; i < transcript.steps.size(); ++i) {
      const Step& step = transcript.steps[i];
      pb::ProcessingRequest message;
      ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(step.input, &message))
          << "step " << i << " input does not parse: " << step.input;
      std::vector<pb::ProcessingResponse> out;
      EXPECT_EQ(processor.on_message(message, out), step.action)
          << "step " << i << ": " << processor.error_message();
      ASSERT_EQ(out.size(), step.expected.size()) << "step " << i << " answered:\n"
                                                  << [&] {
                                                       std::string all;
                                                       for (auto& r : out) all += r.DebugString();
                                                       return all;
                                                     }();
      for (std::size_t j = 0; j < out.size(); ++j) {
        pb::ProcessingResponse expected;
        ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(step.expected[j], &expected))
            << "step " << i << " expected answer " << j << " does not parse";
        EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(out[j], expected))
            << "step " << i << " answer " << j << "\n got:\n"
            << out[j].DebugString() << " want:\n"
            << expected.DebugString();
      }
    }
    processor.on_stream_end();
  }
  // Whatever happened, the stream released its in-flight accounting.
  for (const auto& endpoint : store.snapshot()->endpoints) {
    EXPECT_EQ(endpoint.state->inflight_requests.load(), 0) << endpoint.info->name;
  }
  EXPECT_NE(registry.expose().find("infergate_extproc_streams_total 1.0"), std::string::npos);
}

std::vector<Transcript> transcripts() {
  std::vector<Transcript> all;
  const std::string big(150000, 'x');
  const std::string big_body =
      R"({"model":"m","messages":[{"role":"user","content":")" + big + R"("}]})";

  all.push_back({"body in one chunk: headers answer held until eos, then body echoed rewritten",
                 {{request_headers(false, kOnePod), {}},
                  {request_body(kBody, true),
                   {headers_answer("10.0.0.2:8000", kRewritten.size()),
                    body_answer("request_body", kRewritten, true)}}}});
  all.push_back({"body in three chunks",
                 {{request_headers(false, kOnePod), {}},
                  {request_body(kBody.substr(0, 10), false), {}},
                  {request_body(kBody.substr(10, 20), false), {}},
                  {request_body(kBody.substr(30), true),
                   {headers_answer("10.0.0.2:8000", kRewritten.size()),
                    body_answer("request_body", kRewritten, true)}}}});
  all.push_back({"a 150,000-byte body goes back as 62,000 + 62,000 + rest",
                 {{request_headers(false, kOnePod), {}},
                  {request_body(big_body, true),
                   {headers_answer("10.0.0.2:8000", big_body.size()),
                    body_answer("request_body", big_body.substr(0, 62000), false),
                    body_answer("request_body", big_body.substr(62000, 62000), false),
                    body_answer("request_body", big_body.substr(124000), true)}}}});
  all.push_back({"body-less request: answered at once, random endpoint of the subset",
                 {{request_headers(true, kOnePod), {headers_answer("10.0.0.2:8000", 0)}}}});
  all.push_back(
      {"subset hint as one comma-separated string",
       {{request_headers(false, subset(R"(string_value: "10.0.0.3:8000, 10.9.9.9:1")")), {}},
        {request_body(kBody, true),
         {headers_answer("10.0.0.3:8000", kRewritten.size()),
          body_answer("request_body", kRewritten, true)}}}});
  all.push_back({"empty subset list: 503",
                 {{request_headers(false, subset("list_value {}")), {}},
                  {request_body(kBody, true),
                   {immediate(503,
                              "inference error: ServiceUnavailable - no endpoint of the pool "
                              "matches the request's subset",
                              "ServiceUnavailable")},
                   StreamAction::kFinishOk}}});
  all.push_back(
      {"malformed JSON: 400",
       {{request_headers(false), {}},
        {request_body("{\"model\":", true),
         {immediate(
             400,
             "inference error: BadRequest - request body is not valid JSON: JSON document ended "
             "early in the middle of an object or array.",
             "BadRequest")},
         StreamAction::kFinishOk},
        // After a local reply everything is dropped.
        {request_body("more", true), {}}}});
  all.push_back({"oversize body: 413 before the end of the body",
                 {{request_headers(false), {}},
                  {request_body(std::string(60, 'a'), false),
                   {immediate(413,
                              "inference error: PayloadTooLarge - the request body exceeds the "
                              "limit of 50 bytes",
                              "PayloadTooLarge")},
                   StreamAction::kFinishOk}},
                 {.max_body_bytes = 50}});
  all.push_back({"request trailers end the body: last body chunk without eos, trailers answered",
                 {{request_headers(false, kOnePod), {}},
                  {request_body(kBody, false), {}},
                  {"request_trailers {}",
                   {headers_answer("10.0.0.2:8000", kRewritten.size()),
                    body_answer("request_body", kRewritten, false), "request_trailers {}"}}}});
  all.push_back({"NONE body mode: routed at request_headers",
                 {{request_headers(false, kOnePod + " protocol_config { request_body_mode: NONE }"),
                   {headers_answer("10.0.0.2:8000", 0)}}}});
  all.push_back({"BUFFERED body mode is refused",
                 {{request_headers(false, "protocol_config { request_body_mode: BUFFERED }"),
                   {},
                   StreamAction::kFinishError}}});
  all.push_back({"body before headers is a protocol error",
                 {{request_body(kBody, true), {}, StreamAction::kFinishError}}});
  all.push_back(
      {"second request_headers is a protocol error",
       {{request_headers(false), {}}, {request_headers(false), {}, StreamAction::kFinishError}}});
  all.push_back({"response before routing is a protocol error",
                 {{request_headers(false), {}},
                  {response_headers("application/json", ""), {}, StreamAction::kFinishError}}});
  all.push_back({"empty message is a protocol error", {{"", {}, StreamAction::kFinishError}}});
  all.push_back(
      {"late protocol_config is a protocol error",
       {{request_headers(false), {}},
        {request_body(kBody, true) + " protocol_config {}", {}, StreamAction::kFinishError}}});
  all.push_back({"observability mode: processed, never answered",
                 {{request_headers(false, kOnePod + " observability_mode: true"), {}},
                  {request_body(kBody, true) + " observability_mode: true", {}}}});

  const std::string sse_2 =
      "\n\ndata: {\"model\":\"food-review-v2\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
      "\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
  all.push_back(
      {"streamed response: model name restored per chunk, served endpoint echoed (conformance)",
       {{request_headers(false, kOnePod), {}},
        {request_body(kBody, true),
         {headers_answer("10.0.0.2:8000", kRewritten.size()),
          body_answer("request_body", kRewritten, true)}},
        {response_headers("text/event-stream", served("10.0.0.2:8000")),
         {"response_headers { response { header_mutation { " +
          set_header("x-conformance-test-served-endpoint", "10.0.0.2:8000") + " } } }"}},
        // The split inside the model value is held back until the next chunk.
        {R"(response_body { body: "data: {\"model\":\"food-revi" })",
         {body_answer("response_body", "data: {", false)}},
        {R"(response_body { body: "ew-v2\",\"choices\":[]})" + escaped(sse_2) +
             R"(" end_of_stream: true })",
         {body_answer("response_body",
                      R"("model":"food-review","choices":[]})"
                      "\n\ndata: {\"model\":\"food-review\",\"choices\":[],\"usage\":{\"prompt_"
                      "tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
                      true)}}},
       {},
       true});
  all.push_back(
      {"conformance: missing served metadata is reported",
       {{request_headers(false, kOnePod), {}},
        {request_body(kBody, true),
         {headers_answer("10.0.0.2:8000", kRewritten.size()),
          body_answer("request_body", kRewritten, true)}},
        {response_headers("application/json", ""),
         {"response_headers { response { header_mutation { " +
          set_header("x-conformance-test-served-endpoint", "fail: missing envoy lb metadata") +
          " } } }"}}},
       {},
       true});
  all.push_back(
      {"JSON response held until eos, model restored; trailers answered after the body",
       {{request_headers(false, kOnePod), {}},
        {request_body(kBody, true),
         {headers_answer("10.0.0.2:8000", kRewritten.size()),
          body_answer("request_body", kRewritten, true)}},
        {response_headers("application/json", served("10.0.0.2:8000")),
         {"response_headers { response {} }"}},
        {R"(response_body { body: "{\"model\":\"food-review-v2\"," })", {}},
        {R"(response_body { body: "\"usage\":{\"completion_tokens\":1}}" })", {}},
        {"response_trailers {}",
         {body_answer("response_body", R"({"model":"food-review","usage":{"completion_tokens":1}})",
                      false),
          "response_trailers {}"}}}});
  all.push_back(
      {"endpoint scores in metadata and as a response header when enabled",
       {{request_headers(false, subset(R"(list_value { values { string_value: "10.0.0.1" } })")),
         {}},
        {request_body(kBody, true),
         {headers_answer(
              "10.0.0.1:8000", kRewritten.size(),
              R"(fields { key: "x-gateway-destination-endpoint-scores" value { string_value: "{\"10.0.0.1:8000\":{\"total\":4.0,\"queue-scorer\":1.0,\"kv-cache-utilization-scorer\":1.0,\"prefix-cache-scorer\":0.0}}" } })"),
          body_answer("request_body", kRewritten, true)}}},
       {.emit_endpoint_scores = true}});
  return all;
}

INSTANTIATE_TEST_SUITE_P(Transcripts, TranscriptTest, ::testing::ValuesIn(transcripts()),
                         [](const ::testing::TestParamInfo<Transcript>& info) {
                           return "case_" + std::to_string(info.index);
                         });

}  // namespace
}  // namespace infergate::extproc
