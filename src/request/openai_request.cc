#include "request/openai_request.h"

#include <simdjson.h>

#include <limits>
#include <type_traits>
#include <utility>

#include "request/json_scan.h"

namespace infergate::request {
namespace {

namespace od = simdjson::ondemand;
// On-Demand does not bound nesting itself and validate_value() recurses, so we do.
constexpr int kMaxNestingDepth = 128;

constexpr std::string_view kModelMessage = "'model' must be a non-empty string";
constexpr std::string_view kStreamMessage = "'stream' must be a boolean";
constexpr std::string_view kIgnoreEosMessage = "'ignore_eos' must be a boolean";
constexpr std::string_view kStreamOptionsMessage = "'stream_options' must be an object";
constexpr std::string_view kIncludeUsageMessage =
    "'stream_options.include_usage' must be a boolean";
constexpr std::string_view kMaxTokensMessage = "'max_tokens' must be an integer >= 1";
constexpr std::string_view kMaxCompletionTokensMessage =
    "'max_completion_tokens' must be an integer >= 1";
constexpr std::string_view kMinTokensMessage = "'min_tokens' must be an integer >= 0";
constexpr std::string_view kCacheSaltMessage = "'cache_salt' must be a string";
constexpr std::string_view kSeedMessage = "'seed' must be an integer";
constexpr std::string_view kNMessage = "'n' must be an integer";
constexpr std::string_view kPromptTypeMessage =
    "'prompt' must be a string, an array of one string, an array of token ids or an array of one "
    "array of token ids";
constexpr std::string_view kPromptEmptyMessage = "'prompt' must not be empty";
constexpr std::string_view kTokenIdMessage =
    "'prompt' token ids must be integers in [0, 4294967295]";
constexpr std::string_view kBatchMessage = "batched prompts are not supported";
constexpr std::string_view kMessagesMessage = "'messages' must be a non-empty array";
constexpr std::string_view kInputMessage = "'input' must be a string or a non-empty array";
constexpr std::string_view kItemsMessage = "'items' must be a non-empty array";
constexpr std::string_view kInstructionsMessage = "'instructions' must be a string";
constexpr std::string_view kMaxOutputTokensMessage = "'max_output_tokens' must be an integer >= 1";

Status bad_request(std::string_view message) { return Status::bad_request(std::string(message)); }

// Readers take their type-error message as a string_view, or as a callable that builds it, so that
// indexed paths like 'messages[3].role' cost nothing unless there is an error.
template <typename Message>
Status type_error(const Message& message) {
  if constexpr (std::is_invocable_v<const Message&>) {
    return Status::bad_request(message());
  } else {
    return bad_request(message);
  }
}

Status invalid_json(simdjson::error_code error) {
  return Status::bad_request(std::string("request body is not valid JSON: ") +
                             simdjson::error_message(error));
}

Status invalid_json(std::string_view why) {
  return Status::bad_request("request body is not valid JSON: " + std::string(why));
}

// "'messages[3].content'" and friends; only built on error paths.
std::string message_path(std::size_t message_index, std::string_view suffix) {
  return "'messages[" + std::to_string(message_index) + "]" + std::string(suffix);
}

std::string part_path(std::size_t message_index, std::size_t part_index, std::string_view suffix) {
  return message_path(message_index,
                      ".content[" + std::to_string(part_index) + "]" + std::string(suffix));
}

Status read_type(od::value& value, od::json_type& type) {
  if (auto error = value.type().get(type)) return invalid_json(error);
  return {};
}

// A literal starting with 'n' that is not `null` is malformed JSON, not a type error.
Status consume_null(od::value& value) {
  bool is_null = false;
  if (value.is_null().get(is_null) || !is_null) return invalid_json(simdjson::N_ATOM_ERROR);
  return {};
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// JSON's number grammar, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, checked on the raw
// token: get_double() also refuses valid numbers beyond double range (1e400, 400-digit integers).
bool is_json_number(std::string_view token) {
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t' || token.back() == '\n' ||
                            token.back() == '\r')) {
    token.remove_suffix(1);
  }
  std::size_t position = 0;
  auto digits = [&] {
    const std::size_t start = position;
    while (position < token.size() && is_digit(token[position])) ++position;
    return position - start;
  };
  if (position < token.size() && token[position] == '-') ++position;
  if (position < token.size() && token[position] == '0') {
    ++position;
  } else if (digits() == 0) {
    return false;
  }
  if (position < token.size() && token[position] == '.') {
    ++position;
    if (digits() == 0) return false;
  }
  if (position < token.size() && (token[position] == 'e' || token[position] == 'E')) {
    ++position;
    if (position < token.size() && (token[position] == '+' || token[position] == '-')) ++position;
    if (digits() == 0) return false;
  }
  return position == token.size();
}

// Whether a number token is well-formed JSON; used once get_int64()/get_uint64() has refused it,
// to tell "valid number of the wrong kind" from "not a number at all".
bool is_well_formed_number(od::value& value) { return is_json_number(value.raw_json_token()); }

Status validate_value(od::value& value, int depth);

Status validate_object(od::object& object, int depth) {
  for (auto field_result : object) {
    od::field field;
    if (auto error = std::move(field_result).get(field)) return invalid_json(error);
    std::string_view key;
    if (auto error = field.unescaped_key().get(key)) return invalid_json(error);
    if (Status status = validate_value(field.value(), depth); !status.is_ok()) return status;
  }
  return {};
}

// Walks a value we do not use so that malformed JSON anywhere in the body is reported: On-Demand
// only checks what is read, and skipping a value checks little more than bracket balance.
// `depth` counts the containers around `value`.
Status validate_value(od::value& value, int depth) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  switch (type) {
    case od::json_type::object: {
      if (depth >= kMaxNestingDepth) return invalid_json("nesting deeper than 128 levels");
      od::object object;
      if (auto error = value.get_object().get(object)) return invalid_json(error);
      return validate_object(object, depth + 1);
    }
    case od::json_type::array: {
      if (depth >= kMaxNestingDepth) return invalid_json("nesting deeper than 128 levels");
      od::array array;
      if (auto error = value.get_array().get(array)) return invalid_json(error);
      for (auto element_result : array) {
        od::value element;
        if (auto error = std::move(element_result).get(element)) return invalid_json(error);
        if (Status status = validate_value(element, depth + 1); !status.is_ok()) return status;
      }
      return {};
    }
    case od::json_type::number:
      if (!is_well_formed_number(value)) return invalid_json(simdjson::NUMBER_ERROR);
      return {};
    case od::json_type::string: {
      std::string_view ignored;
      if (auto error = value.get_string().get(ignored)) return invalid_json(error);
      return {};
    }
    case od::json_type::boolean: {
      bool ignored = false;
      if (value.get_bool().get(ignored)) return invalid_json(simdjson::T_ATOM_ERROR);
      return {};
    }
    case od::json_type::null:
      return consume_null(value);
  }
  return invalid_json(simdjson::TAPE_ERROR);
}

