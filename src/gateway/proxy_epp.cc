// The proxy's external-EPP path (`infergate serve --epp`): the gateway plays Envoy's part of the
// Endpoint Picker Protocol (proxy.h; epp-protocol facts §4, §5, §12).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/verb.hpp>
#include <charconv>

#include "common/text.h"
#include "director/protocol.h"
#include "extproc/client.h"
#include "gateway/headers.h"
#include "gateway/proxy.h"
#include "gateway/proxy_internal.h"

namespace infergate::gateway {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using namespace proxy_detail;

// FailOpen on the response path relays the upstream's bytes unchanged; they are kept until the
// first byte goes to the client, up to this size.
constexpr std::size_t kMaxPassThroughBytes = 4u << 20;

// The status in ":status", or `fallback` when it is missing or not a status code.
unsigned status_of(const director::Headers& headers, unsigned fallback) {
  const std::optional<std::string_view> value = director::find_header(headers, ":status");
  if (!value) return fallback;
  unsigned status = 0;
  const char* end = value->data() + value->size();
  const auto [ptr, error] = std::from_chars(value->data(), end, status);
  if (error != std::errc() || ptr != end || status < 100 || status > 599) return fallback;
  return status;
}

// application/json or a +json media type.
bool is_json(std::string_view content_type) {
  const std::string_view media_type = trim_blanks(content_type.substr(0, content_type.find(';')));
  return boost::beast::iequals(media_type, "application/json") ||
         (media_type.size() > 5 &&
          boost::beast::iequals(media_type.substr(media_type.size() - 5), "+json"));
}

// The request as the EPP left it: its :path, its header mutation applied, its body.
http::Request upstream_request(const http::Request& client,
                               const extproc::RequestDecision& decision) {
  const std::string target(
      director::find_header(decision.headers, ":path").value_or(std::string_view(client.target())));
  http::Request upstream(client.method(), target, 11);
  copy_mutated_headers(decision.headers, upstream);
  if (!decision.body.empty() || client.method() == bhttp::verb::post) {
    upstream.body() = decision.body;
  }
  upstream.keep_alive(true);
  upstream.prepare_payload();
  return upstream;
}

// The destination list to try, in the EPP's order; ejected endpoints are left out while others
// are listed (override-host skips unhealthy hosts).
std::string usable_destinations(const std::vector<std::string>& destinations,
                                const EndpointHealth& health) {
  std::string usable;
  for (const std::string& destination : destinations) {
    if (health.is_ejected(destination)) continue;
    if (!usable.empty()) usable += ',';
    usable += destination;
  }
  if (!usable.empty()) return usable;
  for (const std::string& destination : destinations) {
    if (!usable.empty()) usable += ',';
    usable += destination;
  }
  return usable;
}

}  // namespace

void Proxy::count_epp_failure(const extproc::ExtProcError& error, std::string_view outcome) {
  const std::string_view kind = extproc::error_kind_name(error.kind);
  metrics_.count_epp_failure(kind, outcome);
  // Logged once per kind (an EPP that is down fails every request); the counter has the rest.
  std::atomic<bool>& logged =
      epp_failure_logged_[static_cast<std::size_t>(error.kind) % epp_failure_logged_.size()];
  if (!logged.exchange(true, std::memory_order_relaxed)) {
    spdlog::warn("gateway: endpoint picker failure {} ({}; logged once per kind): {}", kind,
                 outcome, error.message);
  } else {
    spdlog::debug("gateway: endpoint picker failure {} ({}): {}", kind, outcome, error.message);
  }
}

asio::awaitable<void> Proxy::send_immediate(RequestState& state, http::ResponseWriter& writer,
                                            const extproc::ImmediateReply& reply) {
  const auto code = static_cast<unsigned>(reply.status);
  const Status status(reply.status, reply.body.empty() ? reply.details : reply.body);
  if (code >= 400) metrics_.count_error(picker_error_reason(status));
  state.record.status = code;
  state.record.error = code >= 400 ? status.message() : std::string();
  std::string content_type(director::find_header(reply.headers, "content-type").value_or(""));
  std::string body = reply.body;
  if (code >= 400 && !is_json(content_type)) {
    // The EPP's text ("inference error: ResourceExhausted - ...") as an OpenAI-style error.
    body = status.to_openai_json();
    content_type = kJson;
  }
  http::Headers extra = relayed_response_headers(without_pseudo_headers(reply.headers));
  if (!co_await writer.send(code, content_type, std::move(body), std::move(extra))) {
    state.record.status = kClientClosed;
  }
}

