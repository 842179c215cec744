#include "api/decode.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <utility>

#include "api/endpoint_picker_config.h"
#include "api/validation.h"

namespace infergate::api {
namespace {

using nlohmann::json;

// ---- YAML -> JSON -------------------------------------------------------------------------------

bool all_digits(std::string_view text, std::string_view alphabet) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [&](char c) {
    return alphabet.find(c) != std::string_view::npos;
  });
}

constexpr std::string_view kDecimalDigits = "0123456789";

bool is_yaml_float(std::string_view text) {
  // YAML 1.2 core schema: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
  size_t pos = 0;
  if (pos < text.size() && (text[pos] == '-' || text[pos] == '+')) ++pos;
  size_t integer_digits = 0;
  while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
    ++pos;
    ++integer_digits;
  }
  size_t fraction_digits = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
      ++pos;
      ++fraction_digits;
    }
  }
  if (integer_digits == 0 && fraction_digits == 0) return false;
  if (pos < text.size() && (text[pos] == 'e' || text[pos] == 'E')) {
    ++pos;
    if (pos < text.size() && (text[pos] == '-' || text[pos] == '+')) ++pos;
    if (!all_digits(text.substr(pos), kDecimalDigits)) return false;
    pos = text.size();
  }
  return pos == text.size();
}

// Resolves an untagged plain scalar with the YAML 1.2 core schema, as the Kubernetes YAML->JSON
// step does; quoted scalars stay strings.
json plain_scalar_to_json(const std::string& text) {
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") {
    return nullptr;
  }
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  std::string_view digits = text;
  bool negative = false;
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  int base = 10;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'o')) {
    base = digits[1] == 'x' ? 16 : 8;
    digits.remove_prefix(2);
    if (negative) return text;  // the core schema has no signed hex/octal
  }
  const std::string_view alphabet =
      base == 16 ? "0123456789abcdefABCDEF" : (base == 8 ? "01234567" : kDecimalDigits);
  if (all_digits(digits, alphabet)) {
    uint64_t magnitude = 0;
    auto [end, error] =
        std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
    if (error == std::errc() && end == digits.data() + digits.size()) {
      if (!negative) {
        if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          return static_cast<int64_t>(magnitude);
        }
        return magnitude;
      }
      if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) {
        return static_cast<int64_t>(0 - magnitude);
      }
    }
    if (base == 10) return std::strtod(text.c_str(), nullptr);  // too large for 64 bits
    return text;
  }
  if (is_yaml_float(text)) return std::strtod(text.c_str(), nullptr);
  if (text == ".inf" || text == ".Inf" || text == ".INF" || text == "+.inf" || text == "+.Inf" ||
      text == "+.INF") {
    return std::numeric_limits<double>::infinity();
  }
  if (text == "-.inf" || text == "-.Inf" || text == "-.INF") {
    return -std::numeric_limits<double>::infinity();
  }
  if (text == ".nan" || text == ".NaN" || text == ".NAN") {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return text;
}

std::string child_path(const std::string& path, std::string_view key) {
  std::string result = path;
  if (!result.empty()) result += '.';
  result += key;
  return result;
}

std::string index_path(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

std::string map_key_path(const std::string& path, std::string_view key) {
  return path + "[" + std::string(key) + "]";
}

// Converts one document; structural problems (duplicate or non-scalar keys) are appended to
// `problems` as complete messages without the file/object prefix.
json yaml_to_json(const YAML::Node& node, const std::string& path,
                  std::vector<std::string>& problems) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar: {
      const std::string& tag = node.Tag();
      if (tag == "!" || tag == "tag:yaml.org,2002:str") return node.Scalar();
      return plain_scalar_to_json(node.Scalar());
    }
    case YAML::NodeType::Sequence: {
      json array = json::array();
      size_t index = 0;
      for (const YAML::Node& item : node) {
        array.push_back(yaml_to_json(item, index_path(path, index), problems));
        ++index;
      }
      return array;
    }
    case YAML::NodeType::Map: {
      json object = json::object();
      for (const auto& entry : node) {
        if (!entry.first.IsScalar()) {
          problems.push_back("field \"" + (path.empty() ? std::string("<root>") : path) +
                             "\": mapping keys must be strings");
          continue;
        }
        const std::string& key = entry.first.Scalar();
        const std::string key_path = child_path(path, key);
        if (object.contains(key)) {
          problems.push_back("duplicate field \"" + key_path + "\"");
          continue;
        }
        object[key] = yaml_to_json(entry.second, key_path, problems);
      }
      return object;
    }
  }
  return nullptr;
}

// ---- strict field access ------------------------------------------------------------------------

// Collects the errors of one document, each prefixed with "<file>: <object>: ".
class Sink {
 public:
  Sink(std::vector<std::string>& out, std::string prefix)
      : out_(out), prefix_(std::move(prefix)), start_(out.size()) {}

  void add(const std::string& problem) { out_.push_back(prefix_ + ": " + problem); }
  void field(const std::string& path, const std::string& problem) {
    add("field \"" + path + "\": " + problem);
  }
  void missing(const std::string& path) { add("missing required field \"" + path + "\""); }
  bool clean() const { return out_.size() == start_; }

 private:
  std::vector<std::string>& out_;
  std::string prefix_;
  size_t start_;
};

std::string describe(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "a list";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an unsupported value";
  }
}

void wrong_type(Sink& sink, const std::string& path, std::string_view expected, const json& value) {
  sink.field(path, "expected " + std::string(expected) + ", got " + describe(value));
}

// A strict view of one JSON object: every key must be claimed by get()/require()/ignore() before
// finish(), which reports the rest as unknown fields.
class Fields {
 public:
  Fields(const json& value, std::string path, Sink& sink)
      : object_(value.is_object() ? &value : nullptr), path_(std::move(path)), sink_(sink) {
    if (object_ == nullptr) wrong_type(sink_, path_, "an object", value);
  }
  Fields(const Fields&) = delete;
  Fields& operator=(const Fields&) = delete;

  bool ok() const { return object_ != nullptr; }
  std::string path(std::string_view key) const { return child_path(path_, key); }

  // The value of `key`, or nullptr when absent or null (Kubernetes treats null as absent).
  const json* get(std::string_view key) {
    known_.emplace(key);
    if (object_ == nullptr) return nullptr;
    auto found = object_->find(key);
    if (found == object_->end() || found->is_null()) return nullptr;
    return &*found;
  }
  const json* require(std::string_view key) {
    const json* value = get(key);
    if (value == nullptr && object_ != nullptr) sink_.missing(path(key));
    return value;
  }
  void ignore(std::string_view key) { known_.emplace(key); }

  void finish() {
    if (object_ == nullptr) return;
    for (const auto& [key, value] : object_->items()) {
      if (known_.count(key) == 0) sink_.add("unknown field \"" + path(key) + "\"");
    }
  }

 private:
  const json* object_;
  std::string path_;
  Sink& sink_;
  std::set<std::string, std::less<>> known_;
};

