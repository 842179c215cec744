#include "extproc/stream_processor.h"

#include <fmt/format.h>

#include <algorithm>

#include "director/protocol.h"
#include "prom/registry.h"

// How each message is handled in each state (R = request direction, P = response direction).
//
//   message             state                      action
//   protocol_config     first message              NONE or FULL_DUPLEX_STREAMED accepted, else
//                                                  error "unsupported_body_mode"
//                       later message              error "late_protocol_config"
//   request_headers     R kAwaitHeaders            eos or body mode NONE: route now and answer;
//                                                  else hold the answer, R → kBody
//                       otherwise                  error "duplicate_request_headers"
//   request_body        R kBody                    append (413 over max_body_bytes); at eos route
//                                                  and answer headers + body chunks, R → kRouted
//                       R kAwaitHeaders            error "body_before_headers"
//                       R kRouted                  error "body_after_end_of_stream"
//   request_trailers    R kBody                    route, answer headers + body chunks (the last
//                                                  without eos) + an empty trailers answer
//                       R kRouted                  ignored (counted "unexpected_request_trailers")
//                       R kAwaitHeaders            error "trailers_before_headers"
//   response_headers    R kRouted, P kAwaitHeaders answer (served-endpoint / scores headers)
//                       R not routed               error "response_before_routing"
//                       P past headers             error "duplicate_response_headers"
//   response_body       R kRouted, P kBody         answer what the routed request releases
//                       P kAwaitHeaders            error "response_body_before_headers"
//                       P kDone                    error "body_after_end_of_stream"
//   response_trailers   R kRouted                  flush the body (no eos) and answer trailers
//   (none set)          any                        error "empty_message"
//   anything            after a local reply        dropped (counted "after_local_reply")
//
// Errors end the stream with a gRPC error; Envoy then applies its failure mode. A local reply
// (ImmediateResponse) ends the exchange too: the stream is finished with OK after it.

namespace infergate::extproc {
namespace {

using ::envoy::config::core::v3::HeaderMap;
using ::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;
namespace protocol = director::protocol;

void read_headers(const HeaderMap& map, director::Headers& out) {
  out.clear();
  out.reserve(static_cast<std::size_t>(map.headers_size()));
  for (const auto& header : map.headers()) {
    std::string name = header.key();
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) {
      return static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    });
    // Envoy sends raw_value; value only for robustness with older data planes.
    out.emplace_back(std::move(name),
                     header.raw_value().empty() ? header.value() : header.raw_value());
  }
}

void set_header(pb::HeaderMutation& mutation, std::string_view name, std::string_view value) {
  auto* header = mutation.add_set_headers()->mutable_header();
  header->set_key(std::string(name));
  header->set_raw_value(std::string(value));
}

void split_list(std::string_view text, std::vector<std::string>& out) {
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view entry = text.substr(0, comma);
    while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
    while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
    if (!entry.empty()) out.emplace_back(entry);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
}

// The subset hint of a message: a list of strings, or one comma-separated string (as the
// lightweight conformance EPP also accepts); nullopt when the message carries none.
std::optional<std::vector<std::string>> read_subset(const pb::ProcessingRequest& message) {
  if (!message.has_metadata_context()) return std::nullopt;
  const auto& namespaces = message.metadata_context().filter_metadata();
  auto hint = namespaces.find(std::string(protocol::kSubsetNamespace));
  if (hint == namespaces.end()) return std::nullopt;
  auto field = hint->second.fields().find(std::string(protocol::kSubsetKey));
  if (field == hint->second.fields().end()) return std::nullopt;
  std::vector<std::string> entries;
  const google::protobuf::Value& value = field->second;
  if (value.has_list_value()) {
    for (const auto& item : value.list_value().values()) {
      if (item.has_string_value()) split_list(item.string_value(), entries);
    }
  } else if (value.has_string_value()) {
    split_list(value.string_value(), entries);
  }
  return entries;
}

// The served endpoint the data plane reports on the response path, or the conformance test's
// failure text when it is missing.
struct Served {
  std::string endpoint;
  std::string_view failure;
};
Served read_served(const pb::ProcessingRequest& message) {
  const auto& namespaces = message.metadata_context().filter_metadata();
  auto lb = namespaces.find(std::string(protocol::kDestinationNamespace));
  if (lb == namespaces.end()) return {{}, "fail: missing envoy lb metadata"};
  auto field = lb->second.fields().find(std::string(protocol::kServedKey));
  if (field == lb->second.fields().end() || !field->second.has_string_value()) {
    return {{}, "fail: missing destination endpoint served metadata"};
  }
  return {field->second.string_value(), {}};
}

std::string_view body_mode_name(int mode) {
  return ProcessingMode::BodySendMode_IsValid(mode)
             ? std::string_view(ProcessingMode::BodySendMode_Name(
                   static_cast<ProcessingMode::BodySendMode>(mode)))
             : std::string_view("unknown");
}

