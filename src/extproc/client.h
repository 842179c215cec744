#pragma once

// The gateway's side of ext_proc: an Envoy-like client that asks an external Endpoint Picker
// (`infergate epp`, or any EPP) where each HTTP request goes, over
// envoy.service.ext_proc.v3.ExternalProcessor/Process in FULL_DUPLEX_STREAMED mode for both body
// directions (epp-protocol facts §4, §5, §6, §12). Used by `infergate serve --epp host:port`.
//
// One ExtProcClient per target EPP (channels, options, counters); one ExtProcExchange per HTTP
// request = one gRPC stream, driven like Envoy drives it:
//
//   process_request(headers, body)        → request_headers (protocol_config, values in raw_value)
//                                           → request_body chunks of ≤ body_chunk_bytes, eos on
//                                             the last (or headers with end_of_stream, no body)
//                                           ← request_headers answer: header mutation,
//                                             clear_route_cache, dynamic_metadata envoy.lb
//                                           ← request_body streamed_response chunks until eos
//                                           = RequestDecision (destinations, headers, body) or an
//                                             ImmediateResponse to return to the client as is
//   process_response_headers(head, served) → response_headers with metadata_context
//                                             envoy.lb {x-gateway-destination-endpoint-served}
//                                           ← response_headers answer (or an ImmediateResponse)
//   send_response_body(chunk, eos)         → response_body chunks as they arrive (no waiting)
//   next_response_body()                   ← the mutated chunks, in order, until end_of_stream
//                                           then half-close (WritesDone), as Envoy does.
//
// Destinations: the EPP sends the list both as the x-gateway-destination-endpoint header and as
// dynamic_metadata["envoy.lb"]["x-gateway-destination-endpoint"] (they must agree). Like Envoy's
// override-host policy configured with the metadata source first, the metadata wins; the header
// is used when there is no metadata. A disagreement is counted
// (infergate_extproc_client_protocol_errors_total{reason="destination_mismatch"}) but not fatal.
// The list is ordered: primary first, then the fallbacks to try on retryable failures.
//
// Headers are director::Headers: lower-case names, pseudo-headers (":method", ":path",
// ":authority", ":scheme"; ":status" on responses) included, as Envoy serialises its header map.
// The request's steering headers a client must not set (x-gateway-destination-endpoint, -served,
// -subset; epp-protocol §12.3) are removed by process_request before anything is sent
// (strip_steering_headers), so a client can never pick its own endpoint, even with FailOpen. The
// EPP's header mutation is applied to the caller's headers as Envoy applies it
// (apply_header_mutation); Content-Length of the result matches the returned body.
//
// Response body: the EPP answers in FULL_DUPLEX_STREAMED mode with any number of chunks per
// chunk sent (it holds a JSON body until its end to restore the model name, and an SSE chunk
// whose model name is split until the next one), so sending and receiving are decoupled. A relay
// runs two loops on the same strand, e.g. with boost::asio::experimental::awaitable_operators:
//   co_await (upstream_to_epp() && epp_to_client());
// where upstream_to_epp reads the upstream and calls send_response_body (the last with
// end_of_stream) and epp_to_client awaits next_response_body() and writes each piece to the
// client at once, until a piece with end_of_stream. An SSE chunk comes back as soon as the EPP
// answers it. Only the bytes the EPP streams back go to the client (as in Envoy).
//
// Errors (ExtProcError, counted in infergate_extproc_client_errors_total{kind}):
//   kUnavailable   — the EPP could not be reached (connect failure, gRPC UNAVAILABLE before any
//                    answer);
//   kStreamBroken  — the stream ended early: reset, a non-OK gRPC status, or an OK end before the
//                    expected answers;
//   kTimeout       — an expected answer did not come within message_timeout;
//   kProtocol      — an answer of the wrong kind or order (Envoy: "spurious message");
//   kCancelled     — cancel() was called (client disconnect) or the exchange was abandoned.
// After an error the exchange is over (the stream is cancelled); every later call returns the
// same error. The caller maps an error with ExtProcClient::on_failure(): FailOpen → continue
// without the EPP (pick an endpoint itself, forward the original headers and body, relay the
// upstream's response unchanged); FailClose → the 503 OpenAI-style Status it returns. Once
// response bytes went to the client, FailClose can only truncate the response. kCancelled needs no
// mapping (nobody is waiting for the answer).
//
// An ImmediateResponse is not an error: the EPP's local reply (400, 413, 429, 503, ...) is
// returned to the client as is (status, header mutation, body); the exchange is then over.
//
// Threads: ExtProcClient is thread-safe and may be shared by every I/O thread. An
// ExtProcExchange belongs to one coroutine chain on one strand (e.g. an http::Server
// connection's strand, or a single-threaded io_context): its awaitable functions must be
// co_awaited on that strand, one receiving call at a time. gRPC's callbacks run on gRPC threads;
// they never touch the exchange object, only a shared state, and resume the waiting coroutine by
// posting to its executor, so no I/O thread ever blocks. cancel() may be called from any thread.
// Destroying an exchange cancels its stream; gRPC's late callbacks only see the shared state,
// which lives until the stream is done. The ExtProcClient must outlive its exchanges (destroy
// them first). The client's destructor cancels the streams still open and
// waits until gRPC has finished them (so it must not run on a gRPC thread). The prom::Registry
// must outlive the client.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/status.h"
#include "director/director.h"
#include "envoy/service/ext_proc/v3/external_processor.pb.h"

