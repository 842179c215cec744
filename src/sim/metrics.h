#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "prom/registry.h"
#include "sim/engine.h"

namespace infergate::sim {

// Which engine's metric names the simulator serves.
enum class MetricsStyle {
  kVllm,        // current vLLM V1 names (vllm:kv_cache_usage_perc, ...)
  kVllmLegacy,  // vLLM <= 0.9.1 names (vllm:gpu_cache_usage_perc, vllm:gpu_prefix_cache_*, ...)
  kSglang,      // SGLang names (sglang:num_running_reqs, sglang:token_usage, ...)
};
Result<MetricsStyle> parse_metrics_style(std::string_view name);

// The model-server metrics of one simulated engine, with vLLM's names, types, labels and buckets
// (metrics facts §2), or another engine's names (MetricsStyle). Fed by the driver of the engine
// on the engine's thread; gauges and counters are refreshed from the engine when scraped.
class SimMetrics {
 public:
  struct LoraState {
    int max_loras;
    std::vector<std::string> running;
    std::vector<std::string> waiting;
  };

  SimMetrics(prom::Registry& registry, MetricsStyle style, std::string model_name,
             const EngineConfig& config);

  // Called from the engine's driver as things happen.
  void observe_first_token(Duration time_to_first_token);
  void observe_inter_token(Duration gap);
  void observe_step(const StepOutput& step);
  void observe_finished(const FinishedRequest& record, TimePoint arrival);

  // Copies engine state into gauges and counters; `unix_now` stamps vllm:lora_requests_info.
  void refresh(const Engine& engine, const LoraState& loras, double unix_now);

 private:
  std::string model_name_;
  std::vector<std::string> labels_;  // values for the common labels (model_name[, engine])

  prom::Gauge* running_ = nullptr;
  prom::Gauge* waiting_ = nullptr;
  prom::Gauge* kv_usage_ = nullptr;
  prom::GaugeFamily* lora_info_ = nullptr;
  prom::Counter* prompt_tokens_ = nullptr;
  prom::Counter* generation_tokens_ = nullptr;
  prom::Counter* prefix_queries_ = nullptr;
  prom::Counter* prefix_hits_ = nullptr;
  prom::Counter* preemptions_ = nullptr;
  prom::CounterFamily* success_ = nullptr;
  prom::Histogram* ttft_ = nullptr;
  prom::Histogram* itl_ = nullptr;
  prom::Histogram* e2e_ = nullptr;
  prom::Histogram* queue_time_ = nullptr;
  prom::Histogram* prefill_time_ = nullptr;
  prom::Histogram* decode_time_ = nullptr;
  prom::Histogram* inference_time_ = nullptr;
  prom::Histogram* request_tpot_ = nullptr;
  prom::Histogram* prompt_tokens_hist_ = nullptr;
  prom::Histogram* generation_tokens_hist_ = nullptr;
  prom::Histogram* max_tokens_hist_ = nullptr;
  prom::Histogram* max_generation_hist_ = nullptr;
  prom::Histogram* iteration_tokens_ = nullptr;

  EngineCounters last_counters_;
  struct LoraSeries {
    std::vector<std::string> labels;
    double stamped_at;
  };
  std::vector<LoraSeries> lora_series_;
};

}  // namespace infergate::sim