// Optional boolean: null leaves `out` unchanged.
template <typename Message>
Status read_bool(od::value& value, const Message& message, bool& out) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  if (type == od::json_type::null) return consume_null(value);
  if (type != od::json_type::boolean) return type_error(message);
  if (value.get_bool().get(out)) return invalid_json(simdjson::T_ATOM_ERROR);
  return {};
}

// Optional integer: null resets `out`; a non-integer or out-of-int64 number is a type error.
Status read_int(od::value& value, std::string_view message, std::optional<std::int64_t>& out) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  if (type == od::json_type::null) {
    out.reset();
    return consume_null(value);
  }
  if (type != od::json_type::number) return bad_request(message);
  std::int64_t number = 0;
  if (value.get_int64().get(number)) {
    if (!is_well_formed_number(value)) return invalid_json(simdjson::NUMBER_ERROR);
    return bad_request(message);
  }
  out = number;
  return {};
}

// Optional string: null leaves `out` unchanged. The view lives in the parser's string buffer,
// valid until the next document is parsed on this thread.
template <typename Message>
Status read_string(od::value& value, const Message& message, std::string_view& out, bool& present) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  if (type == od::json_type::null) return consume_null(value);
  if (type != od::json_type::string) return type_error(message);
  if (auto error = value.get_string().get(out)) return invalid_json(error);
  present = true;
  return {};
}

