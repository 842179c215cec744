#include "bench/html_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <vector>

namespace infergate::bench {
namespace {

using nlohmann::json;

// A number at a path of object keys, or nullopt when any step is missing or not a number.
std::optional<double> number_at(const json& document, std::span<const std::string_view> path) {
  const json* node = &document;
  for (std::string_view key : path) {
    if (!node->is_object()) return std::nullopt;
    auto found = node->find(key);
    if (found == node->end()) return std::nullopt;
    node = &*found;
  }
  if (!node->is_number()) return std::nullopt;
  return node->get<double>();
}

std::optional<double> number_at(const json& document,
                                std::initializer_list<std::string_view> path) {
  return number_at(document, std::span<const std::string_view>(path.begin(), path.size()));
}

std::optional<std::string> string_at(const json& document,
                                     std::initializer_list<std::string_view> path) {
  const json* node = &document;
  for (std::string_view key : path) {
    if (!node->is_object()) return std::nullopt;
    auto found = node->find(key);
    if (found == node->end()) return std::nullopt;
    node = &*found;
  }
  if (!node->is_string()) return std::nullopt;
  return node->get<std::string>();
}

std::string run_name(const json& run) {
  if (auto target = string_at(run, {"target"})) return *target;
  if (auto configuration = string_at(run, {"simulation", "configuration"})) return *configuration;
  if (auto url = string_at(run, {"config", "url"})) return *url;
  return "run";
}

struct Metric {
  std::string_view title;
  std::string_view unit;
  std::vector<std::string_view> path;
  std::vector<std::string_view> fallback_path;  // read when `path` is absent (may be empty)
};

std::optional<double> metric_value(const json& run, const Metric& metric) {
  if (auto value = number_at(run, metric.path)) return value;
  if (metric.fallback_path.empty()) return std::nullopt;
  return number_at(run, metric.fallback_path);
}

// The charts, in page order.
const std::vector<Metric>& chart_metrics() {
  static const std::vector<Metric> metrics = {
      {"TTFT p90", "ms", {"latency_ms", "ttft", "p90"}},
      {"NTPOT p90", "ms", {"latency_ms", "ntpot", "p90"}},
      {"End-to-end latency p90", "ms", {"latency_ms", "e2e", "p90"}},
      {"Output throughput", "tokens/s", {"throughput", "output_tokens_per_s"}},
      {"Achieved rate", "requests/s", {"throughput", "achieved_rate"}},
      {"Prefix-cache hit rate (engines)",
       "share",
       {"simulation", "prefix_cache", "hit_rate"},
       {"server_metrics", "prefix_cache", "hit_rate"}},
  };
  return metrics;
}

// Colour-blind-safe palette (Okabe–Ito).
constexpr std::string_view kColours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                         "#E69F00", "#56B4E9", "#000000", "#F0E442"};

// A step of 1, 2 or 5 × 10^k giving about `wanted` intervals over [0, max].
double tick_step(double max, int wanted) {
  if (max <= 0) return 1;
  const double raw = max / wanted;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (double factor : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= factor * magnitude) return factor * magnitude;
  }
  return 10 * magnitude;
}

std::string format_tick(double value) {
  if (value == 0) return "0";
  if (std::fabs(value) >= 1000) return fmt::format("{:.0f}", value);
  if (std::fabs(value) >= 1) return fmt::format("{:g}", value);
  return fmt::format("{:.2g}", value);
}

struct Point {
  double x = 0;
  double y = 0;
};

struct Series {
  std::string name;
  std::vector<Point> points;  // sorted by x
};

