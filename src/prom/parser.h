#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

// The scrape side of Prometheus: a streaming parser for the text exposition format 0.0.4 (what
// vLLM, SGLang, TRT-LLM and our own Registry serve), and the metric selectors the metrics
// extraction uses to pick series out of a scrape.
//
// Who calls it: one metrics collector per endpoint, every scrape (default every 50 ms), on the
// scraper's thread. A TextParser is single-threaded; use one per collector and reuse it across
// scrapes (finish() resets it and keeps its buffers). The parser copies nothing on the common
// path: samples are views into the fed bytes, a line is copied only when it straddles two
// chunks, and a label value is copied (into a per-parser scratch buffer) only when it contains
// an escape sequence.
//
// Errors are values: a malformed line is skipped, counted and described (with its line number)
// in ParseStats, and parsing goes on with the next line. No input, however broken or binary,
// makes the parser throw or crash. Callbacks must not throw and must not feed the same parser.

namespace infergate::prom {

// A family's type as declared by its `# TYPE` line; kUntyped when there is none.
enum class FamilyType { kUntyped, kCounter, kGauge, kHistogram, kSummary };

// "untyped", "counter", "gauge", "histogram" or "summary".
std::string_view family_type_name(FamilyType type);

// One label of a sample. `value` is unescaped.
struct Label {
  std::string_view name;
  std::string_view value;
};

// The labels of one sample, in the order they appear on the line. A view: valid only as long as
// the Sample it belongs to.
class LabelView {
 public:
  LabelView() = default;
  explicit LabelView(std::span<const Label> labels) : labels_(labels) {}

  std::size_t size() const { return labels_.size(); }
  bool empty() const { return labels_.empty(); }
  const Label& operator[](std::size_t index) const { return labels_[index]; }
  auto begin() const { return labels_.begin(); }
  auto end() const { return labels_.end(); }

  // The unescaped value of label `name`, or nullopt when the sample has no such label.
  std::optional<std::string_view> find(std::string_view name) const;

 private:
  std::span<const Label> labels_;
};

// One sample line. All views point into the parser's input or buffers and are valid only during
// the callback that receives the Sample: copy what you keep.
struct Sample {
  std::string_view name;  // full sample name: `vllm:prompt_tokens_total`, `x_bucket`, `x_sum`
  LabelView labels;
  double value = 0;  // may be NaN, +Inf or -Inf
  std::optional<std::int64_t> timestamp_ms;
  // The type from the most recent `# TYPE` line, when this sample belongs to that family: its
  // name is the family name, or for a histogram the family name plus `_bucket`, `_count`, `_sum`
  // or `_created`, for a summary plus `_count`, `_sum` or `_created`, for a counter plus
  // `_total` or `_created` (`x_created` also belongs to counter family `x_total`).
  FamilyType family_type = FamilyType::kUntyped;
};

// One `# HELP` or `# TYPE` line. Views valid only during the callback.
struct FamilyMetadata {
  enum class Kind { kHelp, kType };
  Kind kind = Kind::kHelp;
  std::string_view family_name;
  std::string_view help;                   // kHelp: unescaped (`\\` and `\n`)
  FamilyType type = FamilyType::kUntyped;  // kType
};

using SampleCallback = std::function<void(const Sample&)>;
using MetadataCallback = std::function<void(const FamilyMetadata&)>;

// What one parse saw.
struct ParseStats {
  std::size_t lines = 0;           // lines seen, including blank and comment lines
  std::size_t samples = 0;         // samples delivered to the callback
  std::size_t metadata_lines = 0;  // valid `# HELP` and `# TYPE` lines
  std::size_t skipped_lines = 0;   // malformed or overlong lines, skipped
  // The first few skipped lines' reasons, e.g. "line 7: bad sample value" (at most
  // TextParser::Options::max_recorded_errors; `skipped_lines` counts them all).
  std::vector<std::string> errors;
};

// Parses a body fed in pieces of any size (e.g. straight from HTTP body reads). Lines end with
// `\n` or `\r\n`; the last line needs no newline.
//
// Accepted: `# HELP name text`, `# TYPE name counter|gauge|histogram|summary|untyped` (`unknown`
// is read as untyped), other `#` lines (ignored), blank lines, and samples
// `name{label="value",...} value [timestamp_ms]` with spaces or tabs between the parts and
// around the labels, a trailing comma in the label set, `{}`, label-value escapes `\\`, `\"` and
// `\n`, values as Go's strconv.ParseFloat reads decimal floats (`1`, `-1.5e-3`, `+Inf`, `-Inf`,
// `NaN`, case-insensitively for the words) and integral millisecond timestamps.
// Rejected (line skipped): invalid metric or label names, a duplicate label name, any other
// escape, unterminated values or label sets, a missing or unparsable value or timestamp,
// anything after the timestamp, an unknown TYPE, and lines longer than `max_line_bytes`.
class TextParser {
 public:
  struct Options {
    std::size_t max_line_bytes = 64 * 1024;  // longer lines are skipped, never buffered whole
    std::size_t max_recorded_errors = 8;
  };

