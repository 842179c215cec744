#include "prom/registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "prom/exposition.h"

namespace infergate::prom {
namespace {

constexpr std::string_view kTotalSuffix = "_total";

bool is_valid_metric_name(std::string_view name) {
  if (name.empty()) {
    return false;
  }
  for (std::size_t char_idx = 0; char_idx < name.size(); ++char_idx) {
    char c = name[char_idx];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && char_idx > 0)) {
      return false;
    }
  }
  return true;
}

bool is_valid_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) {
    return false;
  }
  for (std::size_t char_idx = 0; char_idx < name.size(); ++char_idx) {
    char c = name[char_idx];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && char_idx > 0)) {
      return false;
    }
  }
  return true;
}

void validate_label_names(std::string_view metric_name, const std::vector<std::string>& names,
                          MetricType type) {
  for (std::size_t label_idx = 0; label_idx < names.size(); ++label_idx) {
    const std::string& label = names[label_idx];
    if (!is_valid_label_name(label)) {
      throw std::invalid_argument("metric " + std::string(metric_name) + ": invalid label name '" +
                                  label + "'");
    }
    if (type == MetricType::kHistogram && label == "le") {
      throw std::invalid_argument("histogram " + std::string(metric_name) +
                                  ": label name 'le' is reserved for buckets");
    }
    if (std::find(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(label_idx), label) !=
        names.begin() + static_cast<std::ptrdiff_t>(label_idx)) {
      throw std::invalid_argument("metric " + std::string(metric_name) +
                                  ": duplicate label name '" + label + "'");
    }
  }
}

// Appends +Inf if missing and checks the bounds, as prometheus_client does.
std::vector<double> normalize_bucket_bounds(std::string_view metric_name,
                                            std::vector<double> bounds) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  if (bounds.empty() || bounds.back() != kInf) {
    bounds.push_back(kInf);
  }
  if (bounds.size() < 2) {
    throw std::invalid_argument("histogram " + std::string(metric_name) +
                                ": needs at least one finite bucket bound");
  }
  for (std::size_t bound_idx = 0; bound_idx < bounds.size(); ++bound_idx) {
    bool increasing = bound_idx == 0 || bounds[bound_idx - 1] < bounds[bound_idx];
    if (std::isnan(bounds[bound_idx]) || !increasing) {
      throw std::invalid_argument("histogram " + std::string(metric_name) +
                                  ": bucket bounds must be strictly increasing numbers");
    }
  }
  return bounds;
}

// An unambiguous lookup key for a list of label values (values may contain any byte).
// Each value prefixed by its length (4 raw bytes): unambiguous for any values. Built in a
// per-thread buffer, so that looking up an existing series allocates nothing.
std::string_view series_key(std::span<const std::string_view> label_values) {
  thread_local std::string key;
  key.clear();
  for (std::string_view value : label_values) {
    const auto size = static_cast<std::uint32_t>(value.size());
    key.append(reinterpret_cast<const char*>(&size), sizeof size);
    key += value;
  }
  return key;
}

std::vector<std::string_view> as_views(const std::vector<std::string>& values) {
  return {values.begin(), values.end()};
}

std::string_view type_name(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   std::string_view labels, double value) {
  out += name;
  out += suffix;
  if (!labels.empty()) {
    out.push_back('{');
    out += labels;
    out.push_back('}');
  }
  out.push_back(' ');
  append_value(out, value);
  out.push_back('\n');
}

template <class Series>
Series make_series(std::span<const double> upper_bounds) {
  if constexpr (std::is_same_v<Series, Histogram>) {
    return Histogram(upper_bounds);
  } else {
    (void)upper_bounds;
    return Series();
  }
}

}  // namespace

FamilyBase::FamilyBase(MetricType type, std::string exposed_name, std::string help,
                       std::vector<std::string> label_names)
    : type_(type),
      exposed_name_(std::move(exposed_name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)) {
  sorted_label_idx_.resize(label_names_.size());
  for (std::size_t label_idx = 0; label_idx < label_names_.size(); ++label_idx) {
    sorted_label_idx_[label_idx] = label_idx;
  }
  std::sort(sorted_label_idx_.begin(), sorted_label_idx_.end(),
            [this](std::size_t a, std::size_t b) { return label_names_[a] < label_names_[b]; });
  le_position_ = static_cast<std::size_t>(
      std::count_if(label_names_.begin(), label_names_.end(),
                    [](const std::string& name) { return name < std::string_view("le"); }));
}