std::optional<std::string> read_string(Sink& sink, const json* value, const std::string& path) {
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) {
    wrong_type(sink, path, "a string", *value);
    return std::nullopt;
  }
  return value->get<std::string>();
}

// A string of min_length..max_length characters.
std::optional<std::string> read_bounded_string(Sink& sink, const json* value,
                                               const std::string& path, size_t min_length,
                                               size_t max_length) {
  std::optional<std::string> text = read_string(sink, value, path);
  if (!text) return std::nullopt;
  if (text->size() < min_length) {
    sink.field(path, min_length == 1
                         ? "must not be empty"
                         : "must be at least " + std::to_string(min_length) + " characters");
    return std::nullopt;
  }
  if (text->size() > max_length) {
    sink.field(path, "must be at most " + std::to_string(max_length) + " characters, got " +
                         std::to_string(text->size()));
    return std::nullopt;
  }
  return text;
}

std::optional<int64_t> read_int(Sink& sink, const json* value, const std::string& path, int64_t min,
                                int64_t max) {
  if (value == nullptr) return std::nullopt;
  std::optional<int64_t> number;
  if (value->is_number_integer() && !value->is_number_unsigned()) {
    number = value->get<int64_t>();
  } else if (value->is_number_unsigned()) {
    const uint64_t magnitude = value->get<uint64_t>();
    if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      number = static_cast<int64_t>(magnitude);
    } else {
      sink.field(path, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                           ", got " + std::to_string(magnitude));
      return std::nullopt;
    }
  } else {
    wrong_type(sink, path, "an integer", *value);
    return std::nullopt;
  }
  if (*number < min || *number > max) {
    sink.field(path, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                         ", got " + std::to_string(*number));
    return std::nullopt;
  }
  return number;
}

constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

std::optional<double> read_number(Sink& sink, const json* value, const std::string& path) {
  if (value == nullptr) return std::nullopt;
  if (!value->is_number()) {
    wrong_type(sink, path, "a number", *value);
    return std::nullopt;
  }
  return value->get<double>();
}

// Returns the list, or nullptr (absent/null, or wrong type reported).
const json* read_list(Sink& sink, const json* value, const std::string& path) {
  if (value == nullptr) return nullptr;
  if (!value->is_array()) {
    wrong_type(sink, path, "a list", *value);
    return nullptr;
  }
  return value;
}

// One of `allowed`, reported with the allowed values otherwise.
std::optional<std::string> read_enum(Sink& sink, const json* value, const std::string& path,
                                     const std::vector<std::string_view>& allowed) {
  std::optional<std::string> text = read_string(sink, value, path);
  if (!text) return std::nullopt;
  if (std::find(allowed.begin(), allowed.end(), *text) != allowed.end()) return text;
  std::string list;
  for (std::string_view option : allowed) {
    if (!list.empty()) list += ", ";
    list += "\"" + std::string(option) + "\"";
  }
  sink.field(path, "must be one of " + list + ", got \"" + *text + "\"");
  return std::nullopt;
}

// A map of strings to strings; with `labels`, keys and values must be valid label keys/values.
std::map<std::string, std::string> read_string_map(Sink& sink, const json* value,
                                                   const std::string& path, bool labels) {
  std::map<std::string, std::string> result;
  if (value == nullptr) return result;
  if (!value->is_object()) {
    wrong_type(sink, path, "a map of strings", *value);
    return result;
  }
  for (const auto& [key, item] : value->items()) {
    const std::string item_path = map_key_path(path, key);
    if (!item.is_string()) {
      wrong_type(sink, item_path, "a string", item);
      continue;
    }
    const std::string text = item.get<std::string>();
    if (labels) {
      if (std::string problem = label_key_problem(key); !problem.empty()) {
        sink.field(item_path, "invalid label key: " + problem);
        continue;
      }
      if (std::string problem = label_value_problem(text); !problem.empty()) {
        sink.field(item_path, "invalid label value \"" + text + "\": " + problem);
        continue;
      }
    }
    result.emplace(key, text);
  }
  return result;
}

// ---- metadata -----------------------------------------------------------------------------------

ObjectMeta decode_metadata(Fields& top, Sink& sink) {
  ObjectMeta meta;
  const json* value = top.require("metadata");
  if (value == nullptr) return meta;
  Fields fields(*value, "metadata", sink);
  if (!fields.ok()) return meta;
  if (auto name = read_string(sink, fields.require("name"), "metadata.name")) {
    if (std::string problem = dns_subdomain_problem(*name); !problem.empty()) {
      sink.field("metadata.name", problem);
    }
    meta.name = *name;
  }
  if (auto namespace_name = read_string(sink, fields.get("namespace"), "metadata.namespace")) {
    if (std::string problem = dns_label_problem(*namespace_name); !problem.empty()) {
      sink.field("metadata.namespace", problem);
    }
    meta.namespace_name = *namespace_name;
  }
  meta.labels = read_string_map(sink, fields.get("labels"), "metadata.labels", true);
  meta.annotations =
      read_string_map(sink, fields.get("annotations"), "metadata.annotations", false);
  if (auto created =
          read_string(sink, fields.get("creationTimestamp"), "metadata.creationTimestamp")) {
    meta.creation_timestamp = *created;
  }
  // ObjectMeta fields infergate does not use: accepted (kubectl output carries them) and dropped.
  for (std::string_view key :
       {"generateName", "uid", "resourceVersion", "generation", "selfLink", "deletionTimestamp",
        "deletionGracePeriodSeconds", "ownerReferences", "finalizers", "managedFields"}) {
    fields.ignore(key);
  }
  fields.finish();
  return meta;
}

// `status` is written by controllers; accepted as is, never interpreted.
json read_status(Fields& top) {
  const json* status = top.get("status");
  return status == nullptr ? json() : *status;
}

// ---- InferencePool ------------------------------------------------------------------------------

std::optional<FailureMode> read_failure_mode(Sink& sink, const json* value,
                                             const std::string& path) {
  auto text = read_enum(sink, value, path, {"FailOpen", "FailClose"});
  if (!text) return std::nullopt;
  return *text == "FailOpen" ? FailureMode::kFailOpen : FailureMode::kFailClose;
}

void check_port_unique(Sink& sink, std::vector<int32_t>& ports, int32_t port,
                       const std::string& path) {
  if (std::find(ports.begin(), ports.end(), port) != ports.end()) {
    sink.field(path, "duplicate port " + std::to_string(port));
    return;
  }
  ports.push_back(port);
}

// The fields v1 `endpointPickerRef` and v1alpha2 `extensionRef` share: group, kind, name. The
// port (shaped differently per version) and failureMode are read by the callers, in that order.
EndpointPickerRef decode_ref_target(Fields& ref_fields, Sink& sink) {
  EndpointPickerRef ref;
  if (auto group = read_string(sink, ref_fields.get("group"), ref_fields.path("group"))) {
    ref.group = *group;
  }
  if (auto kind =
          read_bounded_string(sink, ref_fields.get("kind"), ref_fields.path("kind"), 1, 63)) {
    ref.kind = *kind;
  }
  if (auto name =
          read_bounded_string(sink, ref_fields.require("name"), ref_fields.path("name"), 1, 253)) {
    ref.name = *name;
  }
  return ref;
}

