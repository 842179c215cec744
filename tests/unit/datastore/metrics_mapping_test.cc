// Engine metric mappings (metrics facts §5–§6): built-ins, engineConfigs decoding, and a golden
// table of scrapes of each engine run through the Extractor, fed whole and in small pieces.
#include "datastore/metrics_mapping.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace infergate::datastore {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

std::string spec_or_empty(const std::optional<prom::MetricSpec>& spec) {
  return spec ? spec->to_string() : "";
}

TEST(EngineMappingsTest, BuiltinsAreTheReferenceDefaults) {
  EngineMappings mappings;
  EXPECT_EQ(mappings.names(), (Strings{"sglang", "triton-tensorrt-llm", "trtllm-serve", "vllm"}));

  const auto* vllm = mappings.find("vllm");
  ASSERT_NE(vllm, nullptr);
  EXPECT_EQ(spec_or_empty(vllm->queued), "vllm:num_requests_waiting");
  EXPECT_EQ(spec_or_empty(vllm->running), "vllm:num_requests_running");
  EXPECT_EQ(spec_or_empty(vllm->kv_usage), "vllm:kv_cache_usage_perc");
  EXPECT_EQ(spec_or_empty(vllm->kv_usage_fallback), "vllm:gpu_cache_usage_perc");
  EXPECT_EQ(spec_or_empty(vllm->lora), "vllm:lora_requests_info");
  EXPECT_EQ(spec_or_empty(vllm->cache_info), "vllm:cache_config_info");
  EXPECT_EQ(vllm->cache_block_size_label, "block_size");
  EXPECT_EQ(vllm->cache_num_blocks_label, "num_gpu_blocks");
  EXPECT_FALSE(vllm->cache_block_size_spec);

  const auto* sglang = mappings.find("sglang");
  ASSERT_NE(sglang, nullptr);
  EXPECT_EQ(spec_or_empty(sglang->queued), "sglang:num_queue_reqs");
  EXPECT_EQ(spec_or_empty(sglang->running), "sglang:num_running_reqs");
  EXPECT_EQ(spec_or_empty(sglang->kv_usage), "sglang:token_usage");
  EXPECT_FALSE(sglang->lora);
  EXPECT_EQ(spec_or_empty(sglang->cache_info), "sglang:cache_config_info");
  EXPECT_EQ(sglang->cache_block_size_label, "page_size");
  EXPECT_EQ(sglang->cache_num_blocks_label, "num_pages");

  const auto* trtllm = mappings.find("trtllm-serve");
  ASSERT_NE(trtllm, nullptr);
  EXPECT_EQ(spec_or_empty(trtllm->queued), "trtllm_num_requests_waiting");
  EXPECT_EQ(spec_or_empty(trtllm->running), "trtllm_num_requests_running");
  EXPECT_EQ(spec_or_empty(trtllm->kv_usage), "trtllm_kv_cache_utilization");
  EXPECT_EQ(spec_or_empty(trtllm->cache_block_size_spec), "trtllm_kv_cache_tokens_per_block");
  EXPECT_EQ(spec_or_empty(trtllm->cache_num_blocks_spec), "trtllm_kv_cache_max_blocks");
  EXPECT_FALSE(trtllm->cache_info);
  EXPECT_FALSE(trtllm->lora);

  const auto* triton = mappings.find("triton-tensorrt-llm");
  ASSERT_NE(triton, nullptr);
  EXPECT_EQ(spec_or_empty(triton->queued), "nv_trt_llm_request_metrics{request_type=\"waiting\"}");
  EXPECT_EQ(spec_or_empty(triton->running),
            "nv_trt_llm_request_metrics{request_type=\"scheduled\"}");
  EXPECT_EQ(spec_or_empty(triton->kv_usage),
            "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"fraction\"}");
  EXPECT_EQ(spec_or_empty(triton->cache_block_size_spec),
            "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"tokens_per\"}");
  EXPECT_EQ(spec_or_empty(triton->cache_num_blocks_spec),
            "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"max\"}");

  EXPECT_EQ(mappings.find("tgi"), nullptr);
  EXPECT_EQ(mappings.find_or_default("tgi").name, "vllm");
}

