#include "bench/report.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace infergate::bench {
namespace {

using std::chrono::milliseconds;
using json = nlohmann::json;

TimePoint at_ms(int ms) { return milliseconds(ms); }

RequestRecord success(int scheduled_ms, int start_ms, int first_token_ms, int end_ms,
                      std::int64_t output_tokens, std::int64_t cached_tokens) {
  RequestRecord record;
  record.measured = true;
  record.scheduled = at_ms(scheduled_ms);
  record.start = at_ms(start_ms);
  record.first_token = at_ms(first_token_ms);
  record.end = at_ms(end_ms);
  record.outcome = Outcome::kSuccess;
  record.http_status = 200;
  record.prompt_tokens = 100;
  record.completion_tokens = output_tokens;
  record.cached_tokens = cached_tokens;
  record.text_events = static_cast<std::size_t>(output_tokens);
  return record;
}

// A 1 s measured window [1000, 2000) ms with one warm-up request still running into it, three
// successes and two failures.
RunResult sample_run() {
  RunResult run;
  run.window_start = at_ms(1000);
  run.window_end = at_ms(2000);
  RequestRecord warmup = success(900, 900, 950, 1100, 10, 0);
  warmup.measured = false;
  run.records.push_back(warmup);
  run.records.push_back(success(1000, 1000, 1020, 1200, 11, 50));
  run.records.push_back(success(1500, 1502, 1532, 1802, 11, 50));
  RequestRecord last = success(1900, 1901, 1941, 2401, 21, 0);
  last.text_event_gaps = {milliseconds(5), milliseconds(15)};
  run.records.push_back(last);
  RequestRecord refused;
  refused.measured = true;
  refused.scheduled = refused.start = refused.end = at_ms(1600);
  refused.outcome = Outcome::kConnectError;
  refused.error_message = "connect to h:1: Connection refused";
  run.records.push_back(refused);
  RequestRecord busy = refused;
  busy.outcome = Outcome::kHttpError;
  busy.http_status = 503;
  busy.end = at_ms(1610);
  busy.error_message = "busy";
  run.records.push_back(busy);
  run.connections_opened = 4;
  return run;
}

TEST(ReportTest, ComputesRatesLatenciesAndTokenShares) {
  const Report report = make_report(sample_run());
  EXPECT_EQ(report.launched, 5u);
  EXPECT_EQ(report.succeeded, 3u);
  EXPECT_EQ(report.failed, 2u);
  EXPECT_EQ(report.warmup_requests, 1u);
  EXPECT_EQ(report.errors, (std::map<std::string, std::size_t>{{"connect", 1}, {"http_503", 1}}));
  EXPECT_EQ(report.error_examples.at("http_503"), "busy");

  EXPECT_DOUBLE_EQ(report.window_seconds, 1.0);
  EXPECT_DOUBLE_EQ(report.span_seconds, 1.401);  // to the end of the last measured request
  EXPECT_DOUBLE_EQ(report.launch_rate, 5.0);
  EXPECT_DOUBLE_EQ(report.achieved_rate, 3 / 1.401);
  EXPECT_DOUBLE_EQ(report.output_tokens_per_second, 43 / 1.401);
  EXPECT_DOUBLE_EQ(report.input_tokens_per_second, 300 / 1.401);
  // In-window busy time: warm-up 100 + 200 + 300 + 99 + 0 + 10 ms over a 1 s window.
  EXPECT_NEAR(report.mean_in_flight, 0.709, 1e-9);

  EXPECT_EQ(report.ttft_ms.count, 3u);
  EXPECT_DOUBLE_EQ(report.ttft_ms.p50, 30);
  EXPECT_DOUBLE_EQ(report.ttft_ms.max, 40);
  EXPECT_DOUBLE_EQ(report.e2e_ms.p50, 300);
  // TPOT: (200-20)/10, (300-30)/10, (500-40)/20 ms.
  EXPECT_DOUBLE_EQ(report.tpot_ms.min, 18);
  EXPECT_DOUBLE_EQ(report.tpot_ms.max, 27);
  EXPECT_DOUBLE_EQ(report.tpot_ms.p50, 23);
  EXPECT_NEAR(report.ntpot_ms.mean, (200.0 / 11 + 300.0 / 11 + 500.0 / 21) / 3,
              1e-5);  // ns rounding
  EXPECT_EQ(report.itl_ms.count, 2u);
  EXPECT_DOUBLE_EQ(report.itl_ms.mean, 10);

  EXPECT_EQ(report.schedule_lag_ms.count, 5u);
  EXPECT_DOUBLE_EQ(report.schedule_lag_ms.max, 2);
  EXPECT_TRUE(report.generator_kept_up);

  EXPECT_EQ(report.prompt_tokens, 300);
  EXPECT_EQ(report.output_tokens, 43);
  EXPECT_EQ(report.cached_prompt_tokens, 100);
  EXPECT_NEAR(report.cached_token_share, 1.0 / 3, 1e-12);
  EXPECT_EQ(report.requests_without_usage, 0u);
}

TEST(ReportTest, FlagsAGeneratorThatFellBehind) {
  RunResult run = sample_run();
  for (auto& record : run.records) record.start = record.scheduled + milliseconds(25);
  const Report report = make_report(run);
  EXPECT_FALSE(report.generator_kept_up);
  EXPECT_NE(format_report_table(report, {}).find("DID NOT KEEP UP"), std::string::npos);
}

TEST(ReportTest, JsonHasTheDocumentedFields) {
  BenchConfig config;
  config.workload.model = "llama";
  config.load.target = Target{"127.0.0.1", 8000, ""};
  config.load.rate = 12.5;
  const json document = json::parse(format_report_json(make_report(sample_run()), config));
  EXPECT_EQ(document["schema"], "infergate.bench.v1");
  EXPECT_EQ(document["config"]["url"], "http://127.0.0.1:8000");
  EXPECT_EQ(document["config"]["model"], "llama");
  EXPECT_EQ(document["config"]["mode"], "rate");
  EXPECT_EQ(document["config"]["rate"], 12.5);
  EXPECT_TRUE(document["config"]["concurrency"].is_null());
  EXPECT_EQ(document["config"]["workload"], "random");
  EXPECT_EQ(document["config"]["api"], "completions");
  EXPECT_EQ(document["requests"]["launched"], 5);
  EXPECT_EQ(document["requests"]["warmup"], 1);
  EXPECT_EQ(document["errors"]["connect"], 1);
  EXPECT_EQ(document["errors"]["http_503"], 1);
  EXPECT_EQ(document["error_examples"]["http_503"], "busy");
  EXPECT_DOUBLE_EQ(document["throughput"]["launch_rate"].get<double>(), 5.0);
  for (const char* metric : {"ttft", "tpot", "ntpot", "itl", "e2e"}) {
    for (const char* field : {"count", "mean", "min", "p50", "p90", "p99", "max"}) {
      EXPECT_TRUE(document["latency_ms"][metric].contains(field)) << metric << "." << field;
    }
  }
  EXPECT_DOUBLE_EQ(document["latency_ms"]["ttft"]["p50"].get<double>(), 30);
  EXPECT_TRUE(document["schedule_lag_ms"].contains("p99"));
  EXPECT_EQ(document["generator_kept_up"], true);
  EXPECT_EQ(document["tokens"]["cached_prompt"], 100);
  EXPECT_EQ(document["connections"]["opened"], 4);
  EXPECT_EQ(document["stopped_early"], false);
}

TEST(ReportTest, EmptyDistributionsAreNullInJsonAndDashesInTheTable) {
  RunResult run;
  run.window_end = at_ms(1000);
  const Report report = make_report(run);
  const json document = json::parse(format_report_json(report, {}));
  EXPECT_EQ(document["latency_ms"]["ttft"]["count"], 0);
  EXPECT_TRUE(document["latency_ms"]["ttft"]["p50"].is_null());
  const std::string table = format_report_table(report, {});
  EXPECT_NE(table.find("TTFT"), std::string::npos);
  EXPECT_NE(table.find("errors      none"), std::string::npos);
}

}  // namespace
}  // namespace infergate::bench