FamilyBase::RenderedLabels FamilyBase::render_labels(
    std::span<const std::string_view> label_values) const {
  RenderedLabels rendered;
  for (std::size_t position = 0; position < sorted_label_idx_.size(); ++position) {
    std::size_t label_idx = sorted_label_idx_[position];
    std::string pair = label_names_[label_idx];
    pair += "=\"";
    append_escaped_label_value(pair, label_values[label_idx]);
    pair.push_back('"');
    std::string& side = position < le_position_ ? rendered.before_le : rendered.after_le;
    if (!side.empty()) {
      side.push_back(',');
    }
    side += pair;
    if (!rendered.all.empty()) {
      rendered.all.push_back(',');
    }
    rendered.all += pair;
  }
  return rendered;
}

void FamilyBase::note_label_count_error(std::size_t given) const {
  if (label_count_errors_.fetch_add(1, std::memory_order_relaxed) == 0) {
    spdlog::error("metric {}: got {} label values for {} label names; update dropped",
                  exposed_name_, given, label_names_.size());
  }
}

template <class Series>
Family<Series>::Entry::Entry(RenderedLabels rendered, std::span<const double> upper_bounds)
    : labels(std::move(rendered)), series(make_series<Series>(upper_bounds)) {}

template <class Series>
Family<Series>::Family(MetricType type, std::string exposed_name, std::string help,
                       std::vector<std::string> label_names, std::vector<double> upper_bounds)
    : FamilyBase(type, std::move(exposed_name), std::move(help), std::move(label_names)),
      upper_bounds_(std::move(upper_bounds)) {
  for (double bound : upper_bounds_) {
    formatted_upper_bounds_.push_back(format_value(bound));
  }
  if constexpr (std::is_same_v<Series, Histogram>) {
    detached_series_ = std::make_unique<Histogram>(upper_bounds_);
  } else {
    detached_series_ = std::make_unique<Series>();
  }
}

template <class Series>
Series& Family<Series>::with(std::initializer_list<std::string_view> label_values) {
  return get_or_create(
      std::span<const std::string_view>(label_values.begin(), label_values.size()));
}

template <class Series>
Series& Family<Series>::with(const std::vector<std::string>& label_values) {
  return get_or_create(as_views(label_values));
}

template <class Series>
void Family<Series>::remove(std::initializer_list<std::string_view> label_values) {
  remove_values(std::span<const std::string_view>(label_values.begin(), label_values.size()));
}

template <class Series>
void Family<Series>::remove(const std::vector<std::string>& label_values) {
  remove_values(as_views(label_values));
}

template <class Series>
void Family<Series>::clear() {
  std::lock_guard lock(mutex_);
  index_.clear();
  entries_.clear();
}

template <class Series>
std::size_t Family<Series>::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

template <class Series>
Series& Family<Series>::get_or_create(std::span<const std::string_view> label_values) {
  if (label_values.size() != label_names().size()) {
    note_label_count_error(label_values.size());
    return *detached_series_;
  }
  const std::string_view key = series_key(label_values);
  std::lock_guard lock(mutex_);
  auto found = index_.find(key);
  if (found != index_.end()) {
    return found->second->series;
  }
  entries_.emplace_back(render_labels(label_values), upper_bounds_);
  index_.emplace(std::string(key), std::prev(entries_.end()));
  return entries_.back().series;
}

template <class Series>
void Family<Series>::remove_values(std::span<const std::string_view> label_values) {
  if (label_values.size() != label_names().size()) {
    note_label_count_error(label_values.size());
    return;
  }
  const std::string_view key = series_key(label_values);
  std::lock_guard lock(mutex_);
  auto found = index_.find(key);
  if (found == index_.end()) {
    return;
  }
  entries_.erase(found->second);
  index_.erase(found);
}