  TextParser() : TextParser(Options{}) {}
  explicit TextParser(Options options, MetadataCallback on_metadata = {});

  // Parses every complete line in `chunk` (plus what earlier chunks left unfinished), calling
  // `on_sample` for each valid sample in input order. Keeps an unfinished last line for later.
  void feed(std::string_view chunk, const SampleCallback& on_sample);

  // Parses the unfinished last line, if any, returns the statistics of the whole body, and
  // resets the parser for the next body (buffers keep their capacity).
  ParseStats finish(const SampleCallback& on_sample);

 private:
  void append_partial(std::string_view piece);
  void complete_buffered_line(const SampleCallback& on_sample);
  void handle_line(std::string_view line, const SampleCallback& on_sample);
  // Each returns nullptr on success, or the reason the line is malformed.
  const char* parse_comment(std::string_view line);
  const char* parse_sample(std::string_view line, const SampleCallback& on_sample);
  const char* parse_label_value(std::string_view line, std::size_t& pos, std::string_view& value);
  void record_error(const char* reason);
  FamilyType family_type_of(std::string_view sample_name) const;

  Options options_;
  MetadataCallback on_metadata_;
  ParseStats stats_;
  std::string pending_;        // the unfinished line carried between feed() calls
  bool discarding_ = false;    // the unfinished line is already too long: drop it up to `\n`
  std::string scratch_;        // unescaped label values / HELP text of the current line
  std::vector<Label> labels_;  // labels of the current line
  std::string family_name_;    // from the latest HELP or TYPE line
  FamilyType family_type_ = FamilyType::kUntyped;
};

// Parses a whole body. Fails (502, with the first reasons) only when the body has malformed
// lines and nothing valid at all, i.e. it is not Prometheus text; otherwise returns the
// statistics, which may still list skipped lines.
Result<ParseStats> parse_text(std::string_view text, const SampleCallback& on_sample,
                              const MetadataCallback& on_metadata = {});

// A PromQL-style instant-vector selector with equality matchers only, as the metrics extraction
// configuration spells metrics: `vllm:num_requests_waiting`,
// `nv_trt_llm_request_metrics{request_type=waiting}`, `x{a="b", c='d'}`.
struct LabelMatcher {
  std::string name;
  std::string value;
  bool operator==(const LabelMatcher&) const = default;
};

struct MetricSpec {
  std::string name;
  std::vector<LabelMatcher> matchers;

  // True when the sample has this name and every matcher's label value. As in PromQL, a matcher
  // with an empty value also matches a sample without that label.
  bool matches(const Sample& sample) const;
  // The canonical text, `name{a="b",c="d"}` (just `name` without matchers).
  std::string to_string() const;
  bool operator==(const MetricSpec&) const = default;
};

// Parses `name{label=value,...}`: spaces allowed around the parts, values unquoted (up to the next
// `,` or `}`, trimmed) or quoted with `"` or `'` (escapes `\\`, `\"`, `\'`, `\n`), trailing comma
// allowed. Errors (400) name the problem: empty text, an invalid metric or label name, a
// duplicate label, a matcher other than `=` (`!=`, `=~`, `!~`), or unbalanced braces or quotes.
Result<MetricSpec> parse_metric_spec(std::string_view text);

}  // namespace infergate::prom