TEST(EngineMappingsTest, UserEntryReplacesTheBuiltinWholeAndEmptyDisables) {
  auto mappings = EngineMappings::from_json(json::parse(R"([
    {"name": "vllm", "queuedRequestsSpec": "vllm:num_requests_waiting{engine=\"0\"}",
     "runningRequestsSpec": "vllm:num_requests_running", "kvUsageSpec": "", "loraSpec": ""},
    {"name": "my-engine", "queuedRequestsSpec": "q", "runningRequestsSpec": "r",
     "kvUsageSpec": "kv", "cacheInfoSpec": "info", "cacheBlockSizeLabelName": "bs",
     "cacheNumBlocksLabelName": "nb", "cacheBlockSizeSpec": "", "cacheNumBlocksSpec": ""}
  ])"));
  ASSERT_TRUE(mappings.ok()) << mappings.status().message();
  const auto* vllm = mappings->find("vllm");
  ASSERT_NE(vllm, nullptr);
  EXPECT_EQ(spec_or_empty(vllm->queued), "vllm:num_requests_waiting{engine=\"0\"}");
  EXPECT_FALSE(vllm->kv_usage);
  EXPECT_FALSE(vllm->kv_usage_fallback);  // replaced whole: no built-in leftovers
  EXPECT_FALSE(vllm->lora);
  EXPECT_FALSE(vllm->cache_info);
  EXPECT_EQ(vllm->cache_block_size_label, "");
  EXPECT_EQ(vllm->enabled(), bit(MetricKind::kQueued) | bit(MetricKind::kRunning));

  const auto* mine = mappings->find("my-engine");
  ASSERT_NE(mine, nullptr);
  EXPECT_EQ(spec_or_empty(mine->cache_info), "info");
  EXPECT_EQ(mine->cache_block_size_label, "bs");
  EXPECT_EQ(mine->cache_num_blocks_label, "nb");
  EXPECT_NE(mappings->find("sglang"), nullptr);  // untouched built-ins stay

  EXPECT_TRUE(EngineMappings::from_json(json()).ok());
  EXPECT_TRUE(EngineMappings::from_json(json::array()).ok());
}

TEST(EngineMappingsTest, DecodingErrorsNameTheEntryAndKey) {
  struct Case {
    const char* description;
    const char* input;
    const char* expected_message;
  };
  const Case cases[] = {
      {"not a list", R"({"name": "x"})", "engineConfigs: must be a list"},
      {"entry not an object", R"(["vllm"])", "engineConfigs[0]: must be an object"},
      {"missing name", R"([{"queuedRequestsSpec": "q"}])", "engineConfigs[0]: `name` is required"},
      {"empty name", R"([{"name": ""}])", "engineConfigs[0]: `name` is required"},
      {"unknown key", R"([{"name": "a", "queuedRequestSpec": "q"}])",
       "engineConfigs[0] (a): unknown key `queuedRequestSpec`"},
      {"wrong type", R"([{"name": "a"}, {"name": "b", "kvUsageSpec": 1}])",
       "engineConfigs[1] (b): `kvUsageSpec` must be a string"},
      {"bad spec", R"([{"name": "a", "runningRequestsSpec": "r{x!=\"1\"}"}])",
       "engineConfigs[0] (a): `runningRequestsSpec`: "},
      {"duplicate", R"([{"name": "a"}, {"name": "a"}])", "engineConfigs[1] (a): duplicate"},
  };
  for (const auto& test_case : cases) {
    auto result = EngineMappings::from_json(json::parse(test_case.input));
    ASSERT_FALSE(result.ok()) << test_case.description;
    EXPECT_EQ(result.status().http_status(), 400) << test_case.description;
    EXPECT_EQ(result.status().message().rfind(test_case.expected_message, 0), 0u)
        << test_case.description << ": " << result.status().message();
  }
}

// ---- extraction golden table ----

struct Expected {
  int waiting = 0;
  int running = 0;
  double kv = 0;
  Strings running_adapters;
  Strings waiting_adapters;
  int max_adapters = 0;
  int block_size = 0;
  int num_blocks = 0;
};

struct ExtractCase {
  const char* description;
  const char* engine;
  const char* scrape;
  Expected expected;
  MetricSet missing = 0;
  const char* error = nullptr;  // prefix of the expected error message, if the scrape fails
};

constexpr MetricSet kQueued = bit(MetricKind::kQueued);
constexpr MetricSet kRunning = bit(MetricKind::kRunning);
constexpr MetricSet kKv = bit(MetricKind::kKvUsage);
constexpr MetricSet kLora = bit(MetricKind::kLora);
constexpr MetricSet kCacheInfo = bit(MetricKind::kCacheInfo);