template <class Series>
void Family<Series>::append_exposition(std::string& out) const {
  out += "# HELP ";
  out += exposed_name();
  out.push_back(' ');
  append_escaped_help(out, help());
  out += "\n# TYPE ";
  out += exposed_name();
  out.push_back(' ');
  out += type_name(type());
  out.push_back('\n');

  std::lock_guard lock(mutex_);
  for (const Entry& entry : entries_) {
    if constexpr (std::is_same_v<Series, Histogram>) {
      std::vector<std::uint64_t> counts = entry.series.cumulative_counts();
      for (std::size_t bound_idx = 0; bound_idx < counts.size(); ++bound_idx) {
        out += exposed_name();
        out += "_bucket{";
        out += entry.labels.before_le;
        if (!entry.labels.before_le.empty()) {
          out.push_back(',');
        }
        out += "le=\"";
        out += formatted_upper_bounds_[bound_idx];
        out.push_back('"');
        if (!entry.labels.after_le.empty()) {
          out.push_back(',');
        }
        out += entry.labels.after_le;
        out += "} ";
        append_value(out, static_cast<double>(counts[bound_idx]));
        out.push_back('\n');
      }
      // prometheus_client's order: count before sum, and no sum when buckets go negative.
      append_sample(out, exposed_name(), "_count", entry.labels.all,
                    static_cast<double>(counts.back()));
      if (upper_bounds_.front() >= 0) {
        append_sample(out, exposed_name(), "_sum", entry.labels.all, entry.series.sum());
      }
    } else {
      append_sample(out, exposed_name(), "", entry.labels.all, entry.series.value());
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

template <class Series>
Family<Series>& Registry::register_family(MetricType type, std::string exposed_name,
                                          std::string help, std::vector<std::string> label_names,
                                          std::vector<double> upper_bounds) {
  std::lock_guard lock(families_mutex_);
  for (const auto& family : families_) {
    if (family->exposed_name() != exposed_name) {
      continue;
    }
    auto* same = dynamic_cast<Family<Series>*>(family.get());
    if (same != nullptr && same->label_names() == label_names &&
        same->upper_bounds() == upper_bounds) {
      return *same;
    }
    throw std::invalid_argument("metric " + exposed_name +
                                " is already registered with a different type, labels or buckets");
  }
  std::unique_ptr<Family<Series>> family(new Family<Series>(type, std::move(exposed_name),
                                                            std::move(help), std::move(label_names),
                                                            std::move(upper_bounds)));
  Family<Series>& registered = *family;
  families_.push_back(std::move(family));
  if (registered.label_names().empty()) {
    registered.with({});
  }
  return registered;
}

CounterFamily& Registry::counter(std::string name, std::string help,
                                 std::vector<std::string> label_names) {
  // prometheus_client strips `_total` from a counter's name and adds it back on exposition.
  if (name.ends_with(kTotalSuffix)) {
    name.resize(name.size() - kTotalSuffix.size());
  }
  if (!is_valid_metric_name(name)) {
    throw std::invalid_argument("invalid counter name '" + name + "'");
  }
  validate_label_names(name, label_names, MetricType::kCounter);
  name += kTotalSuffix;
  return register_family<Counter>(MetricType::kCounter, std::move(name), std::move(help),
                                  std::move(label_names), {});
}

GaugeFamily& Registry::gauge(std::string name, std::string help,
                             std::vector<std::string> label_names) {
  if (!is_valid_metric_name(name)) {
    throw std::invalid_argument("invalid gauge name '" + name + "'");
  }
  validate_label_names(name, label_names, MetricType::kGauge);
  return register_family<Gauge>(MetricType::kGauge, std::move(name), std::move(help),
                                std::move(label_names), {});
}

HistogramFamily& Registry::histogram(std::string name, std::string help,
                                     std::vector<std::string> label_names,
                                     std::vector<double> bucket_upper_bounds) {
  if (!is_valid_metric_name(name)) {
    throw std::invalid_argument("invalid histogram name '" + name + "'");
  }
  validate_label_names(name, label_names, MetricType::kHistogram);
  std::vector<double> bounds = normalize_bucket_bounds(name, std::move(bucket_upper_bounds));
  return register_family<Histogram>(MetricType::kHistogram, std::move(name), std::move(help),
                                    std::move(label_names), std::move(bounds));
}

void Registry::add_collect_hook(std::function<void()> hook) {
  std::lock_guard lock(hooks_mutex_);
  hooks_.push_back(std::move(hook));
}

std::string Registry::expose() const {
  {
    // Hooks run outside families_mutex_ so that they may create series and register families.
    std::lock_guard lock(hooks_mutex_);
    for (const auto& hook : hooks_) {
      hook();
    }
  }
  std::string out;
  out.reserve(last_exposition_size_.load(std::memory_order_relaxed) + 256);
  {
    std::lock_guard lock(families_mutex_);
    for (const auto& family : families_) {
      family->append_exposition(out);
    }
  }
  last_exposition_size_.store(out.size(), std::memory_order_relaxed);
  return out;
}

}  // namespace infergate::prom
