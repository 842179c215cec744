#include "datastore/metrics_mapping.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

namespace infergate::datastore {

namespace {

constexpr std::int64_t kNoTimestamp = std::numeric_limits<std::int64_t>::min();

// Built-in specs are constants of this file; a parse failure is a bug caught by the tests.
std::optional<prom::MetricSpec> builtin_spec(std::string_view text) {
  auto spec = prom::parse_metric_spec(text);
  if (!spec.ok()) throw std::logic_error("bad built-in metric spec: " + std::string(text));
  return std::move(*spec);
}

std::vector<EngineMetricsConfig> make_builtins() {
  std::vector<EngineMetricsConfig> configs;
  EngineMetricsConfig vllm;
  vllm.name = "vllm";
  vllm.queued = builtin_spec("vllm:num_requests_waiting");
  vllm.running = builtin_spec("vllm:num_requests_running");
  vllm.kv_usage = builtin_spec("vllm:kv_cache_usage_perc");
  vllm.kv_usage_fallback = builtin_spec("vllm:gpu_cache_usage_perc");
  vllm.lora = builtin_spec("vllm:lora_requests_info");
  vllm.cache_info = builtin_spec("vllm:cache_config_info");
  vllm.cache_block_size_label = "block_size";
  vllm.cache_num_blocks_label = "num_gpu_blocks";
  configs.push_back(std::move(vllm));

  EngineMetricsConfig sglang;
  sglang.name = "sglang";
  sglang.queued = builtin_spec("sglang:num_queue_reqs");
  sglang.running = builtin_spec("sglang:num_running_reqs");
  sglang.kv_usage = builtin_spec("sglang:token_usage");
  sglang.cache_info = builtin_spec("sglang:cache_config_info");
  sglang.cache_block_size_label = "page_size";
  sglang.cache_num_blocks_label = "num_pages";
  configs.push_back(std::move(sglang));

  EngineMetricsConfig trtllm;
  trtllm.name = "trtllm-serve";
  trtllm.queued = builtin_spec("trtllm_num_requests_waiting");
  trtllm.running = builtin_spec("trtllm_num_requests_running");
  trtllm.kv_usage = builtin_spec("trtllm_kv_cache_utilization");
  trtllm.cache_block_size_spec = builtin_spec("trtllm_kv_cache_tokens_per_block");
  trtllm.cache_num_blocks_spec = builtin_spec("trtllm_kv_cache_max_blocks");
  configs.push_back(std::move(trtllm));

  EngineMetricsConfig triton;
  triton.name = "triton-tensorrt-llm";
  triton.queued = builtin_spec("nv_trt_llm_request_metrics{request_type=waiting}");
  triton.running = builtin_spec("nv_trt_llm_request_metrics{request_type=scheduled}");
  triton.kv_usage = builtin_spec("nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=fraction}");
  triton.cache_block_size_spec =
      builtin_spec("nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=tokens_per}");
  triton.cache_num_blocks_spec =
      builtin_spec("nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=max}");
  configs.push_back(std::move(triton));
  return configs;
}

// A count from a gauge value: whole part, 0 for NaN, infinities and negatives, capped at INT_MAX.
int to_count(double value) {
  if (!(value >= 0)) return 0;
  if (value >= static_cast<double>(INT_MAX)) return INT_MAX;
  return static_cast<int>(value);
}

// A count from a label value such as "16"; 0 when absent or not a non-negative integer ("None").
int label_count(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  int value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 0) return 0;
  return value;
}

// "a, b,,c " -> {"a", "b", "c"}.
std::vector<std::string> split_adapters(std::string_view list) {
  std::vector<std::string> names;
  while (!list.empty()) {
    std::size_t comma = list.find(',');
    std::string_view piece = list.substr(0, comma);
    while (!piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
    while (!piece.empty() && piece.back() == ' ') piece.remove_suffix(1);
    if (!piece.empty()) names.emplace_back(piece);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return names;
}

void assign_label(std::string& out, const prom::Sample& sample, std::string_view label) {
  out.clear();
  if (label.empty()) return;
  if (auto value = sample.labels.find(label)) out.assign(*value);
}

struct JsonKey {
  const char* key;
  std::optional<prom::MetricSpec> EngineMetricsConfig::*spec;
  std::string EngineMetricsConfig::*label;
};

constexpr JsonKey kJsonKeys[] = {
    {"queuedRequestsSpec", &EngineMetricsConfig::queued, nullptr},
    {"runningRequestsSpec", &EngineMetricsConfig::running, nullptr},
    {"kvUsageSpec", &EngineMetricsConfig::kv_usage, nullptr},
    {"loraSpec", &EngineMetricsConfig::lora, nullptr},
    {"cacheInfoSpec", &EngineMetricsConfig::cache_info, nullptr},
    {"cacheBlockSizeLabelName", nullptr, &EngineMetricsConfig::cache_block_size_label},
    {"cacheNumBlocksLabelName", nullptr, &EngineMetricsConfig::cache_num_blocks_label},
    {"cacheBlockSizeSpec", &EngineMetricsConfig::cache_block_size_spec, nullptr},
    {"cacheNumBlocksSpec", &EngineMetricsConfig::cache_num_blocks_spec, nullptr},
};

Status entry_error(std::size_t index, std::string_view name, std::string_view message) {
  std::string text = "engineConfigs[" + std::to_string(index) + "]";
  if (!name.empty()) text += " (" + std::string(name) + ")";
  text += ": ";
  text += message;
  return Status::bad_request(std::move(text));
}

}  // namespace

std::string_view metric_kind_name(MetricKind kind) {
  switch (kind) {
    case MetricKind::kQueued:
      return "queued";
    case MetricKind::kRunning:
      return "running";
    case MetricKind::kKvUsage:
      return "kv_usage";
    case MetricKind::kLora:
      return "lora";
    case MetricKind::kCacheInfo:
      return "cache_info";
    case MetricKind::kCacheBlockSize:
      return "cache_block_size";
    case MetricKind::kCacheNumBlocks:
      return "cache_num_blocks";
  }
  return "unknown";
}

MetricSet EngineMetricsConfig::enabled() const {
  MetricSet set = 0;
  if (queued) set |= bit(MetricKind::kQueued);
  if (running) set |= bit(MetricKind::kRunning);
  if (kv_usage || kv_usage_fallback) set |= bit(MetricKind::kKvUsage);
  if (lora) set |= bit(MetricKind::kLora);
  if (cache_info) set |= bit(MetricKind::kCacheInfo);
  if (cache_block_size_spec) set |= bit(MetricKind::kCacheBlockSize);
  if (cache_num_blocks_spec) set |= bit(MetricKind::kCacheNumBlocks);
  return set;
}

std::string EngineMetricsConfig::spec_text(MetricKind kind) const {
  const std::optional<prom::MetricSpec>* spec = nullptr;
  switch (kind) {
    case MetricKind::kQueued:
      spec = &queued;
      break;
    case MetricKind::kRunning:
      spec = &running;
      break;
    case MetricKind::kKvUsage:
      if (kv_usage && kv_usage_fallback) {
        return kv_usage->to_string() + " or " + kv_usage_fallback->to_string();
      }
      spec = kv_usage ? &kv_usage : &kv_usage_fallback;
      break;
    case MetricKind::kLora:
      spec = &lora;
      break;
    case MetricKind::kCacheInfo:
      spec = &cache_info;
      break;
    case MetricKind::kCacheBlockSize:
      spec = &cache_block_size_spec;
      break;
    case MetricKind::kCacheNumBlocks:
      spec = &cache_num_blocks_spec;
      break;
  }
  return spec != nullptr && *spec ? (*spec)->to_string() : std::string();
}

const std::vector<EngineMetricsConfig>& builtin_engine_configs() {
  static const std::vector<EngineMetricsConfig> configs = make_builtins();
  return configs;
}

EngineMappings::EngineMappings() {
  for (const auto& config : builtin_engine_configs()) configs_.emplace(config.name, config);
}

Result<EngineMappings> EngineMappings::from_json(const nlohmann::json& engine_configs) {
  EngineMappings mappings;
  if (engine_configs.is_null()) return mappings;
  if (!engine_configs.is_array()) {
    return Status::bad_request("engineConfigs: must be a list of engine configurations");
  }
  std::vector<std::string> seen;
  for (std::size_t index = 0; index < engine_configs.size(); ++index) {
    const auto& entry = engine_configs[index];
    if (!entry.is_object()) return entry_error(index, "", "must be an object");
    auto name_it = entry.find("name");
    if (name_it == entry.end() || !name_it->is_string() ||
        name_it->get_ref<const std::string&>().empty()) {
      return entry_error(index, "", "`name` is required and must be a non-empty string");
    }
    EngineMetricsConfig config;
    config.name = name_it->get<std::string>();
    if (std::find(seen.begin(), seen.end(), config.name) != seen.end()) {
      return entry_error(index, config.name, "duplicate engine name");
    }
    seen.push_back(config.name);
    for (const auto& [key, value] : entry.items()) {
      if (key == "name") continue;
      const JsonKey* known = nullptr;
      for (const auto& candidate : kJsonKeys) {
        if (key == candidate.key) known = &candidate;
      }
      if (known == nullptr) return entry_error(index, config.name, "unknown key `" + key + "`");
      if (!value.is_string()) {
        return entry_error(index, config.name, "`" + key + "` must be a string");
      }
      const auto& text = value.get_ref<const std::string&>();
      if (known->label != nullptr) {
        config.*(known->label) = text;
        continue;
      }
      if (text.empty()) continue;  // "" disables the metric
      auto spec = prom::parse_metric_spec(text);
      if (!spec.ok()) {
        return entry_error(index, config.name, "`" + key + "`: " + spec.status().message());
      }
      config.*(known->spec) = std::move(*spec);
    }
    mappings.set(std::move(config));
  }
  return mappings;
}

void EngineMappings::set(EngineMetricsConfig config) {
  std::string name = config.name;
  configs_.insert_or_assign(std::move(name), std::move(config));
}

const EngineMetricsConfig* EngineMappings::find(std::string_view engine_type) const {
  auto it = configs_.find(engine_type);
  return it == configs_.end() ? nullptr : &it->second;
}

const EngineMetricsConfig& EngineMappings::find_or_default(std::string_view engine_type) const {
  if (const auto* config = find(engine_type)) return *config;
  if (const auto* config = find(kDefaultEngineType)) return *config;
  return builtin_engine_configs().front();  // "vllm", for a user set that removed nothing
}

std::vector<std::string> EngineMappings::names() const {
  std::vector<std::string> names;
  for (const auto& [name, config] : configs_) names.push_back(name);
  return names;
}

std::string describe_metrics(MetricSet set, const EngineMetricsConfig& config) {
  std::string text;
  for (MetricKind kind : kAllMetricKinds) {
    if ((set & bit(kind)) == 0) continue;
    if (!text.empty()) text += ", ";
    text += metric_kind_name(kind);
    text += " (";
    text += config.spec_text(kind);
    text += ")";
  }
  return text;
}

// ---- Extractor ----

Extractor::Extractor(EngineMetricsConfig config)
    : config_(std::move(config)), callback_([this](const prom::Sample& s) { on_sample(s); }) {
  auto spec_ptr = [](const std::optional<prom::MetricSpec>& spec) {
    return spec ? &*spec : nullptr;
  };
  queued_.spec = spec_ptr(config_.queued);
  running_.spec = spec_ptr(config_.running);
  kv_usage_.spec = spec_ptr(config_.kv_usage);
  kv_usage_fallback_.spec = spec_ptr(config_.kv_usage_fallback);
  lora_.spec = spec_ptr(config_.lora);
  cache_info_.spec = spec_ptr(config_.cache_info);
  block_size_.spec = spec_ptr(config_.cache_block_size_spec);
  num_blocks_.spec = spec_ptr(config_.cache_num_blocks_spec);
}

void Extractor::feed(std::string_view chunk) { parser_.feed(chunk, callback_); }

void Extractor::reset() {
  parser_.finish([](const prom::Sample&) {});
  clear_slots();
}

void Extractor::clear_slots() {
  for (Slot* slot : {&queued_, &running_, &kv_usage_, &kv_usage_fallback_, &lora_, &cache_info_,
                     &block_size_, &num_blocks_}) {
    slot->found = false;
  }
}

void Extractor::on_sample(const prom::Sample& sample) {
  const std::int64_t timestamp = sample.timestamp_ms.value_or(kNoTimestamp);
  // Newest timestamp wins; `>=` lets a later series win a tie.
  auto by_timestamp = [&](Slot& slot) {
    if (slot.spec == nullptr || !slot.spec->matches(sample)) return false;
    if (slot.found && timestamp < slot.timestamp_ms) return false;
    slot.found = true;
    slot.timestamp_ms = timestamp;
    slot.value = sample.value;
    return true;
  };
  by_timestamp(queued_);
  by_timestamp(running_);
  by_timestamp(kv_usage_);
  by_timestamp(kv_usage_fallback_);
  by_timestamp(block_size_);
  by_timestamp(num_blocks_);
  if (by_timestamp(cache_info_)) {
    assign_label(cache_info_.label_a, sample, config_.cache_block_size_label);
    assign_label(cache_info_.label_b, sample, config_.cache_num_blocks_label);
  }
  // LoRA: the value is the series' last-update time, so the largest value is the newest state.
  // NaN never wins (the comparison is false) unless it is the only series.
  if (lora_.spec != nullptr && lora_.spec->matches(sample) &&
      (!lora_.found || sample.value >= lora_.value || std::isnan(lora_.value))) {
    lora_.found = true;
    lora_.value = sample.value;
    assign_label(lora_.label_a, sample, "running_lora_adapters");
    assign_label(lora_.label_b, sample, "waiting_lora_adapters");
    assign_label(lora_.label_c, sample, "max_lora");
  }
}

Result<Extraction> Extractor::finish(const EndpointMetrics& base) {
  Extraction out;
  out.parse_stats = parser_.finish(callback_);
  out.metrics = base;
  const auto& stats = out.parse_stats;
  if (stats.skipped_lines > 0 && stats.samples == 0 && stats.metadata_lines == 0) {
    std::string message = "not Prometheus text: ";
    message += stats.errors.empty() ? std::string("no valid line") : stats.errors.front();
    clear_slots();
    return Status(502, std::move(message));
  }

  auto& metrics = out.metrics;
  if (queued_.found) {
    metrics.waiting_requests = to_count(queued_.value);
    out.found |= bit(MetricKind::kQueued);
  }
  if (running_.found) {
    metrics.running_requests = to_count(running_.value);
    out.found |= bit(MetricKind::kRunning);
  }
  const Slot* kv =
      kv_usage_.found ? &kv_usage_ : (kv_usage_fallback_.found ? &kv_usage_fallback_ : nullptr);
  if (kv != nullptr) {
    metrics.kv_cache_usage = std::isnan(kv->value) ? 0.0 : std::clamp(kv->value, 0.0, 1.0);
    out.found |= bit(MetricKind::kKvUsage);
  }
  if (lora_.found) {
    metrics.running_adapters = split_adapters(lora_.label_a);
    metrics.waiting_adapters = split_adapters(lora_.label_b);
    metrics.max_active_adapters = label_count(lora_.label_c);
    out.found |= bit(MetricKind::kLora);
  }
  if (cache_info_.found) {
    metrics.cache_block_size = label_count(cache_info_.label_a);
    metrics.cache_num_blocks = label_count(cache_info_.label_b);
    out.found |= bit(MetricKind::kCacheInfo);
  }
  if (block_size_.found) {
    metrics.cache_block_size = to_count(block_size_.value);
    out.found |= bit(MetricKind::kCacheBlockSize);
  }
  if (num_blocks_.found) {
    metrics.cache_num_blocks = to_count(num_blocks_.value);
    out.found |= bit(MetricKind::kCacheNumBlocks);
  }
  out.missing = config_.enabled() & ~out.found;
  clear_slots();

  if (out.found == 0 && config_.enabled() != 0) {
    return Status(502, "the scrape holds none of the " + config_.name +
                           " metrics: " + describe_metrics(out.missing, config_));
  }
  return out;
}

Result<EngineMappings> engine_mappings_from_config(const api::EndpointPickerConfig& config) {
  for (const auto& plugin : config.plugins) {
    if (plugin.type != "core-metrics-extractor" || !plugin.parameters.is_object()) continue;
    auto it = plugin.parameters.find("engineConfigs");
    if (it == plugin.parameters.end()) continue;
    auto mappings = EngineMappings::from_json(*it);
    if (!mappings) {
      return Status::bad_request(fmt::format("plugin '{}': parameter 'engineConfigs': {}",
                                             plugin.name, mappings.status().message()));
    }
    return mappings;
  }
  return EngineMappings();
}

}  // namespace infergate::datastore
