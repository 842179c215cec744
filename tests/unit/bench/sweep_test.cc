#include "bench/sweep.h"

#include <gtest/gtest.h>

#include <vector>

namespace infergate::bench {
namespace {

// A fake cluster that serves up to `capacity` req/s with `latency_ms` e2e p90, queueing beyond:
// the achieved rate flattens at the capacity and latency grows with the overload.
struct FakeCluster {
  double capacity = 0;
  double latency_ms = 100;
  std::vector<double> asked;
  StageRunner runner() {
    return [this](double rate) -> std::optional<ProbeResult> {
      asked.push_back(rate);
      ProbeResult probe;
      probe.offered_rate = rate;
      probe.launched = static_cast<std::size_t>(rate * 10);
      probe.achieved_rate = std::min(rate, capacity);
      probe.e2e_p90_ms = rate <= capacity ? latency_ms : latency_ms * 20 * rate / capacity;
      return probe;
    };
  }
};

TEST(SweepTest, ProbesGeometricallyUntilThroughputStopsRising) {
  FakeCluster cluster{.capacity = 20};
  const SweepResult result = find_saturation({.start_rate = 2}, cluster.runner());
  // 2, 4, 8, 16 are served; 32 achieves only 20 (62.5% of offered): saturated.
  EXPECT_EQ(cluster.asked, (std::vector<double>{2, 4, 8, 16, 32}));
  EXPECT_DOUBLE_EQ(result.saturation_rate, 20);
  EXPECT_NE(result.stop_reason.find("achieved 20.00 req/s of 32.00 offered"), std::string::npos)
      << result.stop_reason;
  EXPECT_EQ(result.ladder, (std::vector<double>{5, 10, 15, 18, 20}));
  EXPECT_FALSE(result.interrupted);
}

TEST(SweepTest, EachStopRuleInTurn) {
  const std::vector<ProbeResult> earlier = {
      {.offered_rate = 10, .achieved_rate = 10, .e2e_p90_ms = 100, .launched = 100}};
  struct Case {
    std::string description;
    ProbeResult probe;
    std::string reason_contains;  // "" = not saturated
  };
  const std::vector<Case> cases = {
      {"healthy",
       {.offered_rate = 20, .achieved_rate = 19.5, .e2e_p90_ms = 150, .launched = 200},
       ""},
      {"generator behind",
       {.offered_rate = 20,
        .achieved_rate = 20,
        .e2e_p90_ms = 100,
        .launched = 200,
        .generator_kept_up = false},
       "generator"},
      {"failures",
       {.offered_rate = 20, .achieved_rate = 19, .e2e_p90_ms = 100, .launched = 200, .failed = 11},
       "11 of 200 requests failed"},
      {"shortfall",
       {.offered_rate = 20, .achieved_rate = 17, .e2e_p90_ms = 100, .launched = 200},
       "achieved 17.00"},
      {"no gain",
       {.offered_rate = 10.2, .achieved_rate = 10.2, .e2e_p90_ms = 100, .launched = 102},
       "stopped rising"},
      {"latency explodes",
       {.offered_rate = 20, .achieved_rate = 20, .e2e_p90_ms = 501, .launched = 200},
       "e2e p90 501 ms"},
  };
  for (const Case& test : cases) {
    const std::string reason = saturation_reason(test.probe, earlier);
    if (test.reason_contains.empty()) {
      EXPECT_EQ(reason, "") << test.description;
    } else {
      EXPECT_NE(reason.find(test.reason_contains), std::string::npos)
          << test.description << ": " << reason;
    }
  }
}

TEST(SweepTest, TheDrainOfAnUnsaturatedProbeIsNotAShortfall) {
  // 10 s window, 1 s e2e: an idle server serves 100 requests over 11 s = 9.09 req/s of 10.
  const ProbeResult idle{.offered_rate = 10,
                         .achieved_rate = 9.09,
                         .e2e_p90_ms = 1000,
                         .window_s = 10,
                         .launched = 100};
  EXPECT_EQ(saturation_reason(idle, {}), "");
  // 8.0 is more than 10% below the 9.09 an idle server achieves.
  ProbeResult slow = idle;
  slow.achieved_rate = 8.0;
  EXPECT_NE(saturation_reason(slow, {}).find("achieved 8.00"), std::string::npos);
}

TEST(SweepTest, NoSaturationWithinTheProbesUsesTheBestAchievedRate) {
  FakeCluster cluster{.capacity = 1000};
  const SweepResult result = find_saturation({.start_rate = 1, .max_probes = 3}, cluster.runner());
  EXPECT_EQ(cluster.asked, (std::vector<double>{1, 2, 4}));
  EXPECT_DOUBLE_EQ(result.saturation_rate, 4);
  EXPECT_NE(result.stop_reason.find("no saturation within 3 probes"), std::string::npos);
  EXPECT_EQ(result.ladder, (std::vector<double>{1, 2, 3, 3.6, 4}));
}

TEST(SweepTest, AnInterruptedSearchHasNoLadder) {
  int calls = 0;
  const SweepResult result = find_saturation({}, [&](double rate) -> std::optional<ProbeResult> {
    if (++calls == 2) return std::nullopt;
    return ProbeResult{.offered_rate = rate, .achieved_rate = rate, .e2e_p90_ms = 10};
  });
  EXPECT_TRUE(result.interrupted);
  EXPECT_TRUE(result.ladder.empty());
  EXPECT_EQ(result.probes.size(), 1u);
}

TEST(SweepTest, LadderRoundsToHundredthsAndNeverReachesZero) {
  const std::vector<double> fractions = {0.0001, 0.333, 1.0};
  EXPECT_EQ(sweep_ladder(7.777, fractions), (std::vector<double>{0.01, 2.59, 7.78}));
  EXPECT_TRUE(sweep_ladder(0, fractions).empty());
}

TEST(SweepTest, FlagsBecomeOptionsOrA400NamingTheFlag) {
  const std::vector<double> percents = {50, 125};
  auto options = make_sweep_options(2, 10, 6, percents);
  ASSERT_TRUE(options.ok());
  EXPECT_EQ(options->start_rate, 2);
  EXPECT_EQ(options->max_probes, 6);
  EXPECT_EQ(options->fractions, (std::vector<double>{0.5, 1.25}));

  auto message = [](Result<SweepOptions> result) {
    EXPECT_EQ(result.status().http_status(), 400);
    return result.status().message();
  };
  EXPECT_NE(message(make_sweep_options(0, 10, 6, percents)).find("--sweep-start-rate"),
            std::string::npos);
  EXPECT_NE(message(make_sweep_options(1, 0, 6, percents)).find("--sweep-probe-duration"),
            std::string::npos);
  EXPECT_NE(message(make_sweep_options(1, 10, 0, percents)).find("--sweep-max-probes"),
            std::string::npos);
  EXPECT_NE(message(make_sweep_options(1, 10, 6, {})).find("--sweep-fractions"), std::string::npos);
  const std::vector<double> too_high = {1001};
  EXPECT_NE(message(make_sweep_options(1, 10, 6, too_high)).find("(0, 1000]"), std::string::npos);
}

TEST(SweepTest, AProbeIsReadFromItsReportAndPrintedOnOneLine) {
  Report report;
  report.launch_rate = 8;
  report.achieved_rate = 7.5;
  report.e2e_ms.p90 = 120;
  report.window_seconds = 10;
  report.launched = 80;
  report.failed = 1;
  report.generator_kept_up = false;
  const ProbeResult probe = probe_result(report);
  EXPECT_EQ(probe.offered_rate, 8);
  EXPECT_EQ(probe.achieved_rate, 7.5);
  EXPECT_EQ(probe.e2e_p90_ms, 120);
  EXPECT_EQ(probe.window_s, 10);
  EXPECT_EQ(probe.launched, 80u);
  EXPECT_EQ(probe.failed, 1u);
  EXPECT_FALSE(probe.generator_kept_up);
  EXPECT_EQ(
      format_probe_line(3, report),
      "probe  3       8.00 req/s offered       7.50 achieved  e2e p90     120.0 ms  failed 1  "
      "kept up NO\n");

  FakeCluster cluster{.capacity = 20};
  const SweepOptions options{.start_rate = 2, .fractions = {0.5, 1.0}};
  const SweepResult result = find_saturation(options, cluster.runner());
  EXPECT_EQ(format_sweep_line(result), "sweep     " + result.stop_reason +
                                           "; saturation rate 20.00 req/s; ladder 10, 20 req/s\n");
  const nlohmann::json json = sweep_json(result, options, 10);
  EXPECT_EQ(json["saturation_rate"], 20);
  EXPECT_EQ(json["probes"].size(), result.probes.size());
  EXPECT_EQ(json["ladder"], (std::vector<double>{10, 20}));
  EXPECT_EQ(json["probe_duration_s"], 10);
}

}  // namespace
}  // namespace infergate::bench
