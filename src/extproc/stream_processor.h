#pragma once

// The Endpoint Picker's side of one ext_proc stream (one HTTP request), as a pure state machine:
// ProcessingRequest messages in, ProcessingResponse messages out, no gRPC and no I/O, so the
// protocol can be tested as transcripts (epp-protocol facts §4, §7; the EPP only supports the
// FULL_DUPLEX_STREAMED and NONE body modes).
//
// Request direction:  kAwaitHeaders → kBody (buffering until end_of_stream) → kRouted
// Response direction: kAwaitHeaders → kBody → kDone
// Any direction → kFailed after a local reply (ImmediateResponse) or a protocol violation; later
// messages are dropped (counted). The full message × state table is at the top of the .cc file.
//
// Answers, per direction always in the order headers → body chunks → trailers:
// - request_headers with end_of_stream (no body), or body mode NONE: routed at once
//   (Director::route_bodyless) and answered.
// - otherwise the request_headers answer is held until the body's end_of_stream (or the request
//   trailers), then: HeadersResponse{clear_route_cache, set_headers [destination, Content-Length
//   (non-empty body), x-request-id (when generated), the client's headers minus the control
//   headers, pseudo-headers and `host`]} with dynamic_metadata {"envoy.lb": {destination[,
//   scores]}}, followed by the body as streamed_response chunks of at most body_chunk_bytes,
//   end_of_stream on the last (one empty chunk for an empty body). Header values only in
//   raw_value.
// - response_headers: HeadersResponse with the added headers (conformance served-endpoint,
//   endpoint scores) and no others; the served endpoint is read from the message's
//   metadata_context["envoy.lb"]["x-gateway-destination-endpoint-served"].
// - response_body: each chunk answered with what RoutedRequest::on_response_body gives (nothing
//   while it buffers), the last with end_of_stream; response_trailers answered with an empty
//   TrailersResponse after the body answers. Trailers arriving after their direction ended are
//   still answered (and counted), since in FULL_DUPLEX_STREAMED the data plane waits for it.
// - errors: ImmediateResponse with the Status's code, body director::error_body() (text/plain),
//   details "inference_error_<Code>": 400 unreadable body, 413 body over max_body_bytes (as
//   declared by content-length, or as received), 429 shed or filtered out, 503 no candidates, 500
//   internal.
// - protocol violations (a message the state does not allow, e.g. a body before headers, a second
//   request_headers, a body mode other than FULL_DUPLEX_STREAMED/NONE) end the stream with a gRPC
//   error (StreamAction::kFinishError) whose message names the violation; a routed request is
//   released (finish(false)) at once.
// - messages with observability_mode set are processed but never answered.

#include <google/protobuf/arena.h>

#include <boost/iterator/indirect_iterator.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "director/director.h"
#include "envoy/service/ext_proc/v3/external_processor.pb.h"
#include "extproc/request_view.h"

namespace infergate::prom {
class Registry;
}

namespace infergate::extproc {

struct ProcessorOptions {
  // The largest body chunk sent back (GIE's BodyByteLimit: below Envoy's 64 KiB per-chunk limit).
  std::size_t body_chunk_bytes = 62000;
  // A request body larger than this gets a 413 local reply; 0 = no limit.
  std::size_t max_body_bytes = 0;
  // --emit-endpoint-scores: add the per-endpoint scores (RoutedRequest::endpoint_scores) to the
  // envoy.lb metadata of the request-headers answer and as a response header, both named
  // x-gateway-destination-endpoint-scores.
  bool emit_endpoint_scores = false;
};

// The answers to one ProcessingRequest, in order: a list of messages that live on an arena when
// one is given (the transport serialises them, clears the list, then resets the arena, so that
// building and dropping them costs pointer bumps instead of a heap allocation and a destructor
// per sub-message) or on the heap (owned here; moving one into another heap message is then a
// move, not a copy). Offers the few vector operations the processor and its callers use.
class Answers {
 public:
  explicit Answers(google::protobuf::Arena* arena = nullptr) : arena_(arena) {}
  ~Answers() { clear(); }
  Answers(const Answers&) = delete;
  Answers& operator=(const Answers&) = delete;

  // Appends an empty message and returns it.
  pb::ProcessingResponse& emplace_back() {
    items_.push_back(google::protobuf::Arena::CreateMessage<pb::ProcessingResponse>(arena_));
    return *items_.back();
  }
  void pop_back() {
    drop(items_.back());
    items_.pop_back();
  }
  // Keeps the first `count` messages (count <= size()).
  void truncate(std::size_t count) {
    while (items_.size() > count) pop_back();
  }
  void reserve(std::size_t count) { items_.reserve(count); }
  void clear() { truncate(0); }