namespace infergate::prom {
class Registry;
}

namespace infergate::extproc {

// What the gateway does when the EPP fails (endpointPickerRef.failureMode; Envoy's
// failure_mode_allow). GIE's default is FailClose.
enum class FailureMode { kFailOpen, kFailClose };

struct ExtProcClientOptions {
  std::string target;  // the EPP's host:port (gRPC target syntax)
  // TLS to the EPP. The reference EPP serves TLS with a self-signed certificate, and GIE's Envoy
  // config connects with validation disabled: tls_verify = false does the same.
  bool tls = false;
  bool tls_verify = false;
  // With tls_verify: the PEM roots to trust (empty: the system's), and the name to check the
  // certificate against (empty: the target's host).
  std::string tls_root_certs_pem;
  std::string tls_server_name;
  // Longest wait for an expected answer (the request-path answers, the response-headers answer,
  // the response-body answers after its end_of_stream was sent); 0 = no limit. Also bounds the
  // connection attempt of the stream.
  std::chrono::milliseconds message_timeout{10000};
  // Largest body chunk sent in one message (Envoy forwards what it read; 64 KiB).
  std::size_t body_chunk_bytes = 64 * 1024;
  FailureMode failure_mode = FailureMode::kFailClose;
  // HTTP/2 connections to the EPP; streams are spread over them round-robin.
  int channels = 1;
};

enum class ExtProcErrorKind { kUnavailable, kStreamBroken, kTimeout, kProtocol, kCancelled };
std::string_view error_kind_name(ExtProcErrorKind kind);  // "unavailable", "stream_broken", ...

struct ExtProcError {
  ExtProcErrorKind kind = ExtProcErrorKind::kStreamBroken;
  std::string message;
};

// A value or an ExtProcError.
template <typename T>
using ExtProcResult = Result<T, ExtProcError>;

// The EPP's local reply, to send to the client as is.
struct ImmediateReply {
  int status = 0;
  director::Headers headers;  // from its header mutation (e.g. content-type)
  std::string body;
  std::string details;  // %RESPONSE_CODE_DETAILS%, e.g. "inference_error_BadRequest"
};

struct RequestDecision {
  // Set: the EPP answered with a local reply; nothing else below is meaningful.
  std::optional<ImmediateReply> immediate;
  // Where to send the request: primary first, then fallbacks (`ip:port`, IPv6 bracketed).
  std::vector<std::string> destinations;
  std::string destination;  // the list as the EPP sent it (comma-joined)
  // The caller's headers with the EPP's mutation applied (content-length set to body's size
  // when the request had a body).
  director::Headers headers;
  // The body to forward: what the EPP streamed back (e.g. the model rewritten).
  std::string body;
  bool clear_route_cache = false;
  // Every string value of the envoy.lb namespace of dynamic_metadata (the destination included),
  // e.g. x-gateway-destination-endpoint-scores.
  std::vector<std::pair<std::string, std::string>> lb_metadata;
};

struct ResponseHeadersDecision {
  std::optional<ImmediateReply> immediate;
  director::Headers headers;  // the upstream's response headers with the mutation applied
};

// A piece of the mutated response body.
struct BodyPiece {
  std::string bytes;
  bool end_of_stream = false;
};

// --- pure helpers (also used by the exchange; thread-safe, no state) ---

// Removes the request headers a client must not set: x-gateway-destination-endpoint,
// x-gateway-destination-endpoint-served, x-gateway-destination-endpoint-subset. Returns how many
// were removed.
std::size_t strip_steering_headers(director::Headers& headers);

// Applies an ext_proc HeaderMutation to `headers` as Envoy does: remove_headers first, then
// set_headers in order. Values come from raw_value (value as a fallback); names are lower-cased.
// A set overwrites every existing value unless the deprecated `append` is true (append) or, with
// `append` unset, append_action says otherwise (ADD_IF_ABSENT, OVERWRITE_IF_EXISTS; the default
// APPEND_IF_EXISTS_OR_ADD is read as overwrite, ext_proc's default). An empty value without
// keep_empty_value removes the header. Changes to x-envoy-*, :method, :authority, :scheme and
// host, other pseudo-headers except :path (requests) and :status (responses), and names that are
// empty are refused, as Envoy's default mutation rules do; returns how many were refused.
std::size_t apply_header_mutation(const ::envoy::service::ext_proc::v3::HeaderMutation& mutation,
                                  director::Headers& headers);

// Splits `ip:port[,ip:port...]` (spaces around entries ignored, empty entries dropped).
std::vector<std::string> split_destinations(std::string_view list);

class ExtProcExchange;

class ExtProcClient {
 public:
  // Creates the channels (connections are made lazily, on the first stream). Counters are
  // registered in `registry` (infergate_extproc_client_*). Throws std::invalid_argument on an
  // empty target (start-up only).
  ExtProcClient(ExtProcClientOptions options, prom::Registry& registry);
  // Cancels the streams still open and waits for gRPC to finish them (not on a gRPC thread).
  ~ExtProcClient();
  ExtProcClient(const ExtProcClient&) = delete;
  ExtProcClient& operator=(const ExtProcClient&) = delete;