// vLLM accepts seeds in [-2^63, 2^64 - 1]; we keep the bit pattern.
Status read_seed(od::value& value, std::optional<std::uint64_t>& out) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  if (type == od::json_type::null) {
    out.reset();
    return consume_null(value);
  }
  if (type != od::json_type::number) return bad_request(kSeedMessage);
  std::uint64_t unsigned_seed = 0;
  std::int64_t signed_seed = 0;
  if (!value.get_uint64().get(unsigned_seed)) {
    out = unsigned_seed;
  } else if (!value.get_int64().get(signed_seed)) {
    out = static_cast<std::uint64_t>(signed_seed);
  } else if (!is_well_formed_number(value)) {
    return invalid_json(simdjson::NUMBER_ERROR);
  } else {
    return bad_request(kSeedMessage);
  }
  return {};
}

Status read_token_id(od::value& value, std::vector<std::uint32_t>& ids) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  if (type != od::json_type::number) return bad_request(kPromptTypeMessage);
  std::uint64_t id = 0;
  if (value.get_uint64().get(id)) {
    if (!is_well_formed_number(value)) return invalid_json(simdjson::NUMBER_ERROR);
    return bad_request(kTokenIdMessage);
  }
  if (id > std::numeric_limits<std::uint32_t>::max()) return bad_request(kTokenIdMessage);
  ids.push_back(static_cast<std::uint32_t>(id));
  return {};
}

Status read_token_id_array(od::value& value, std::vector<std::uint32_t>& ids) {
  od::array array;
  if (auto error = value.get_array().get(array)) return invalid_json(error);
  for (auto element_result : array) {
    od::value element;
    if (auto error = std::move(element_result).get(element)) return invalid_json(error);
    if (Status status = read_token_id(element, ids); !status.is_ok()) return status;
  }
  return {};
}

// Completions `prompt`: a string, [string], [int, ...] or [[int, ...]]. Null means absent.
Status read_prompt(od::value& value, OpenAiRequest& request, bool& present) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  request.prompt.clear();
  request.prompt_token_ids.reset();
  present = false;
  switch (type) {
    case od::json_type::null:
      return consume_null(value);
    case od::json_type::string: {
      std::string_view text;
      if (auto error = value.get_string().get(text)) return invalid_json(error);
      request.prompt.assign(text);
      present = true;
      return {};
    }
    case od::json_type::array:
      break;
    default:
      return bad_request(kPromptTypeMessage);
  }

  enum class Shape { kText, kTokenIds, kNestedTokenIds };
  Shape shape = Shape::kText;
  std::vector<std::uint32_t> ids;
  std::size_t element_count = 0;
  od::array array;
  if (auto error = value.get_array().get(array)) return invalid_json(error);
  for (auto element_result : array) {
    od::value element;
    if (auto error = std::move(element_result).get(element)) return invalid_json(error);
    od::json_type element_type{};
    if (Status status = read_type(element, element_type); !status.is_ok()) return status;
    if (element_count > 0 && shape != Shape::kTokenIds) return bad_request(kBatchMessage);
    Status status;
    if (element_count == 0 && element_type == od::json_type::string) {
      shape = Shape::kText;
      std::string_view text;
      if (auto error = element.get_string().get(text)) return invalid_json(error);
      request.prompt.assign(text);
    } else if (element_count == 0 && element_type == od::json_type::array) {
      shape = Shape::kNestedTokenIds;
      status = read_token_id_array(element, ids);
    } else if (element_type == od::json_type::number) {
      shape = Shape::kTokenIds;
      status = read_token_id(element, ids);
    } else {
      return bad_request(kPromptTypeMessage);
    }
    if (!status.is_ok()) return status;
    ++element_count;
  }
  if (element_count == 0) return bad_request(kPromptEmptyMessage);
  if (shape != Shape::kText) {
    if (ids.empty()) return bad_request(kPromptEmptyMessage);
    request.prompt_token_ids = std::move(ids);
  }
  present = true;
  return {};
}

