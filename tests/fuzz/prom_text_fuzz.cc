// Model servers' /metrics text (scraped from every endpoint): prom::TextParser, and the metric
// selectors of the metrics extraction configuration (prom::parse_metric_spec).
// Input: one byte choosing the cut of the pieces, then the text.
// Properties: the samples, metadata and statistics do not depend on how the body is cut; a
// selector that parses prints as text that parses back to the same selector.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "prom/parser.h"

namespace {

using infergate::fuzz::FuzzInput;
using infergate::fuzz::require;
namespace prom = infergate::prom;

// A sample as text, the value by its bits (NaN == NaN).
std::string describe(const prom::Sample& sample) {
  std::string out(sample.name);
  for (const prom::Label& label : sample.labels) {
    out.append("|").append(label.name).append("=").append(label.value);
  }
  std::uint64_t bits = 0;
  std::memcpy(&bits, &sample.value, sizeof(bits));
  out.append("|").append(std::to_string(bits));
  out.append("|").append(sample.timestamp_ms ? std::to_string(*sample.timestamp_ms) : "-");
  out.append("|").append(std::to_string(static_cast<int>(sample.family_type)));
  return out;
}

struct Seen {
  std::vector<std::string> samples;
  std::vector<std::string> metadata;
  prom::ParseStats stats;
};

Seen parse(std::string_view text, const std::vector<std::string_view>& chunks) {
  Seen seen;
  const auto on_sample = [&](const prom::Sample& sample) {
    seen.samples.push_back(describe(sample));
  };
  prom::TextParser parser(prom::TextParser::Options{}, [&](const prom::FamilyMetadata& meta) {
    seen.metadata.push_back(std::to_string(static_cast<int>(meta.kind)) + "|" +
                            std::string(meta.family_name) + "|" + std::string(meta.help) + "|" +
                            std::to_string(static_cast<int>(meta.type)));
  });
  if (chunks.empty()) {
    parser.feed(text, on_sample);
  } else {
    for (std::string_view chunk : chunks) parser.feed(chunk, on_sample);
  }
  seen.stats = parser.finish(on_sample);
  return seen;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput input(data, size);
  const std::uint8_t cut = input.take_byte();
  const std::string_view text = input.rest();

  const Seen whole = parse(text, {});
  const Seen in_pieces = parse(text, infergate::fuzz::pieces(text, cut));
  require(whole.samples == in_pieces.samples, "TextParser's samples depend on the cut");
  require(whole.metadata == in_pieces.metadata, "TextParser's metadata depends on the cut");
  require(whole.stats.lines == in_pieces.stats.lines &&
              whole.stats.samples == in_pieces.stats.samples &&
              whole.stats.metadata_lines == in_pieces.stats.metadata_lines &&
              whole.stats.skipped_lines == in_pieces.stats.skipped_lines &&
              whole.stats.errors == in_pieces.stats.errors,
          "TextParser's statistics depend on the cut");
  require(whole.stats.samples == whole.samples.size(), "TextParser miscounts its samples");

  if (text.size() <= 4096) {
    const auto spec = prom::parse_metric_spec(text);
    if (spec.ok()) {
      const auto again = prom::parse_metric_spec(spec->to_string());
      require(again.ok() && *again == *spec, "a metric selector does not print back");
    } else {
      require(spec.status().http_status() == 400, "a bad metric selector is not a 400");
    }
  }
  return 0;
}