  std::size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  pb::ProcessingResponse& operator[](std::size_t index) { return *items_[index]; }
  const pb::ProcessingResponse& operator[](std::size_t index) const { return *items_[index]; }
  auto begin() { return boost::make_indirect_iterator(items_.begin()); }
  auto end() { return boost::make_indirect_iterator(items_.end()); }
  auto begin() const { return boost::make_indirect_iterator(items_.cbegin()); }
  auto end() const { return boost::make_indirect_iterator(items_.cend()); }

 private:
  void drop(pb::ProcessingResponse* message) {
    if (arena_ == nullptr) delete message;  // arena messages go with the arena's reset
  }

  google::protobuf::Arena* arena_;
  std::vector<pb::ProcessingResponse*> items_;
};

// What the stream must do after a message.
enum class StreamAction {
  kContinue,     // keep reading
  kFinishOk,     // the exchange is over: finish the RPC with OK once the answers are sent
  kFinishError,  // protocol violation: finish the RPC with INVALID_ARGUMENT (error_message)
};

// Counters shared by all streams of a server (infergate_extproc_* on /metrics). Thread-safe.
class ProcessorMetrics {
 public:
  explicit ProcessorMetrics(prom::Registry& registry);
  ~ProcessorMetrics();
  void stream_started();
  void stream_ended();
  void immediate_response(int http_status);
  void protocol_error(std::string_view reason);

 private:
  struct Families;
  std::unique_ptr<Families> families_;
};

class StreamProcessor {
 public:
  // `director`, `options` and `metrics` must outlive the processor.
  StreamProcessor(director::Director& director, const ProcessorOptions& options,
                  ProcessorMetrics& metrics);
  ~StreamProcessor();  // releases a routed request still in flight (finish(false))

  // Handles one message from the data plane; appends the answers to `out` (possibly none). The
  // view is only read during the call (request_view.h: decoded from the wire, or over a parsed
  // message, which the second form does).
  StreamAction on_message(const RequestView& message, Answers& out);
  StreamAction on_message(const pb::ProcessingRequest& message, Answers& out);
  // The stream ended (half-close, cancellation or transport error): releases the routed
  // request's accounting if its response did not complete. Idempotent.
  void on_stream_end();

  const std::string& error_message() const { return error_message_; }
  // For tests and logs.
  const director::RoutedRequest* routed() const { return routed_ ? &*routed_ : nullptr; }

 private:
  enum class RequestState { kAwaitHeaders, kBody, kRouted, kFailed };
  enum class ResponseState { kAwaitHeaders, kBody, kDone, kFailed };

  StreamAction handle(const RequestView& message, Answers& out);
  StreamAction on_request_headers(const RequestView& message, Answers& out);
  StreamAction on_request_body(const RequestView& message, Answers& out);
  StreamAction on_request_trailers(const RequestView& message, Answers& out);
  StreamAction on_response_headers(const RequestView& message, Answers& out);
  StreamAction on_response_body(const RequestView& message, Answers& out);
  StreamAction on_response_trailers(Answers& out);
  // Keeps the subset hint of a request-direction message that carries one (a later one wins).
  void note_subset(const RequestView& message);
  // Routes the buffered body and appends the headers answer and the body chunks (the last with
  // `end_of_stream`).
  StreamAction route_body(bool end_of_stream, Answers& out);
  // The request-headers answer; moves the stored request headers into it.
  void append_headers_answer(std::size_t body_bytes, Answers& out);
  // `body` as streamed_response chunks of at most body_chunk_bytes (one empty chunk when `body`
  // is empty and `end_of_stream`; nothing when it is empty otherwise).
  void append_body(std::string&& body, bool end_of_stream, bool request_direction,
                   Answers& out) const;
  // Feeds one response chunk to the routed request and appends what it releases.
  void append_response_bytes(std::string_view chunk, bool end_of_input, bool end_of_stream,
                             Answers& out);
  StreamAction local_reply(const Status& status, Answers& out);
  StreamAction violation(std::string_view reason, std::string message);

  director::Director& director_;
  const ProcessorOptions& options_;
  ProcessorMetrics& metrics_;
  RequestState request_state_ = RequestState::kAwaitHeaders;
  ResponseState response_state_ = ResponseState::kAwaitHeaders;
  bool first_message_ = true;
  bool body_mode_none_ = false;
  bool request_ended_ = false;           // the data plane ended the request (eos or trailers)
  bool response_ended_ = false;          // ... the response
  bool local_replied_ = false;           // kFailed through a local reply (not a violation)
  std::size_t declared_body_bytes_ = 0;  // the client's content-length, to size body_ once
  director::Headers request_headers_;
  std::optional<std::vector<std::string>> subset_;
  std::string body_;
  std::optional<director::RoutedRequest> routed_;
  std::string error_message_;
  bool ended_ = false;
};

}  // namespace infergate::extproc
