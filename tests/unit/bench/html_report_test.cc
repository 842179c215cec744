#include "bench/html_report.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace infergate::bench {
namespace {

using nlohmann::json;

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t found = 0;
  for (std::size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++found;
  }
  return found;
}

json run(const std::string& target, double rate, double ttft_p90) {
  return {{"target", target},
          {"throughput", {{"launch_rate", rate}, {"achieved_rate", rate}}},
          {"latency_ms", {{"ttft", {{"p50", ttft_p90 / 2}, {"p90", ttft_p90}}}}},
          {"generator_kept_up", true}};
}

TEST(HtmlReportTest, EscapesMarkup) {
  EXPECT_EQ(html_escape(R"(<a href="x">Tom & 'Jerry'</a>)"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
}

TEST(HtmlReportTest, OneLinePerTargetOverOfferedLoad) {
  const json document = {
      {"runs", json::array({run("infergate", 20, 100), run("round-robin", 20, 900),
                            run("infergate", 10, 50), run("round-robin", 10, 300)})}};
  const std::string page = render_html_report(document, "Shared prefix <test>");
  EXPECT_NE(page.find("<title>Shared prefix &lt;test&gt;</title>"), std::string::npos);
  // Charts only for metrics the runs carry: TTFT p90 and the achieved rate.
  EXPECT_EQ(count(page, "<svg "), 2u);
  EXPECT_EQ(count(page, "<polyline "), 4u);  // 2 targets x 2 charts
  EXPECT_NE(page.find("aria-label=\"TTFT p90\""), std::string::npos);
  EXPECT_EQ(page.find("aria-label=\"NTPOT p90\""), std::string::npos);
  // Points sorted by offered load: the line starts at 10 req/s. x range 0..20 over 64..464.
  EXPECT_NE(page.find("<polyline points=\"264.0,"), std::string::npos);
  // The legend names both targets in order of first appearance.
  const auto infergate = page.find("</i>infergate</span>");
  const auto round_robin = page.find("</i>round-robin</span>");
  ASSERT_NE(infergate, std::string::npos);
  ASSERT_NE(round_robin, std::string::npos);
  EXPECT_LT(infergate, round_robin);
  // One table row per run.
  EXPECT_EQ(count(page, "<tr><td>"), 4u);
}

TEST(HtmlReportTest, ASingleRunGetsPointsAndDashesForMissingFigures) {
  json single = run("only", 5, 42);
  single["generator_kept_up"] = false;
  const std::string page = render_html_report(single, "one");
  EXPECT_EQ(count(page, "<polyline "), 0u);
  EXPECT_EQ(count(page, "<circle "), 2u);
  EXPECT_NE(page.find("<td>42.0</td>"), std::string::npos);
  EXPECT_NE(page.find("<td>—</td>"), std::string::npos);
  EXPECT_NE(page.find("<td class=\"warn\">no</td>"), std::string::npos);
}

TEST(HtmlReportTest, NamesFallBackToConfigurationThenUrl) {
  json simulated = run("", 1, 1);
  simulated.erase("target");
  simulated["simulation"] = {{"configuration", "default-profile"},
                             {"prefix_cache", {{"hit_rate", 0.5}, {"hit_rate_of_oracle", 0.9}}}};
  json measured = run("", 1, 1);
  measured.erase("target");
  measured["config"] = {{"url", "http://127.0.0.1:8080"}};
  const std::string page =
      render_html_report(json{{"runs", json::array({simulated, measured})}}, "names");
  EXPECT_NE(page.find("<tr><td>default-profile</td>"), std::string::npos);
  EXPECT_NE(page.find("<tr><td>http://127.0.0.1:8080</td>"), std::string::npos);
  EXPECT_NE(page.find("aria-label=\"Prefix-cache hit rate (engines)\""), std::string::npos);
  EXPECT_NE(page.find("<td>0.900</td>"), std::string::npos);
}

TEST(HtmlReportTest, ADocumentWithoutRunsSaysSo) {
  const std::string page = render_html_report(json::array(), "empty");
  EXPECT_NE(page.find("holds no runs"), std::string::npos);
  EXPECT_EQ(page.find("<svg"), std::string::npos);
}

}  // namespace
}  // namespace infergate::bench

namespace infergate::bench {
namespace {

TEST(HtmlReportTest, ServerHitRateAndLittlesLawFlag) {
  json first = run("infergate", 10, 100);
  first["server_metrics"] = {{"prefix_cache", {{"hit_rate", 0.875}}}};
  first["tokens"] = {{"cached_share", 0.1}};
  first["littles_law"] = {{"mean_in_flight", 3.0},
                          {"expected_in_flight", 2.0},
                          {"relative_error", 0.5},
                          {"holds", false}};
  json second = run("round-robin", 10, 300);
  second["server_metrics"] = {{"prefix_cache", {{"hit_rate", 0.25}}}};
  const std::string page =
      render_html_report(json{{"runs", json::array({first, second})}}, "cache");
  // The servers' hit rate is charted and tabled (not the usage's cached share).
  EXPECT_NE(page.find("aria-label=\"Prefix-cache hit rate (engines)\""), std::string::npos);
  EXPECT_NE(page.find("<td>0.875</td>"), std::string::npos);
  EXPECT_EQ(page.find("<td>0.100</td>"), std::string::npos);
  EXPECT_NE(page.find("<td class=\"warn\">0.500 (off)</td>"), std::string::npos);
  EXPECT_NE(page.find("<td>3.0</td><td>2.0</td>"), std::string::npos);
}

}  // namespace
}  // namespace infergate::bench
