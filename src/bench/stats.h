#pragma once

// Summary statistics for benchmark samples (latencies in ms, lags, ...). Pure functions.

#include <cstddef>
#include <span>
#include <vector>

namespace infergate::bench {

// The p-th percentile (0 <= p <= 100) of ascending `sorted` samples with linear interpolation
// between closest ranks (numpy's default, "linear"): rank = p / 100 * (n - 1), and the result
// interpolates between sorted[floor(rank)] and sorted[ceil(rank)]. `sorted` must not be empty.
double percentile_of_sorted(std::span<const double> sorted, double p);

// count, mean, min, max and p50 / p90 / p99 of a sample. With count == 0 every other field is 0
// (reports print them as absent).
struct Distribution {
  std::size_t count = 0;
  double mean = 0;
  double min = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double max = 0;
};

// Sorts `samples` (taken by value) and summarises them.
Distribution summarize(std::vector<double> samples);

}  // namespace infergate::bench
