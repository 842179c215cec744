#pragma once

// The Endpoint Picker's Prometheus metrics, with GIE's names, labels and bucket ranges (metrics
// facts §8): per-request inference_objective_*, scheduler and plugin durations, rewrite decisions,
// and the inference_pool_* gauges recomputed from the datastore on every scrape.
//
// Threads: every method is safe from any thread. A request resolves the series of its (model,
// target model) pair once (model_series: one shared lock on a cache, the family mutexes only the
// first time a pair is seen; request_series and attempt_success: a per-thread cache in front of
// that, a few string compares on a hit); plugin histograms are resolved once at construction.

#include <array>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"
#include "common/text.h"
#include "datastore/datastore.h"
#include "prom/registry.h"
#include "scheduling/config_loader.h"
#include "scheduling/framework.h"

namespace infergate::director {

// The inference_objective_* series one (model_name, target_model_name) pair updates on every
// request. Valid as long as the registry: these families never drop series.
struct ModelSeries {
  prom::Gauge& running_requests;  // labelled by the incoming model only
  prom::Histogram& request_sizes;
  prom::Histogram& request_duration_seconds;
  prom::Histogram& request_ttft_seconds;
  prom::Histogram& response_sizes;
  prom::Histogram& input_tokens;
  prom::Histogram& output_tokens;
  prom::Histogram& prompt_cached_tokens;
  prom::Histogram& normalized_time_per_output_token_seconds;
  prom::Counter& model_server_errors;  // request_error_total{error_code="ModelServerError"}
};

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

  // The series of one (model, target model) pair, created on first use and cached. As many pairs
  // are cached as the families hold series for (clients choose the model names, as in GIE).
  const ModelSeries& model_series(std::string_view model, std::string_view target_model) const;

  // What a routed request charges: its pair's series and request_total{model_name,
  // target_model_name, priority}.
  struct RequestSeries {
    const ModelSeries* series;
    prom::Counter* requests;
  };
  RequestSeries request_series(std::string_view model, std::string_view target_model,
                               int priority) const;
  // scheduler_attempts_total{status="success", target_model_name, pod_name, namespace, port}.
  prom::Counter& attempt_success(std::string_view target_model,
                                 const datastore::EndpointInfo& endpoint) const;

 private:
  const std::uint64_t id_;  // names this instance in the per-thread caches (never reused)

  mutable std::shared_mutex model_series_mu_;
  // Key: the model's length, ':', the model, the target model (unambiguous for any names).
  mutable std::unordered_map<std::string, std::unique_ptr<const ModelSeries>, StringHash,
                             std::equal_to<>>
      model_series_;

  // Plugin → its histogram series per extension point (ProfilePicker, Filter, Scorer, Picker,
  // PreRequest); built once, read-only afterwards.
  std::unordered_map<const scheduling::Plugin*, std::array<prom::Histogram*, 5>> plugin_series_;
};

}  // namespace infergate::director