void decode_pool_spec_v1(Fields& top, Sink& sink, InferencePoolSpec& spec) {
  const json* spec_value = top.require("spec");
  if (spec_value == nullptr) return;
  Fields fields(*spec_value, "spec", sink);
  if (!fields.ok()) return;

  if (const json* selector = fields.require("selector")) {
    Fields selector_fields(*selector, "spec.selector", sink);
    if (const json* labels = selector_fields.require("matchLabels")) {
      spec.match_labels = read_string_map(sink, labels, "spec.selector.matchLabels", true);
      if (labels->is_object() && (labels->empty() || labels->size() > 64)) {
        sink.field("spec.selector.matchLabels",
                   "must have 1 to 64 entries, got " + std::to_string(labels->size()));
      }
    }
    selector_fields.finish();
  }

  const std::string ports_path = "spec.targetPorts";
  if (const json* ports = read_list(sink, fields.require("targetPorts"), ports_path)) {
    if (ports->empty() || ports->size() > 8) {
      sink.field(ports_path, "must have 1 to 8 items, got " + std::to_string(ports->size()));
    }
    for (size_t index = 0; index < ports->size(); ++index) {
      const std::string port_path = index_path(ports_path, index);
      Fields port_fields((*ports)[index], port_path, sink);
      if (auto number = read_int(sink, port_fields.require("number"),
                                 child_path(port_path, "number"), 1, 65535)) {
        check_port_unique(sink, spec.target_ports, static_cast<int32_t>(*number),
                          child_path(port_path, "number"));
      }
      port_fields.finish();
    }
  }

  if (auto protocol = read_enum(sink, fields.get("appProtocol"), "spec.appProtocol",
                                {"http", "kubernetes.io/h2c"})) {
    spec.app_protocol = *protocol == "http" ? AppProtocol::kHttp : AppProtocol::kH2c;
  }

  if (const json* ref_value = fields.get("endpointPickerRef")) {
    const std::string ref_path = "spec.endpointPickerRef";
    Fields ref_fields(*ref_value, ref_path, sink);
    if (ref_fields.ok()) {
      EndpointPickerRef ref = decode_ref_target(ref_fields, sink);
      if (const json* port = ref_fields.get("port")) {
        Fields port_fields(*port, ref_fields.path("port"), sink);
        if (auto number = read_int(sink, port_fields.require("number"), ref_path + ".port.number",
                                   1, 65535)) {
          ref.port_number = static_cast<int32_t>(*number);
        }
        port_fields.finish();
      } else if (ref.kind == "Service") {
        sink.add("missing required field \"" + ref_path +
                 ".port\" (required when kind is Service)");
      }
      if (auto mode = read_failure_mode(sink, ref_fields.get("failureMode"),
                                        ref_fields.path("failureMode"))) {
        ref.failure_mode = *mode;
      }
      spec.endpoint_picker_ref = ref;
    }
    ref_fields.finish();
  }
  fields.finish();
}

void decode_pool_spec_v1alpha2(Fields& top, Sink& sink, InferencePoolSpec& spec) {
  const json* spec_value = top.require("spec");
  if (spec_value == nullptr) return;
  Fields fields(*spec_value, "spec", sink);
  if (!fields.ok()) return;

  if (const json* selector = fields.require("selector")) {
    spec.match_labels = read_string_map(sink, selector, "spec.selector", true);
    if (selector->is_object() && selector->empty()) {
      sink.field("spec.selector", "must have at least 1 entry");
    }
  }
  if (auto port =
          read_int(sink, fields.require("targetPortNumber"), "spec.targetPortNumber", 1, 65535)) {
    spec.target_ports.push_back(static_cast<int32_t>(*port));
  }
  if (const json* ref_value = fields.get("extensionRef")) {
    Fields ref_fields(*ref_value, "spec.extensionRef", sink);
    if (ref_fields.ok()) {
      EndpointPickerRef ref = decode_ref_target(ref_fields, sink);
      if (auto port = read_int(sink, ref_fields.get("portNumber"), ref_fields.path("portNumber"), 1,
                               65535)) {
        ref.port_number = static_cast<int32_t>(*port);
      } else if (ref.kind == "Service" && ref_fields.get("portNumber") == nullptr) {
        ref.port_number = kDefaultExtensionPort;
      }
      if (auto mode = read_failure_mode(sink, ref_fields.get("failureMode"),
                                        ref_fields.path("failureMode"))) {
        ref.failure_mode = *mode;
      }
      spec.endpoint_picker_ref = ref;
    }
    ref_fields.finish();
  }
  fields.finish();
}

InferencePool decode_pool(Fields& top, Sink& sink, const std::string& api_version) {
  InferencePool pool;
  pool.api_version = api_version;
  pool.metadata = decode_metadata(top, sink);
  if (api_version == kApiVersionV1) {
    decode_pool_spec_v1(top, sink, pool.spec);
  } else {
    decode_pool_spec_v1alpha2(top, sink, pool.spec);
  }
  pool.status = read_status(top);
  return pool;
}

// ---- InferenceObjective / InferenceModelRewrite / InferenceModel --------------------------------

PoolRef read_pool_ref(Sink& sink, Fields& spec, std::string_view default_group) {
  PoolRef ref;
  ref.group = std::string(default_group);
  const json* value = spec.require("poolRef");
  if (value == nullptr) return ref;
  Fields fields(*value, spec.path("poolRef"), sink);
  if (auto group = read_string(sink, fields.get("group"), fields.path("group"))) ref.group = *group;
  if (auto kind = read_bounded_string(sink, fields.get("kind"), fields.path("kind"), 1, 63)) {
    ref.kind = *kind;
  }
  if (auto name = read_bounded_string(sink, fields.require("name"), fields.path("name"), 1, 253)) {
    ref.name = *name;
  }
  fields.finish();
  return ref;
}

InferenceObjective decode_objective(Fields& top, Sink& sink, const std::string& api_version) {
  InferenceObjective objective;
  objective.api_version = api_version;
  objective.metadata = decode_metadata(top, sink);
  if (const json* spec_value = top.require("spec")) {
    Fields spec(*spec_value, "spec", sink);
    if (spec.ok()) {
      if (auto priority =
              read_int(sink, spec.get("priority"), "spec.priority", kInt64Min, kInt64Max)) {
        objective.priority = *priority;
      }
      objective.pool_ref = read_pool_ref(sink, spec, kGroupV1);
    }
    spec.finish();
  }
  objective.status = read_status(top);
  return objective;
}

constexpr int64_t kMaxWeight = 1'000'000;