  // A new exchange for one HTTP request (no stream is opened until process_request). Any thread.
  std::unique_ptr<ExtProcExchange> start_exchange();

  // Cancels every stream still open and waits until gRPC has finished them (their exchanges'
  // waiting calls then return kCancelled on their executors). For an owner shutting down whose
  // exchanges may outlive it on stopped executors. Not on a gRPC thread.
  void cancel_all();

  // Maps an error to the failure mode, and counts it in
  // infergate_extproc_client_failures_total{mode}: nullopt = FailOpen, continue without the EPP;
  // otherwise the Status to reply with (503, OpenAI-style: "endpoint picker unavailable: ...").
  std::optional<Status> on_failure(const ExtProcError& error);

  const ExtProcClientOptions& options() const { return options_; }

  // Implementation details, named here for the stream's code.
  struct Metrics;
  struct Channels;

 private:
  friend class ExtProcExchange;

  const ExtProcClientOptions options_;
  std::unique_ptr<Channels> channels_;
  std::shared_ptr<Metrics> metrics_;
};

class ExtProcExchange {
 public:
  ~ExtProcExchange();  // cancels the stream if it is still open
  ExtProcExchange(const ExtProcExchange&) = delete;
  ExtProcExchange& operator=(const ExtProcExchange&) = delete;

  // Opens the stream and runs the request path (see the top of this file). `headers` must hold
  // ":method" and ":path"; `subset`, when set, is sent as the subset hint
  // (envoy.lb.subset_hint). An empty body is sent as request_headers with end_of_stream. Call
  // once, first.
  boost::asio::awaitable<ExtProcResult<RequestDecision>> process_request(
      director::Headers headers, std::string body,
      std::optional<std::vector<std::string>> subset = std::nullopt);

  // Sends the upstream's response headers (":status" first) with `served_endpoint` (the
  // `ip:port` that answered) and waits for the answer. `end_of_stream`: the response has no body;
  // the exchange then half-closes. Call once, after process_request routed the request.
  boost::asio::awaitable<ExtProcResult<ResponseHeadersDecision>> process_response_headers(
      director::Headers headers, std::string served_endpoint, bool end_of_stream = false);

  // Queues one response body chunk (split into body_chunk_bytes messages) without waiting; the
  // last call has end_of_stream. An error ends the exchange (also seen by next_response_body).
  ExtProcResult<std::monostate> send_response_body(std::string_view chunk, bool end_of_stream);

  // The next piece of the mutated response body, in order, as soon as the EPP answers; the last
  // has end_of_stream (then the stream is half-closed). Waits without limit until end_of_stream
  // was sent, then at most message_timeout.
  boost::asio::awaitable<ExtProcResult<BodyPiece>> next_response_body();

  // Ends the exchange at once (client gone): the stream is cancelled, waiting calls return
  // kCancelled, the EPP releases its accounting. Any thread; idempotent.
  void cancel();

  // True once the exchange is over (answered completely, failed or cancelled). On the strand.
  bool done() const;

  class Call;

 private:
  friend class ExtProcClient;
  explicit ExtProcExchange(ExtProcClient& client);

  boost::asio::awaitable<ExtProcResult<::envoy::service::ext_proc::v3::ProcessingResponse>>
  next_answer(bool timed);
  ExtProcError fail(ExtProcError error);
  ExtProcError protocol_error(std::string_view reason, std::string message);
  // The EPP's local reply ends the exchange: counted, the stream half-closed.
  ImmediateReply end_with_immediate(const ::envoy::service::ext_proc::v3::ImmediateResponse& reply);

  enum class State {
    kIdle,
    kRequestSent,
    kRouted,
    kResponseBody,
    kDone,
    kFailed,
  };

  ExtProcClient& client_;
  mutable std::mutex call_mutex_;  // guards call_ (set on the strand) against cancel()
  std::shared_ptr<Call> call_;
  bool cancel_requested_ = false;
  // --- on the strand only ---
  State state_ = State::kIdle;
  std::optional<ExtProcError> error_;
  bool response_eos_sent_ = false;
  // Response chunks sent and not yet answered, kept until the EPP's first streamed_response
  // answer (for an EPP that answers with empty mutations: pass-through).
  bool streamed_answer_seen_ = false;
  std::deque<std::pair<std::string, bool>> unanswered_chunks_;
};

}  // namespace infergate::extproc
