#pragma once

// The Endpoint Picker's Prometheus metrics, with GIE's names, labels and bucket ranges (metrics
// facts §8): per-request inference_objective_*, scheduler and plugin durations, rewrite decisions,
// and the inference_pool_* gauges recomputed from the datastore on every scrape.
//
// Threads: every method is safe from any thread. Per-request updates look their series up by
// label values (one family mutex each); plugin histograms are resolved once at construction.

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"
#include "datastore/datastore.h"
#include "prom/registry.h"
#include "scheduling/config_loader.h"
#include "scheduling/framework.h"

namespace infergate::director {

struct DirectorMetrics final : scheduling::PluginObserver {
  // Registers the families in `registry`, resolves one duration histogram per configured plugin
  // and adds the pool-gauge collect hook (reading `store`, which must outlive the registry's
  // exposures, with metrics older than `staleness` left out).
  DirectorMetrics(prom::Registry& registry, const scheduling::SchedulerSetup& setup,
                  const datastore::Datastore& store, std::string pool_name, const Clock& clock,
                  Duration staleness);

  void observe(const scheduling::Plugin& plugin, std::string_view extension_point,
               Duration elapsed) const override;

  prom::CounterFamily& request_total;
  prom::CounterFamily& request_error_total;
  prom::HistogramFamily& request_duration_seconds;
  prom::HistogramFamily& request_ttft_seconds;
  prom::HistogramFamily& normalized_time_per_output_token_seconds;
  prom::HistogramFamily& request_sizes;
  prom::HistogramFamily& response_sizes;
  prom::HistogramFamily& input_tokens;
  prom::HistogramFamily& output_tokens;
  prom::HistogramFamily& prompt_cached_tokens;
  prom::GaugeFamily& running_requests;
  prom::HistogramFamily& scheduler_e2e_duration_seconds;
  prom::CounterFamily& scheduler_attempts_total;
  prom::HistogramFamily& plugin_duration_seconds;
  prom::CounterFamily& model_rewrite_decisions_total;
  prom::Histogram& scheduler_e2e;  // the single unlabelled series

 private:
  // Plugin → its histogram series per extension point (ProfilePicker, Filter, Scorer, Picker,
  // PreRequest); built once, read-only afterwards.
  std::unordered_map<const scheduling::Plugin*, std::array<prom::Histogram*, 5>> plugin_series_;
};

}  // namespace infergate::director