InferenceModelRewrite decode_rewrite(Fields& top, Sink& sink, const std::string& api_version) {
  InferenceModelRewrite rewrite;
  rewrite.api_version = api_version;
  rewrite.metadata = decode_metadata(top, sink);
  rewrite.pool_ref.group = std::string(kGroupV1);
  if (const json* spec_value = top.require("spec")) {
    Fields spec(*spec_value, "spec", sink);
    if (spec.ok()) {
      rewrite.pool_ref = read_pool_ref(sink, spec, kGroupV1);
      const json* rules = read_list(sink, spec.require("rules"), "spec.rules");
      for (size_t rule_index = 0; rules != nullptr && rule_index < rules->size(); ++rule_index) {
        const std::string rule_path = index_path("spec.rules", rule_index);
        Fields rule_fields((*rules)[rule_index], rule_path, sink);
        RewriteRule rule;
        const std::string matches_path = rule_fields.path("matches");
        const json* matches = read_list(sink, rule_fields.get("matches"), matches_path);
        for (size_t index = 0; matches != nullptr && index < matches->size(); ++index) {
          const std::string match_path = index_path(matches_path, index);
          Fields match_fields((*matches)[index], match_path, sink);
          if (const json* model = match_fields.require("model")) {
            Fields model_fields(*model, match_path + ".model", sink);
            ModelMatch match;
            read_enum(sink, model_fields.get("type"), model_fields.path("type"), {"Exact"});
            if (auto text = read_bounded_string(sink, model_fields.require("value"),
                                                model_fields.path("value"), 1, SIZE_MAX)) {
              match.value = *text;
            }
            rule.matches.push_back(match);
            model_fields.finish();
          }
          match_fields.finish();
        }
        const std::string targets_path = rule_fields.path("targets");
        if (const json* targets = read_list(sink, rule_fields.require("targets"), targets_path)) {
          if (targets->empty()) sink.field(targets_path, "must have at least 1 item");
          for (size_t index = 0; index < targets->size(); ++index) {
            const std::string target_path = index_path(targets_path, index);
            Fields target_fields((*targets)[index], target_path, sink);
            RewriteTarget target;
            if (auto model = read_bounded_string(sink, target_fields.require("modelRewrite"),
                                                 target_fields.path("modelRewrite"), 1, SIZE_MAX)) {
              target.model_rewrite = *model;
            }
            if (auto weight = read_int(sink, target_fields.get("weight"),
                                       target_fields.path("weight"), 1, kMaxWeight)) {
              target.weight = static_cast<int32_t>(*weight);
            }
            rule.targets.push_back(target);
            target_fields.finish();
          }
        }
        rewrite.rules.push_back(std::move(rule));
        rule_fields.finish();
      }
    }
    spec.finish();
  }
  rewrite.status = read_status(top);
  return rewrite;
}

InferenceModel decode_model(Fields& top, Sink& sink, const std::string& api_version) {
  InferenceModel model;
  model.api_version = api_version;
  model.metadata = decode_metadata(top, sink);
  model.pool_ref.group = std::string(kGroupExperimental);
  if (const json* spec_value = top.require("spec")) {
    Fields spec(*spec_value, "spec", sink);
    if (spec.ok()) {
      if (auto name =
              read_bounded_string(sink, spec.require("modelName"), "spec.modelName", 1, 256)) {
        model.model_name = *name;
      }
      if (auto criticality = read_enum(sink, spec.get("criticality"), "spec.criticality",
                                       {"Critical", "Standard", "Sheddable"})) {
        model.criticality = *criticality == "Critical"   ? Criticality::kCritical
                            : *criticality == "Standard" ? Criticality::kStandard
                                                         : Criticality::kSheddable;
      }
      const std::string targets_path = "spec.targetModels";
      if (const json* targets = read_list(sink, spec.get("targetModels"), targets_path)) {
        if (targets->size() > 10) {
          sink.field(targets_path,
                     "must have at most 10 items, got " + std::to_string(targets->size()));
        }
        size_t weighted = 0;
        for (size_t index = 0; index < targets->size(); ++index) {
          const std::string target_path = index_path(targets_path, index);
          Fields target_fields((*targets)[index], target_path, sink);
          TargetModel target;
          if (auto name = read_bounded_string(sink, target_fields.require("name"),
                                              target_fields.path("name"), 1, 253)) {
            target.name = *name;
          }
          if (target_fields.get("weight") != nullptr) ++weighted;
          if (auto weight = read_int(sink, target_fields.get("weight"),
                                     target_fields.path("weight"), 1, kMaxWeight)) {
            target.weight = static_cast<int32_t>(*weight);
          }
          model.target_models.push_back(target);
          target_fields.finish();
        }
        if (weighted != 0 && weighted != targets->size()) {
          sink.field(targets_path, "either all or none of the target models must have a weight");
        }
      }
      model.pool_ref = read_pool_ref(sink, spec, kGroupExperimental);
    }
    spec.finish();
  }
  model.status = read_status(top);
  return model;
}

// ---- EndpointPickerConfig -----------------------------------------------------------------------

// A `{pluginRef: ...}` object.
std::optional<std::string> read_plugin_ref_object(Sink& sink, const json& value,
                                                  const std::string& path) {
  Fields fields(value, path, sink);
  auto ref =
      read_bounded_string(sink, fields.require("pluginRef"), fields.path("pluginRef"), 1, SIZE_MAX);
  fields.finish();
  return ref;
}

std::optional<int64_t> read_quantity_field(Sink& sink, const json* value, const std::string& path) {
  if (value == nullptr) return std::nullopt;
  if (value->is_number_integer()) return read_int(sink, value, path, 0, kInt64Max);
  if (!value->is_string()) {
    wrong_type(sink, path, "a quantity (integer or string such as \"10Gi\")", *value);
    return std::nullopt;
  }
  const std::string text = value->get<std::string>();
  std::optional<int64_t> bytes = parse_quantity(text);
  if (!bytes) {
    sink.field(path, "invalid quantity \"" + text + "\"");
    return std::nullopt;
  }
  if (*bytes < 0) {
    sink.field(path, "must not be negative, got \"" + text + "\"");
    return std::nullopt;
  }
  return bytes;
}

std::optional<std::string> read_optional_ref(Sink& sink, Fields& fields, std::string_view key) {
  return read_bounded_string(sink, fields.get(key), fields.path(key), 1, SIZE_MAX);
}

