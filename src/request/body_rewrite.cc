#include "request/body_rewrite.h"

#include <simdjson.h>

#include <algorithm>

#include "request/json_scan.h"

namespace infergate::request {
namespace {

namespace od = simdjson::ondemand;

Status invalid_json(simdjson::error_code error) {
  return Status::bad_request(std::string("request body is not valid JSON: ") +
                             simdjson::error_message(error));
}

// The exact bytes of `value` (first to last byte, no surrounding whitespace) in the padded body.
simdjson::error_code value_range(od::document& document, od::value& value, std::string_view& raw) {
  od::json_type type{};
  if (auto error = value.type().get(type)) return error;
  const char* start = value.raw_json_token().data();
  std::string_view ignored;
  if (type == od::json_type::object) {
    od::object object;
    if (auto error = value.get_object().get(object)) return error;
    if (auto error = object.raw_json().get(ignored)) return error;
  } else if (type == od::json_type::array) {
    od::array array;
    if (auto error = value.get_array().get(array)) return error;
    if (auto error = array.raw_json().get(ignored)) return error;
  } else {
    // A scalar's token runs to the next structural character: the ',' or '}' after it.
    const std::string_view token = value.raw_json_token();
    raw = json_scan::trimmed_range(token.data(), token.data() + token.size());
    return simdjson::SUCCESS;
  }
  // A consumed container leaves the iterator on the ',' or '}' after it.
  const char* end = nullptr;
  if (auto error = document.current_location().get(end)) return error;
  raw = json_scan::trimmed_range(start, end);
  return simdjson::SUCCESS;
}

Result<std::string> rewrite_document(od::document& document, const char* base,
                                     std::string_view body, std::string_view new_model) {
  od::json_type root_type{};
  if (auto error = document.type().get(root_type)) return invalid_json(error);
  if (root_type != od::json_type::object) {
    return Status::bad_request("request body must be a JSON object");
  }
  od::object root;
  if (auto error = document.get_object().get(root)) return invalid_json(error);

  std::string out;
  std::size_t copied_up_to = 0;  // body offset: everything before it is already in `out`
  bool found = false;
  for (auto field_result : root) {
    od::field field;
    if (auto error = std::move(field_result).get(field)) return invalid_json(error);
    std::string_view key;
    if (auto error = field.unescaped_key().get(key)) return invalid_json(error);
    if (key != "model") continue;  // On-Demand skips the unread value
    od::value& value = field.value();
    std::string_view raw;
    if (auto error = value_range(document, value, raw)) return invalid_json(error);
    const auto value_begin = static_cast<std::size_t>(raw.data() - base);
    if (value_begin < copied_up_to || value_begin + raw.size() > body.size()) {
      return invalid_json(simdjson::TAPE_ERROR);  // only reachable with a truncated body
    }
    if (!found) out.reserve(body.size() + new_model.size() + 2);
    out.append(body.substr(copied_up_to, value_begin - copied_up_to));
    json_scan::append_json_string(out, new_model);
    copied_up_to = value_begin + raw.size();
    found = true;
  }
  if (!document.current_location().error()) {
    return Status::bad_request(
        "request body is not valid JSON: unexpected content after the top-level object");
  }
  if (!found) return Status::bad_request("'model' is required");
  out.append(body.substr(copied_up_to));
  return out;
}

bool is_prefix_of(std::string_view prefix, std::string_view text) {
  return prefix.size() <= text.size() && text.substr(0, prefix.size()) == prefix;
}

}  // namespace

Result<std::string> rewrite_model(std::string_view body, std::string_view new_model) {
  if (new_model.empty()) return Status::bad_request("model name must be a non-empty string");
  if (!simdjson::validate_utf8(new_model.data(), new_model.size())) {
    return Status::bad_request("model name is not valid UTF-8");
  }
  return json_scan::with_document(
      body,
      [&](od::document& document, const char* base) -> Result<std::string> {
        return rewrite_document(document, base, body, new_model);
      },
      [](simdjson::error_code error) -> Result<std::string> { return invalid_json(error); });
}

ModelNameRestorer::ModelNameRestorer(std::string_view target_model, std::string_view incoming_model)
    : colon_("\"model\":") {
  json_scan::append_json_string(target_value_, target_model);
  json_scan::append_json_string(incoming_value_, incoming_model);
}

void ModelNameRestorer::feed(std::string_view chunk, std::string& out) {
  std::string_view text = chunk;
  if (!held_.empty()) {
    held_.append(chunk);
    text = held_;
  }
  // Where a match (`"model":` + optional ' ' + target) starting at `position` ends, 0 if none,
  // or npos if `text` ends before a match could be decided.
  auto match_end = [&](std::size_t position) -> std::size_t {
    std::string_view rest = text.substr(position);
    if (rest.size() < colon_.size()) return is_prefix_of(rest, colon_) ? std::string_view::npos : 0;
    if (!is_prefix_of(colon_, rest)) return 0;
    rest.remove_prefix(colon_.size());
    std::size_t length = colon_.size();
    if (!rest.empty() && rest.front() == ' ') {
      rest.remove_prefix(1);
      ++length;
    }
    if (rest.size() < target_value_.size()) {
      return is_prefix_of(rest, target_value_) ? std::string_view::npos : 0;
    }
    return is_prefix_of(target_value_, rest) ? position + length + target_value_.size() : 0;
  };
  std::size_t copied_up_to = 0;
  std::size_t position = 0;
  std::size_t keep_from = text.size();
  while ((position = text.find('"', position)) != std::string_view::npos) {
    const std::size_t end = match_end(position);
    if (end == std::string_view::npos) {
      keep_from = position;
      break;
    }
    if (end == 0) {
      ++position;
      continue;
    }
    const std::size_t value_begin = end - target_value_.size();
    out.append(text.substr(copied_up_to, value_begin - copied_up_to));
    out.append(incoming_value_);
    copied_up_to = end;
    position = end;
  }
  out.append(text.substr(copied_up_to, keep_from - copied_up_to));
  if (keep_from == text.size()) {
    held_.clear();
  } else if (held_.empty()) {
    held_.assign(text.substr(keep_from));
  } else {
    held_.erase(0, keep_from);
  }
}

void ModelNameRestorer::finish(std::string& out) {
  out.append(held_);
  held_.clear();
}

}  // namespace infergate::request