asio::awaitable<void> Proxy::pick_through_epp(RequestState& state, const http::Request& request,
                                              std::string_view path, http::ResponseWriter& writer) {
  const bool bodyless = path == "/v1/models";
  // The routed pool, when there are pools: the FailOpen fallback and the rule's timeouts.
  director::Headers fallback_headers;
  if (!pools_.empty()) {
    fallback_headers = director_headers(request);
    state.pool = only_pool();
    if (state.pool == nullptr &&
        !co_await choose_pool(state, request, path, fallback_headers, writer)) {
      co_return;
    }
  }
  const std::unique_ptr<extproc::ExtProcExchange> exchange = epp_->start_exchange();
  extproc::ExtProcExchange& epp = *exchange;
  UpstreamCancel& cancel = state.cancel;
  writer.on_client_gone([&cancel, &epp] {
    cancel.cancel();
    epp.cancel();
  });

  auto decision =
      co_await epp.process_request(epp_request_headers(request), std::string(request.body()));
  if (cancel.cancelled() || writer.client_gone()) {
    client_gone(state, nullptr);
    co_return;
  }
  if (!decision) {
    std::optional<Status> reply = epp_->on_failure(decision.error());
    if (!reply && state.pool == nullptr) {
      reply = Status::unavailable(
          fmt::format("endpoint picker unavailable, and no --endpoints to fall back on: {}",
                      decision.error().message));
    }
    count_epp_failure(decision.error(), reply ? "fail_close" : "fail_open");
    if (reply) {
      co_await reply_error(state, writer, *reply, "epp_failure", true);
      co_return;
    }
    // FailOpen: the embedded picker of the routed pool, the request as the client sent it.
    co_await forward(state, request, writer, std::move(fallback_headers),
                     embedded_route(*state.pool, request, bodyless));
    co_return;
  }
  if (decision->immediate) {
    co_await send_immediate(state, writer, *decision->immediate);
    co_return;
  }
  const extproc::RequestDecision& routed = *decision;
  state.record.request_id = std::string(
      director::find_header(routed.headers, director::protocol::kRequestIdHeader).value_or(""));
  if (routed.destinations.empty()) {
    const Status status = Status::unavailable("the endpoint picker named no destination");
    co_await reply_error(state, writer, status, "no_endpoint", true);
    co_return;
  }
  const http::Request prototype = upstream_request(request, routed);

  AttemptPlan plan(options_.max_retries);
  plan.set_destinations(usable_destinations(routed.destinations, health_));
  FailedAttempts failed;
  bool timed_out = false;
  // The EPP's list is its decision: primary, then fallbacks; no re-route once it is used up.
  while (std::optional<std::string> next = plan.next()) {
    ExchangeTimeouts timeouts;
    const std::optional<UpstreamEndpoint> endpoint =
        begin_attempt(state, plan, *next, timeouts, timed_out);
    if (timed_out) break;
    if (!endpoint) continue;
    auto outcome =
        co_await pool_.start_exchange(current_shard(), *endpoint, prototype, timeouts, cancel);
    if (cancel.cancelled() || writer.client_gone()) {
      client_gone(state, nullptr);
      co_return;
    }
    if (auto* failure = std::get_if<ExchangeFailure>(&outcome)) {
      if (!attempt_failed(state, state.record.request_id, *next, std::move(*failure), failed)) {
        break;
      }
      continue;
    }
    UpstreamExchange& upstream = std::get<UpstreamExchange>(outcome);
    if (upstream.head.status >= 500 && plan.can_retry()) {
      // Keep the error in case no fallback does better.
      KeptResponse kept{.head = std::move(upstream.head), .body = {}, .endpoint = *next};
      const bool complete = co_await keep_error_body(state, writer, upstream, kept.body);
      if (cancel.cancelled() || writer.client_gone()) {
        client_gone(state, nullptr);
        co_return;
      }
      attempt_answered_error(state, std::move(kept), complete, upstream, failed);
      continue;
    }
    attempt_answered(*next, upstream.head.status, plan);
    const http::ResponseHead head = upstream.head;
    co_await relay_through_epp(state, writer, epp, head, *next, &upstream, {});
    co_return;
  }

  // Every listed endpoint failed.
  if (plan.attempted().size() > 1) metrics_.count_error("all_attempts_failed");
  if (failed.kept_response) {
    // The model server's own error, through the EPP as any response.
    KeptResponse& kept = *failed.kept_response;
    co_await relay_through_epp(state, writer, epp, kept.head, kept.endpoint, nullptr,
                               std::move(kept.body));
    co_return;
  }
  Status status = Status::unavailable("no endpoint left to try");
  if (timed_out) {
    status = Status(504, fmt::format("the request did not complete within {} ms",
                                     state.request_timeout.count()));
    metrics_.count_error("upstream_timeout");
  } else if (failed.last_failure) {
    // The attempt's reason was counted already.
    status = final_status(*failed.last_failure, state.record.attempts);
  } else {
    metrics_.count_error("no_endpoint");
  }
  state.record.status = static_cast<unsigned>(status.http_status());
  state.record.error = status.message();
  std::string body = status.to_openai_json();
  if (!co_await writer.send(state.record.status, kJson, std::move(body))) {
    state.record.status = kClientClosed;
  }
}