FlowControlConfig decode_flow_control(Sink& sink, const json& value) {
  FlowControlConfig config;
  Fields fields(value, "flowControl", sink);
  if (!fields.ok()) return config;
  config.max_bytes = read_quantity_field(sink, fields.get("maxBytes"), fields.path("maxBytes"));
  config.max_requests =
      read_int(sink, fields.get("maxRequests"), fields.path("maxRequests"), 0, kInt64Max);
  if (auto ttl =
          read_string(sink, fields.get("defaultRequestTTL"), fields.path("defaultRequestTTL"))) {
    std::optional<std::chrono::nanoseconds> duration = parse_go_duration(*ttl);
    if (!duration) {
      sink.field(fields.path("defaultRequestTTL"),
                 "invalid duration \"" + *ttl + "\" (expected Go syntax such as \"30s\")");
    } else if (duration->count() < 0) {
      sink.field(fields.path("defaultRequestTTL"), "must not be negative, got \"" + *ttl + "\"");
    } else {
      config.default_request_ttl = duration;
    }
  }
  if (const json* band = fields.get("defaultPriorityBand")) {
    if (band->is_object()) {
      config.default_priority_band = *band;
    } else {
      wrong_type(sink, fields.path("defaultPriorityBand"), "an object", *band);
    }
  }
  const std::string bands_path = fields.path("priorityBands");
  if (const json* bands = read_list(sink, fields.get("priorityBands"), bands_path)) {
    for (size_t index = 0; index < bands->size(); ++index) {
      const std::string band_path = index_path(bands_path, index);
      Fields band_fields((*bands)[index], band_path, sink);
      PriorityBandConfig band;
      if (auto priority = read_int(sink, band_fields.require("priority"),
                                   band_fields.path("priority"), kInt64Min, kInt64Max)) {
        band.priority = *priority;
      }
      band.max_bytes =
          read_quantity_field(sink, band_fields.get("maxBytes"), band_fields.path("maxBytes"));
      band.max_requests = read_int(sink, band_fields.get("maxRequests"),
                                   band_fields.path("maxRequests"), 0, kInt64Max);
      band.fairness_policy_ref =
          read_optional_ref(sink, band_fields, "fairnessPolicyRef").value_or("");
      band.ordering_policy_ref =
          read_optional_ref(sink, band_fields, "orderingPolicyRef").value_or("");
      config.priority_bands.push_back(std::move(band));
      band_fields.finish();
    }
  }
  config.usage_limit_policy_plugin_ref =
      read_optional_ref(sink, fields, "usageLimitPolicyPluginRef").value_or("");
  fields.finish();
  return config;
}

EndpointPickerConfig decode_picker_config(Fields& top, Sink& sink, const std::string& api_version) {
  EndpointPickerConfig config;
  config.api_version = api_version;

  if (const json* gates = read_list(sink, top.get("featureGates"), "featureGates")) {
    for (size_t index = 0; index < gates->size(); ++index) {
      if (auto gate = read_string(sink, &(*gates)[index], index_path("featureGates", index))) {
        config.feature_gates.push_back(*gate);
      }
    }
  }

  if (const json* plugins = read_list(sink, top.get("plugins"), "plugins")) {
    for (size_t index = 0; index < plugins->size(); ++index) {
      const std::string plugin_path = index_path("plugins", index);
      Fields fields((*plugins)[index], plugin_path, sink);
      PluginSpec plugin;
      if (auto type =
              read_bounded_string(sink, fields.require("type"), fields.path("type"), 1, SIZE_MAX)) {
        plugin.type = *type;
      }
      plugin.name = read_bounded_string(sink, fields.get("name"), fields.path("name"), 1, SIZE_MAX)
                        .value_or(plugin.type);
      if (const json* parameters = fields.get("parameters")) {
        if (parameters->is_object()) {
          plugin.parameters = *parameters;
        } else {
          wrong_type(sink, fields.path("parameters"), "an object", *parameters);
        }
      }
      config.plugins.push_back(std::move(plugin));
      fields.finish();
    }
  }

  if (const json* profiles = read_list(sink, top.get("schedulingProfiles"), "schedulingProfiles")) {
    for (size_t index = 0; index < profiles->size(); ++index) {
      const std::string profile_path = index_path("schedulingProfiles", index);
      Fields fields((*profiles)[index], profile_path, sink);
      SchedulingProfile profile;
      profile.name =
          read_bounded_string(sink, fields.require("name"), fields.path("name"), 1, SIZE_MAX)
              .value_or("");
      const std::string refs_path = fields.path("plugins");
      if (const json* refs = read_list(sink, fields.get("plugins"), refs_path)) {
        for (size_t ref_index = 0; ref_index < refs->size(); ++ref_index) {
          const std::string ref_path = index_path(refs_path, ref_index);
          Fields ref_fields((*refs)[ref_index], ref_path, sink);
          ProfilePluginRef ref;
          ref.plugin_ref = read_bounded_string(sink, ref_fields.require("pluginRef"),
                                               ref_fields.path("pluginRef"), 1, SIZE_MAX)
                               .value_or("");
          ref.weight = read_number(sink, ref_fields.get("weight"), ref_fields.path("weight"));
          profile.plugins.push_back(std::move(ref));
          ref_fields.finish();
        }
      }
      config.scheduling_profiles.push_back(std::move(profile));
      fields.finish();
    }
  }

  if (const json* detector = top.get("saturationDetector")) {
    config.saturation_detector_ref = read_plugin_ref_object(sink, *detector, "saturationDetector");
  }
  if (const json* parser = top.get("parser")) {
    config.parser_ref = read_plugin_ref_object(sink, *parser, "parser");
  }

  if (const json* data_layer = top.get("dataLayer")) {
    Fields fields(*data_layer, "dataLayer", sink);
    DataLayerConfig layer;
    const std::string sources_path = "dataLayer.sources";
    if (const json* sources = read_list(sink, fields.get("sources"), sources_path)) {
      for (size_t index = 0; index < sources->size(); ++index) {
        const std::string source_path = index_path(sources_path, index);
        Fields source_fields((*sources)[index], source_path, sink);
        DataLayerSource source;
        source.plugin_ref = read_bounded_string(sink, source_fields.require("pluginRef"),
                                                source_fields.path("pluginRef"), 1, SIZE_MAX)
                                .value_or("");
        const std::string extractors_path = source_fields.path("extractors");
        if (const json* extractors =
                read_list(sink, source_fields.get("extractors"), extractors_path)) {
          for (size_t extractor_index = 0; extractor_index < extractors->size();
               ++extractor_index) {
            source.extractor_refs.push_back(
                read_plugin_ref_object(sink, (*extractors)[extractor_index],
                                       index_path(extractors_path, extractor_index))
                    .value_or(""));
          }
        }
        layer.sources.push_back(std::move(source));
        source_fields.finish();
      }
    }
    fields.finish();
    if (fields.ok()) config.data_layer = std::move(layer);
  }

  if (const json* flow_control = top.get("flowControl")) {
    config.flow_control = decode_flow_control(sink, *flow_control);
  }

  // Cross-references are checked only when the shapes decoded cleanly, so one mistake does not
  // cascade into a dangling-reference error as well.
  if (sink.clean()) {
    for (const std::string& problem : validate_endpoint_picker_config(config)) sink.add(problem);
  }
  return config;
}

// ---- Gateway API: Gateway, HTTPRoute
// -------------------------------------------------------------