// Appends the "text" of every {"type":"text"} part, separated by "\n".
Status read_content_parts(od::value& value, std::size_t message_index, std::string& content) {
  od::array parts;
  if (auto error = value.get_array().get(parts)) return invalid_json(error);
  std::size_t part_index = 0;
  bool any_text = false;
  for (auto part_result : parts) {
    od::value part_value;
    if (auto error = std::move(part_result).get(part_value)) return invalid_json(error);
    od::json_type part_type{};
    if (Status status = read_type(part_value, part_type); !status.is_ok()) return status;
    if (part_type != od::json_type::object) {
      return Status::bad_request(part_path(message_index, part_index, "' must be an object"));
    }
    od::object part;
    if (auto error = part_value.get_object().get(part)) return invalid_json(error);
    std::string_view type_name;
    std::string_view text;
    bool has_type = false;
    bool has_text = false;
    for (auto field_result : part) {
      od::field field;
      if (auto error = std::move(field_result).get(field)) return invalid_json(error);
      std::string_view key;
      if (auto error = field.unescaped_key().get(key)) return invalid_json(error);
      Status status;
      if (key == "type") {
        status = read_string(
            field.value(),
            [&] { return part_path(message_index, part_index, ".type' must be a string"); },
            type_name, has_type);
      } else if (key == "text") {
        status = read_string(
            field.value(),
            [&] { return part_path(message_index, part_index, ".text' must be a string"); }, text,
            has_text);
      } else {
        status = validate_value(field.value(), 5);
      }
      if (!status.is_ok()) return status;
    }
    if (!has_type) {
      return Status::bad_request(part_path(message_index, part_index, ".type' is required"));
    }
    if (type_name == "text") {
      if (!has_text) {
        return Status::bad_request(part_path(message_index, part_index, ".text' is required"));
      }
      if (any_text) content.push_back('\n');
      content.append(text);
      any_text = true;
    }
    ++part_index;
  }
  return {};
}

Status read_message(od::value& value, std::size_t message_index, ChatMessage& message) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  if (type != od::json_type::object) {
    return Status::bad_request(message_path(message_index, "' must be an object"));
  }
  od::object object;
  if (auto error = value.get_object().get(object)) return invalid_json(error);
  bool has_role = false;
  bool has_content = false;
  for (auto field_result : object) {
    od::field field;
    if (auto error = std::move(field_result).get(field)) return invalid_json(error);
    std::string_view key;
    if (auto error = field.unescaped_key().get(key)) return invalid_json(error);
    Status status;
    if (key == "role") {
      std::string_view role;
      bool present = false;
      auto role_message = [&] {
        return message_path(message_index, ".role' must be a non-empty string");
      };
      status = read_string(field.value(), role_message, role, present);
      if (status.is_ok() && present && role.empty()) status = type_error(role_message);
      has_role = present;
      message.role.assign(role);
    } else if (key == "content") {
      od::value& content = field.value();
      od::json_type content_type{};
      status = read_type(content, content_type);
      if (!status.is_ok()) return status;
      message.content.clear();
      has_content = true;
      if (content_type == od::json_type::null) {
        has_content = false;
        status = consume_null(content);
      } else if (content_type == od::json_type::string) {
        std::string_view text;
        if (auto error = content.get_string().get(text)) return invalid_json(error);
        message.content.assign(text);
      } else if (content_type == od::json_type::array) {
        status = read_content_parts(content, message_index, message.content);
      } else {
        status = Status::bad_request(
            message_path(message_index, ".content' must be a string or an array of content parts"));
      }
    } else {
      status = validate_value(field.value(), 3);
    }
    if (!status.is_ok()) return status;
  }
  if (!has_role) return Status::bad_request(message_path(message_index, ".role' is required"));
  if (!has_content && message.role != "assistant") {
    return Status::bad_request(message_path(message_index, ".content' is required"));
  }
  return {};
}