bool body_mode_supported(int mode) {
  return mode == ProcessingMode::NONE || mode == ProcessingMode::FULL_DUPLEX_STREAMED;
}

}  // namespace

// --- metrics ---

struct ProcessorMetrics::Families {
  explicit Families(prom::Registry& registry)
      : streams(registry
                    .counter("infergate_extproc_streams_total",
                             "ext_proc streams opened by the data plane.")
                    .with({})),
        active(registry.gauge("infergate_extproc_active_streams", "ext_proc streams open now.")
                   .with({})),
        immediate(registry.counter("infergate_extproc_immediate_responses_total",
                                   "Local replies (ImmediateResponse) sent, by HTTP status.",
                                   {"code"})),
        protocol_errors(registry.counter(
            "infergate_extproc_protocol_errors_total",
            "ext_proc messages that broke the protocol or were dropped, by reason.", {"reason"})) {}

  prom::Counter& streams;
  prom::Gauge& active;
  prom::CounterFamily& immediate;
  prom::CounterFamily& protocol_errors;
};

ProcessorMetrics::ProcessorMetrics(prom::Registry& registry)
    : families_(std::make_unique<Families>(registry)) {}
ProcessorMetrics::~ProcessorMetrics() = default;

void ProcessorMetrics::stream_started() {
  families_->streams.inc();
  families_->active.inc();
}
void ProcessorMetrics::stream_ended() { families_->active.dec(); }
void ProcessorMetrics::immediate_response(int http_status) {
  families_->immediate.with({std::to_string(http_status)}).inc();
}
void ProcessorMetrics::protocol_error(std::string_view reason) {
  families_->protocol_errors.with({reason}).inc();
}

// --- the state machine ---

StreamProcessor::StreamProcessor(director::Director& director, const ProcessorOptions& options,
                                 ProcessorMetrics& metrics)
    : director_(director), options_(options), metrics_(metrics) {
  metrics_.stream_started();
}

StreamProcessor::~StreamProcessor() { on_stream_end(); }

void StreamProcessor::on_stream_end() {
  if (ended_) return;
  ended_ = true;
  if (routed_ && !routed_->finished()) routed_->finish(false);
  metrics_.stream_ended();
}

StreamAction StreamProcessor::on_message(pb::ProcessingRequest& message,
                                         std::vector<pb::ProcessingResponse>& out) {
  const std::size_t answered_before = out.size();
  const StreamAction action = handle(message, out);
  first_message_ = false;
  // The data plane ignores answers in observability mode: process, but say nothing.
  if (message.observability_mode()) out.resize(answered_before);
  return action;
}

StreamAction StreamProcessor::handle(pb::ProcessingRequest& message,
                                     std::vector<pb::ProcessingResponse>& out) {
  if (request_state_ == RequestState::kFailed) {
    metrics_.protocol_error("after_local_reply");
    return StreamAction::kContinue;
  }
  if (message.has_protocol_config()) {
    if (!first_message_) {
      return violation("late_protocol_config",
                       "protocol_config may only be sent on the first message of a stream");
    }
    const auto& config = message.protocol_config();
    for (int mode : {static_cast<int>(config.request_body_mode()),
                     static_cast<int>(config.response_body_mode())}) {
      if (!body_mode_supported(mode)) {
        return violation("unsupported_body_mode",
                         fmt::format("body mode {} is not supported: the endpoint picker needs "
                                     "FULL_DUPLEX_STREAMED (or NONE)",
                                     body_mode_name(mode)));
      }
    }
    body_mode_none_ = config.request_body_mode() == ProcessingMode::NONE;
  }
  switch (message.request_case()) {
    case pb::ProcessingRequest::kRequestHeaders:
      return on_request_headers(message, out);
    case pb::ProcessingRequest::kRequestBody:
      return on_request_body(message, out);
    case pb::ProcessingRequest::kRequestTrailers:
      return on_request_trailers(out);
    case pb::ProcessingRequest::kResponseHeaders:
      return on_response_headers(message, out);
    case pb::ProcessingRequest::kResponseBody:
      return on_response_body(message, out);
    case pb::ProcessingRequest::kResponseTrailers:
      return on_response_trailers(out);
    case pb::ProcessingRequest::REQUEST_NOT_SET:
      break;
  }
  return violation("empty_message", "a ProcessingRequest must carry one request part");
}

