#include "prom/parser.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>
#include <utility>

#include "prom/exposition.h"

namespace infergate::prom {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_metric_name_start(char c) { return is_letter(c) || c == '_' || c == ':'; }
bool is_metric_name_char(char c) { return is_metric_name_start(c) || is_digit(c); }
bool is_label_name_start(char c) { return is_letter(c) || c == '_'; }
bool is_label_name_char(char c) { return is_label_name_start(c) || is_digit(c); }

void skip_blanks(std::string_view text, std::size_t& pos) {
  while (pos < text.size() && is_blank(text[pos])) ++pos;
}

// Reads [start-class][char-class]* at `pos`; empty when the first byte does not qualify.
template <bool (*IsStart)(char), bool (*IsChar)(char)>
std::string_view read_name(std::string_view text, std::size_t& pos) {
  const std::size_t start = pos;
  if (pos >= text.size() || !IsStart(text[pos])) return {};
  ++pos;
  while (pos < text.size() && IsChar(text[pos])) ++pos;
  return text.substr(start, pos - start);
}

std::string_view read_metric_name(std::string_view text, std::size_t& pos) {
  return read_name<is_metric_name_start, is_metric_name_char>(text, pos);
}
std::string_view read_label_name(std::string_view text, std::size_t& pos) {
  return read_name<is_label_name_start, is_label_name_char>(text, pos);
}

std::string_view read_token(std::string_view text, std::size_t& pos) {
  const std::size_t start = pos;
  while (pos < text.size() && !is_blank(text[pos])) ++pos;
  return text.substr(start, pos - start);
}

bool equals_ignoring_case(std::string_view text, std::string_view lower) {
  if (text.size() != lower.size()) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

// Decimal floats and the words Go's strconv.ParseFloat accepts; not hexadecimal floats.
bool parse_value(std::string_view token, double& value) {
  if (token.empty()) return false;
  std::string_view unsigned_part = token;
  const bool negative = token[0] == '-';
  if (token[0] == '+' || negative) unsigned_part.remove_prefix(1);
  if (equals_ignoring_case(unsigned_part, "inf") ||
      equals_ignoring_case(unsigned_part, "infinity")) {
    value = negative ? -std::numeric_limits<double>::infinity()
                     : std::numeric_limits<double>::infinity();
    return true;
  }
  if (equals_ignoring_case(token, "nan")) {
    value = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  // from_chars takes no '+' and would also take "nan(...)": only hand it digits and dots first.
  if (unsigned_part.empty() || !(is_digit(unsigned_part[0]) || unsigned_part[0] == '.')) {
    return false;
  }
  const char* first = negative ? token.data() : unsigned_part.data();
  const char* last = token.data() + token.size();
  const auto [end, error] = std::from_chars(first, last, value, std::chars_format::general);
  return error == std::errc() && end == last;
}

bool parse_timestamp(std::string_view token, std::int64_t& timestamp_ms) {
  if (!token.empty() && token[0] == '+') {
    token.remove_prefix(1);
    if (token.empty() || token[0] == '-') return false;
  }
  if (token.empty() || token[0] == '+') return false;
  const char* last = token.data() + token.size();
  const auto [end, error] = std::from_chars(token.data(), last, timestamp_ms);
  return error == std::errc() && end == last;
}

bool parse_family_type(std::string_view text, FamilyType& type) {
  if (text == "counter") {
    type = FamilyType::kCounter;
  } else if (text == "gauge") {
    type = FamilyType::kGauge;
  } else if (text == "histogram") {
    type = FamilyType::kHistogram;
  } else if (text == "summary") {
    type = FamilyType::kSummary;
  } else if (text == "untyped" || text == "unknown") {
    type = FamilyType::kUntyped;
  } else {
    return false;
  }
  return true;
}

bool has_suffix_after(std::string_view name, std::string_view prefix, std::string_view suffix) {
  return name.size() == prefix.size() + suffix.size() && name.starts_with(prefix) &&
         name.ends_with(suffix);
}

}  // namespace

std::string_view family_type_name(FamilyType type) {
  switch (type) {
    case FamilyType::kCounter:
      return "counter";
    case FamilyType::kGauge:
      return "gauge";
    case FamilyType::kHistogram:
      return "histogram";
    case FamilyType::kSummary:
      return "summary";
    case FamilyType::kUntyped:
      break;
  }
  return "untyped";
}

std::optional<std::string_view> LabelView::find(std::string_view name) const {
  for (const Label& label : labels_) {
    if (label.name == name) return label.value;
  }
  return std::nullopt;
}

TextParser::TextParser(Options options, MetadataCallback on_metadata)
    : options_(options), on_metadata_(std::move(on_metadata)) {}

void TextParser::feed(std::string_view chunk, const SampleCallback& on_sample) {
  while (!chunk.empty()) {
    const std::size_t newline = chunk.find('\n');
    if (newline == std::string_view::npos) {
      append_partial(chunk);
      return;
    }
    const std::string_view piece = chunk.substr(0, newline);
    chunk.remove_prefix(newline + 1);
    if (discarding_ || !pending_.empty()) {
      append_partial(piece);
      complete_buffered_line(on_sample);
    } else {
      handle_line(piece, on_sample);  // the common case: the line is parsed in place
    }
  }
}

ParseStats TextParser::finish(const SampleCallback& on_sample) {
  if (discarding_ || !pending_.empty()) complete_buffered_line(on_sample);
  ParseStats stats = std::move(stats_);
  stats_ = ParseStats{};
  family_name_.clear();
  family_type_ = FamilyType::kUntyped;
  return stats;
}

void TextParser::append_partial(std::string_view piece) {
  if (discarding_) return;
  if (pending_.size() + piece.size() > options_.max_line_bytes) {
    discarding_ = true;
    pending_.clear();
    return;
  }
  pending_.append(piece);
}

void TextParser::complete_buffered_line(const SampleCallback& on_sample) {
  if (discarding_) {
    ++stats_.lines;
    record_error("line too long");
    discarding_ = false;
  } else {
    handle_line(pending_, on_sample);
  }
  pending_.clear();
}

void TextParser::handle_line(std::string_view line, const SampleCallback& on_sample) {
  ++stats_.lines;
  if (line.size() > options_.max_line_bytes) {
    record_error("line too long");
    return;
  }
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::size_t pos = 0;
  skip_blanks(line, pos);
  if (pos == line.size()) return;  // blank line
  line.remove_prefix(pos);
  const char* error = line[0] == '#' ? parse_comment(line) : parse_sample(line, on_sample);
  if (error != nullptr) record_error(error);
}

const char* TextParser::parse_comment(std::string_view line) {
  std::size_t pos = 1;  // past '#'
  skip_blanks(line, pos);
  const std::string_view keyword = read_token(line, pos);
  const bool is_help = keyword == "HELP";
  if (!is_help && keyword != "TYPE") return nullptr;  // an ordinary comment
  skip_blanks(line, pos);
  if (pos == line.size()) return nullptr;  // "# HELP" alone: still just a comment
  FamilyMetadata metadata;
  metadata.family_name = read_metric_name(line, pos);
  if (metadata.family_name.empty() || (pos < line.size() && !is_blank(line[pos]))) {
    return is_help ? "invalid metric name in HELP line" : "invalid metric name in TYPE line";
  }
  skip_blanks(line, pos);
  if (is_help) {
    metadata.kind = FamilyMetadata::Kind::kHelp;
    const std::string_view raw_help = line.substr(pos);
    if (raw_help.find('\\') == std::string_view::npos) {
      metadata.help = raw_help;
    } else {
      scratch_.clear();
      for (std::size_t i = 0; i < raw_help.size(); ++i) {
        if (raw_help[i] == '\\' && i + 1 < raw_help.size() &&
            (raw_help[i + 1] == '\\' || raw_help[i + 1] == 'n')) {
          scratch_.push_back(raw_help[i + 1] == 'n' ? '\n' : '\\');
          ++i;
        } else {
          scratch_.push_back(raw_help[i]);  // other sequences stay as written, as Prometheus does
        }
      }
      metadata.help = scratch_;
    }
    if (family_name_ != metadata.family_name) {
      family_name_.assign(metadata.family_name);
      family_type_ = FamilyType::kUntyped;
    }
  } else {
    metadata.kind = FamilyMetadata::Kind::kType;
    std::string_view type_text = read_token(line, pos);
    skip_blanks(line, pos);
    if (pos != line.size() || !parse_family_type(type_text, metadata.type)) {
      return "unknown metric type in TYPE line";
    }
    family_name_.assign(metadata.family_name);
    family_type_ = metadata.type;
  }
  ++stats_.metadata_lines;
  if (on_metadata_) on_metadata_(metadata);
  return nullptr;
}

const char* TextParser::parse_sample(std::string_view line, const SampleCallback& on_sample) {
  Sample sample;
  std::size_t pos = 0;
  sample.name = read_metric_name(line, pos);
  if (sample.name.empty()) return "invalid metric name";
  labels_.clear();
  scratch_.clear();
  skip_blanks(line, pos);
  if (pos < line.size() && line[pos] == '{') {
    ++pos;
    while (true) {
      skip_blanks(line, pos);
      if (pos == line.size()) return "unterminated label set";
      if (line[pos] == '}') {
        ++pos;
        break;
      }
      Label label;
      label.name = read_label_name(line, pos);
      if (label.name.empty()) return "invalid label name";
      skip_blanks(line, pos);
      if (pos == line.size() || line[pos] != '=') return "expected '=' after label name";
      ++pos;
      skip_blanks(line, pos);
      if (const char* error = parse_label_value(line, pos, label.value)) return error;
      for (const Label& earlier : labels_) {
        if (earlier.name == label.name) return "duplicate label name";
      }
      labels_.push_back(label);
      skip_blanks(line, pos);
      if (pos < line.size() && line[pos] == ',') {
        ++pos;
      } else if (pos == line.size() || line[pos] != '}') {
        return "expected ',' or '}' after label value";
      }
    }
    skip_blanks(line, pos);
  } else if (pos < line.size() && !is_blank(line[pos - 1])) {
    return "invalid metric name";  // e.g. `name}` or `na-me 1`
  }
  if (pos == line.size()) return "missing sample value";
  if (!parse_value(read_token(line, pos), sample.value)) return "bad sample value";
  skip_blanks(line, pos);
  if (pos < line.size()) {
    std::int64_t timestamp_ms = 0;
    if (!parse_timestamp(read_token(line, pos), timestamp_ms)) return "bad timestamp";
    sample.timestamp_ms = timestamp_ms;
    skip_blanks(line, pos);
    if (pos < line.size()) return "unexpected text after timestamp";
  }
  sample.labels = LabelView(labels_);
  sample.family_type = family_type_of(sample.name);
  ++stats_.samples;
  if (on_sample) on_sample(sample);
  return nullptr;
}

const char* TextParser::parse_label_value(std::string_view line, std::size_t& pos,
                                          std::string_view& value) {
  if (pos == line.size() || line[pos] != '"') return "label value must be quoted";
  ++pos;
  const std::size_t start = pos;
  // Fast path: no escape, the value is a view into the line.
  while (pos < line.size() && line[pos] != '"' && line[pos] != '\\') ++pos;
  if (pos == line.size()) return "unterminated label value";
  if (line[pos] == '"') {
    value = line.substr(start, pos - start);
    ++pos;
    return nullptr;
  }
  // Unescaped text never outgrows its line, so reserving the line's size once means the scratch
  // buffer never reallocates while earlier labels of this line still point into it.
  if (scratch_.capacity() < line.size()) scratch_.reserve(line.size());
  const std::size_t scratch_start = scratch_.size();
  scratch_.append(line.substr(start, pos - start));
  while (pos < line.size() && line[pos] != '"') {
    if (line[pos] != '\\') {
      scratch_.push_back(line[pos++]);
      continue;
    }
    if (pos + 1 == line.size()) return "unterminated label value";
    switch (line[pos + 1]) {
      case '\\':
        scratch_.push_back('\\');
        break;
      case '"':
        scratch_.push_back('"');
        break;
      case 'n':
        scratch_.push_back('\n');
        break;
      default:
        return "invalid escape in label value";
    }
    pos += 2;
  }
  if (pos == line.size()) return "unterminated label value";
  ++pos;
  value = std::string_view(scratch_).substr(scratch_start);
  return nullptr;
}

void TextParser::record_error(const char* reason) {
  ++stats_.skipped_lines;
  if (stats_.errors.size() < options_.max_recorded_errors) {
    stats_.errors.push_back("line " + std::to_string(stats_.lines) + ": " + reason);
  }
}

FamilyType TextParser::family_type_of(std::string_view name) const {
  if (family_name_.empty()) return FamilyType::kUntyped;
  const std::string_view family = family_name_;
  if (name == family) return family_type_;
  bool belongs = false;
  switch (family_type_) {
    case FamilyType::kHistogram:
      belongs = has_suffix_after(name, family, "_bucket");
      [[fallthrough]];
    case FamilyType::kSummary:
      belongs = belongs || has_suffix_after(name, family, "_count") ||
                has_suffix_after(name, family, "_sum") ||
                has_suffix_after(name, family, "_created");
      break;
    case FamilyType::kCounter:
      belongs = has_suffix_after(name, family, "_total") ||
                has_suffix_after(name, family, "_created") ||
                (family.ends_with("_total") &&
                 has_suffix_after(name, family.substr(0, family.size() - 6), "_created"));
      break;
    case FamilyType::kGauge:
    case FamilyType::kUntyped:
      break;
  }
  return belongs ? family_type_ : FamilyType::kUntyped;
}

Result<ParseStats> parse_text(std::string_view text, const SampleCallback& on_sample,
                              const MetadataCallback& on_metadata) {
  TextParser parser(TextParser::Options{}, on_metadata);
  parser.feed(text, on_sample);
  ParseStats stats = parser.finish(on_sample);
  if (stats.skipped_lines > 0 && stats.samples == 0 && stats.metadata_lines == 0) {
    std::string message = "not Prometheus text: ";
    message += stats.errors.empty() ? std::string("no valid line") : stats.errors.front();
    if (stats.skipped_lines > 1) {
      message += " (and " + std::to_string(stats.skipped_lines - 1) + " more malformed lines)";
    }
    return Status(502, std::move(message));
  }
  return stats;
}

// ---- metric specs ----

namespace {

Status spec_error(std::string_view text, std::string_view reason) {
  std::string message = "metric spec \"";
  message += text;
  message += "\": ";
  message += reason;
  return Status::bad_request(std::move(message));
}

}  // namespace

bool MetricSpec::matches(const Sample& sample) const {
  if (sample.name != name) return false;
  for (const LabelMatcher& matcher : matchers) {
    const std::optional<std::string_view> value = sample.labels.find(matcher.name);
    if (value.value_or(std::string_view()) != matcher.value) return false;
  }
  return true;
}

std::string MetricSpec::to_string() const {
  std::string out = name;
  if (matchers.empty()) return out;
  out += '{';
  for (std::size_t i = 0; i < matchers.size(); ++i) {
    if (i > 0) out += ',';
    out += matchers[i].name;
    out += "=\"";
    append_escaped_label_value(out, matchers[i].value);
    out += '"';
  }
  out += '}';
  return out;
}

Result<MetricSpec> parse_metric_spec(std::string_view text) {
  MetricSpec spec;
  std::size_t pos = 0;
  skip_blanks(text, pos);
  if (pos == text.size()) return spec_error(text, "empty");
  spec.name = std::string(read_metric_name(text, pos));
  if (spec.name.empty()) return spec_error(text, "invalid metric name");
  skip_blanks(text, pos);
  if (pos < text.size() && text[pos] == '{') {
    ++pos;
    while (true) {
      skip_blanks(text, pos);
      if (pos == text.size()) return spec_error(text, "missing '}'");
      if (text[pos] == '}') {
        ++pos;
        break;
      }
      LabelMatcher matcher;
      matcher.name = std::string(read_label_name(text, pos));
      if (matcher.name.empty()) return spec_error(text, "invalid label name");
      skip_blanks(text, pos);
      if (pos < text.size() && text[pos] == '!') {
        return spec_error(text, "only '=' matchers are supported");
      }
      if (pos == text.size() || text[pos] != '=') {
        return spec_error(text, "expected '=' after label name");
      }
      ++pos;
      if (pos < text.size() && (text[pos] == '~' || text[pos] == '=')) {
        return spec_error(text, "only '=' matchers are supported");
      }
      skip_blanks(text, pos);
      if (pos < text.size() && (text[pos] == '"' || text[pos] == '\'')) {
        const char quote = text[pos++];
        while (pos < text.size() && text[pos] != quote) {
          char c = text[pos++];
          if (c == '\\') {
            if (pos == text.size()) break;
            c = text[pos++];
            if (c == 'n') {
              c = '\n';
            } else if (c != '\\' && c != '"' && c != '\'') {
              return spec_error(text, "invalid escape in label value");
            }
          }
          matcher.value.push_back(c);
        }
        if (pos >= text.size()) return spec_error(text, "unterminated quoted label value");
        ++pos;
      } else {
        const std::size_t start = pos;
        while (pos < text.size() && text[pos] != ',' && text[pos] != '}') {
          if (text[pos] == '{' || text[pos] == '"' || text[pos] == '\'' || text[pos] == '=') {
            return spec_error(text, "unexpected character in unquoted label value");
          }
          ++pos;
        }
        std::string_view value = text.substr(start, pos - start);
        while (!value.empty() && is_blank(value.back())) value.remove_suffix(1);
        matcher.value = std::string(value);
      }
      for (const LabelMatcher& earlier : spec.matchers) {
        if (earlier.name == matcher.name) return spec_error(text, "duplicate label name");
      }
      spec.matchers.push_back(std::move(matcher));
      skip_blanks(text, pos);
      if (pos < text.size() && text[pos] == ',') {
        ++pos;
      } else if (pos == text.size() || text[pos] != '}') {
        return spec_error(text, "expected ',' or '}' after label value");
      }
    }
    skip_blanks(text, pos);
  }
  if (pos != text.size()) return spec_error(text, "unexpected text after selector");
  return spec;
}

}  // namespace infergate::prom
