#include "bench/stats.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace infergate::bench {
namespace {

struct PercentileCase {
  std::string description;
  std::vector<double> sorted;
  double p;
  double expected;  // numpy.percentile(sorted, p) (method "linear")
};

TEST(StatsTest, PercentileGoldenTable) {
  const std::vector<PercentileCase> cases = {
      {"one sample is every percentile", {7}, 99, 7},
      {"median of two is their mean", {1, 3}, 50, 2},
      {"p0 is the minimum", {1, 2, 3, 4}, 0, 1},
      {"p100 is the maximum", {1, 2, 3, 4}, 100, 4},
      {"exact rank", {10, 20, 30, 40, 50}, 50, 30},
      {"interpolated rank", {15, 20, 35, 40, 50}, 40, 29},
      {"p90 of 1..10", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90, 9.1},
      {"p99 of 1..10", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 9.91},
      {"p50 of an even count", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 50, 5.5},
      {"ties", {2, 2, 2, 5}, 90, 4.1},
  };
  for (const auto& test_case : cases) {
    EXPECT_NEAR(percentile_of_sorted(test_case.sorted, test_case.p), test_case.expected, 1e-9)
        << test_case.description;
  }
}

TEST(StatsTest, SummarizeSortsAndReportsEveryFigure) {
  std::vector<double> samples;
  for (int value = 100; value >= 1; --value) samples.push_back(value);  // descending on purpose
  const Distribution distribution = summarize(samples);
  EXPECT_EQ(distribution.count, 100u);
  EXPECT_DOUBLE_EQ(distribution.mean, 50.5);
  EXPECT_DOUBLE_EQ(distribution.min, 1);
  EXPECT_DOUBLE_EQ(distribution.max, 100);
  EXPECT_NEAR(distribution.p50, 50.5, 1e-9);
  EXPECT_NEAR(distribution.p90, 90.1, 1e-9);
  EXPECT_NEAR(distribution.p99, 99.01, 1e-9);
}

TEST(StatsTest, EmptySampleHasCountZero) {
  const Distribution distribution = summarize({});
  EXPECT_EQ(distribution.count, 0u);
  EXPECT_EQ(distribution.p99, 0);
}

}  // namespace
}  // namespace infergate::bench