std::string render_chart(const Metric& metric, const std::vector<Series>& series) {
  constexpr double kWidth = 480, kHeight = 280;
  constexpr double kLeft = 64, kRight = 16, kTop = 28, kBottom = 44;
  constexpr double kPlotWidth = kWidth - kLeft - kRight, kPlotHeight = kHeight - kTop - kBottom;
  double max_x = 0, max_y = 0;
  for (const auto& line : series) {
    for (const auto& point : line.points) {
      max_x = std::max(max_x, point.x);
      max_y = std::max(max_y, point.y);
    }
  }
  const double x_step = tick_step(max_x, 5), y_step = tick_step(max_y, 5);
  const double x_end = std::max(x_step, std::ceil(max_x / x_step) * x_step);
  const double y_end = std::max(y_step, std::ceil(max_y / y_step) * y_step);
  auto sx = [&](double x) { return kLeft + x / x_end * kPlotWidth; };
  auto sy = [&](double y) { return kTop + kPlotHeight - y / y_end * kPlotHeight; };

  std::string svg = fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {0} {1}" width="{0}" height="{1}" )"
      R"(role="img" aria-label="{2}">)"
      "\n",
      kWidth, kHeight, html_escape(metric.title));
  svg += fmt::format(R"(<text x="{}" y="18" class="title">{} ({})</text>)"
                     "\n",
                     kLeft, html_escape(metric.title), html_escape(metric.unit));
  for (double y = 0; y <= y_end + y_step / 2; y += y_step) {
    svg += fmt::format(R"(<line x1="{0}" x2="{1}" y1="{2:.1f}" y2="{2:.1f}" class="grid"/>)"
                       R"(<text x="{3}" y="{4:.1f}" class="ytick">{5}</text>)"
                       "\n",
                       kLeft, kLeft + kPlotWidth, sy(y), kLeft - 6, sy(y) + 4, format_tick(y));
  }
  for (double x = 0; x <= x_end + x_step / 2; x += x_step) {
    svg += fmt::format(R"(<text x="{:.1f}" y="{}" class="xtick">{}</text>)"
                       "\n",
                       sx(x), kTop + kPlotHeight + 16, format_tick(x));
  }
  svg += fmt::format(R"(<text x="{}" y="{}" class="xlabel">offered load (requests/s)</text>)"
                     "\n",
                     kLeft + kPlotWidth / 2, kHeight - 6);
  for (std::size_t index = 0; index < series.size(); ++index) {
    const Series& line = series[index];
    if (line.points.empty()) continue;
    const std::string_view colour = kColours[index % std::size(kColours)];
    if (line.points.size() > 1) {
      std::string points;
      for (const auto& point : line.points) {
        points +=
            fmt::format("{}{:.1f},{:.1f}", points.empty() ? "" : " ", sx(point.x), sy(point.y));
      }
      svg += fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>)"
                         "\n",
                         points, colour);
    }
    for (const auto& point : line.points) {
      svg += fmt::format(
          R"(<circle cx="{:.1f}" cy="{:.1f}" r="3.5" fill="{}"><title>{}: {} at {} req/s</title>)"
          R"(</circle>)"
          "\n",
          sx(point.x), sy(point.y), colour, html_escape(line.name), format_tick(point.y),
          format_tick(point.x));
    }
  }
  svg += "</svg>\n";
  return svg;
}