asio::awaitable<void> Proxy::relay_through_epp(RequestState& state, http::ResponseWriter& writer,
                                               extproc::ExtProcExchange& epp,
                                               const http::ResponseHead& head,
                                               const std::string& served,
                                               UpstreamExchange* upstream, std::string kept_body) {
  using namespace asio::experimental::awaitable_operators;
  state.record.endpoint = served;
  state.record.error.clear();
  http::ClientConnection* connection = upstream ? upstream->connection.get() : nullptr;
  UpstreamCancel& cancel = state.cancel;
  cancel.set_active(connection);
  const director::Headers upstream_headers = director_response_headers(head);
  const bool no_body = connection == nullptr ? kept_body.empty()
                                             : head.content_length == std::uint64_t{0} ||
                                                   head.status == 204 || head.status == 304;

  // 1. The response head, with the served endpoint (envoy.lb metadata).
  auto answer = co_await epp.process_response_headers(upstream_headers, served, no_body);
  if (cancel.cancelled() || writer.client_gone()) {
    cancel.set_active(nullptr);
    client_gone(state, nullptr);
    co_return;
  }
  director::Headers headers;
  bool pass_through = false;  // FailOpen: the upstream's response as it is
  if (!answer) {
    std::optional<Status> reply = epp_->on_failure(answer.error());
    count_epp_failure(answer.error(), reply ? "fail_close" : "fail_open");
    if (reply) {
      cancel.set_active(nullptr);
      co_await reply_error(state, writer, *reply, "epp_failure", true);
      co_return;
    }
    pass_through = true;
    headers = upstream_headers;
  } else if (answer->immediate) {
    cancel.set_active(nullptr);
    co_await send_immediate(state, writer, *answer->immediate);
    co_return;
  } else {
    headers = std::move(answer->headers);
  }
  const unsigned status = status_of(headers, head.status);
  const std::string content_type(director::find_header(headers, "content-type").value_or(""));
  http::Headers extra = relayed_response_headers(without_pseudo_headers(headers));
  if (options_.emit_endpoint_scores) extra.emplace_back(std::string(kServedHeader), served);
  const bool streaming = is_event_stream(content_type);
  state.record.status = status;

  // 2. The body: the upstream's chunks go to the EPP as they arrive (upstream_to_epp) while what
  // the EPP returns goes to the client at once (epp_to_client). Both loops run on this strand.
  const bool fail_open = epp_->options().failure_mode == extproc::FailureMode::kFailOpen;
  bool begun = false;          // the response header went to the client
  bool gone = false;           // the client left (a write failed)
  bool upstream_done = false;  // the upstream body was read to its end
  std::optional<Status> upstream_error;
  std::optional<extproc::ExtProcError> epp_error;
  std::optional<Status> epp_status;  // what the client gets for epp_error
  // FailOpen: the upstream's bytes not yet relayed, kept until something went to the client.
  bool keep_raw = fail_open;
  std::string raw;
  std::string whole;  // not streaming: the response, sent with Content-Length at the end

  // Passes bytes on to the client: chunks of a stream, or into `whole`.
  auto deliver = [&](std::string_view bytes, bool end) -> asio::awaitable<bool> {
    if (!streaming) {
      whole.append(bytes);
      co_return true;
    }
    if (!begun) {
      if (bytes.empty() && !end) co_return true;
      begun = true;
      keep_raw = false;
      raw.clear();
      if (!co_await writer.begin_stream(status, content_type, extra)) co_return false;
    }
    if (bytes.empty()) co_return true;
    const bool written = co_await writer.write_chunk(bytes);
    co_return written;
  };
  auto stop_upstream = [&] {
    if (connection != nullptr) connection->close();
  };
  auto upstream_to_epp = [&]() -> asio::awaitable<void> {
    std::string chunk;
    for (;;) {
      chunk.clear();
      Result<std::size_t> read =
          co_await connection->read_body_some(chunk, budget(state, options_.idle_timeout));
      if (!read.ok()) {
        // Closed by the other loop (EPP failure, client gone), or the upstream broke off.
        if (!epp_error && !gone && !cancel.cancelled()) {
          upstream_error = read.status();
          epp.cancel();
        }
        co_return;
      }
      const bool end = *read == 0;
      if (!chunk.empty() && !state.first_byte) state.first_byte = std::chrono::steady_clock::now();
      if (pass_through) {
        std::string pending = std::exchange(raw, {});
        pending += chunk;
        keep_raw = false;
        if (!co_await deliver(pending, end)) {
          gone = true;
          stop_upstream();
          co_return;
        }
      } else {
        if (keep_raw) {
          raw += chunk;
          if (raw.size() > kMaxPassThroughBytes) {
            keep_raw = false;
            raw.clear();
          }
        }
        // A failed send ends the exchange: the other loop sees the error and decides.
        if (!epp_error && !epp.send_response_body(chunk, end) && !keep_raw) co_return;
        if (epp_error && !keep_raw) co_return;
      }
      if (end) {
        upstream_done = true;
        co_return;
      }
    }
  };
  auto epp_to_client = [&]() -> asio::awaitable<void> {
    for (;;) {
      auto piece = co_await epp.next_response_body();
      if (!piece) {
        if (upstream_error || gone || cancel.cancelled() || writer.client_gone()) co_return;
        epp_error = piece.error();
        if (begun) {
          count_epp_failure(*epp_error, "truncated");
        } else {
          epp_status = epp_->on_failure(*epp_error);
          if (!epp_status && keep_raw) {
            count_epp_failure(*epp_error, "fail_open");
            // `raw` holds every upstream byte so far: what the EPP returned of them (held in
            // `whole` when not streaming) is dropped, or the client would get it twice.
            whole.clear();
            pass_through = true;  // upstream_to_epp relays the rest unchanged
            co_return;
          }
          if (!epp_status) {
            epp_status = Status(502, fmt::format("the endpoint picker failed on the response: {}",
                                                 epp_error->message));
          }
          count_epp_failure(*epp_error, "fail_close");
        }
        stop_upstream();
        co_return;
      }
      if (!co_await deliver(piece->bytes, piece->end_of_stream)) {
        gone = true;
        stop_upstream();
        epp.cancel();
        co_return;
      }
      if (piece->end_of_stream) co_return;
    }
  };

  if (no_body) {
    if (connection != nullptr) {
      std::string none;  // the (empty) end of the body, so that the connection can be reused
      Result<std::size_t> read =
          co_await connection->read_body_some(none, budget(state, options_.idle_timeout));
      upstream_done = read.ok() && *read == 0;
    }
  } else if (connection == nullptr) {
    // A kept response: its whole body in one piece.
    upstream_done = true;
    if (pass_through) {
      co_await deliver(kept_body, true);
    } else {
      if (keep_raw) raw = kept_body;
      epp.send_response_body(kept_body, true);  // an error shows in epp_to_client
      co_await epp_to_client();
    }
  } else if (pass_through) {
    co_await upstream_to_epp();
  } else {
    co_await (upstream_to_epp() && epp_to_client());
  }
  cancel.set_active(nullptr);

  if (gone || cancel.cancelled() || writer.client_gone()) {
    client_gone(state, nullptr);
    co_return;
  }
  if (upstream_error) {
    const bool timeout = upstream_error->http_status() == 504;
    record_failure(served, timeout ? AttemptFailure::kFirstByteTimeout : AttemptFailure::kReset);
    const Status broke(timeout ? 504 : 502, fmt::format("the model server's response broke off: {}",
                                                        upstream_error->message()));
    if (!begun) {
      co_await reply_error(state, writer, broke, timeout ? "upstream_timeout" : "upstream_reset",
                           true);
    } else {
      state.record.error = broke.message();  // bytes went out: the stream stays unterminated
    }
    co_return;
  }
  if (epp_error && !pass_through) {
    if (!begun) {
      co_await reply_error(state, writer, *epp_status, "epp_failure", true);
    } else {
      metrics_.count_error("epp_failure");
      state.record.error = epp_error->message;
    }
    co_return;
  }
  if (pass_through && !raw.empty()) {
    // The upstream ended before the EPP failed: what it sent, unchanged.
    const std::string rest = std::exchange(raw, {});
    if (!co_await deliver(rest, true)) {
      client_gone(state, nullptr);
      co_return;
    }
  }
  if (upstream_done && upstream != nullptr) {
    pool_.release(current_shard(), served, std::move(upstream->connection));
  }
  bool sent = false;
  if (streaming) {
    const bool header_sent = co_await deliver({}, true);
    sent = header_sent && co_await writer.end_stream();
  } else {
    sent = co_await writer.send(status, content_type, std::move(whole), std::move(extra));
  }
  if (!sent) {
    metrics_.count_error("client_disconnected");
    state.record.status = kClientClosed;
  }
}

}  // namespace infergate::gateway