StreamAction StreamProcessor::on_request_headers(pb::ProcessingRequest& message,
                                                 std::vector<pb::ProcessingResponse>& out) {
  if (request_state_ != RequestState::kAwaitHeaders) {
    return violation("duplicate_request_headers", "request_headers received twice");
  }
  read_headers(message.request_headers().headers(), request_headers_);
  if (auto subset = read_subset(message)) subset_ = std::move(subset);
  if (!message.request_headers().end_of_stream() && !body_mode_none_) {
    request_state_ = RequestState::kBody;  // the answer waits for the body
    return StreamAction::kContinue;
  }
  auto routed = director_.route_bodyless(request_headers_, subset_);
  if (!routed) return local_reply(routed.status(), out);
  routed_.emplace(std::move(*routed));
  request_state_ = RequestState::kRouted;
  append_headers_answer(0, out);
  return StreamAction::kContinue;
}

StreamAction StreamProcessor::on_request_body(pb::ProcessingRequest& message,
                                              std::vector<pb::ProcessingResponse>& out) {
  if (request_state_ == RequestState::kAwaitHeaders) {
    return violation("body_before_headers", "request_body received before request_headers");
  }
  if (request_state_ == RequestState::kRouted) {
    return violation("body_after_end_of_stream",
                     "request_body received after the request body's end_of_stream");
  }
  if (auto subset = read_subset(message)) subset_ = std::move(subset);
  std::string* chunk = message.mutable_request_body()->mutable_body();
  if (options_.max_body_bytes > 0 && body_.size() + chunk->size() > options_.max_body_bytes) {
    const Status status(413, fmt::format("the request body exceeds the limit of {} bytes",
                                         options_.max_body_bytes));
    director_.count_error(status);
    return local_reply(status, out);
  }
  if (body_.empty()) {
    body_.swap(*chunk);
  } else {
    body_.append(*chunk);
  }
  if (!message.request_body().end_of_stream()) return StreamAction::kContinue;
  return route_body(true, out);
}

StreamAction StreamProcessor::on_request_trailers(std::vector<pb::ProcessingResponse>& out) {
  switch (request_state_) {
    case RequestState::kAwaitHeaders:
      return violation("trailers_before_headers",
                       "request_trailers received before request_headers");
    case RequestState::kBody: {
      // Trailers end the body: the last body answer carries no end_of_stream, the trailers
      // answer follows it.
      const StreamAction action = route_body(false, out);
      if (request_state_ == RequestState::kRouted) out.emplace_back().mutable_request_trailers();
      return action;
    }
    default:
      metrics_.protocol_error("unexpected_request_trailers");
      return StreamAction::kContinue;
  }
}

StreamAction StreamProcessor::route_body(bool end_of_stream,
                                         std::vector<pb::ProcessingResponse>& out) {
  auto routed = director_.route({.headers = request_headers_, .body = body_, .subset = subset_});
  body_ = std::string();  // the client's bytes are no longer needed
  if (!routed) return local_reply(routed.status(), out);
  routed_.emplace(std::move(*routed));
  request_state_ = RequestState::kRouted;
  const std::string body = routed_->take_body();
  append_headers_answer(body.size(), out);
  append_body(body, end_of_stream, /*request_direction=*/true, out);
  return StreamAction::kContinue;
}

void StreamProcessor::append_headers_answer(std::size_t body_bytes,
                                            std::vector<pb::ProcessingResponse>& out) {
  pb::ProcessingResponse& answer = out.emplace_back();
  pb::CommonResponse* common = answer.mutable_request_headers()->mutable_response();
  common->set_clear_route_cache(true);
  pb::HeaderMutation& mutation = *common->mutable_header_mutation();
  set_header(mutation, protocol::kDestinationHeader, routed_->destination());
  if (body_bytes > 0) set_header(mutation, "content-length", std::to_string(body_bytes));
  if (routed_->request_id_generated()) {
    set_header(mutation, protocol::kRequestIdHeader, routed_->request_id());
  }
  for (const auto& [name, value] : request_headers_) {
    // Pseudo-headers and host cannot be mutated by ext_proc; control headers are the picker's.
    if (name.empty() || name.front() == ':' || name == "host" ||
        protocol::is_control_header(name)) {
      continue;
    }
    set_header(mutation, name, value);
  }
  auto& namespaces = *answer.mutable_dynamic_metadata()->mutable_fields();
  auto& lb = *namespaces[std::string(protocol::kDestinationNamespace)]
                  .mutable_struct_value()
                  ->mutable_fields();
  lb[std::string(protocol::kDestinationHeader)].set_string_value(routed_->destination());
  if (options_.emit_endpoint_scores) {
    lb[std::string(protocol::kScoresKey)].set_string_value(routed_->endpoint_scores());
  }
}

