#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/text.h"
#include "prom/metrics.h"

// The metrics registry behind every infergate server's /metrics, and its text exposition (format
// 0.0.4) shaped exactly like Python prometheus_client's output, which is what vLLM serves.
//
// Threads: families are registered at start-up (or later, under a mutex). Creating a labelled
// series takes the family's mutex; updating a series is lock-free. expose() may run on any thread
// concurrently with both.

namespace infergate::prom {

enum class MetricType { kCounter, kGauge, kHistogram };

// What the Registry needs of a family. Callers use Family<Series> below.
class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  MetricType type() const { return type_; }
  // The name on the HELP and TYPE lines: a counter's name always ends in `_total` there.
  const std::string& exposed_name() const { return exposed_name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // How many with()/remove() calls passed the wrong number of label values.
  std::uint64_t label_count_errors() const {
    return label_count_errors_.load(std::memory_order_relaxed);
  }

  // Appends the HELP and TYPE lines and every series' samples, in series creation order.
  virtual void append_exposition(std::string& out) const = 0;

 protected:
  FamilyBase(MetricType type, std::string exposed_name, std::string help,
             std::vector<std::string> label_names);

  // A series' labels rendered once at creation, escaped and sorted by label name as
  // prometheus_client sorts them: `a="x",b="y"` (empty without labels). Histograms also keep the
  // split around where `le` sorts in.
  struct RenderedLabels {
    std::string all;
    std::string before_le;
    std::string after_le;
  };
  RenderedLabels render_labels(std::span<const std::string_view> label_values) const;

  // Counts (and logs once) a with()/remove() call whose number of label values is wrong.
  void note_label_count_error(std::size_t given) const;

 private:
  MetricType type_;
  std::string exposed_name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<std::size_t> sorted_label_idx_;  // label indices in label-name order
  std::size_t le_position_ = 0;                // how many label names sort before "le"
  mutable std::atomic<std::uint64_t> label_count_errors_{0};
};

// All series of one metric, one per combination of label values.
template <class Series>
class Family final : public FamilyBase {
 public:
  // Returns the series for `label_values` (one per label name, in registration order), creating
  // it on first use. The reference stays valid until the series is removed or the registry is
  // destroyed: cache it and update it without further lookups. Takes the family mutex; not for
  // every request if avoidable. A wrong number of values is a programming error: it is counted
  // (label_count_errors()), logged once, and answered with a detached series that is never
  // exposed, so the caller's update goes nowhere instead of crashing the request.
  Series& with(std::initializer_list<std::string_view> label_values);
  Series& with(const std::vector<std::string>& label_values);

  // Drops one series, or all of them. References to dropped series dangle afterwards: only call
  // these when no thread still updates those series (e.g. from the thread that owns them, or
  // from a collect hook that rebuilds an info-style gauge).
  void remove(std::initializer_list<std::string_view> label_values);
  void remove(const std::vector<std::string>& label_values);
  void clear();

  std::size_t size() const;
  // Histogram bucket bounds, ending with +Inf; empty for counters and gauges.
  const std::vector<double>& upper_bounds() const { return upper_bounds_; }

  void append_exposition(std::string& out) const override;

 private:
  friend class Registry;
  Family(MetricType type, std::string exposed_name, std::string help,
         std::vector<std::string> label_names, std::vector<double> upper_bounds);

  struct Entry {
    Entry(RenderedLabels rendered, std::span<const double> upper_bounds);
    RenderedLabels labels;
    Series series;
  };

  Series& get_or_create(std::span<const std::string_view> label_values);
  void remove_values(std::span<const std::string_view> label_values);

  std::vector<double> upper_bounds_;
  std::vector<std::string> formatted_upper_bounds_;
  std::unique_ptr<Series> detached_series_;
  mutable std::mutex mutex_;
  std::list<Entry> entries_;  // creation order; list nodes never move
  // Keyed by series_key(values); looked up by string_view without building a std::string.
  std::unordered_map<std::string, typename std::list<Entry>::iterator, StringHash, std::equal_to<>>
      index_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// Owns families and exposes them, in registration order.
//
// Registering is start-up configuration and throws std::invalid_argument on a bad name (metric
// names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* without a leading
// `__`), duplicate label names, `le` as a histogram label, bad bucket bounds, or a name already
// registered with a different type, labels or buckets. Registering the same metric again with the
// same type, labels and buckets returns the existing family (its first help text wins).
// Unlabelled families get their single series at registration, so they expose `0.0` at once, as
// prometheus_client does.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // `name` may end in `_total` or not: the counter is exposed as `<name without _total>_total`.
  CounterFamily& counter(std::string name, std::string help,
                         std::vector<std::string> label_names = {});
  GaugeFamily& gauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  // `bucket_upper_bounds`: strictly increasing, at least one finite bound; +Inf is appended
  // unless already last.
  HistogramFamily& histogram(std::string name, std::string help,
                             std::vector<std::string> label_names,
                             std::vector<double> bucket_upper_bounds);

  // Hooks run in registration order at the start of every expose(), one expose() at a time, on
  // the exposing thread; e.g. to refresh gauges computed on demand. A hook may create, update
  // and remove series, and register families; it must not throw, nor call expose() or
  // add_collect_hook().
  void add_collect_hook(std::function<void()> hook);

  // The full exposition text. Series values are read without stopping writers, so a scrape
  // concurrent with updates sees each value at some recent point.
  std::string expose() const;

 private:
  template <class Series>
  Family<Series>& register_family(MetricType type, std::string exposed_name, std::string help,
                                  std::vector<std::string> label_names,
                                  std::vector<double> upper_bounds);

  mutable std::mutex hooks_mutex_;
  std::vector<std::function<void()>> hooks_;
  mutable std::mutex families_mutex_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
  mutable std::atomic<std::size_t> last_exposition_size_{0};
};

}  // namespace infergate::prom
