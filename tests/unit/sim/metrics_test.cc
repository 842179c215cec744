// Golden test of the simulator's /metrics text for a fixed scenario in virtual time.
// Regenerate with INFERGATE_UPDATE_GOLDEN=1 after an intended change, and review the diff.
#include "sim/metrics.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace infergate::sim {
namespace {

EngineRequest request(std::uint64_t id, int prompt_tokens, int output_tokens) {
  EngineRequest spec;
  spec.id = id;
  for (int i = 0; i < prompt_tokens; ++i)
    spec.prompt_tokens.push_back(static_cast<std::uint32_t>(i));
  spec.max_output_tokens = output_tokens;
  spec.stop_after_tokens = output_tokens;
  spec.prefix_root_hash = root_block_hash("m", "");
  spec.sampling_seed = id;
  return spec;
}

// Runs three requests, two sharing a prefix, through an engine and returns the exposition text.
std::string scenario_text(MetricsStyle style) {
  EngineConfig config{.num_gpu_blocks = 101,
                      .max_num_seqs = 4,
                      .max_num_batched_tokens = 256,
                      .max_model_len = 1000};
  // Fixed here, so that recalibrating the default profile does not move the golden figures.
  config.step_time = StepTimeParams{.fixed_ms = 1.0,
                                    .weights_read_ms = 5.0,
                                    .per_token_us = 25.0,
                                    .per_sequence_us = 5.0,
                                    .kv_read_per_context_token_us = 0.05,
                                    .attention_per_pair_ns = 1.0,
                                    .frontend_ms = 20.0};
  Engine engine(config);
  prom::Registry registry;
  SimMetrics metrics(registry, style, "test-model", config);
  std::map<std::uint64_t, TimePoint> arrival;
  std::map<std::uint64_t, TimePoint> last_token;
  TimePoint now = from_milliseconds(1000);
  // Each request reaches the engine queue 20 ms after its HTTP arrival.
  auto add = [&](std::uint64_t id, int prompt, int output) {
    arrival[id] = now - from_milliseconds(20);
    EXPECT_TRUE(engine.add_request(request(id, prompt, output), now).is_ok());
  };
  auto run = [&] {
    while (auto duration = engine.begin_step(now)) {
      now += *duration;
      StepOutput step = engine.finish_step(now);
      metrics.observe_step(step);
      for (const auto& token : step.tokens) {
        if (last_token.contains(token.request_id)) {
          metrics.observe_inter_token(now - last_token[token.request_id]);
        } else {
          metrics.observe_first_token(now - arrival[token.request_id]);
        }
        last_token[token.request_id] = now;
      }
      for (const auto& record : step.finished) {
        metrics.observe_finished(record, arrival[record.request_id]);
      }
    }
  };
  add(1, 100, 4);
  add(2, 40, 3);
  run();
  add(3, 120, 2);  // shares request 1's first 96 tokens
  run();
  metrics.refresh(engine, {.max_loras = 1, .running = {}, .waiting = {}}, 1700000000.5);
  metrics.refresh(engine, {.max_loras = 1, .running = {"sql-lora"}, .waiting = {}}, 1700000001.5);
  return registry.expose();
}

TEST(SimMetricsTest, VllmExpositionMatchesTheGoldenFile) {
  const std::string text = scenario_text(MetricsStyle::kVllm);
  const std::string path = std::string(INFERGATE_TESTDATA_DIR) + "/sim_metrics_vllm.txt";
  if (std::getenv("INFERGATE_UPDATE_GOLDEN")) {
    std::ofstream(path) << text;
    GTEST_SKIP() << "golden file rewritten: " << path;
  }
  std::ifstream file(path);
  ASSERT_TRUE(file) << "missing golden file " << path;
  std::stringstream golden;
  golden << file.rdbuf();
  EXPECT_EQ(text, golden.str());
}

TEST(SimMetricsTest, LegacyStyleUsesTheOldVllmNames) {
  const std::string text = scenario_text(MetricsStyle::kVllmLegacy);
  EXPECT_NE(text.find("# TYPE vllm:gpu_cache_usage_perc gauge"), std::string::npos);
  EXPECT_NE(text.find("vllm:gpu_prefix_cache_queries_total{"), std::string::npos);
  EXPECT_NE(text.find("# TYPE vllm:time_per_output_token_seconds histogram"), std::string::npos);
  EXPECT_EQ(text.find("vllm:kv_cache_usage_perc"), std::string::npos);
}

TEST(SimMetricsTest, SglangStyleUsesSglangNames) {
  const std::string text = scenario_text(MetricsStyle::kSglang);
  for (const char* name :
       {"sglang:num_running_reqs{model_name=\"test-model\"} 0.0", "sglang:num_queue_reqs{",
        "sglang:token_usage{", "sglang:cache_config_info{num_pages=\"101\",page_size=\"16\"} 1.0",
        "sglang:prompt_tokens_total{model_name=\"test-model\"} 260.0",
        "sglang:time_to_first_token_seconds_bucket{"}) {
    EXPECT_NE(text.find(name), std::string::npos) << name;
  }
  EXPECT_EQ(text.find("vllm:"), std::string::npos);
}

TEST(SimMetricsTest, ParsesStyleNames) {
  EXPECT_EQ(*parse_metrics_style("vllm-legacy"), MetricsStyle::kVllmLegacy);
  EXPECT_FALSE(parse_metrics_style("tgi").ok());
}

}  // namespace
}  // namespace infergate::sim
