#pragma once

// Engine metric mappings and the extraction of EndpointMetrics from one /metrics scrape
// (metrics facts §1, §5, §6).
//
// An EngineMetricsConfig names, per engine (vLLM, SGLang, trtllm-serve, Triton TensorRT-LLM),
// which Prometheus series carry each figure the picker needs. EngineMappings holds the four
// built-ins plus user `engineConfigs` entries; an entry with a built-in's name replaces it whole.
//
// Extractor turns the text of one scrape, fed in chunks straight from the HTTP body, into an
// EndpointMetrics. One Extractor per metrics collector, used from the collector's coroutine only
// (not thread-safe); it is reused across scrapes and owns a copy of its config. Errors are values:
// nothing here throws on scrape input.

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/types.h"
#include "common/status.h"
#include "datastore/endpoint.h"
#include "prom/parser.h"

namespace infergate::datastore {

// The figures an engine config can map, as bits of a MetricSet.
enum class MetricKind : std::uint32_t {
  kQueued = 1u << 0,          // TotalQueuedRequests
  kRunning = 1u << 1,         // TotalRunningRequests
  kKvUsage = 1u << 2,         // KVCacheUtilization
  kLora = 1u << 3,            // vllm:lora_requests_info
  kCacheInfo = 1u << 4,       // block size / block count from the labels of one info series
  kCacheBlockSize = 1u << 5,  // block size from a gauge
  kCacheNumBlocks = 1u << 6,  // block count from a gauge
};
inline constexpr MetricKind kAllMetricKinds[] = {
    MetricKind::kQueued,        MetricKind::kRunning,   MetricKind::kKvUsage,
    MetricKind::kLora,          MetricKind::kCacheInfo, MetricKind::kCacheBlockSize,
    MetricKind::kCacheNumBlocks};

// "queued", "running", "kv_usage", "lora", "cache_info", "cache_block_size", "cache_num_blocks".
std::string_view metric_kind_name(MetricKind kind);

// A set of MetricKinds (bitmask).
using MetricSet = std::uint32_t;
inline constexpr MetricSet bit(MetricKind kind) { return static_cast<MetricSet>(kind); }

// Which series carry an engine's figures. A disengaged spec disables that figure (written "" in
// configuration). Metric specs are PromQL-style selectors (prom::parse_metric_spec).
struct EngineMetricsConfig {
  std::string name;  // the engine type, matched against the pod label kEngineTypeLabel
  std::optional<prom::MetricSpec> queued;
  std::optional<prom::MetricSpec> running;
  std::optional<prom::MetricSpec> kv_usage;
  // Consulted only when `kv_usage` matches nothing. The built-in vLLM config sets it to
  // `vllm:gpu_cache_usage_perc`, the name vLLM used before 0.12 (ARCHITECTURE.md: accept both);
  // it cannot be set from engineConfigs.
  std::optional<prom::MetricSpec> kv_usage_fallback;
  std::optional<prom::MetricSpec> lora;
  std::optional<prom::MetricSpec> cache_info;
  std::string cache_block_size_label;  // label of the cache_info series; "" = not read
  std::string cache_num_blocks_label;  // label of the cache_info series; "" = not read
  std::optional<prom::MetricSpec> cache_block_size_spec;  // gauge (trtllm, Triton)
  std::optional<prom::MetricSpec> cache_num_blocks_spec;  // gauge (trtllm, Triton)

  // The figures this config reads.
  MetricSet enabled() const;
  // The spec text of `kind` ("" when disabled), for messages.
  std::string spec_text(MetricKind kind) const;

  friend bool operator==(const EngineMetricsConfig&, const EngineMetricsConfig&) = default;
};

// The built-in configs (metrics facts §5): "vllm" (the default), "sglang", "trtllm-serve",
// "triton-tensorrt-llm".
const std::vector<EngineMetricsConfig>& builtin_engine_configs();

// The engine configs in force: the built-ins, each possibly replaced whole by a user entry of the
// same name, plus user entries for new engines. Immutable once built; share freely across threads.
class EngineMappings {
 public:
  // The built-ins only.
  EngineMappings();

