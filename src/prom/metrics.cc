#include "prom/metrics.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace infergate::prom {

Histogram::Histogram(std::span<const double> upper_bounds)
    : upper_bounds_(upper_bounds), cells_(upper_bounds.size() + 1) {}

void Histogram::observe(double value) {
  bool owned = false;
  ThreadCells::Word* cell = cells_.mine(owned);
  ThreadCells::add_double(cell[upper_bounds_.size()], value, owned);
  if (std::isnan(value)) {
    return;
  }
  // Bounds are inclusive, so the bucket is the first bound not below the value; the last bound
  // is +Inf, so every non-NaN value finds one.
  auto bucket = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value);
  if (bucket == upper_bounds_.end()) {
    return;
  }
  ThreadCells::add_count(cell[static_cast<std::size_t>(bucket - upper_bounds_.begin())], 1, owned);
}

std::vector<std::uint64_t> Histogram::cumulative_counts() const {
  std::vector<std::uint64_t> counts(upper_bounds_.size());
  std::uint64_t total = 0;
  for (std::size_t bucket_idx = 0; bucket_idx < counts.size(); ++bucket_idx) {
    total += cells_.count_total(bucket_idx);
    counts[bucket_idx] = total;
  }
  return counts;
}

std::uint64_t Histogram::count() const {
  std::uint64_t total = 0;
  for (std::size_t bucket_idx = 0; bucket_idx < upper_bounds_.size(); ++bucket_idx) {
    total += cells_.count_total(bucket_idx);
  }
  return total;
}

std::vector<double> exponential_buckets(double start, double factor, std::size_t count) {
  if (!(start > 0) || !(factor > 1) || count == 0 || std::isinf(start)) {
    throw std::invalid_argument("exponential_buckets needs start > 0, factor > 1 and count >= 1");
  }
  std::vector<double> bounds;
  bounds.reserve(count);
  double bound = start;
  for (std::size_t bucket_idx = 0; bucket_idx < count; ++bucket_idx) {
    bounds.push_back(bound);
    bound *= factor;
  }
  return bounds;
}

std::vector<double> one_two_five_buckets(double max) {
  if (std::isinf(max)) {
    throw std::invalid_argument("one_two_five_buckets needs a finite max");
  }
  std::vector<double> bounds;
  // Powers of ten stay exact integers in a double far beyond any token count we bucket.
  for (double power = 1; power <= max; power *= 10) {
    for (double mantissa : {1.0, 2.0, 5.0}) {
      if (mantissa * power > max) {
        return bounds;
      }
      bounds.push_back(mantissa * power);
    }
  }
  return bounds;
}

}  // namespace infergate::prom
