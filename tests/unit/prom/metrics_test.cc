#include "prom/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <latch>
#include <limits>
#include <stdexcept>
#include <thread>
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

// Each thread writes its own cell; more threads at once than there are owned slots share one,
// and threads that exit hand their slots (and what they counted) to later threads.
TEST(HistogramTest, CountsEveryUpdateFromManyThreadsAndLaterThreads) {
  const std::vector<double> bounds = {1, 2, kInf};
  Histogram histogram(bounds);
  Counter counter;
  constexpr int kUpdatesPerThread = 2000;
  auto run_threads = [&](std::size_t thread_count) {
    std::vector<std::thread> threads;
    std::latch all_running(static_cast<std::ptrdiff_t>(thread_count));
    for (std::size_t thread_idx = 0; thread_idx < thread_count; ++thread_idx) {
      threads.emplace_back([&] {
        all_running.arrive_and_wait();
        for (int update = 0; update < kUpdatesPerThread; ++update) {
          histogram.observe(update % 2 == 0 ? 0.5 : 1.5);
          counter.inc(0.5);
        }
      });
    }
    for (auto& thread : threads) thread.join();
  };
  const std::size_t first_wave = kOwnedWriterSlots + 9;  // 9 threads share the last slot
  run_threads(first_wave);
  run_threads(12);       // slots given back by the first wave
  histogram.observe(3);  // and this thread
  const std::uint64_t threads = first_wave + 12;
  const std::uint64_t per_bucket = threads * kUpdatesPerThread / 2;
  EXPECT_EQ(histogram.cumulative_counts(),
            (std::vector<std::uint64_t>{per_bucket, 2 * per_bucket, 2 * per_bucket + 1}));
  EXPECT_EQ(histogram.count(), 2 * per_bucket + 1);
  EXPECT_EQ(histogram.sum(), static_cast<double>(per_bucket) * 2.0 + 3);
  EXPECT_EQ(counter.value(), static_cast<double>(threads * kUpdatesPerThread) * 0.5);
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