  // Decodes the extractor's `engineConfigs` parameter: an array of objects with the keys `name`
  // (required, non-empty, unique) and optionally queuedRequestsSpec, runningRequestsSpec,
  // kvUsageSpec, loraSpec, cacheInfoSpec, cacheBlockSizeLabelName, cacheNumBlocksLabelName,
  // cacheBlockSizeSpec, cacheNumBlocksSpec (strings; absent or "" disables). Unknown keys, wrong
  // types and invalid specs are 400 errors naming the entry and key. Null means no entries.
  static Result<EngineMappings> from_json(const nlohmann::json& engine_configs);

  // Adds `config`, replacing any config of the same name.
  void set(EngineMetricsConfig config);

  // The config of `engine_type`, or nullptr when there is none.
  const EngineMetricsConfig* find(std::string_view engine_type) const;
  // The config of `engine_type`, falling back to the default engine's (kDefaultEngineType).
  const EngineMetricsConfig& find_or_default(std::string_view engine_type) const;

  std::vector<std::string> names() const;

 private:
  std::map<std::string, EngineMetricsConfig, std::less<>> configs_;
};

// The engine mappings an EndpointPickerConfig asks for: the `engineConfigs` parameter of its
// `core-metrics-extractor` plugin (if any) on top of the built-ins. Errors name the plugin.
Result<EngineMappings> engine_mappings_from_config(const api::EndpointPickerConfig& config);

// What one scrape yielded.
struct Extraction {
  // `base` (see Extractor::finish) with every found figure overwritten. updated_at is left as in
  // `base`: the caller stamps it.
  EndpointMetrics metrics;
  MetricSet found = 0;
  MetricSet missing = 0;  // enabled by the config but absent from the scrape
  prom::ParseStats parse_stats;
};

// "queued (vllm:num_requests_waiting), lora (vllm:lora_requests_info)": for log lines.
std::string describe_metrics(MetricSet set, const EngineMetricsConfig& config);

// Extraction rules (metrics facts §6):
// - queued, running, KV usage and the block gauges: among the series matching the spec, the one
//   with the largest sample timestamp wins (no timestamp counts as oldest; ties go to the last
//   seen). Values are rounded down to integers for counts; non-finite or negative counts read 0;
//   KV usage is clamped to 0..1 (NaN reads 0).
// - LoRA: the series with the largest value (its last-update unix time) wins (ties: last seen);
//   its `running_lora_adapters` and `waiting_lora_adapters` labels are split on commas with
//   spaces trimmed and empty names dropped, and `max_lora` gives max_active_adapters.
// - cache info: the winning series (by timestamp, as above) gives block size and block count from
//   the configured labels (absent or non-numeric labels read 0, i.e. unknown).
class Extractor {
 public:
  explicit Extractor(EngineMetricsConfig config);
  Extractor(const Extractor&) = delete;
  Extractor& operator=(const Extractor&) = delete;

  const EngineMetricsConfig& config() const { return config_; }

  // Parses one piece of the body (any size, any split).
  void feed(std::string_view chunk);

  // Ends the body and resets the extractor for the next scrape. Fails with 502 when the body is
  // not Prometheus text (malformed lines and no valid sample) or holds none of the enabled
  // figures; the caller should then keep its last good metrics.
  Result<Extraction> finish(const EndpointMetrics& base = {});

  // Discards a partly fed body (e.g. after a failed read).
  void reset();

 private:
  // The best series seen so far for one figure.
  struct Slot {
    const prom::MetricSpec* spec = nullptr;
    bool found = false;
    std::int64_t timestamp_ms = 0;  // INT64_MIN when the sample had none
    double value = 0;
    std::string label_a;  // cache info: block size; LoRA: running adapters
    std::string label_b;  // cache info: block count; LoRA: waiting adapters
    std::string label_c;  // LoRA: max_lora
  };
  void on_sample(const prom::Sample& sample);
  void clear_slots();

  EngineMetricsConfig config_;
  prom::TextParser parser_;
  prom::SampleCallback callback_;
  Slot queued_, running_, kv_usage_, kv_usage_fallback_, lora_, cache_info_, block_size_,
      num_blocks_;
};

}  // namespace infergate::datastore