// A field infergate recognises but does not implement: an error naming it, so that a route never
// behaves differently from what its author wrote.
void not_supported(Sink& sink, Fields& fields, std::string_view key, std::string_view why) {
  if (fields.get(key) != nullptr) {
    sink.field(fields.path(key), "not supported by infergate (" + std::string(why) + ")");
  }
}

// A Gateway API Duration (GEP-2257): 1 to 4 groups of 1-5 digits and a unit h, m, s or ms.
std::optional<std::chrono::nanoseconds> read_gateway_duration(Sink& sink, const json* value,
                                                              const std::string& path) {
  std::optional<std::string> text = read_string(sink, value, path);
  if (!text) return std::nullopt;
  static const std::regex kPattern("^([0-9]{1,5}(h|m|s|ms)){1,4}$");
  std::optional<std::chrono::nanoseconds> parsed;
  if (std::regex_match(*text, kPattern)) parsed = parse_go_duration(*text);
  if (!parsed) {
    sink.field(path, "\"" + *text +
                         "\" is not a Gateway API duration (1 to 4 groups of up to 5 digits and a "
                         "unit h, m, s or ms, e.g. \"10s\", \"1m30s\", \"500ms\")");
  }
  return parsed;
}

bool is_http_token(std::string_view text) {
  static constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
           kSpecials.find(c) != std::string_view::npos;
  });
}

// True when `pattern` compiles as an ECMAScript regular expression (the dialect the gateway
// matches with); otherwise reports it.
bool check_regex(Sink& sink, const std::string& pattern, const std::string& path) {
  try {
    std::regex compiled(pattern, std::regex::ECMAScript);
    return true;
  } catch (const std::regex_error& error) {
    sink.field(path, "invalid regular expression \"" + pattern + "\": " + error.what());
    return false;
  }
}

Gateway decode_gateway(Fields& top, Sink& sink, const std::string& api_version) {
  Gateway gateway;
  gateway.api_version = api_version;
  gateway.metadata = decode_metadata(top, sink);
  if (const json* spec_value = top.require("spec")) {
    Fields spec(*spec_value, "spec", sink);
    if (spec.ok()) {
      if (auto name = read_bounded_string(sink, spec.require("gatewayClassName"),
                                          "spec.gatewayClassName", 1, 253)) {
        gateway.gateway_class_name = *name;
      }
      const std::string listeners_path = "spec.listeners";
      if (const json* listeners = read_list(sink, spec.require("listeners"), listeners_path)) {
        if (listeners->empty() || listeners->size() > 64) {
          sink.field(listeners_path,
                     "must have 1 to 64 items, got " + std::to_string(listeners->size()));
        }
        std::set<std::string> names;
        for (size_t index = 0; index < listeners->size(); ++index) {
          const std::string path = index_path(listeners_path, index);
          Fields fields((*listeners)[index], path, sink);
          GatewayListener listener;
          if (auto name =
                  read_bounded_string(sink, fields.require("name"), fields.path("name"), 1, 253)) {
            if (!names.insert(*name).second) {
              sink.field(fields.path("name"), "duplicate listener name \"" + *name + "\"");
            }
            listener.name = *name;
          }
          if (auto hostname = read_bounded_string(sink, fields.get("hostname"),
                                                  fields.path("hostname"), 1, 253)) {
            listener.hostname = *hostname;
          }
          if (auto port = read_int(sink, fields.require("port"), fields.path("port"), 1, 65535)) {
            listener.port = static_cast<int32_t>(*port);
          }
          if (auto protocol = read_bounded_string(sink, fields.require("protocol"),
                                                  fields.path("protocol"), 1, 255)) {
            listener.protocol = *protocol;
          }
          // Accepted so that a cluster's Gateway loads as is; infergate serves plain HTTP only
          // (tls applies to HTTPS/TLS listeners, which are not served) and every route attaches.
          fields.ignore("tls");
          fields.ignore("allowedRoutes");
          fields.finish();
          gateway.listeners.push_back(std::move(listener));
        }
      }
      // Kubernetes-only: addresses are assigned by the cluster, infrastructure labels its pods.
      spec.ignore("addresses");
      spec.ignore("infrastructure");
    }
    spec.finish();
  }
  gateway.status = read_status(top);
  return gateway;
}

ParentReference decode_parent_ref(Sink& sink, const json& value, const std::string& path) {
  ParentReference ref;
  Fields fields(value, path, sink);
  if (auto group = read_string(sink, fields.get("group"), fields.path("group"))) ref.group = *group;
  if (auto kind = read_bounded_string(sink, fields.get("kind"), fields.path("kind"), 1, 63)) {
    ref.kind = *kind;
  }
  if (auto name = read_bounded_string(sink, fields.require("name"), fields.path("name"), 1, 253)) {
    ref.name = *name;
  }
  if (auto ns =
          read_bounded_string(sink, fields.get("namespace"), fields.path("namespace"), 1, 63)) {
    ref.namespace_name = *ns;
  }
  if (auto section = read_bounded_string(sink, fields.get("sectionName"),
                                         fields.path("sectionName"), 1, 253)) {
    ref.section_name = *section;
  }
  if (auto port = read_int(sink, fields.get("port"), fields.path("port"), 1, 65535)) {
    ref.port = static_cast<int32_t>(*port);
  }
  if (ref.group != kGroupGatewayApi || ref.kind != "Gateway") {
    sink.field(path, "must refer to a Gateway (group " + std::string(kGroupGatewayApi) +
                         "), got kind \"" + ref.kind + "\" of group \"" + ref.group + "\"");
  }
  fields.finish();
  return ref;
}

