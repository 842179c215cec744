#include "request/response_usage.h"

#include <simdjson.h>

#include <cstring>

#include "request/json_scan.h"

namespace infergate::request {
namespace {

namespace od = simdjson::ondemand;

constexpr int kBadGateway = 502;

Status invalid_json(simdjson::error_code error) {
  return Status(kBadGateway,
                std::string("response body is not valid JSON: ") + simdjson::error_message(error));
}

// A count: a non-negative integer, anything else leaves `out` unchanged.
simdjson::error_code read_count(od::value& value, std::int64_t& out, bool& present) {
  od::json_type type{};
  if (auto error = value.type().get(type)) return error;
  if (type != od::json_type::number) return simdjson::SUCCESS;  // skipped by the caller's loop
  std::int64_t number = 0;
  if (value.get_int64().get(number) || number < 0) return simdjson::SUCCESS;
  out = number;
  present = true;
  return simdjson::SUCCESS;
}

// Reads `cached_tokens` of a *_details object; other shapes are ignored.
simdjson::error_code read_details(od::value& value, std::int64_t& cached_tokens) {
  od::json_type type{};
  if (auto error = value.type().get(type)) return error;
  if (type != od::json_type::object) return simdjson::SUCCESS;
  od::object object;
  if (auto error = value.get_object().get(object)) return error;
  for (auto field_result : object) {
    od::field field;
    if (auto error = std::move(field_result).get(field)) return error;
    std::string_view key;
    if (auto error = field.unescaped_key().get(key)) return error;
    bool ignored = false;
    if (key == "cached_tokens") {
      if (auto error = read_count(field.value(), cached_tokens, ignored)) return error;
    }
  }
  return simdjson::SUCCESS;
}

// A `usage` value: an object gives a usage, null or anything else none.
simdjson::error_code read_usage(od::value& value, std::optional<TokenUsage>& usage) {
  od::json_type type{};
  if (auto error = value.type().get(type)) return error;
  usage.reset();
  if (type != od::json_type::object) return simdjson::SUCCESS;
  od::object object;
  if (auto error = value.get_object().get(object)) return error;
  TokenUsage counts;
  bool has_total = false;
  bool ignored = false;
  for (auto field_result : object) {
    od::field field;
    if (auto error = std::move(field_result).get(field)) return error;
    std::string_view key;
    if (auto error = field.unescaped_key().get(key)) return error;
    simdjson::error_code error = simdjson::SUCCESS;
    if (key == "prompt_tokens" || key == "input_tokens") {
      error = read_count(field.value(), counts.prompt_tokens, ignored);
    } else if (key == "completion_tokens" || key == "output_tokens") {
      error = read_count(field.value(), counts.completion_tokens, ignored);
    } else if (key == "total_tokens") {
      error = read_count(field.value(), counts.total_tokens, has_total);
    } else if (key == "prompt_tokens_details" || key == "prompt_token_details" ||
               key == "input_tokens_details") {
      error = read_details(field.value(), counts.cached_tokens);
    }
    if (error) return error;
  }
  if (!has_total) counts.total_tokens = counts.prompt_tokens + counts.completion_tokens;
  usage = counts;
  return simdjson::SUCCESS;
}

// The `response` object of a Responses-API stream event: only its `usage` matters.
simdjson::error_code read_response_object(od::value& value, std::optional<TokenUsage>& usage) {
  od::json_type type{};
  if (auto error = value.type().get(type)) return error;
  if (type != od::json_type::object) return simdjson::SUCCESS;
  od::object object;
  if (auto error = value.get_object().get(object)) return error;
  for (auto field_result : object) {
    od::field field;
    if (auto error = std::move(field_result).get(field)) return error;
    std::string_view key;
    if (auto error = field.unescaped_key().get(key)) return error;
    if (key == "usage") {
      if (auto error = read_usage(field.value(), usage)) return error;
    }
  }
  return simdjson::SUCCESS;
}

Result<std::optional<TokenUsage>> read_document(od::document& document) {
  od::json_type root_type{};
  if (auto error = document.type().get(root_type)) return invalid_json(error);
  if (root_type != od::json_type::object) {
    return Status(kBadGateway, "response body must be a JSON object");
  }
  od::object root;
  if (auto error = document.get_object().get(root)) return invalid_json(error);
  std::optional<TokenUsage> usage;
  std::optional<TokenUsage> nested_usage;
  for (auto field_result : root) {
    od::field field;
    if (auto error = std::move(field_result).get(field)) return invalid_json(error);
    std::string_view key;
    if (auto error = field.unescaped_key().get(key)) return invalid_json(error);
    simdjson::error_code error = simdjson::SUCCESS;
    if (key == "usage") {
      error = read_usage(field.value(), usage);
    } else if (key == "response") {
      error = read_response_object(field.value(), nested_usage);
    }
    if (error) return invalid_json(error);
  }
  if (!document.current_location().error()) return invalid_json(simdjson::TRAILING_CONTENT);
  if (usage) return usage;
  return nested_usage;
}

constexpr std::string_view kUsageKey = "\"usage\"";

// Where a usage object is looked for at the end of a body: it is far smaller than this.
constexpr std::size_t kTrailingUsageWindow = 4096;

// The offset of the last `"usage"` in text[from, end), or npos. It is found by its 'g', which the
// count keys of a usage object lack (only some detail keys have one): memrchr passes over a usage
// object in a step or two, where std::string_view::rfind would compare at every byte.
std::size_t rfind_usage_key(std::string_view text, std::size_t from) {
  constexpr std::size_t kLetterG = 4;  // "usage"[4]
  std::size_t end = text.size();
  while (const void* found = memrchr(text.data() + from, 'g', end - from)) {
    end = static_cast<std::size_t>(static_cast<const char*>(found) - text.data());
    if (end < from + kLetterG) break;
    if (text.substr(end - kLetterG, kUsageKey.size()) == kUsageKey) return end - kLetterG;
  }
  return std::string_view::npos;
}

// `{...}` of a body ending `{"usage":{...}}` or `,"usage":{...}}` (with any JSON whitespace
// between the tokens); empty when the body does not end so. When that text is one JSON object and
// the body is valid JSON, the key is the root object's last member: the object's closing brace is
// followed only by the root's, and a quote after `{` or `,` opens a string (a quote inside a
// string is escaped), so `"usage"` there followed by a colon is a key. Without that check a key
// ending in `\"usage` (a quote in the key's name) would pass for it.
std::string_view trailing_usage_object(std::string_view body) {
  std::string_view rest = json_scan::trimmed_range(body.data(), body.data() + body.size());
  if (rest.empty() || rest.back() != '}') return {};
  rest = json_scan::trimmed_range(rest.data(), rest.data() + rest.size() - 1);
  if (rest.empty() || rest.back() != '}') return {};
  const std::size_t key = rfind_usage_key(
      rest, rest.size() > kTrailingUsageWindow ? rest.size() - kTrailingUsageWindow : 0);
  if (key == std::string_view::npos) return {};
  const std::string_view before = json_scan::trimmed_range(rest.data(), rest.data() + key);
  if (before.empty() || (before.back() != '{' && before.back() != ',')) return {};
  std::size_t at = key + kUsageKey.size();
  auto skip_space = [&] {
    while (at < rest.size() && json_scan::is_json_space(rest[at])) ++at;
  };
  skip_space();
  if (at == rest.size() || rest[at] != ':') return {};
  ++at;
  skip_space();
  if (at == rest.size() || rest[at] != '{') return {};
  return rest.substr(at);
}

// The usage of `object`, the text of one JSON object; nullopt when it is not exactly that.
std::optional<TokenUsage> read_usage_object(std::string_view object) {
  return json_scan::with_document(
      object,
      [](od::document& document, const char*) -> std::optional<TokenUsage> {
        od::value value;
        std::optional<TokenUsage> usage;
        if (document.get_value().get(value) || read_usage(value, usage)) return std::nullopt;
        if (!document.current_location().error()) return std::nullopt;  // trailing content
        return usage;
      },
      [](simdjson::error_code) -> std::optional<TokenUsage> { return std::nullopt; });
}

}  // namespace

Result<std::optional<TokenUsage>> parse_body_usage(std::string_view body) {
  const std::string_view object = trailing_usage_object(body);
  if (!object.empty()) {
    if (std::optional<TokenUsage> usage = read_usage_object(object)) return usage;
  }
  return parse_response_usage(body);
}

Result<std::optional<TokenUsage>> parse_response_usage(std::string_view body) {
  return json_scan::with_document(
      body,
      [](od::document& document, const char*) -> Result<std::optional<TokenUsage>> {
        return read_document(document);
      },
      [](simdjson::error_code error) -> Result<std::optional<TokenUsage>> {
        return invalid_json(error);
      });
}

void SseUsageScanner::feed(std::string_view chunk) {
  while (!chunk.empty()) {
    const std::size_t newline = chunk.find('\n');
    if (newline == std::string_view::npos) {
      partial_line_.append(chunk);
      return;
    }
    if (partial_line_.empty()) {
      on_line(chunk.substr(0, newline));
    } else {
      partial_line_.append(chunk.substr(0, newline));
      on_line(partial_line_);
      partial_line_.clear();
    }
    chunk.remove_prefix(newline + 1);
  }
}

void SseUsageScanner::finish() {
  if (!partial_line_.empty()) {
    on_line(partial_line_);
    partial_line_.clear();
  }
  dispatch();
}

void SseUsageScanner::on_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) {
    dispatch();
    return;
  }
  constexpr std::string_view kData = "data:";
  if (line.substr(0, kData.size()) != kData) return;  // other fields, comments
  line.remove_prefix(kData.size());
  if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  if (event_has_data_) event_data_.push_back('\n');
  event_data_.append(line);
  event_has_data_ = true;
}

void SseUsageScanner::dispatch() {
  if (event_has_data_ && event_data_ != "[DONE]" &&
      event_data_.find("\"usage\"") != std::string::npos) {
    Result<std::optional<TokenUsage>> parsed = parse_response_usage(event_data_);
    if (!parsed.ok()) {
      ++malformed_events_;
    } else if (parsed->has_value()) {
      usage_ = **parsed;
    }
  }
  event_data_.clear();
  event_has_data_ = false;
}

}  // namespace infergate::request