const ExtractCase kExtractCases[] = {
    {"vLLM V1 with engine labels, LoRA and cache config",
     "vllm",
     R"(# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.4375
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 1.7301e+09
vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql-lora, chat-lora",waiting_lora_adapters="tools"} 1.730100005e+09
vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql-lora",waiting_lora_adapters=""} 1.730100002e+09
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",engine="0",gpu_memory_utilization="0.9",num_cpu_blocks="None",num_gpu_blocks="27910"} 1.0
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 12345.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="m"} 0.0
)",
     {.waiting = 3,
      .running = 7,
      .kv = 0.4375,
      .running_adapters = {"sql-lora", "chat-lora"},
      .waiting_adapters = {"tools"},
      .max_adapters = 4,
      .block_size = 16,
      .num_blocks = 27910}},
    {"vLLM 0.9 emits only the old KV name",
     "vllm",
     "vllm:num_requests_running{model_name=\"m\"} 1\n"
     "vllm:num_requests_waiting{model_name=\"m\"} 0\n"
     "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.25\n",
     {.running = 1, .kv = 0.25},
     kLora | kCacheInfo},
    {"vLLM: the new KV name wins over the old one",
     "vllm",
     "vllm:kv_cache_usage_perc 0.5\nvllm:gpu_cache_usage_perc 0.25\nvllm:num_requests_waiting 2\n"
     "vllm:num_requests_running 1\n",
     {.waiting = 2, .running = 1, .kv = 0.5},
     kLora | kCacheInfo},
    {"newest timestamp wins; no timestamp is oldest; ties go to the last seen",
     "vllm",
     "vllm:num_requests_waiting{engine=\"1\"} 9 1700000000500\n"
     "vllm:num_requests_waiting{engine=\"0\"} 4 1700000000900\n"
     "vllm:num_requests_waiting{engine=\"2\"} 11\n"
     "vllm:num_requests_running{engine=\"0\"} 5 1700000000000\n"
     "vllm:num_requests_running{engine=\"1\"} 6 1700000000000\n"
     "vllm:kv_cache_usage_perc{engine=\"0\"} 0.1\n"
     "vllm:kv_cache_usage_perc{engine=\"1\"} 0.2\n",
     {.waiting = 4, .running = 6, .kv = 0.2},
     kLora | kCacheInfo},
    {"LoRA: largest value wins even when listed first; escaped labels unescaped",
     "vllm",
     "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"a\\\"q\\\\b,  c \","
     "waiting_lora_adapters=\" , d,\"} 1730100009\n"
     "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"old\","
     "waiting_lora_adapters=\"\"} 1730100001\n"
     "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"older\","
     "waiting_lora_adapters=\"\"} 1730100000\n"
     "vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0\n",
     {.running_adapters = {"a\"q\\b", "c"}, .waiting_adapters = {"d"}, .max_adapters = 2},
     kCacheInfo},
    {"LoRA: the newest series says no adapters",
     "vllm",
     "vllm:lora_requests_info{max_lora=\"1\",running_lora_adapters=\"x\","
     "waiting_lora_adapters=\"y\"} 100\n"
     "vllm:lora_requests_info{max_lora=\"1\",running_lora_adapters=\"\","
     "waiting_lora_adapters=\"\"} 200\n"
     "vllm:num_requests_waiting 1\n",
     {.waiting = 1, .max_adapters = 1},
     kRunning | kKv | kCacheInfo},
    {"vLLM: num_gpu_blocks not yet known",
     "vllm",
     "vllm:cache_config_info{block_size=\"32\",num_gpu_blocks=\"None\"} 1\n"
     "vllm:num_requests_waiting 0\nvllm:num_requests_running 2\nvllm:kv_cache_usage_perc 1.5\n",
     {.running = 2, .kv = 1.0, .block_size = 32},
     kLora},
    {"SGLang",
     "sglang",
     R"(# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="Qwen/Qwen2.5-7B-Instruct"} 12.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="Qwen/Qwen2.5-7B-Instruct"} 5.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="Qwen/Qwen2.5-7B-Instruct"} 0.62
# TYPE sglang:cache_config_info gauge
sglang:cache_config_info{model_name="Qwen/Qwen2.5-7B-Instruct",num_pages="181043",page_size="1"} 1.0
vllm:num_requests_waiting 99
)",
     {.waiting = 5, .running = 12, .kv = 0.62, .block_size = 1, .num_blocks = 181043}},
    {"trtllm-serve gauges",
     "trtllm-serve",
     "# TYPE trtllm_num_requests_waiting gauge\ntrtllm_num_requests_waiting 2\n"
     "trtllm_num_requests_running 8\ntrtllm_kv_cache_utilization 0.125\n"
     "trtllm_kv_cache_tokens_per_block 32\ntrtllm_kv_cache_max_blocks 4096\n",
     {.waiting = 2, .running = 8, .kv = 0.125, .block_size = 32, .num_blocks = 4096}},
    {"Triton TensorRT-LLM backend by label",
     "triton-tensorrt-llm",
     R"(# TYPE nv_trt_llm_request_metrics gauge
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="context",version="1"} 1
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="scheduled",version="1"} 6
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="max",version="1"} 64
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="active",version="1"} 6
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="waiting",version="1"} 3
# TYPE nv_trt_llm_kv_cache_block_metrics gauge
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="tokens_per",model="tensorrt_llm",version="1"} 64
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="1"} 120
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="free",model="tensorrt_llm",version="1"} 904
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="tensorrt_llm",version="1"} 1024
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="tensorrt_llm",version="1"} 0.1171875
)",
     {.waiting = 3, .running = 6, .kv = 0.1171875, .block_size = 64, .num_blocks = 1024}},
    {"missing families are reported; found ones still count",
     "vllm",
     "vllm:num_requests_running 4\n",
     {.running = 4},
     kQueued | kKv | kLora | kCacheInfo},
    {"garbage lines among good ones are skipped",
     "vllm",
     "vllm:num_requests_waiting 1\nthis is not { prometheus\nvllm:num_requests_running abc\n"
     "vllm:num_requests_running 3\n\x01\x02\xff\n",
     {.waiting = 1, .running = 3},
     kKv | kLora | kCacheInfo},
    {"odd values read as zero counts",
     "vllm",
     "vllm:num_requests_waiting NaN\nvllm:num_requests_running -3\n"
     "vllm:kv_cache_usage_perc NaN\n",
     {},
     kLora | kCacheInfo},
    {"HTML error page is not Prometheus text",
     "vllm",
     "<html>\n<body>502 Bad Gateway</body>\n</html>\n",
     {},
     0,
     "not Prometheus text"},
    {"valid text without any of the engine's metrics",
     "sglang",
     "vllm:num_requests_waiting 1\nvllm:num_requests_running 2\n",
     {},
     0,
     "the scrape holds none of the sglang metrics: queued (sglang:num_queue_reqs)"},
    {"empty body", "trtllm-serve", "", {}, 0, "the scrape holds none of the trtllm-serve"},
};