HTTPRouteMatch decode_route_match(Sink& sink, const json& value, const std::string& path) {
  HTTPRouteMatch match;
  Fields fields(value, path, sink);
  if (!fields.ok()) return match;
  if (const json* path_value = fields.get("path")) {
    Fields path_fields(*path_value, fields.path("path"), sink);
    if (auto type = read_enum(sink, path_fields.get("type"), path_fields.path("type"),
                              {"Exact", "PathPrefix", "RegularExpression"})) {
      match.path.type = *type == "Exact"        ? PathMatchType::kExact
                        : *type == "PathPrefix" ? PathMatchType::kPathPrefix
                                                : PathMatchType::kRegularExpression;
    }
    const std::string value_path = path_fields.path("value");
    if (auto text = read_bounded_string(sink, path_fields.get("value"), value_path, 1, 1024)) {
      match.path.value = *text;
    }
    if (match.path.type == PathMatchType::kRegularExpression) {
      check_regex(sink, match.path.value, value_path);
    } else if (match.path.value.front() != '/') {
      sink.field(value_path,
                 "must be an absolute path starting with \"/\", got \"" + match.path.value + "\"");
    } else if (match.path.value.find("//") != std::string::npos ||
               match.path.value.find('#') != std::string::npos ||
               match.path.value.find('?') != std::string::npos) {
      sink.field(value_path,
                 "must not contain \"//\", \"?\" or \"#\", got \"" + match.path.value + "\"");
    }
    path_fields.finish();
  }
  const std::string headers_path = fields.path("headers");
  if (const json* headers = read_list(sink, fields.get("headers"), headers_path)) {
    if (headers->size() > 16) {
      sink.field(headers_path,
                 "must have at most 16 items, got " + std::to_string(headers->size()));
    }
    std::set<std::string> names;
    for (size_t index = 0; index < headers->size(); ++index) {
      const std::string header_path = index_path(headers_path, index);
      Fields header_fields((*headers)[index], header_path, sink);
      HTTPHeaderMatch header;
      if (auto type = read_enum(sink, header_fields.get("type"), header_fields.path("type"),
                                {"Exact", "RegularExpression"})) {
        header.type =
            *type == "Exact" ? HeaderMatchType::kExact : HeaderMatchType::kRegularExpression;
      }
      const std::string name_path = header_fields.path("name");
      if (auto name = read_bounded_string(sink, header_fields.require("name"), name_path, 1, 256)) {
        std::string lower = *name;
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (!is_http_token(*name)) {
          sink.field(name_path, "\"" + *name + "\" is not a valid HTTP header name");
        } else if (!names.insert(lower).second) {
          sink.field(name_path, "header \"" + *name + "\" is matched twice in one match");
        }
        header.name = *name;
      }
      const std::string value_path = header_fields.path("value");
      if (auto text =
              read_bounded_string(sink, header_fields.require("value"), value_path, 1, 4096)) {
        header.value = *text;
        if (header.type == HeaderMatchType::kRegularExpression) {
          check_regex(sink, header.value, value_path);
        }
      }
      header_fields.finish();
      match.headers.push_back(std::move(header));
    }
  }
  not_supported(sink, fields, "queryParams", "match on the path, headers and method");
  if (auto method = read_enum(
          sink, fields.get("method"), fields.path("method"),
          {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})) {
    match.method = *method;
  }
  fields.finish();
  return match;
}

HTTPBackendRef decode_backend_ref(Sink& sink, const json& value, const std::string& path) {
  HTTPBackendRef ref;
  Fields fields(value, path, sink);
  if (!fields.ok()) return ref;
  if (auto group = read_string(sink, fields.get("group"), fields.path("group"))) ref.group = *group;
  if (auto kind = read_bounded_string(sink, fields.get("kind"), fields.path("kind"), 1, 63)) {
    ref.kind = *kind;
  }
  if (auto name = read_bounded_string(sink, fields.require("name"), fields.path("name"), 1, 253)) {
    ref.name = *name;
  }
  if (auto ns =
          read_bounded_string(sink, fields.get("namespace"), fields.path("namespace"), 1, 63)) {
    ref.namespace_name = *ns;
  }
  if (auto port = read_int(sink, fields.get("port"), fields.path("port"), 1, 65535)) {
    ref.port = static_cast<int32_t>(*port);
  }
  if (auto weight = read_int(sink, fields.get("weight"), fields.path("weight"), 0, kMaxWeight)) {
    ref.weight = static_cast<int32_t>(*weight);
  }
  not_supported(sink, fields, "filters", "backend filters");
  if (ref.group != kGroupV1 || ref.kind != kKindInferencePool) {
    sink.field(path, "infergate routes to InferencePools only: give group: " +
                         std::string(kGroupV1) + " and kind: InferencePool (got kind \"" +
                         ref.kind + "\" of group \"" + ref.group + "\")");
  }
  fields.finish();
  return ref;
}

HTTPRouteRule decode_route_rule(Sink& sink, const json& value, const std::string& path) {
  HTTPRouteRule rule;
  Fields fields(value, path, sink);
  if (!fields.ok()) return rule;
  if (auto name = read_bounded_string(sink, fields.get("name"), fields.path("name"), 1, 253)) {
    rule.name = *name;
  }
  const std::string matches_path = fields.path("matches");
  if (const json* matches = read_list(sink, fields.get("matches"), matches_path)) {
    if (matches->size() > 64) {
      sink.field(matches_path,
                 "must have at most 64 items, got " + std::to_string(matches->size()));
    }
    for (size_t index = 0; index < matches->size(); ++index) {
      rule.matches.push_back(
          decode_route_match(sink, (*matches)[index], index_path(matches_path, index)));
    }
  }
  if (rule.matches.empty()) rule.matches.emplace_back();  // the Gateway API default: "/"
  const std::string refs_path = fields.path("backendRefs");
  if (const json* refs = read_list(sink, fields.get("backendRefs"), refs_path)) {
    if (refs->size() > 16) {
      sink.field(refs_path, "must have at most 16 items, got " + std::to_string(refs->size()));
    }
    for (size_t index = 0; index < refs->size(); ++index) {
      rule.backend_refs.push_back(
          decode_backend_ref(sink, (*refs)[index], index_path(refs_path, index)));
    }
  }
  if (const json* timeouts = fields.get("timeouts")) {
    Fields timeout_fields(*timeouts, fields.path("timeouts"), sink);
    rule.timeouts.request =
        read_gateway_duration(sink, timeout_fields.get("request"), timeout_fields.path("request"));
    rule.timeouts.backend_request = read_gateway_duration(
        sink, timeout_fields.get("backendRequest"), timeout_fields.path("backendRequest"));
    const auto& request = rule.timeouts.request;
    const auto& backend = rule.timeouts.backend_request;
    if (request && backend && request->count() > 0 &&
        (backend->count() == 0 || *backend > *request)) {
      sink.field(timeout_fields.path("backendRequest"), "must not be longer than timeouts.request");
    }
    timeout_fields.finish();
  }
  not_supported(sink, fields, "filters", "request/response filters");
  not_supported(sink, fields, "retry", "retries are set with --max-retries");
  not_supported(sink, fields, "sessionPersistence", "the endpoint picker chooses the endpoint");
  fields.finish();
  return rule;
}