Status read_messages(od::value& value, std::vector<ChatMessage>& messages, bool& present) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  messages.clear();
  present = false;
  if (type == od::json_type::null) return consume_null(value);
  if (type != od::json_type::array) return bad_request(kMessagesMessage);
  od::array array;
  if (auto error = value.get_array().get(array)) return invalid_json(error);
  for (auto element_result : array) {
    od::value element;
    if (auto error = std::move(element_result).get(element)) return invalid_json(error);
    ChatMessage& message = messages.emplace_back();
    if (Status status = read_message(element, messages.size() - 1, message); !status.is_ok()) {
      return status;
    }
  }
  if (messages.empty()) return bad_request(kMessagesMessage);
  present = true;
  return {};
}

Status read_stream_options(od::value& value, bool& include_usage) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  if (type == od::json_type::null) return consume_null(value);
  if (type != od::json_type::object) return bad_request(kStreamOptionsMessage);
  od::object object;
  if (auto error = value.get_object().get(object)) return invalid_json(error);
  for (auto field_result : object) {
    od::field field;
    if (auto error = std::move(field_result).get(field)) return invalid_json(error);
    std::string_view key;
    if (auto error = field.unescaped_key().get(key)) return invalid_json(error);
    Status status = key == "include_usage"
                        ? read_bool(field.value(), kIncludeUsageMessage, include_usage)
                        : validate_value(field.value(), 2);
    if (!status.is_ok()) return status;
  }
  return {};
}

// Runs `consume` (which must read `value` to its end) and sets `raw` to the exact bytes `value`
// spans in the padded copy of the body: from its first byte to its last, whitespace excluded.
template <typename Consume>
Status capture_raw(od::document& document, od::value& value, std::string_view& raw,
                   Consume consume) {
  const char* start = value.raw_json_token().data();
  if (Status status = consume(); !status.is_ok()) return status;
  const char* end = nullptr;
  // After a value inside the root object the iterator rests on the ',' or '}' that follows it.
  if (auto error = document.current_location().get(end)) return invalid_json(error);
  raw = json_scan::trimmed_range(start, end);
  return {};
}

// Checks an array is non-empty and well-formed; its elements are not interpreted.
Status read_nonempty_array(od::value& value, std::string_view message, bool& present) {
  od::array array;
  if (auto error = value.get_array().get(array)) return invalid_json(error);
  std::size_t count = 0;
  for (auto element_result : array) {
    od::value element;
    if (auto error = std::move(element_result).get(element)) return invalid_json(error);
    if (Status status = validate_value(element, 2); !status.is_ok()) return status;
    ++count;
  }
  if (count == 0) return bad_request(message);
  present = true;
  return {};
}

// Responses / embeddings `input`: a string (copied to `prompt`) or a non-empty array.
Status read_input(od::value& value, std::string& prompt, bool& present) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  prompt.clear();
  present = false;
  if (type == od::json_type::null) return consume_null(value);
  if (type == od::json_type::string) {
    std::string_view text;
    if (auto error = value.get_string().get(text)) return invalid_json(error);
    prompt.assign(text);
    present = true;
    return {};
  }
  if (type != od::json_type::array) return bad_request(kInputMessage);
  return read_nonempty_array(value, kInputMessage, present);
}