void expect_metrics(const EndpointMetrics& got, const Expected& expected, const std::string& what) {
  EXPECT_EQ(got.waiting_requests, expected.waiting) << what;
  EXPECT_EQ(got.running_requests, expected.running) << what;
  EXPECT_DOUBLE_EQ(got.kv_cache_usage, expected.kv) << what;
  EXPECT_EQ(got.running_adapters, expected.running_adapters) << what;
  EXPECT_EQ(got.waiting_adapters, expected.waiting_adapters) << what;
  EXPECT_EQ(got.max_active_adapters, expected.max_adapters) << what;
  EXPECT_EQ(got.cache_block_size, expected.block_size) << what;
  EXPECT_EQ(got.cache_num_blocks, expected.num_blocks) << what;
}

TEST(ExtractorTest, GoldenScrapesFedWholeAndInPieces) {
  EngineMappings mappings;
  for (const auto& test_case : kExtractCases) {
    const auto* config = mappings.find(test_case.engine);
    ASSERT_NE(config, nullptr) << test_case.description;
    // One extractor reused across scrapes and piece sizes, as a collector reuses it.
    Extractor extractor(*config);
    const std::string_view scrape = test_case.scrape;
    for (std::size_t piece : {scrape.size() + 1, std::size_t{1}, std::size_t{7}, std::size_t{64}}) {
      const std::string what =
          std::string(test_case.description) + " (pieces of " + std::to_string(piece) + ")";
      for (std::size_t pos = 0; pos < scrape.size(); pos += piece) {
        extractor.feed(scrape.substr(pos, piece));
      }
      auto result = extractor.finish();
      if (test_case.error != nullptr) {
        ASSERT_FALSE(result.ok()) << what;
        EXPECT_EQ(result.status().http_status(), 502) << what;
        EXPECT_EQ(result.status().message().rfind(test_case.error, 0), 0u)
            << what << ": " << result.status().message();
        continue;
      }
      ASSERT_TRUE(result.ok()) << what << ": " << result.status().message();
      expect_metrics(result->metrics, test_case.expected, what);
      EXPECT_EQ(result->missing, test_case.missing) << what;
      EXPECT_EQ(result->found, config->enabled() & ~test_case.missing) << what;
    }
  }
}

