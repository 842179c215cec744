#include "sim/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace infergate::sim {
namespace {

// vLLM's bucket boundaries (metrics facts §2.3).
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                          0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                          20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kItlBuckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                         0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> kRequestLatencyBuckets = {
    0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
    30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

// Distinct names of metrics that differ between styles; empty = not served in that style.
struct Names {
  std::string running, waiting, kv_usage, lora_info, cache_config;
  std::string prompt_tokens, generation_tokens, prefix_queries, prefix_hits, preemptions, success;
  std::string ttft, itl, e2e, queue_time, prefill_time, decode_time, inference_time, request_tpot;
  std::string prompt_hist, generation_hist, max_tokens_hist, max_generation_hist, iteration_tokens;
};

Names names_for(MetricsStyle style) {
  if (style == MetricsStyle::kSglang) {
    return Names{.running = "sglang:num_running_reqs",
                 .waiting = "sglang:num_queue_reqs",
                 .kv_usage = "sglang:token_usage",
                 .cache_config = "sglang:cache_config_info",
                 .prompt_tokens = "sglang:prompt_tokens",
                 .generation_tokens = "sglang:generation_tokens",
                 .ttft = "sglang:time_to_first_token_seconds",
                 .itl = "sglang:inter_token_latency_seconds",
                 .e2e = "sglang:e2e_request_latency_seconds",
                 .request_tpot = "sglang:time_per_output_token_seconds"};
  }
  Names names{.running = "vllm:num_requests_running",
              .waiting = "vllm:num_requests_waiting",
              .kv_usage = "vllm:kv_cache_usage_perc",
              .lora_info = "vllm:lora_requests_info",
              .cache_config = "vllm:cache_config_info",
              .prompt_tokens = "vllm:prompt_tokens",
              .generation_tokens = "vllm:generation_tokens",
              .prefix_queries = "vllm:prefix_cache_queries",
              .prefix_hits = "vllm:prefix_cache_hits",
              .preemptions = "vllm:num_preemptions",
              .success = "vllm:request_success",
              .ttft = "vllm:time_to_first_token_seconds",
              .itl = "vllm:inter_token_latency_seconds",
              .e2e = "vllm:e2e_request_latency_seconds",
              .queue_time = "vllm:request_queue_time_seconds",
              .prefill_time = "vllm:request_prefill_time_seconds",
              .decode_time = "vllm:request_decode_time_seconds",
              .inference_time = "vllm:request_inference_time_seconds",
              .request_tpot = "vllm:request_time_per_output_token_seconds",
              .prompt_hist = "vllm:request_prompt_tokens",
              .generation_hist = "vllm:request_generation_tokens",
              .max_tokens_hist = "vllm:request_params_max_tokens",
              .max_generation_hist = "vllm:request_max_num_generation_tokens",
              .iteration_tokens = "vllm:iteration_tokens_total"};
  if (style == MetricsStyle::kVllmLegacy) {
    // vLLM 0.9.1 and earlier: the old KV and prefix-cache names, and TPOT instead of ITL.
    names.kv_usage = "vllm:gpu_cache_usage_perc";
    names.prefix_queries = "vllm:gpu_prefix_cache_queries";
    names.prefix_hits = "vllm:gpu_prefix_cache_hits";
    names.itl = "vllm:time_per_output_token_seconds";
  }
  return names;
}

std::vector<double> iteration_token_buckets(int max_num_batched_tokens) {
  std::vector<double> buckets = {1};
  for (int bound = 8; bound <= std::max(16384, max_num_batched_tokens); bound *= 2) {
    buckets.push_back(bound);
  }
  return buckets;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

}  // namespace

Result<MetricsStyle> parse_metrics_style(std::string_view name) {
  if (name == "vllm") return MetricsStyle::kVllm;
  if (name == "vllm-legacy") return MetricsStyle::kVllmLegacy;
  if (name == "sglang") return MetricsStyle::kSglang;
  return Status::bad_request(
      fmt::format("unknown metrics style '{}' (known: vllm, vllm-legacy, sglang)", name));
}

SimMetrics::SimMetrics(prom::Registry& registry, MetricsStyle style, std::string model_name,
                       const EngineConfig& config)
    : model_name_(std::move(model_name)) {
  const Names names = names_for(style);
  std::vector<std::string> label_names = {"model_name"};
  labels_ = {model_name_};
  if (style != MetricsStyle::kSglang) {
    label_names.push_back("engine");
    labels_.push_back("0");
  }
  auto gauge = [&](const std::string& name, const char* help) -> prom::Gauge* {
    if (name.empty()) return nullptr;
    return &registry.gauge(name, help, label_names).with(labels_);
  };
  auto counter = [&](const std::string& name, const char* help) -> prom::Counter* {
    if (name.empty()) return nullptr;
    return &registry.counter(name, help, label_names).with(labels_);
  };
  auto histogram = [&](const std::string& name, const char* help,
                       const std::vector<double>& buckets) -> prom::Histogram* {
    if (name.empty()) return nullptr;
    return &registry.histogram(name, help, label_names, buckets).with(labels_);
  };

  running_ = gauge(names.running, "Number of requests in model execution batches.");
  waiting_ = gauge(names.waiting, "Number of requests waiting to be processed.");
  kv_usage_ = gauge(names.kv_usage, "KV-cache usage. 1 means 100 percent usage.");
  if (!names.lora_info.empty()) {
    lora_info_ = &registry.gauge(names.lora_info, "Running stats on lora requests.",
                                 {"max_lora", "waiting_lora_adapters", "running_lora_adapters"});
  }
  if (style == MetricsStyle::kSglang) {
    registry
        .gauge(names.cache_config, "Information of the cache configuration.",
               {"page_size", "num_pages"})
        .with({std::to_string(config.block_size), std::to_string(config.num_gpu_blocks)})
        .set(1);
  } else {
    registry
        .gauge(names.cache_config, "Information of the LLMEngine CacheConfig",
               {"block_size", "cache_dtype", "enable_prefix_caching", "engine",
                "gpu_memory_utilization", "num_cpu_blocks", "num_gpu_blocks",
                "prefix_caching_hash_algo"})
        .with({std::to_string(config.block_size), "auto",
               config.enable_prefix_caching ? "True" : "False", "0", "0.9", "None",
               std::to_string(config.num_gpu_blocks), "xxhash"})
        .set(1);
  }
  prompt_tokens_ = counter(names.prompt_tokens, "Number of prefill tokens processed.");
  generation_tokens_ = counter(names.generation_tokens, "Number of generation tokens processed.");
  prefix_queries_ =
      counter(names.prefix_queries, "Prefix cache queries, in terms of number of queried tokens.");
  prefix_hits_ =
      counter(names.prefix_hits, "Prefix cache hits, in terms of number of cached tokens.");
  preemptions_ = counter(names.preemptions, "Cumulative number of preemption from the engine.");
  if (!names.success.empty()) {
    std::vector<std::string> success_labels = label_names;
    success_labels.push_back("finished_reason");
    success_ = &registry.counter(names.success, "Count of successfully processed requests.",
                                 success_labels);
  }
  ttft_ = histogram(names.ttft, "Histogram of time to first token in seconds.", kTtftBuckets);
  itl_ = histogram(names.itl, "Histogram of inter-token latency in seconds.", kItlBuckets);
  e2e_ =
      histogram(names.e2e, "Histogram of e2e request latency in seconds.", kRequestLatencyBuckets);
  queue_time_ = histogram(names.queue_time, "Histogram of time spent in WAITING phase for request.",
                          kRequestLatencyBuckets);
  inference_time_ =
      histogram(names.inference_time, "Histogram of time spent in RUNNING phase for request.",
                kRequestLatencyBuckets);
  prefill_time_ =
      histogram(names.prefill_time, "Histogram of time spent in PREFILL phase for request.",
                kRequestLatencyBuckets);
  decode_time_ =
      histogram(names.decode_time, "Histogram of time spent in DECODE phase for request.",
                kRequestLatencyBuckets);
  request_tpot_ = histogram(names.request_tpot,
                            "Histogram of time_per_output_token_seconds per request.", kItlBuckets);
  const auto token_buckets = prom::one_two_five_buckets(config.max_model_len);
  prompt_tokens_hist_ =
      histogram(names.prompt_hist, "Number of prefill tokens processed.", token_buckets);
  generation_tokens_hist_ =
      histogram(names.generation_hist, "Number of generation tokens processed.", token_buckets);
  max_tokens_hist_ = histogram(names.max_tokens_hist,
                               "Histogram of the max_tokens request parameter.", token_buckets);
  max_generation_hist_ =
      histogram(names.max_generation_hist,
                "Histogram of maximum number of requested generation tokens.", token_buckets);
  iteration_tokens_ =
      histogram(names.iteration_tokens, "Histogram of number of tokens per engine_step.",
                iteration_token_buckets(config.max_num_batched_tokens));
}

void SimMetrics::observe_first_token(Duration time_to_first_token) {
  if (ttft_) ttft_->observe(to_seconds(time_to_first_token));
}

void SimMetrics::observe_inter_token(Duration gap) {
  if (itl_) itl_->observe(to_seconds(gap));
}

void SimMetrics::observe_step(const StepOutput& step) {
  if (iteration_tokens_) iteration_tokens_->observe(step.scheduled_tokens);
}

void SimMetrics::observe_finished(const FinishedRequest& record, TimePoint arrival) {
  if (success_) {
    std::vector<std::string> labels = labels_;
    labels.emplace_back(finish_reason_name(record.reason));
    success_->with(labels).inc();
  }
  if (record.reason == FinishReason::kAbort && !record.last_token) return;
  const TimePoint end = record.last_token.value_or(arrival);
  if (e2e_) e2e_->observe(to_seconds(end - arrival));
  if (record.first_scheduled) {
    if (queue_time_) queue_time_->observe(to_seconds(*record.first_scheduled - record.queued));
    if (inference_time_) inference_time_->observe(to_seconds(end - *record.first_scheduled));
    if (prefill_time_ && record.first_token) {
      prefill_time_->observe(to_seconds(*record.first_token - *record.first_scheduled));
    }
  }
  if (record.first_token && record.last_token) {
    const Duration decode = *record.last_token - *record.first_token;
    if (decode_time_) decode_time_->observe(to_seconds(decode));
    if (request_tpot_ && record.output_tokens > 1) {
      request_tpot_->observe(to_seconds(decode) / (record.output_tokens - 1));
    }
  }
  if (prompt_tokens_hist_) prompt_tokens_hist_->observe(record.prompt_tokens);
  if (generation_tokens_hist_) generation_tokens_hist_->observe(record.output_tokens);
  if (max_tokens_hist_) max_tokens_hist_->observe(record.max_output_tokens);
  if (max_generation_hist_) max_generation_hist_->observe(record.max_output_tokens);
}

void SimMetrics::refresh(const Engine& engine, const LoraState& loras, double unix_now) {
  if (running_) running_->set(engine.num_running());
  if (waiting_) waiting_->set(engine.num_waiting());
  if (kv_usage_) kv_usage_->set(engine.kv_cache_usage());

  const EngineCounters& now = engine.counters();
  auto add = [](prom::Counter* counter, std::uint64_t current, std::uint64_t previous) {
    if (counter && current > previous) counter->inc(static_cast<double>(current - previous));
  };
  add(prompt_tokens_, now.prompt_tokens, last_counters_.prompt_tokens);
  add(generation_tokens_, now.generation_tokens, last_counters_.generation_tokens);
  add(prefix_queries_, now.prefix_queries, last_counters_.prefix_queries);
  add(prefix_hits_, now.prefix_hits, last_counters_.prefix_hits);
  add(preemptions_, now.preemptions, last_counters_.preemptions);
  last_counters_ = now;

  if (lora_info_) {
    // Like vLLM, every distinct label combination stays a series of its own whose value is the
    // Unix time it was last current; readers take the newest. Old combinations are kept, up to
    // a bound, so consumers must really pick by value.
    constexpr std::size_t kMaxLoraSeries = 32;
    std::vector<std::string> labels = {std::to_string(loras.max_loras), join(loras.waiting),
                                       join(loras.running)};
    auto it = std::find_if(lora_series_.begin(), lora_series_.end(),
                           [&](const LoraSeries& series) { return series.labels == labels; });
    if (it == lora_series_.end()) {
      if (lora_series_.size() == kMaxLoraSeries) {
        auto oldest = std::min_element(
            lora_series_.begin(), lora_series_.end(),
            [](const LoraSeries& a, const LoraSeries& b) { return a.stamped_at < b.stamped_at; });
        lora_info_->remove(oldest->labels);
        lora_series_.erase(oldest);
      }
      lora_series_.push_back({labels, unix_now});
      it = std::prev(lora_series_.end());
    }
    it->stamped_at = unix_now;
    lora_info_->with(labels).set(unix_now);
  }
}

}  // namespace infergate::sim
