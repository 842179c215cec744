#include "extproc/stream_processor.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <span>
#include <utility>

#include "director/protocol.h"
#include "prom/registry.h"

// clang-format off
// How each message is handled in each state (R = request direction, P = response direction).
// ERROR(reason) = protocol violation: counted in infergate_extproc_protocol_errors_total{reason};
// the stream ends with INVALID_ARGUMENT (kFinishError) and Envoy applies its failure mode.
// (reason) alone = answered normally but counted in the same family.
//
// message            state                        action
// -----------------  ---------------------------  -----------------------------------------------
// protocol_config    on the first message         body modes NONE and FULL_DUPLEX_STREAMED
//                                                 accepted (both directions), others
//                                                 ERROR(unsupported_body_mode)
//                    on a later message           ERROR(late_protocol_config)
// request_headers    R kAwaitHeaders, eos or      route now (route_bodyless), answer, R → kRouted
//                      request body mode NONE
//                    R kAwaitHeaders, body comes  hold the answer, R → kBody; a declared
//                                                 content-length over max_body_bytes: 413 now
//                    R past headers               ERROR(duplicate_request_headers)
// request_body       R kBody                      append (413 over max_body_bytes); at eos route,
//                                                 answer headers + body chunks, R → kRouted
//                    R kAwaitHeaders              ERROR(body_before_headers)
//                    R kRouted, mode NONE         ERROR(body_in_mode_none)
//                    R kRouted, after eos         ERROR(body_after_end_of_stream)
// request_trailers   R kBody                      route; answer headers + body chunks (the last
//                                                 without eos) + an empty trailers answer
//                    R kRouted, mode NONE         empty trailers answer (legitimate: no body sent)
//                    R kRouted, after eos         empty trailers answer, since in FULL_DUPLEX the
//                                                 data plane waits for it
//                                                 (trailers_after_end_of_stream)
//                    R kAwaitHeaders              ERROR(trailers_before_headers)
// response_headers   R kRouted, P kAwaitHeaders   answer (served-endpoint / scores headers)
//                    R not routed                 ERROR(response_before_routing): a reply made by
//                                                 the proxy itself, with no destination to tie to
//                    P past headers               ERROR(duplicate_response_headers)
// response_body      R kRouted, P kBody           answer what the routed request releases (none
//                                                 while it holds bytes back); eos → P kDone
//                    R not routed                 ERROR(response_before_routing)
//                    P kAwaitHeaders              ERROR(response_body_before_headers)
//                    P kDone                      ERROR(body_after_end_of_stream)
// response_trailers  R kRouted, P kBody           flush held bytes (no eos), answer trailers
//                    R not routed                 ERROR(response_before_routing)
//                    P kAwaitHeaders              ERROR(response_trailers_before_headers)
//                    P kDone                      empty trailers answer
//                                                 (trailers_after_end_of_stream)
// no part set        any                          ERROR(empty_message)
// anything           after a local reply          dropped, kContinue (after_local_reply)
//                    after a violation            dropped, kContinue (after_protocol_error)
// clang-format on
//
// The subset hint is read from every request-direction message until the request is routed (a
// later hint replaces an earlier one). With observability_mode a message is processed as above
// but its answers are discarded. A local reply (ImmediateResponse) ends the exchange: the stream
// is finished with OK after it (kFinishOk).