namespace infergate::bench {
namespace {

TEST(ReportTest, LittlesLawComparesMeanInFlightWithRateTimesMeanLatency) {
  // sample_run: in flight 709 ms over the 1 s window (warm-up 100, 200, 300, 99 clipped, 10);
  // 5 launched per second x mean latency (200 + 300 + 500 + 0 + 10) / 5 = 202 ms = 1.01.
  const Report report = make_report(sample_run());
  EXPECT_NEAR(report.mean_in_flight, 0.709, 1e-9);
  EXPECT_NEAR(report.littles_law_expected_in_flight, 1.01, 1e-9);
  EXPECT_NEAR(report.littles_law_relative_error, 0.301 / 1.01, 1e-9);
  EXPECT_FALSE(report.littles_law_holds);
  BenchConfig config;
  EXPECT_NE(format_report_table(report, config).find("Little's law, off by 30%): OFF"),
            std::string::npos);
  const json document = json::parse(format_report_json(report, config));
  EXPECT_EQ(document["littles_law"]["holds"], false);
  EXPECT_DOUBLE_EQ(document["littles_law"]["tolerance"].get<double>(), kLittlesLawTolerance);
  EXPECT_NEAR(document["littles_law"]["expected_in_flight"].get<double>(), 1.01, 1e-9);

  // A steady stream: one 100 ms request every 100 ms holds one in flight.
  RunResult steady;
  steady.window_start = at_ms(0);
  steady.window_end = at_ms(1000);
  for (int ms = 0; ms < 1000; ms += 100) {
    steady.records.push_back(success(ms, ms, ms + 10, ms + 100, 5, 0));
  }
  const Report steady_report = make_report(steady);
  EXPECT_NEAR(steady_report.mean_in_flight, 1.0, 1e-9);
  EXPECT_NEAR(steady_report.littles_law_expected_in_flight, 1.0, 1e-9);
  EXPECT_TRUE(steady_report.littles_law_holds);
  EXPECT_NE(format_report_table(steady_report, config).find("off by 0%): holds"),
            std::string::npos);
}

TEST(ReportTest, ServerPrefixCacheInTableAndJson) {
  Report report = make_report(sample_run());
  PrefixCacheDelta delta;
  delta.servers = {{"http://a:1/metrics", 1000, 750, ""},
                   {"http://b:2/metrics", 0, 0, "after: connect refused"}};
  delta.query_tokens = 1000;
  delta.hit_tokens = 750;
  delta.hit_rate = 0.75;
  delta.counted = 1;
  report.server_prefix_cache = delta;
  BenchConfig config;
  const std::string table = format_report_table(report, config);
  EXPECT_NE(table.find("prefix-cache hit rate 75.0% (750 of 1000 prompt tokens, 1 of 2"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("http://b:2/metrics: after: connect refused"), std::string::npos);
  const json document = json::parse(format_report_json(report, config));
  const json& cache = document["server_metrics"]["prefix_cache"];
  EXPECT_DOUBLE_EQ(cache["hit_rate"].get<double>(), 0.75);
  EXPECT_EQ(cache["servers_counted"], 1);
  EXPECT_TRUE(cache["servers"][0]["error"].is_null());
  EXPECT_EQ(cache["servers"][1]["error"], "after: connect refused");
  // Without --server-metrics the section is absent.
  EXPECT_FALSE(json::parse(format_report_json(make_report(sample_run()), config))
                   .contains("server_metrics"));
}

}  // namespace
}  // namespace infergate::bench