TEST(ExtractorTest, MissingFiguresKeepTheBaseValues) {
  EngineMappings mappings;
  Extractor extractor(mappings.find_or_default("vllm"));
  EndpointMetrics base;
  base.waiting_requests = 8;
  base.kv_cache_usage = 0.75;
  base.running_adapters = {"kept"};
  base.cache_block_size = 16;
  base.updated_at = std::chrono::seconds(5);
  extractor.feed("vllm:num_requests_running 2\n");
  auto result = extractor.finish(base);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->metrics.running_requests, 2);
  EXPECT_EQ(result->metrics.waiting_requests, 8);
  EXPECT_DOUBLE_EQ(result->metrics.kv_cache_usage, 0.75);
  EXPECT_EQ(result->metrics.running_adapters, Strings{"kept"});
  EXPECT_EQ(result->metrics.cache_block_size, 16);
  EXPECT_EQ(result->metrics.updated_at, std::chrono::seconds(5));
  EXPECT_EQ(describe_metrics(result->missing, extractor.config()),
            "queued (vllm:num_requests_waiting), kv_usage (vllm:kv_cache_usage_perc or "
            "vllm:gpu_cache_usage_perc), lora (vllm:lora_requests_info), cache_info "
            "(vllm:cache_config_info)");
}

TEST(ExtractorTest, ResetDiscardsAPartialBody) {
  EngineMappings mappings;
  Extractor extractor(mappings.find_or_default("vllm"));
  extractor.feed("vllm:num_requests_waiting 5\nvllm:num_requests_runn");
  extractor.reset();
  extractor.feed("vllm:num_requests_running 1\n");
  auto result = extractor.finish();
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->metrics.waiting_requests, 0);
  EXPECT_EQ(result->metrics.running_requests, 1);
  EXPECT_EQ(result->found, kRunning);
}

TEST(ExtractorTest, UserSpecWithLabelMatcherSelectsOneEngineRank) {
  auto mappings = EngineMappings::from_json(json::parse(R"([
    {"name": "vllm", "queuedRequestsSpec": "vllm:num_requests_waiting{engine='1'}",
     "runningRequestsSpec": "vllm:num_requests_running{engine=\"1\"}"}])"));
  ASSERT_TRUE(mappings.ok());
  Extractor extractor(mappings->find_or_default("vllm"));
  extractor.feed(
      "vllm:num_requests_waiting{engine=\"0\"} 1 200\nvllm:num_requests_waiting{engine=\"1\"} 2 "
      "100\nvllm:num_requests_running{engine=\"1\"} 3\nvllm:kv_cache_usage_perc 0.9\n");
  auto result = extractor.finish();
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->metrics.waiting_requests, 2);
  EXPECT_EQ(result->metrics.running_requests, 3);
  EXPECT_DOUBLE_EQ(result->metrics.kv_cache_usage, 0);  // disabled by the override
  EXPECT_EQ(result->missing, 0u);
}

}  // namespace
}  // namespace infergate::datastore

namespace infergate::datastore {
namespace {

TEST(EngineMappingsFromConfigTest, ReadsTheExtractorsEngineConfigs) {
  api::EndpointPickerConfig config;
  EXPECT_TRUE(engine_mappings_from_config(config).ok()) << "no extractor: built-ins";
  config.plugins.push_back(
      {.name = "extractor",
       .type = "core-metrics-extractor",
       .parameters = nlohmann::json{
           {"engineConfigs",
            nlohmann::json::array({{{"name", "vllm"}, {"queuedRequestsSpec", "my_queue"}}})}}});
  auto mappings = engine_mappings_from_config(config);
  ASSERT_TRUE(mappings.ok()) << mappings.status().message();
  const EngineMetricsConfig* vllm = mappings->find("vllm");
  ASSERT_NE(vllm, nullptr);
  ASSERT_TRUE(vllm->queued.has_value());
  EXPECT_EQ(vllm->queued->name, "my_queue");
  EXPECT_FALSE(vllm->running.has_value()) << "a user entry replaces the built-in whole";

  config.plugins[0].parameters =
      nlohmann::json{{"engineConfigs", nlohmann::json::array({{{"nam", "x"}}})}};
  auto bad = engine_mappings_from_config(config);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("plugin 'extractor': parameter 'engineConfigs'"),
            std::string::npos)
      << bad.status().message();
}

}  // namespace
}  // namespace infergate::datastore