std::string cell(const std::optional<double>& value, int decimals) {
  if (!value) return "<td>—</td>";
  return fmt::format("<td>{:.{}f}</td>", *value, decimals);
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string render_html_report(const json& document, std::string_view title) {
  std::vector<const json*> runs;
  if (document.is_object() && document.contains("runs") && document["runs"].is_array()) {
    for (const json& run : document["runs"]) runs.push_back(&run);
  } else if (document.is_object()) {
    runs.push_back(&document);
  }

  std::string page = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<title>{0}</title>\n<style>\n"
      "body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}\n"
      "h1{{font-size:20px}} .charts{{display:flex;flex-wrap:wrap;gap:12px}}\n"
      ".title{{font-size:13px;font-weight:600}} .grid{{stroke:#e4e4e4}}\n"
      ".ytick{{font-size:11px;text-anchor:end;fill:#555}}\n"
      ".xtick{{font-size:11px;text-anchor:middle;fill:#555}}\n"
      ".xlabel{{font-size:11px;text-anchor:middle;fill:#333}}\n"
      "table{{border-collapse:collapse;font-size:13px;margin-top:16px}}\n"
      "th,td{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\n"
      "th:first-child,td:first-child{{text-align:left}} .warn{{color:#b00}}\n"
      ".legend span{{display:inline-block;margin-right:16px}}\n"
      ".swatch{{display:inline-block;width:12px;height:12px;margin-right:4px;"
      "vertical-align:middle}}\n"
      "</style>\n</head>\n<body>\n<h1>{0}</h1>\n",
      html_escape(title));
  if (runs.empty()) {
    page +=
        "<p class=\"warn\">The report holds no runs (expected a run object or "
        "{\"runs\": [...]}).</p>\n</body>\n</html>\n";
    return page;
  }

  // Lines in order of first appearance.
  std::vector<std::string> names;
  std::map<std::string, std::vector<const json*>> by_name;
  for (const json* run : runs) {
    std::string name = run_name(*run);
    if (!by_name.contains(name)) names.push_back(name);
    by_name[name].push_back(run);
  }

  page += "<p class=\"legend\">";
  for (std::size_t index = 0; index < names.size(); ++index) {
    page += fmt::format(R"(<span><i class="swatch" style="background:{}"></i>{}</span>)",
                        kColours[index % std::size(kColours)], html_escape(names[index]));
  }
  page += "</p>\n<div class=\"charts\">\n";
  for (const Metric& metric : chart_metrics()) {
    std::vector<Series> series;
    bool any = false;
    for (const std::string& name : names) {
      Series line{.name = name, .points = {}};
      for (const json* run : by_name[name]) {
        auto x = number_at(*run, {"throughput", "launch_rate"});
        auto y = metric_value(*run, metric);
        if (x && y) line.points.push_back({*x, *y});
      }
      std::sort(line.points.begin(), line.points.end(),
                [](const Point& a, const Point& b) { return a.x < b.x; });
      any = any || !line.points.empty();
      series.push_back(std::move(line));
    }
    if (any) page += render_chart(metric, series);
  }
  page += "</div>\n";

  page +=
      "<table>\n<tr><th>target</th><th>offered req/s</th><th>achieved req/s</th>"
      "<th>output tok/s</th><th>TTFT p50 ms</th><th>TTFT p90 ms</th><th>TTFT p99 ms</th>"
      "<th>NTPOT p50 ms</th><th>NTPOT p90 ms</th><th>e2e p90 ms</th><th>failed</th>"
      "<th>prefix hit rate</th><th>of oracle</th><th>mean in flight</th>"
      "<th>rate &times; mean e2e</th><th>Little's law error</th>"
      "<th>generator kept up</th></tr>\n";
  for (const json* run : runs) {
    const json& r = *run;
    page += "<tr><td>" + html_escape(run_name(r)) + "</td>";
    page += cell(number_at(r, {"throughput", "launch_rate"}), 1);
    page += cell(number_at(r, {"throughput", "achieved_rate"}), 1);
    page += cell(number_at(r, {"throughput", "output_tokens_per_s"}), 0);
    page += cell(number_at(r, {"latency_ms", "ttft", "p50"}), 1);
    page += cell(number_at(r, {"latency_ms", "ttft", "p90"}), 1);
    page += cell(number_at(r, {"latency_ms", "ttft", "p99"}), 1);
    page += cell(number_at(r, {"latency_ms", "ntpot", "p50"}), 2);
    page += cell(number_at(r, {"latency_ms", "ntpot", "p90"}), 2);
    page += cell(number_at(r, {"latency_ms", "e2e", "p90"}), 1);
    page += cell(number_at(r, {"requests", "failed"}), 0);
    // The engines' own counters (simulation, or --server-metrics), else the usage's cached share.
    auto hit_rate = number_at(r, {"simulation", "prefix_cache", "hit_rate"});
    if (!hit_rate) hit_rate = number_at(r, {"server_metrics", "prefix_cache", "hit_rate"});
    if (!hit_rate) hit_rate = number_at(r, {"tokens", "cached_share"});
    page += cell(hit_rate, 3);
    page += cell(number_at(r, {"simulation", "prefix_cache", "hit_rate_of_oracle"}), 3);
    auto littles_error = number_at(r, {"littles_law", "relative_error"});
    if (!littles_error)
      littles_error = number_at(r, {"simulation", "littles_law", "relative_error"});
    auto in_flight = number_at(r, {"littles_law", "mean_in_flight"});
    if (!in_flight) in_flight = number_at(r, {"throughput", "mean_in_flight"});
    auto expected = number_at(r, {"littles_law", "expected_in_flight"});
    if (!expected) expected = number_at(r, {"simulation", "littles_law", "expected_in_flight"});
    page += cell(in_flight, 1);
    page += cell(expected, 1);
    const auto holds = r.find("littles_law");
    const bool flagged = holds != r.end() && holds->is_object() && holds->contains("holds") &&
                         (*holds)["holds"].is_boolean() && !(*holds)["holds"].get<bool>();
    if (flagged && littles_error) {
      page += fmt::format("<td class=\"warn\">{:.3f} (off)</td>", *littles_error);
    } else {
      page += cell(littles_error, 3);
    }
    const auto kept_up = r.find("generator_kept_up");
    if (kept_up != r.end() && kept_up->is_boolean()) {
      page += kept_up->get<bool>() ? "<td>yes</td>" : "<td class=\"warn\">no</td>";
    } else {
      page += "<td>—</td>";
    }
    page += "</tr>\n";
  }
  page += "</table>\n</body>\n</html>\n";
  return page;
}

}  // namespace infergate::bench