namespace infergate::extproc {
namespace {

using ::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;
namespace protocol = director::protocol;

// A protobuf map key; built once, as map lookups take `const std::string&`.
const std::string& destination_namespace() {
  static const std::string kName(protocol::kDestinationNamespace);
  return kName;
}

// A reserve() hint from a client's content-length is trusted up to this much (the body may still
// grow past it; this only bounds what a lying header can make us allocate up front).
constexpr std::size_t kMaxBodyReserveBytes = 16 << 20;

void to_lower(std::string& text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
  }
}

// Copies the headers: lower-case names; values as the view gives them (raw_value, what Envoy
// sends, or value for older data planes).
void take_headers(std::span<const HeaderView> headers, director::Headers& out) {
  out.clear();
  out.reserve(headers.size());
  for (const HeaderView& header : headers) {
    std::string name(header.key);
    to_lower(name);
    out.emplace_back(std::move(name), std::string(header.value));
  }
}

// Header values go only into raw_value: Envoy reads nothing else on mutations (facts §2.6).
void set_header(pb::HeaderMutation& mutation, std::string name, std::string value) {
  auto* header = mutation.add_set_headers()->mutable_header();
  header->set_key(std::move(name));
  header->set_raw_value(std::move(value));
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
// lightweight conformance EPP also accepts); nullopt when the message carries none. Anything
// else under the key (a number, a struct) matches nothing, so the director answers 503.
std::optional<std::vector<std::string>> read_subset(const MetadataValue& hint) {
  if (!hint.present) return std::nullopt;
  std::vector<std::string> entries;
  entries.reserve(hint.strings.size());
  for (std::string_view item : hint.strings) split_list(item, entries);
  return entries;
}

// The served endpoint the data plane reports on the response path (a string, or tolerated, the
// first string of a list, as some data planes write host lists), or the conformance test's
// failure text when it is missing (facts §11.1).
struct Served {
  std::string endpoint;
  std::string_view failure;
};
Served read_served(const MetadataValue& served) {
  if (!served.namespace_present) return {{}, "fail: missing envoy lb metadata"};
  if (!served.strings.empty() && !served.strings.front().empty()) {
    return {std::string(served.strings.front()), {}};
  }
  return {{}, "fail: missing destination endpoint served metadata"};
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

std::size_t parse_size(std::string_view text) {
  std::size_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size() ? value : 0;
}

}  // namespace

// --- metrics ---

struct ProcessorMetrics::Families {
  // Local-reply codes cached so the common ones skip the family's lookup mutex.
  static constexpr std::array<int, 5> kCommonCodes = {400, 413, 429, 500, 503};

  explicit Families(prom::Registry& registry)
      : streams(registry.counter("infergate_extproc_streams", "ext_proc streams opened.").with({})),
        active(registry.gauge("infergate_extproc_active_streams", "ext_proc streams open now.")
                   .with({})),
        immediate(registry.counter("infergate_extproc_immediate_responses",
                                   "Local replies (ImmediateResponse) sent, by HTTP status.",
                                   {"code"})),
        protocol_errors(registry.counter(
            "infergate_extproc_protocol_errors",
            "ext_proc messages that broke the protocol or were dropped, by reason.", {"reason"})) {
    for (std::size_t i = 0; i < kCommonCodes.size(); ++i) {
      common_immediate[i] = &immediate.with({std::to_string(kCommonCodes[i])});
    }
  }

  prom::Counter& streams;
  prom::Gauge& active;
  prom::CounterFamily& immediate;
  prom::CounterFamily& protocol_errors;
  std::array<prom::Counter*, kCommonCodes.size()> common_immediate{};
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
  for (std::size_t i = 0; i < Families::kCommonCodes.size(); ++i) {
    if (Families::kCommonCodes[i] == http_status) {
      families_->common_immediate[i]->inc();
      return;
    }
  }
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

StreamAction StreamProcessor::on_message(const pb::ProcessingRequest& message, Answers& out) {
  thread_local ViewStorage storage;
  return on_message(view_of(message, storage), out);
}

StreamAction StreamProcessor::on_message(const RequestView& message, Answers& out) {
  const std::size_t answered_before = out.size();
  const StreamAction action = handle(message, out);
  first_message_ = false;
  // The data plane ignores answers in observability mode: process, but say nothing.
  if (message.rest->observability_mode()) out.truncate(answered_before);
  return action;
}

StreamAction StreamProcessor::handle(const RequestView& message, Answers& out) {
  if (request_state_ == RequestState::kFailed) {
    metrics_.protocol_error(local_replied_ ? "after_local_reply" : "after_protocol_error");
    return StreamAction::kContinue;
  }
  if (message.rest->has_protocol_config()) {
    if (!first_message_) {
      return violation("late_protocol_config",
                       "protocol_config may only be sent on the first message of a stream");
    }
    const auto& config = message.rest->protocol_config();
    const std::array<std::pair<std::string_view, int>, 2> modes = {
        std::pair<std::string_view, int>{"request_body_mode", config.request_body_mode()},
        std::pair<std::string_view, int>{"response_body_mode", config.response_body_mode()}};
    for (const auto& [field, mode] : modes) {
      if (!body_mode_supported(mode)) {
        return violation("unsupported_body_mode",
                         fmt::format("{} {} is not supported: the endpoint picker needs "
                                     "FULL_DUPLEX_STREAMED (or NONE)",
                                     field, body_mode_name(mode)));
      }
    }
    body_mode_none_ = config.request_body_mode() == ProcessingMode::NONE;
  }
  switch (message.part) {
    case pb::ProcessingRequest::kRequestHeaders:
      return on_request_headers(message, out);
    case pb::ProcessingRequest::kRequestBody:
      return on_request_body(message, out);
    case pb::ProcessingRequest::kRequestTrailers:
      return on_request_trailers(message, out);
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

void StreamProcessor::note_subset(const RequestView& message) {
  if (auto subset = read_subset(message.subset_hint)) subset_ = std::move(subset);
}

StreamAction StreamProcessor::on_request_headers(const RequestView& message, Answers& out) {
  if (request_state_ != RequestState::kAwaitHeaders) {
    return violation("duplicate_request_headers", "request_headers received twice");
  }
  take_headers(message.headers, request_headers_);
  note_subset(message);
  const bool end_of_stream = message.end_of_stream;
  request_ended_ = end_of_stream;
  if (!end_of_stream && !body_mode_none_) {
    if (auto length = director::find_header(request_headers_, "content-length")) {
      declared_body_bytes_ = parse_size(*length);
      if (options_.max_body_bytes > 0 && declared_body_bytes_ > options_.max_body_bytes) {
        const Status status(413, fmt::format("the request body exceeds the limit of {} bytes",
                                             options_.max_body_bytes));
        director_.count_error(status);
        return local_reply(status, out);
      }
    }
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

StreamAction StreamProcessor::on_request_body(const RequestView& message, Answers& out) {
  if (request_state_ == RequestState::kAwaitHeaders) {
    return violation("body_before_headers", "request_body received before request_headers");
  }
  if (request_state_ == RequestState::kRouted) {
    if (body_mode_none_ && !request_ended_) {
      return violation("body_in_mode_none",
                       "request_body received although request_body_mode is NONE");
    }
    return violation("body_after_end_of_stream",
                     "request_body received after the request's end_of_stream");
  }
  note_subset(message);
  const std::string_view chunk = message.body;
  if (options_.max_body_bytes > 0 && body_.size() + chunk.size() > options_.max_body_bytes) {
    const Status status(413, fmt::format("the request body exceeds the limit of {} bytes",
                                         options_.max_body_bytes));
    director_.count_error(status);
    return local_reply(status, out);
  }
  if (body_.empty()) {
    body_.reserve(std::max(chunk.size(), std::min(declared_body_bytes_, kMaxBodyReserveBytes)));
  }
  body_.append(chunk);
  if (!message.end_of_stream) return StreamAction::kContinue;
  request_ended_ = true;
  return route_body(true, out);
}

StreamAction StreamProcessor::on_request_trailers(const RequestView& message, Answers& out) {
  switch (request_state_) {
    case RequestState::kAwaitHeaders:
      return violation("trailers_before_headers",
                       "request_trailers received before request_headers");
    case RequestState::kBody: {
      // Trailers end the body: the last body answer carries no end_of_stream, the trailers
      // answer follows it.
      note_subset(message);
      request_ended_ = true;
      const StreamAction action = route_body(false, out);
      if (request_state_ == RequestState::kRouted) out.emplace_back().mutable_request_trailers();
      return action;
    }
    default:
      // Answered even when unexpected: in FULL_DUPLEX_STREAMED the data plane waits for it.
      if (request_ended_) metrics_.protocol_error("trailers_after_end_of_stream");
      request_ended_ = true;
      out.emplace_back().mutable_request_trailers();
      return StreamAction::kContinue;
  }
}

StreamAction StreamProcessor::route_body(bool end_of_stream, Answers& out) {
  auto routed = director_.route(
      {.headers = request_headers_, .body = body_, .subset = subset_, .owned_body = &body_});
  body_ = std::string();  // the client's bytes are no longer needed
  if (!routed) return local_reply(routed.status(), out);
  routed_.emplace(std::move(*routed));
  request_state_ = RequestState::kRouted;
  std::string body = routed_->take_body();
  append_headers_answer(body.size(), out);
  append_body(std::move(body), end_of_stream, /*request_direction=*/true, out);
  return StreamAction::kContinue;
}

void StreamProcessor::append_headers_answer(std::size_t body_bytes, Answers& out) {
  pb::ProcessingResponse& answer = out.emplace_back();
  pb::CommonResponse* common = answer.mutable_request_headers()->mutable_response();
  common->set_clear_route_cache(true);
  pb::HeaderMutation& mutation = *common->mutable_header_mutation();
  mutation.mutable_set_headers()->Reserve(static_cast<int>(request_headers_.size()) + 3);
  set_header(mutation, std::string(protocol::kDestinationHeader), routed_->destination());
  if (body_bytes > 0) set_header(mutation, "content-length", std::to_string(body_bytes));
  if (routed_->request_id_generated()) {
    set_header(mutation, std::string(protocol::kRequestIdHeader), routed_->request_id());
  }
  // The stored headers are not needed after routing: move them into the answer.
  for (auto& [name, value] : request_headers_) {
    // Pseudo-headers and host cannot be mutated by ext_proc; control headers are the picker's.
    if (name.empty() || name.front() == ':' || name == "host" ||
        protocol::is_control_header(name)) {
      continue;
    }
    set_header(mutation, std::move(name), std::move(value));
  }
  request_headers_.clear();

  auto& namespaces = *answer.mutable_dynamic_metadata()->mutable_fields();
  auto& lb = *namespaces[destination_namespace()].mutable_struct_value()->mutable_fields();
  lb[std::string(protocol::kDestinationHeader)].set_string_value(routed_->destination());
  if (options_.emit_endpoint_scores) {
    lb[std::string(protocol::kScoresKey)].set_string_value(routed_->endpoint_scores());
  }
}

void StreamProcessor::append_body(std::string&& body, bool end_of_stream, bool request_direction,
                                  Answers& out) const {
  auto add_chunk = [&](bool last) -> pb::StreamedBodyResponse& {
    pb::ProcessingResponse& answer = out.emplace_back();
    pb::BodyResponse* response =
        request_direction ? answer.mutable_request_body() : answer.mutable_response_body();
    auto* streamed =
        response->mutable_response()->mutable_body_mutation()->mutable_streamed_response();
    streamed->set_end_of_stream(last && end_of_stream);
    return *streamed;
  };
  if (body.empty()) {
    if (end_of_stream) add_chunk(true);
    return;
  }
  const std::size_t chunk_bytes = std::max<std::size_t>(1, options_.body_chunk_bytes);
  if (body.size() <= chunk_bytes) {
    add_chunk(true).set_body(std::move(body));  // one chunk: hand the bytes over, no copy
    return;
  }
  out.reserve(out.size() + (body.size() + chunk_bytes - 1) / chunk_bytes);
  const std::string_view all(body);
  for (std::size_t offset = 0; offset < all.size(); offset += chunk_bytes) {
    const bool last = offset + chunk_bytes >= all.size();
    const std::string_view bytes = all.substr(offset, chunk_bytes);
    add_chunk(last).set_body(bytes.data(), bytes.size());
  }
}

void StreamProcessor::append_response_bytes(std::string_view chunk, bool end_of_input,
                                            bool end_of_stream, Answers& out) {
  // The director writes straight into the answer's body; usually that is the whole answer.
  pb::ProcessingResponse& answer = out.emplace_back();
  auto* streamed = answer.mutable_response_body()
                       ->mutable_response()
                       ->mutable_body_mutation()
                       ->mutable_streamed_response();
  std::string& bytes = *streamed->mutable_body();
  routed_->on_response_body(chunk, end_of_input, bytes);
  if (bytes.size() <= std::max<std::size_t>(1, options_.body_chunk_bytes)) {
    if (bytes.empty() && !end_of_stream) {
      out.pop_back();  // held back (split model name, or a JSON body awaiting its end)
    } else {
      streamed->set_end_of_stream(end_of_stream);
    }
    return;
  }
  std::string released = std::move(bytes);
  out.pop_back();
  append_body(std::move(released), end_of_stream, /*request_direction=*/false, out);
}

StreamAction StreamProcessor::on_response_headers(const RequestView& message, Answers& out) {
  if (request_state_ != RequestState::kRouted) {
    return violation("response_before_routing",
                     "response_headers received before the request was routed");
  }
  if (response_state_ != ResponseState::kAwaitHeaders) {
    return violation("duplicate_response_headers", "response_headers received twice");
  }
  {
    director::Headers headers;
    take_headers(message.headers, headers);
    routed_->on_response_headers(headers);
  }
  Served served = read_served(message.served);
  if (!served.endpoint.empty()) routed_->on_served_endpoint(served.endpoint);

  pb::CommonResponse* common = out.emplace_back().mutable_response_headers()->mutable_response();
  if (director_.options().conformance_hooks) {
    set_header(*common->mutable_header_mutation(), std::string(protocol::kServedTestHeader),
               served.endpoint.empty() ? std::string(served.failure) : std::move(served.endpoint));
  }
  if (options_.emit_endpoint_scores) {
    set_header(*common->mutable_header_mutation(), std::string(protocol::kScoresKey),
               routed_->endpoint_scores());
  }
  if (message.end_of_stream) {
    std::string ignored;
    routed_->on_response_body({}, true, ignored);
    response_state_ = ResponseState::kDone;
    response_ended_ = true;
  } else {
    response_state_ = ResponseState::kBody;
  }
  return StreamAction::kContinue;
}

StreamAction StreamProcessor::on_response_body(const RequestView& message, Answers& out) {
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
                     "response_body received after the response's end_of_stream");
  }
  const bool end_of_stream = message.end_of_stream;
  append_response_bytes(message.body, end_of_stream, end_of_stream, out);
  if (end_of_stream) {
    response_state_ = ResponseState::kDone;
    response_ended_ = true;
  }
  return StreamAction::kContinue;
}

StreamAction StreamProcessor::on_response_trailers(Answers& out) {
  if (request_state_ != RequestState::kRouted) {
    return violation("response_before_routing",
                     "response_trailers received before the request was routed");
  }
  if (response_state_ == ResponseState::kAwaitHeaders) {
    return violation("response_trailers_before_headers",
                     "response_trailers received before response_headers");
  }
  if (response_state_ == ResponseState::kBody) {
    // Trailers end the body: release what is held, without end_of_stream (the trailers end it).
    append_response_bytes({}, /*end_of_input=*/true, /*end_of_stream=*/false, out);
  } else if (response_ended_) {
    // Answered even when unexpected: in FULL_DUPLEX_STREAMED the data plane waits for it.
    metrics_.protocol_error("trailers_after_end_of_stream");
  }
  response_state_ = ResponseState::kDone;
  response_ended_ = true;
  out.emplace_back().mutable_response_trailers();
  return StreamAction::kContinue;
}

StreamAction StreamProcessor::local_reply(const Status& status, Answers& out) {
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
  local_replied_ = true;
  body_ = std::string();
  return StreamAction::kFinishOk;
}

StreamAction StreamProcessor::violation(std::string_view reason, std::string message) {
  metrics_.protocol_error(reason);
  // The exchange is over: release the in-flight accounting now rather than at the stream's end.
  if (routed_ && !routed_->finished()) routed_->finish(false);
  error_message_ = std::move(message);
  request_state_ = RequestState::kFailed;
  response_state_ = ResponseState::kFailed;
  body_ = std::string();
  return StreamAction::kFinishError;
}

}  // namespace infergate::extproc
