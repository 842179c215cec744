#include "bench/stream.h"

#include <simdjson.h>

#include <utility>

namespace infergate::bench {
namespace {

namespace od = simdjson::ondemand;

constexpr std::size_t kMaxErrorMessageBytes = 200;

std::string truncate(std::string_view text) {
  return std::string(text.substr(0, kMaxErrorMessageBytes));
}

// True for a non-empty JSON string; false for anything else, including null. Sets `error` when
// the value is not valid JSON.
bool is_non_empty_string(od::value value, simdjson::error_code& error) {
  od::json_type type{};
  if ((error = value.type().get(type))) return false;
  if (type != od::json_type::string) return false;
  std::string_view text;
  if ((error = value.get_string().get(text))) return false;
  return !text.empty();
}

// Whether a chat `delta` object carries text.
bool delta_has_text(od::object delta, simdjson::error_code& error) {
  bool has_text = false;
  for (auto field_result : delta) {
    od::field field;
    if ((error = std::move(field_result).get(field))) return false;
    std::string_view key;
    if ((error = field.unescaped_key().get(key))) return false;
    if (key == "content" || key == "reasoning_content" || key == "reasoning") {
      has_text = is_non_empty_string(field.value(), error) || has_text;
      if (error) return false;
    }
  }
  return has_text;
}

bool choices_have_text(od::value choices, simdjson::error_code& error) {
  od::array array;
  if ((error = choices.get_array().get(array))) return false;
  bool has_text = false;
  for (auto choice_result : array) {
    od::object choice;
    if ((error = choice_result.get_object().get(choice))) return false;
    for (auto field_result : choice) {
      od::field field;
      if ((error = std::move(field_result).get(field))) return false;
      std::string_view key;
      if ((error = field.unescaped_key().get(key))) return false;
      if (key == "text") {
        has_text = is_non_empty_string(field.value(), error) || has_text;
      } else if (key == "delta") {
        od::object delta;
        if ((error = field.value().get_object().get(delta))) return false;
        has_text = delta_has_text(delta, error) || has_text;
      }
      if (error) return false;
    }
  }
  return has_text;
}

std::optional<StreamChunk::Usage> read_usage(od::value value, simdjson::error_code& error) {
  od::json_type type{};
  if ((error = value.type().get(type))) return std::nullopt;
  if (type == od::json_type::null) return std::nullopt;
  od::object object;
  if ((error = value.get_object().get(object))) return std::nullopt;
  StreamChunk::Usage usage;
  for (auto field_result : object) {
    od::field field;
    if ((error = std::move(field_result).get(field))) return std::nullopt;
    std::string_view key;
    if ((error = field.unescaped_key().get(key))) return std::nullopt;
    if (key == "prompt_tokens") {
      if ((error = field.value().get_int64().get(usage.prompt_tokens))) return std::nullopt;
    } else if (key == "completion_tokens") {
      if ((error = field.value().get_int64().get(usage.completion_tokens))) return std::nullopt;
    } else if (key == "prompt_tokens_details") {
      od::value details_value = field.value();
      od::json_type details_type{};
      if ((error = details_value.type().get(details_type))) return std::nullopt;
      if (details_type != od::json_type::object) continue;  // null: the server does not say
      od::object details;
      if ((error = details_value.get_object().get(details))) return std::nullopt;
      for (auto detail_result : details) {
        od::field detail;
        if ((error = std::move(detail_result).get(detail))) return std::nullopt;
        std::string_view detail_key;
        if ((error = detail.unescaped_key().get(detail_key))) return std::nullopt;
        if (detail_key != "cached_tokens") continue;
        std::int64_t cached = 0;
        od::value cached_value = detail.value();
        od::json_type cached_type{};
        if ((error = cached_value.type().get(cached_type))) return std::nullopt;
        if (cached_type == od::json_type::null) continue;
        if ((error = cached_value.get_int64().get(cached))) return std::nullopt;
        usage.cached_tokens = cached;
      }
    }
  }
  return usage;
}

std::string read_error_message(od::value value) {
  od::json_type type{};
  if (!value.type().get(type) && type == od::json_type::object) {
    od::object object;
    if (!value.get_object().get(object)) {
      for (auto field_result : object) {
        od::field field;
        std::string_view key;
        if (std::move(field_result).get(field) || field.unescaped_key().get(key)) break;
        std::string_view message;
        if (key == "message" && !field.value().get_string().get(message)) return truncate(message);
      }
    }
    return "error event without a message";
  }
  return truncate(value.raw_json_token());
}

StreamChunk malformed(std::string why) {
  StreamChunk chunk;
  chunk.kind = StreamChunk::Kind::kMalformed;
  chunk.error_message = std::move(why);
  return chunk;
}

}  // namespace

std::int64_t RequestRecord::output_tokens() const {
  return completion_tokens.value_or(static_cast<std::int64_t>(text_events));
}

std::optional<Duration> RequestRecord::tpot() const {
  const std::int64_t tokens = output_tokens();
  if (tokens < 2) return std::nullopt;
  return (e2e() - ttft()) / (tokens - 1);
}

std::optional<Duration> RequestRecord::ntpot() const {
  const std::int64_t tokens = output_tokens();
  if (tokens < 1) return std::nullopt;
  return e2e() / tokens;
}

std::string error_label(const RequestRecord& record) {
  switch (record.outcome) {
    case Outcome::kSuccess:
      return {};
    case Outcome::kConnectError:
      return "connect";
    case Outcome::kTimeout:
      return "timeout";
    case Outcome::kHttpError:
      return "http_" + std::to_string(record.http_status);
    case Outcome::kStreamError:
      return "stream_error";
    case Outcome::kPending:
    case Outcome::kProtocolError:
      break;
  }
  return "protocol";
}

StreamChunk parse_stream_chunk(std::string_view data) {
  if (data == "[DONE]") return StreamChunk{.kind = StreamChunk::Kind::kDone};

  // The parser and its padded copy of the event are reused per thread: events are small and
  // arrive by the thousand per second.
  thread_local od::parser parser;
  thread_local std::string scratch;
  scratch.reserve(data.size() + simdjson::SIMDJSON_PADDING);
  scratch.assign(data);
  od::document document;
  simdjson::error_code error =
      parser.iterate(scratch.data(), scratch.size(), scratch.capacity()).get(document);
  od::object object;
  if (!error) error = document.get_object().get(object);
  if (error) return malformed(std::string("event data is not a JSON object: ") + truncate(data));

  StreamChunk chunk;
  for (auto field_result : object) {
    od::field field;
    std::string_view key;
    if ((error = std::move(field_result).get(field)) || (error = field.unescaped_key().get(key)))
      break;
    if (key == "choices") {
      chunk.has_text = choices_have_text(field.value(), error) || chunk.has_text;
    } else if (key == "usage") {
      chunk.usage = read_usage(field.value(), error);
    } else if (key == "error") {
      chunk.kind = StreamChunk::Kind::kError;
      chunk.error_message = read_error_message(field.value());
    }
    if (error) break;
  }
  if (error) {
    return malformed(std::string("malformed event (") + simdjson::error_message(error) +
                     "): " + truncate(data));
  }
  return chunk;
}

void StreamRecorder::on_body(std::string_view bytes, TimePoint received_at) {
  parser_.feed(bytes, [&](std::string_view data) { on_event(data, received_at); });
}

void StreamRecorder::on_event(std::string_view data, TimePoint received_at) {
  if (done_at_) return;  // nothing after [DONE] counts
  const StreamChunk chunk = parse_stream_chunk(data);
  switch (chunk.kind) {
    case StreamChunk::Kind::kDone:
      done_at_ = received_at;
      return;
    case StreamChunk::Kind::kError:
      fail(Outcome::kStreamError, chunk.error_message);
      return;
    case StreamChunk::Kind::kMalformed:
      fail(Outcome::kProtocolError, chunk.error_message);
      return;
    case StreamChunk::Kind::kData:
      break;
  }
  if (chunk.has_text) {
    if (!record_.first_token) {
      record_.first_token = received_at;
    } else {
      record_.text_event_gaps.push_back(received_at - record_.last_token);
    }
    record_.last_token = received_at;
    ++record_.text_events;
  }
  if (chunk.usage) {
    record_.prompt_tokens = chunk.usage->prompt_tokens;
    record_.completion_tokens = chunk.usage->completion_tokens;
    record_.cached_tokens = chunk.usage->cached_tokens;
  }
}

void StreamRecorder::fail(Outcome outcome, std::string message) {
  if (record_.outcome != Outcome::kPending) return;  // the first failure is the cause
  record_.outcome = outcome;
  record_.error_message = std::move(message);
}

void StreamRecorder::on_body_end(TimePoint now) {
  record_.end = done_at_.value_or(now);
  if (record_.outcome != Outcome::kPending) return;
  if (parser_.has_partial_event() && !done_at_) {
    fail(Outcome::kProtocolError, "the stream ended inside an event");
  } else if (!record_.first_token) {
    fail(Outcome::kProtocolError, "the stream ended without generated text");
  } else {
    record_.outcome = Outcome::kSuccess;
  }
}

}  // namespace infergate::bench