void StreamProcessor::append_body(std::string_view body, bool end_of_stream, bool request_direction,
                                  std::vector<pb::ProcessingResponse>& out) const {
  auto add_chunk = [&](std::string_view bytes, bool last) {
    pb::ProcessingResponse& answer = out.emplace_back();
    pb::BodyResponse* response =
        request_direction ? answer.mutable_request_body() : answer.mutable_response_body();
    auto* streamed =
        response->mutable_response()->mutable_body_mutation()->mutable_streamed_response();
    streamed->set_body(std::string(bytes));
    streamed->set_end_of_stream(last);
  };
  if (body.empty()) {
    if (end_of_stream) add_chunk({}, true);
    return;
  }
  const std::size_t chunk_bytes = std::max<std::size_t>(1, options_.body_chunk_bytes);
  for (std::size_t offset = 0; offset < body.size(); offset += chunk_bytes) {
    const bool last = offset + chunk_bytes >= body.size();
    add_chunk(body.substr(offset, chunk_bytes), last && end_of_stream);
  }
}

StreamAction StreamProcessor::on_response_headers(pb::ProcessingRequest& message,
                                                  std::vector<pb::ProcessingResponse>& out) {
  if (request_state_ != RequestState::kRouted) {
    return violation("response_before_routing",
                     "response_headers received before the request was routed");
  }
  if (response_state_ != ResponseState::kAwaitHeaders) {
    return violation("duplicate_response_headers", "response_headers received twice");
  }
  director::Headers headers;
  read_headers(message.response_headers().headers(), headers);
  routed_->on_response_headers(headers);
  const Served served = read_served(message);
  if (!served.endpoint.empty()) routed_->on_served_endpoint(served.endpoint);

  pb::CommonResponse* common = out.emplace_back().mutable_response_headers()->mutable_response();
  if (director_.options().conformance_hooks) {
    set_header(*common->mutable_header_mutation(), protocol::kServedTestHeader,
               served.endpoint.empty() ? served.failure : served.endpoint);
  }
  if (options_.emit_endpoint_scores) {
    set_header(*common->mutable_header_mutation(), protocol::kScoresKey,
               routed_->endpoint_scores());
  }
  if (message.response_headers().end_of_stream()) {
    std::string ignored;
    routed_->on_response_body({}, true, ignored);
    response_state_ = ResponseState::kDone;
  } else {
    response_state_ = ResponseState::kBody;
  }
  return StreamAction::kContinue;
}

StreamAction StreamProcessor::on_response_body(pb::ProcessingRequest& message,
                                               std::vector<pb::ProcessingResponse>& out) {
  if (request_state_ != RequestState::kRouted) {
    return violation("response_before_routing",
                     "response_body received before the request was routed");
  }
  if (response_state_ == ResponseState::kAwaitHeaders) {
    return violation("response_body_before_headers",
                     "response_body received before response_headers");
  }
  if (response_state_ == ResponseState::kDone) {
    return violation("body_after_end_of_stream",
                     "response_body received after the response body's end_of_stream");
  }
  const bool end_of_stream = message.response_body().end_of_stream();
  response_bytes_.clear();
  routed_->on_response_body(message.response_body().body(), end_of_stream, response_bytes_);
  append_body(response_bytes_, end_of_stream, /*request_direction=*/false, out);
  if (end_of_stream) response_state_ = ResponseState::kDone;
  return StreamAction::kContinue;
}

StreamAction StreamProcessor::on_response_trailers(std::vector<pb::ProcessingResponse>& out) {
  if (request_state_ != RequestState::kRouted) {
    return violation("response_before_routing",
                     "response_trailers received before the request was routed");
  }
  if (response_state_ == ResponseState::kBody) {
    // Trailers end the body: release what is held, without end_of_stream.
    response_bytes_.clear();
    routed_->on_response_body({}, true, response_bytes_);
    append_body(response_bytes_, false, /*request_direction=*/false, out);
  }
  response_state_ = ResponseState::kDone;
  out.emplace_back().mutable_response_trailers();
  return StreamAction::kContinue;
}

StreamAction StreamProcessor::local_reply(const Status& status,
                                          std::vector<pb::ProcessingResponse>& out) {
  pb::ImmediateResponse* reply = out.emplace_back().mutable_immediate_response();
  reply->mutable_status()->set_code(
      static_cast<::envoy::type::v3::StatusCode>(status.http_status()));
  set_header(*reply->mutable_headers(), "content-type", "text/plain; charset=utf-8");
  reply->set_body(director::error_body(status));
  reply->set_details(
      fmt::format("inference_error_{}", director::error_code_name(status.http_status())));
  metrics_.immediate_response(status.http_status());
  request_state_ = RequestState::kFailed;
  response_state_ = ResponseState::kFailed;
  return StreamAction::kFinishOk;
}

StreamAction StreamProcessor::violation(std::string_view reason, std::string message) {
  metrics_.protocol_error(reason);
  error_message_ = std::move(message);
  request_state_ = RequestState::kFailed;
  response_state_ = ResponseState::kFailed;
  return StreamAction::kFinishError;
}

}  // namespace infergate::extproc