// Conversations `items`: a non-empty array.
Status read_items(od::value& value, bool& present) {
  od::json_type type{};
  if (Status status = read_type(value, type); !status.is_ok()) return status;
  present = false;
  if (type == od::json_type::null) return consume_null(value);
  if (type != od::json_type::array) return bad_request(kItemsMessage);
  return read_nonempty_array(value, kItemsMessage, present);
}

// Raw JSON of the fields a kind hashes (views into the padded body, valid during the parse).
struct PrefixSources {
  std::string_view primary;  // prompt ids / messages / items / input
  std::string_view instructions;
  std::string_view tools;
};

void build_prefix_json(const PrefixSources& sources, OpenAiRequest& request) {
  if (request.kind != ApiKind::kResponses) {
    // Completions text prompts are served from `prompt` by prefix_bytes(), not copied.
    if (request.kind != ApiKind::kCompletions || request.prompt_token_ids) {
      request.prefix_json.assign(sources.primary);
    }
    return;
  }
  auto or_null = [](std::string_view raw) { return raw.empty() ? std::string_view("null") : raw; };
  const std::string_view instructions = or_null(sources.instructions);
  const std::string_view tools = or_null(sources.tools);
  const std::string_view input = or_null(sources.primary);
  std::string& out = request.prefix_json;
  out.reserve(instructions.size() + tools.size() + input.size() + 4);
  out.push_back('[');
  out.append(instructions);
  out.push_back(',');
  out.append(tools);
  out.push_back(',');
  out.append(input);
  out.push_back(']');
}

