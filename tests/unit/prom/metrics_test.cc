#include "prom/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace infergate::prom {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(CounterTest, IncrementsAndIgnoresNegativeAmounts) {
  Counter counter;
  counter.inc();
  counter.inc(2.5);
  counter.inc(-1);
  counter.inc(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(counter.value(), 3.5);
}

TEST(GaugeTest, SetsIncrementsAndDecrements) {
  Gauge gauge;
  gauge.set(10);
  gauge.inc();
  gauge.inc(4);
  gauge.dec(0.5);
  gauge.dec();
  EXPECT_EQ(gauge.value(), 13.5);
  gauge.set(-2);
  EXPECT_EQ(gauge.value(), -2);
}

TEST(HistogramTest, CountsInclusiveUpperBoundsCumulatively) {
  const std::vector<double> bounds = {1, 2, 5, kInf};
  Histogram histogram(bounds);
  for (double value : {0.5, 1.0, 1.5, 2.0, 5.0, 6.0, kInf}) {
    histogram.observe(value);
  }
  EXPECT_EQ(histogram.cumulative_counts(), (std::vector<std::uint64_t>{2, 4, 5, 7}));
  EXPECT_EQ(histogram.count(), 7u);
  EXPECT_EQ(histogram.sum(), kInf);
}

TEST(HistogramTest, NanGoesIntoSumButNoBucket) {
  const std::vector<double> bounds = {1, kInf};
  Histogram histogram(bounds);
  histogram.observe(0.5);
  histogram.observe(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(histogram.count(), 1u);
  EXPECT_TRUE(std::isnan(histogram.sum()));
}

TEST(HistogramTest, SumsObservations) {
  const std::vector<double> bounds = {1, kInf};
  Histogram histogram(bounds);
  histogram.observe(0.25);
  histogram.observe(3);
  EXPECT_EQ(histogram.sum(), 3.25);
  EXPECT_EQ(histogram.upper_bounds().size(), 2u);
}

TEST(BucketsTest, OneTwoFiveSeriesUpToMax) {
  EXPECT_EQ(one_two_five_buckets(100), (std::vector<double>{1, 2, 5, 10, 20, 50, 100}));
  EXPECT_EQ(one_two_five_buckets(4096),
            (std::vector<double>{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000}));
  EXPECT_EQ(one_two_five_buckets(1), (std::vector<double>{1}));
  EXPECT_TRUE(one_two_five_buckets(0.5).empty());
  EXPECT_THROW(one_two_five_buckets(kInf), std::invalid_argument);
}

TEST(BucketsTest, ExponentialSeries) {
  EXPECT_EQ(exponential_buckets(1, 2, 5), (std::vector<double>{1, 2, 4, 8, 16}));
  EXPECT_EQ(exponential_buckets(0.25, 4, 3), (std::vector<double>{0.25, 1, 4}));
  EXPECT_THROW(exponential_buckets(0, 2, 3), std::invalid_argument);
  EXPECT_THROW(exponential_buckets(1, 1, 3), std::invalid_argument);
  EXPECT_THROW(exponential_buckets(1, 2, 0), std::invalid_argument);
}

}  // namespace
}  // namespace infergate::prom