HTTPRoute decode_route(Fields& top, Sink& sink, const std::string& api_version) {
  HTTPRoute route;
  route.api_version = api_version;
  route.metadata = decode_metadata(top, sink);
  if (const json* spec_value = top.require("spec")) {
    Fields spec(*spec_value, "spec", sink);
    if (spec.ok()) {
      const std::string parents_path = "spec.parentRefs";
      if (const json* parents = read_list(sink, spec.get("parentRefs"), parents_path)) {
        if (parents->size() > 32) {
          sink.field(parents_path,
                     "must have at most 32 items, got " + std::to_string(parents->size()));
        }
        for (size_t index = 0; index < parents->size(); ++index) {
          route.parent_refs.push_back(
              decode_parent_ref(sink, (*parents)[index], index_path(parents_path, index)));
        }
      }
      const std::string hostnames_path = "spec.hostnames";
      if (const json* hostnames = read_list(sink, spec.get("hostnames"), hostnames_path)) {
        if (hostnames->size() > 16) {
          sink.field(hostnames_path,
                     "must have at most 16 items, got " + std::to_string(hostnames->size()));
        }
        for (size_t index = 0; index < hostnames->size(); ++index) {
          const std::string hostname_path = index_path(hostnames_path, index);
          if (auto hostname =
                  read_bounded_string(sink, &(*hostnames)[index], hostname_path, 1, 253)) {
            route.hostnames.push_back(*hostname);
          }
        }
      }
      const std::string rules_path = "spec.rules";
      if (const json* rules = read_list(sink, spec.get("rules"), rules_path)) {
        if (rules->size() > 16) {
          sink.field(rules_path,
                     "must have at most 16 items, got " + std::to_string(rules->size()));
        }
        std::set<std::string> names;
        for (size_t index = 0; index < rules->size(); ++index) {
          const std::string rule_path = index_path(rules_path, index);
          HTTPRouteRule rule = decode_route_rule(sink, (*rules)[index], rule_path);
          if (!rule.name.empty() && !names.insert(rule.name).second) {
            sink.field(rule_path + ".name", "duplicate rule name \"" + rule.name + "\"");
          }
          route.rules.push_back(std::move(rule));
        }
      }
      if (route.rules.empty()) {
        route.rules.push_back(HTTPRouteRule{.name = {}, .matches = {HTTPRouteMatch{}}});
      }
    }
    spec.finish();
  }
  route.status = read_status(top);
  return route;
}

// ---- dispatch -----------------------------------------------------------------------------------

struct KindVersions {
  std::string_view kind;
  std::vector<std::string_view> api_versions;
};

const std::vector<KindVersions>& supported_kinds() {
  static const std::vector<KindVersions> kinds = {
      {kKindInferencePool, {kApiVersionV1, kApiVersionV1alpha2}},
      {kKindInferenceObjective, {kApiVersionV1alpha2, kApiVersionLlmdV1alpha2}},
      {kKindInferenceModelRewrite, {kApiVersionV1alpha2, kApiVersionLlmdV1alpha2}},
      {kKindInferenceModel, {kApiVersionV1alpha2}},
      {kKindEndpointPickerConfig, {kApiVersionConfigV1alpha1, kApiVersionLlmdConfigV1alpha1}},
      {kKindGateway, {kApiVersionGatewayV1}},
      {kKindHTTPRoute, {kApiVersionGatewayV1}},
  };
  return kinds;
}

void decode_document(const json& document, const std::vector<std::string>& structure_problems,
                     size_t document_number, std::string_view file_name, DecodeReport& report) {
  const std::string where = "(document " + std::to_string(document_number) + ")";
  const std::string file = std::string(file_name);

  if (!document.is_object()) {
    report.errors.push_back(file + ": document " + std::to_string(document_number) +
                            ": expected a mapping with apiVersion and kind, got " +
                            describe(document));
    return;
  }
  // The object label: as much as is known of kind and name.
  const json* kind_value = document.contains("kind") ? &document["kind"] : nullptr;
  std::string prefix = file + ": document " + std::to_string(document_number);
  std::string kind;
  if (kind_value != nullptr && kind_value->is_string()) {
    kind = kind_value->get<std::string>();
    prefix = file + ": " + kind;
    const json* metadata = document.contains("metadata") ? &document["metadata"] : nullptr;
    if (metadata != nullptr && metadata->is_object() && metadata->contains("name") &&
        (*metadata)["name"].is_string()) {
      prefix += " \"" + (*metadata)["name"].get<std::string>() + "\"";
    }
    prefix += " " + where;
  }
  Sink sink(report.errors, prefix);
  for (const std::string& problem : structure_problems) sink.add(problem);

  Fields top(document, "", sink);
  std::optional<std::string> api_version =
      read_string(sink, top.require("apiVersion"), "apiVersion");
  if (kind_value == nullptr || kind_value->is_null()) {
    top.require("kind");
    return;
  }
  if (!kind_value->is_string()) {
    read_string(sink, top.get("kind"), "kind");
    return;
  }
  top.get("kind");
  if (!api_version) return;

  const auto& kinds = supported_kinds();
  auto known = std::find_if(kinds.begin(), kinds.end(),
                            [&](const KindVersions& entry) { return entry.kind == kind; });
  if (known == kinds.end()) {
    std::string list;
    for (const KindVersions& entry : kinds) {
      if (!list.empty()) list += ", ";
      list += entry.kind;
    }
    sink.add("unknown kind \"" + kind + "\" (apiVersion \"" + *api_version +
             "\"); supported kinds: " + list);
    return;
  }
  if (std::find(known->api_versions.begin(), known->api_versions.end(), *api_version) ==
      known->api_versions.end()) {
    std::string list;
    for (std::string_view version : known->api_versions) {
      if (!list.empty()) list += ", ";
      list += version;
    }
    sink.add("unsupported apiVersion \"" + *api_version + "\" for kind " + kind +
             " (supported: " + list + ")");
    return;
  }

  Resource resource;
  if (kind == kKindInferencePool) {
    resource = decode_pool(top, sink, *api_version);
  } else if (kind == kKindInferenceObjective) {
    resource = decode_objective(top, sink, *api_version);
  } else if (kind == kKindInferenceModelRewrite) {
    resource = decode_rewrite(top, sink, *api_version);
  } else if (kind == kKindInferenceModel) {
    resource = decode_model(top, sink, *api_version);
  } else if (kind == kKindGateway) {
    resource = decode_gateway(top, sink, *api_version);
  } else if (kind == kKindHTTPRoute) {
    resource = decode_route(top, sink, *api_version);
  } else {
    resource = decode_picker_config(top, sink, *api_version);
  }
  top.finish();
  if (sink.clean()) report.resources.push_back(std::move(resource));
}

}  // namespace

DecodeReport decode_documents_report(std::string_view text, std::string_view file_name) {
  DecodeReport report;
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& error) {
    report.errors.push_back(std::string(file_name) + ": invalid YAML at line " +
                            std::to_string(error.mark.line + 1) + ", column " +
                            std::to_string(error.mark.column + 1) + ": " + error.msg);
    return report;
  }
  for (size_t index = 0; index < documents.size(); ++index) {
    if (documents[index].IsNull() || !documents[index].IsDefined()) continue;
    std::vector<std::string> structure_problems;
    const json document = yaml_to_json(documents[index], "", structure_problems);
    decode_document(document, structure_problems, index + 1, file_name, report);
  }
  return report;
}

Result<std::vector<Resource>> decode_documents(std::string_view text, std::string_view file_name) {
  DecodeReport report = decode_documents_report(text, file_name);
  if (report.ok()) return std::move(report.resources);
  std::string message;
  for (const std::string& error : report.errors) {
    if (!message.empty()) message += '\n';
    message += error;
  }
  return Status::bad_request(std::move(message));
}

Result<std::vector<Resource>> load_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return Status::bad_request(path + ": cannot open file");
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return Status::bad_request(path + ": read error");
  return decode_documents(contents.str(), path);
}

}  // namespace infergate::api