Result<OpenAiRequest> parse_document(ApiKind kind, od::document& document) {
  od::json_type root_type{};
  if (auto error = document.type().get(root_type)) return invalid_json(error);
  if (root_type != od::json_type::object) {
    return bad_request("request body must be a JSON object");
  }
  od::object root;
  if (auto error = document.get_object().get(root)) return invalid_json(error);

  OpenAiRequest request;
  request.kind = kind;
  const bool is_chat = kind == ApiKind::kChatCompletions;
  const bool is_completions = kind == ApiKind::kCompletions;
  const bool is_responses = kind == ApiKind::kResponses;
  const bool reads_input = is_responses || kind == ApiKind::kEmbeddings;
  bool has_model = false;
  bool has_prompt = false;
  bool has_messages = false;
  bool has_input = false;
  bool has_items = false;
  std::optional<std::int64_t> max_completion_tokens;
  std::optional<std::int64_t> max_output_tokens;
  std::optional<std::int64_t> n;
  PrefixSources prefix;

  for (auto field_result : root) {
    od::field field;
    if (auto error = std::move(field_result).get(field)) return invalid_json(error);
    std::string_view key;
    if (auto error = field.unescaped_key().get(key)) return invalid_json(error);
    od::value& value = field.value();
    Status status;
    if (key == "model") {
      std::string_view model;
      has_model = false;
      status = read_string(value, kModelMessage, model, has_model);
      if (status.is_ok() && has_model && model.empty()) status = bad_request(kModelMessage);
      request.model.assign(model);
    } else if (key == "stream") {
      status = read_bool(value, kStreamMessage, request.stream);
    } else if (key == "stream_options") {
      status = read_stream_options(value, request.include_usage);
    } else if (key == "max_tokens") {
      status = read_int(value, kMaxTokensMessage, request.max_tokens);
      if (status.is_ok() && request.max_tokens && *request.max_tokens < 1) {
        status = bad_request(kMaxTokensMessage);
      }
    } else if (is_chat && key == "max_completion_tokens") {
      status = read_int(value, kMaxCompletionTokensMessage, max_completion_tokens);
      if (status.is_ok() && max_completion_tokens && *max_completion_tokens < 1) {
        status = bad_request(kMaxCompletionTokensMessage);
      }
    } else if (key == "ignore_eos") {
      status = read_bool(value, kIgnoreEosMessage, request.ignore_eos);
    } else if (key == "min_tokens") {
      status = read_int(value, kMinTokensMessage, request.min_tokens);
      if (status.is_ok() && request.min_tokens && *request.min_tokens < 0) {
        status = bad_request(kMinTokensMessage);
      }
    } else if (key == "cache_salt") {
      std::string_view salt;
      bool present = false;
      status = read_string(value, kCacheSaltMessage, salt, present);
      request.cache_salt.assign(salt);
    } else if (key == "seed") {
      status = read_seed(value, request.seed);
    } else if (key == "n") {
      status = read_int(value, kNMessage, n);
    } else if (is_completions && key == "prompt") {
      status = capture_raw(document, value, prefix.primary,
                           [&] { return read_prompt(value, request, has_prompt); });
    } else if (is_chat && key == "messages") {
      status = capture_raw(document, value, prefix.primary,
                           [&] { return read_messages(value, request.messages, has_messages); });
    } else if (reads_input && key == "input") {
      status = capture_raw(document, value, prefix.primary,
                           [&] { return read_input(value, request.prompt, has_input); });
      if (!has_input) prefix.primary = {};
    } else if (kind == ApiKind::kConversations && key == "items") {
      status = capture_raw(document, value, prefix.primary,
                           [&] { return read_items(value, has_items); });
    } else if (is_responses && key == "instructions") {
      status = capture_raw(document, value, prefix.instructions, [&] {
        std::string_view ignored;
        bool present = false;
        return read_string(value, kInstructionsMessage, ignored, present);
      });
    } else if (is_responses && key == "tools") {
      status = capture_raw(document, value, prefix.tools, [&] { return validate_value(value, 1); });
    } else if (is_responses && key == "max_output_tokens") {
      status = read_int(value, kMaxOutputTokensMessage, max_output_tokens);
      if (status.is_ok() && max_output_tokens && *max_output_tokens < 1) {
        status = bad_request(kMaxOutputTokensMessage);
      }
    } else {
      status = validate_value(value, 1);
    }
    if (!status.is_ok()) return status;
  }
  // On-Demand stops at the end of the root object; anything after it is not one JSON document.
  if (!document.current_location().error()) {
    return invalid_json("unexpected content after the top-level object");
  }

  if (!has_model) return bad_request("'model' is required");
  if (is_chat && !has_messages) return bad_request("'messages' is required");
  if (is_completions && !has_prompt) return bad_request("'prompt' is required");
  if (reads_input && !has_input) return bad_request("'input' is required");
  if (kind == ApiKind::kConversations && !has_items) return bad_request("'items' is required");
  if (n && *n != 1) return bad_request("only n=1 is supported");
  if (max_completion_tokens) request.max_tokens = max_completion_tokens;
  if (max_output_tokens) request.max_tokens = max_output_tokens;
  if (request.min_tokens && request.max_tokens && *request.min_tokens > *request.max_tokens) {
    return bad_request("'min_tokens' must be <= 'max_tokens'");
  }
  build_prefix_json(prefix, request);
  return request;
}

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

}  // namespace

ApiKind api_kind_from_path(std::string_view path) {
  path = path.substr(0, path.find('?'));
  if (ends_with(path, "/conversations")) return ApiKind::kConversations;
  if (ends_with(path, "/responses")) return ApiKind::kResponses;
  if (ends_with(path, "/chat/completions")) return ApiKind::kChatCompletions;
  if (ends_with(path, "/completions")) return ApiKind::kCompletions;
  if (ends_with(path, "/embeddings")) return ApiKind::kEmbeddings;
  return ApiKind::kCompletions;
}

Result<OpenAiRequest> parse_openai_request(ApiKind kind, std::string_view body) {
  return json_scan::with_document(
      body,
      [&](od::document& document, const char*) -> Result<OpenAiRequest> {
        return parse_document(kind, document);
      },
      [](simdjson::error_code error) -> Result<OpenAiRequest> { return invalid_json(error); });
}

}  // namespace infergate::request
