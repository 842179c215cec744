#pragma once

// The self-contained HTML page of a benchmark or simulation report: SVG line charts of latency
// and throughput against offered load (one line per target or configuration) and a table of every
// run. No scripts, no external files: the page can be mailed or attached as is.
//
// Input: the JSON documents of report.h — one run (format_report_json) or several
// (format_comparison_json: {"runs": [...]}) — read through their documented field names, so the
// page works for `infergate bench` and `infergate simulate` alike. A run's line is named by its
// "target" field when present, else simulation.configuration, else config.url. The x axis is the
// offered load (throughput.launch_rate); a target run at a single load gets a point, not a line.
//
// Pure: no I/O, no clock. Missing or null figures are skipped, never invented.

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace infergate::bench {

// The page for `document` (a run, or {"runs": [...]}), titled `title`. Throws nothing: an
// unexpected document yields a page that says which field was missing.
std::string render_html_report(const nlohmann::json& document, std::string_view title);

// `text` with &, <, >, " and ' replaced by entities (for element text and attribute values).
std::string html_escape(std::string_view text);

}  // namespace infergate::bench
