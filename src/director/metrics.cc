#include "director/metrics.h"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

namespace infergate::director {
namespace {

// Bucket bounds inside the ranges GIE documents (metrics facts §8; exact lists not recorded).
std::vector<double> duration_buckets() {
  return {0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8,  1.0,  1.25, 1.5, 2,
          3,     4,     5,    6,   8,   10,  15,  20,   30,   45,   60,  120,
          180,   240,   300,  360, 480, 600, 900, 1200, 1800, 2700, 3600};
}
std::vector<double> ttft_buckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
          0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
}
std::vector<double> ntpot_buckets() {
  return {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0};
}
std::vector<double> request_size_buckets() {
  std::vector<double> bounds;
  for (double bytes = 64; bytes <= 1024.0 * 1024 * 1024; bytes *= 2) bounds.push_back(bytes);
  return bounds;
}
std::vector<double> response_size_buckets() {
  return {1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
}
std::vector<double> token_buckets() {
  std::vector<double> bounds{1};
  for (double tokens = 8; tokens <= 1048576; tokens *= 2) bounds.push_back(tokens);
  return bounds;
}
// 0.1 ms … 100 ms.
std::vector<double> scheduler_buckets() {
  return {0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1};
}

constexpr std::array<std::string_view, 5> kExtensionPoints = {"ProfilePicker", "Filter", "Scorer",
                                                              "Picker", "PreRequest"};

std::size_t extension_point_index(std::string_view point) {
  for (std::size_t i = 0; i < kExtensionPoints.size(); ++i) {
    if (kExtensionPoints[i] == point) return i;
  }
  return kExtensionPoints.size();
}

using Labels = std::vector<std::string>;

std::atomic<std::uint64_t> next_metrics_id{1};

// Per-thread caches of the series requests charge most often: a hit is a few compares, with no
// lock, no hashing of label values and no key to build. Entries name their DirectorMetrics by id
// (addresses are reused) and hold every label value they stand for (so an endpoint replaced by
// another at the same address is no hit).
struct RequestCacheEntry {
  std::uint64_t owner = 0;
  int priority = 0;
  std::string model;
  std::string target_model;
  DirectorMetrics::RequestSeries found{};
};
struct AttemptCacheEntry {
  std::uint64_t owner = 0;
  const datastore::EndpointInfo* endpoint = nullptr;
  std::uint16_t port = 0;
  std::string target_model;
  std::string pod_name;
  std::string namespace_name;
  prom::Counter* counter = nullptr;
};
constexpr std::size_t kRequestCacheEntries = 8;   // pairs in use at once (searched in order)
constexpr std::size_t kAttemptCacheEntries = 64;  // endpoints (indexed by address)
thread_local std::array<RequestCacheEntry, kRequestCacheEntries> request_cache;
thread_local std::size_t request_cache_next = 0;  // the entry replaced next
thread_local std::array<AttemptCacheEntry, kAttemptCacheEntries> attempt_cache;

}  // namespace

DirectorMetrics::DirectorMetrics(prom::Registry& registry, const scheduling::SchedulerSetup& setup,
                                 const datastore::Datastore& store, std::string pool_name,
                                 const Clock& clock, Duration staleness)
    : request_total(registry.counter("inference_objective_request_total",
                                     "Counter of inference objective requests broken out for each "
                                     "model and target model.",
                                     Labels{"model_name", "target_model_name", "priority"})),
      request_error_total(registry.counter(
          "inference_objective_request_error_total",
          "Counter of inference objective requests errors broken out for each model and target "
          "model.",
          Labels{"model_name", "target_model_name", "error_code"})),
      request_duration_seconds(registry.histogram(
          "inference_objective_request_duration_seconds",
          "Inference objective response latency distribution in seconds for each model and "
          "target model.",
          Labels{"model_name", "target_model_name"}, duration_buckets())),
      request_ttft_seconds(registry.histogram(
          "inference_objective_request_ttft_seconds",
          "Inference objective time to first byte of the response, in seconds, for each model "
          "and target model.",
          Labels{"model_name", "target_model_name"}, ttft_buckets())),
      normalized_time_per_output_token_seconds(registry.histogram(
          "inference_objective_normalized_time_per_output_token_seconds",
          "Inference objective latency divided by number of output tokens in seconds for each "
          "model and target model.",
          Labels{"model_name", "target_model_name"}, ntpot_buckets())),
      request_sizes(registry.histogram(
          "inference_objective_request_sizes",
          "Inference objective requests size distribution in bytes for each model and target "
          "model.",
          Labels{"model_name", "target_model_name"}, request_size_buckets())),
      response_sizes(registry.histogram(
          "inference_objective_response_sizes",
          "Inference objective responses size distribution in bytes for each model and target "
          "model.",
          Labels{"model_name", "target_model_name"}, response_size_buckets())),
      input_tokens(registry.histogram(
          "inference_objective_input_tokens",
          "Inference objective input token count distribution for requests in each model.",
          Labels{"model_name", "target_model_name"}, token_buckets())),
      output_tokens(registry.histogram(
          "inference_objective_output_tokens",
          "Inference objective output token count distribution for requests in each model.",
          Labels{"model_name", "target_model_name"}, token_buckets())),
      prompt_cached_tokens(registry.histogram(
          "inference_objective_prompt_cached_tokens",
          "Inference objective prompt cached token count distribution for requests in each "
          "model.",
          Labels{"model_name", "target_model_name"}, token_buckets())),
      running_requests(registry.gauge("inference_objective_running_requests",
                                      "Inference objective number of running requests in each "
                                      "model.",
                                      Labels{"model_name"})),
      scheduler_e2e_duration_seconds(registry.histogram(
          "inference_extension_scheduler_e2e_duration_seconds",
          "End-to-end scheduling latency distribution in seconds.", Labels{}, scheduler_buckets())),
      scheduler_attempts_total(registry.counter(
          "inference_extension_scheduler_attempts_total", "Total number of scheduling attempts.",
          Labels{"status", "target_model_name", "pod_name", "namespace", "port"})),
      plugin_duration_seconds(registry.histogram(
          "inference_extension_plugin_duration_seconds",
          "Plugin processing latency distribution in seconds for each extension point, plugin "
          "type and plugin name.",
          Labels{"extension_point", "plugin_type", "plugin_name"}, scheduler_buckets())),
      model_rewrite_decisions_total(
          registry.counter("inference_extension_model_rewrite_decisions_total",
                           "Total number of model rewrite decisions.",
                           Labels{"model_rewrite_name", "model_name", "target_model"})),
      scheduler_e2e(scheduler_e2e_duration_seconds.with({})),
      id_(next_metrics_id.fetch_add(1, std::memory_order_relaxed)) {
  // Every configured plugin gets its series for each extension point it can act at.
  for (const auto& plugin : setup.plugins) {
    std::array<prom::Histogram*, 5> series{};
    auto resolve = [&](std::string_view point) {
      series[extension_point_index(point)] =
          &plugin_duration_seconds.with({point, plugin->type(), plugin->name()});
    };
    switch (plugin->kind()) {
      case scheduling::PluginKind::kProfileHandler:
        resolve("ProfilePicker");
        break;
      case scheduling::PluginKind::kFilter:
        resolve("Filter");
        break;
      case scheduling::PluginKind::kScorer:
        resolve("Scorer");
        break;
      case scheduling::PluginKind::kPicker:
        resolve("Picker");
        break;
    }
    if (dynamic_cast<const scheduling::PreRequestHook*>(plugin.get()) != nullptr) {
      resolve("PreRequest");
    }
    plugin_series_.emplace(plugin.get(), series);
  }

  registry
      .gauge("inference_extension_info", "General information of the current build.",
             Labels{"commit", "build_ref"})
      .with({"unknown", "infergate"})
      .set(1);

  // Pool gauges, recomputed at scrape time over endpoints with fresh metrics (metrics facts §8.2).
  auto& average_kv = registry.gauge("inference_pool_average_kv_cache_utilization",
                                    "The average kv cache utilization for an inference server "
                                    "pool.",
                                    Labels{"name"});
  auto& average_queue = registry.gauge("inference_pool_average_queue_size",
                                       "The average number of requests pending in the model "
                                       "server queue.",
                                       Labels{"name"});
  auto& average_running = registry.gauge("inference_pool_average_running_requests",
                                         "The average number of requests currently being "
                                         "processed by the model servers.",
                                         Labels{"name"});
  auto& ready_pods =
      registry.gauge("inference_pool_ready_pods",
                     "The number of ready pods in the inference server pool.", Labels{"name"});
  auto& per_pod_queue = registry.gauge("inference_pool_per_pod_queue_size",
                                       "The total number of requests pending in the model server "
                                       "queue for each underlying pod.",
                                       Labels{"name", "model_server_pod"});
  registry.add_collect_hook(
      [average_kv = &average_kv, average_queue = &average_queue, average_running = &average_running,
       ready_pods = &ready_pods, per_pod_queue = &per_pod_queue, store = &store, clock = &clock,
       pool_name, staleness, published = std::make_shared<std::vector<std::string>>()] {
        auto snapshot = store->snapshot();
        const TimePoint now = clock->now();
        double kv_sum = 0, queue_sum = 0, running_sum = 0;
        int fresh = 0;
        // Only this pool's series: several pools (one director each) share the family.
        for (const std::string& pod : *published) per_pod_queue->remove({pool_name, pod});
        published->clear();
        for (const auto& endpoint : snapshot->endpoints) {
          auto metrics = endpoint.fresh_metrics(now, staleness);
          if (!metrics) continue;
          ++fresh;
          kv_sum += metrics->kv_cache_usage;
          queue_sum += metrics->waiting_requests;
          running_sum += metrics->running_requests;
          per_pod_queue->with({pool_name, endpoint.info->name}).set(metrics->waiting_requests);
          published->push_back(endpoint.info->name);
        }
        const double count = fresh > 0 ? fresh : 1;
        average_kv->with({pool_name}).set(kv_sum / count);
        average_queue->with({pool_name}).set(queue_sum / count);
        average_running->with({pool_name}).set(running_sum / count);
        ready_pods->with({pool_name}).set(static_cast<double>(snapshot->endpoints.size()));
      });
}

void DirectorMetrics::observe(const scheduling::Plugin& plugin, std::string_view extension_point,
                              Duration elapsed) const {
  auto it = plugin_series_.find(&plugin);
  const std::size_t index = extension_point_index(extension_point);
  if (it == plugin_series_.end() || index >= kExtensionPoints.size() ||
      it->second[index] == nullptr) {
    return;
  }
  it->second[index]->observe(std::chrono::duration<double>(elapsed).count());
}

const ModelSeries& DirectorMetrics::model_series(std::string_view model,
                                                 std::string_view target_model) const {
  thread_local std::string key;
  key.clear();
  fmt::format_to(std::back_inserter(key), "{}:{}{}", model.size(), model, target_model);
  {
    std::shared_lock lock(model_series_mu_);
    if (auto found = model_series_.find(std::string_view(key)); found != model_series_.end()) {
      return *found->second;
    }
  }
  auto series = std::make_unique<const ModelSeries>(ModelSeries{
      .running_requests = running_requests.with({model}),
      .request_sizes = request_sizes.with({model, target_model}),
      .request_duration_seconds = request_duration_seconds.with({model, target_model}),
      .request_ttft_seconds = request_ttft_seconds.with({model, target_model}),
      .response_sizes = response_sizes.with({model, target_model}),
      .input_tokens = input_tokens.with({model, target_model}),
      .output_tokens = output_tokens.with({model, target_model}),
      .prompt_cached_tokens = prompt_cached_tokens.with({model, target_model}),
      .normalized_time_per_output_token_seconds =
          normalized_time_per_output_token_seconds.with({model, target_model}),
      .model_server_errors = request_error_total.with({model, target_model, "ModelServerError"}),
  });
  std::unique_lock lock(model_series_mu_);
  // Another thread may have inserted the pair meanwhile: keep the first (the series are the same).
  auto [entry, inserted] = model_series_.try_emplace(key, std::move(series));
  return *entry->second;
}

DirectorMetrics::RequestSeries DirectorMetrics::request_series(std::string_view model,
                                                               std::string_view target_model,
                                                               int priority) const {
  for (const RequestCacheEntry& entry : request_cache) {
    if (entry.owner == id_ && entry.priority == priority && entry.model == model &&
        entry.target_model == target_model) {
      return entry.found;
    }
  }
  const std::string priority_label = std::to_string(priority);
  const RequestSeries found{&model_series(model, target_model),
                            &request_total.with({model, target_model, priority_label})};
  RequestCacheEntry& entry = request_cache[request_cache_next];
  request_cache_next = (request_cache_next + 1) % kRequestCacheEntries;
  entry.owner = id_;
  entry.priority = priority;
  entry.model.assign(model);
  entry.target_model.assign(target_model);
  entry.found = found;
  return found;
}

prom::Counter& DirectorMetrics::attempt_success(std::string_view target_model,
                                                const datastore::EndpointInfo& endpoint) const {
  const datastore::EndpointSpec& spec = endpoint.spec;
  AttemptCacheEntry& entry =
      attempt_cache[(reinterpret_cast<std::uintptr_t>(&endpoint) >> 4) % kAttemptCacheEntries];
  if (entry.owner == id_ && entry.endpoint == &endpoint && entry.port == spec.port &&
      entry.target_model == target_model && entry.pod_name == spec.pod_name &&
      entry.namespace_name == spec.namespace_name) {
    return *entry.counter;
  }
  prom::Counter& counter = scheduler_attempts_total.with(
      {"success", target_model, spec.pod_name, spec.namespace_name, std::to_string(spec.port)});
  entry.owner = id_;
  entry.endpoint = &endpoint;
  entry.port = spec.port;
  entry.target_model.assign(target_model);
  entry.pod_name = spec.pod_name;
  entry.namespace_name = spec.namespace_name;
  entry.counter = &counter;
  return counter;
}

}  // namespace infergate::director
