#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/thread_cells.h"

// Metric series: one labelled time series each. Updates are lock-free, safe from any thread and
// concurrently with exposition; callers get a series once from its Family (registry.h), keep the
// reference, and update it without further lookups.
//
// Counters and histograms keep one cell per writing thread (ThreadCells, common/thread_cells.h):
// an update is a plain load and store of the thread's own cell, with no locked instruction and no
// cache line that two cores write. Reads add the cells up.

namespace infergate::prom {

static_assert(std::atomic<double>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// A monotonically increasing value.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `amount`. Counters only go up: a negative or NaN amount is a caller bug and is ignored
  // (prometheus_client would raise; we never throw on the request path).
  void inc(double amount = 1) {
    if (!(amount >= 0)) {
      return;
    }
    bool owned = false;
    ThreadCells::Word* cell = cells_.mine(owned);
    ThreadCells::add_double(*cell, amount, owned);
  }
  double value() const { return cells_.double_total(0); }

 private:
  ThreadCells cells_{1};
};

// A value that goes up and down.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void inc(double amount = 1) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void dec(double amount = 1) { value_.fetch_sub(amount, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets with inclusive upper bounds (`le`), plus their sum.
class Histogram {
 public:
  // `upper_bounds` is strictly increasing and ends with +Inf; it is not copied and must outlive
  // the histogram (a HistogramFamily owns the bounds of all its series).
  explicit Histogram(std::span<const double> upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `value` in the first bucket whose bound is >= value and adds it to the sum. As in
  // prometheus_client, NaN goes into the sum but into no bucket.
  void observe(double value);

  std::span<const double> upper_bounds() const { return upper_bounds_; }
  // Cumulative counts, one per upper bound (the last one is the total count). Read without a
  // lock: under concurrent observe() each figure is a recent value, and the counts stay
  // monotonic across buckets.
  std::vector<std::uint64_t> cumulative_counts() const;
  std::uint64_t count() const;
  double sum() const { return cells_.double_total(upper_bounds_.size()); }

 private:
  std::span<const double> upper_bounds_;
  // Per writer: the non-cumulative bucket counts, then the sum (a double's bits).
  ThreadCells cells_;
};

// Bucket bounds `start, start*factor, start*factor^2, ...` (`count` values). Requires start > 0,
// factor > 1, count >= 1; throws std::invalid_argument otherwise (start-up configuration).
std::vector<double> exponential_buckets(double start, double factor, std::size_t count);

// vLLM's 1-2-5 series `1, 2, 5, 10, 20, 50, ...` up to and including `max`. Empty if max < 1;
// throws std::invalid_argument for an infinite max (start-up configuration).
std::vector<double> one_two_five_buckets(double max);

}  // namespace infergate::prom
