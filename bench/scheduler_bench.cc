// One full scheduling decision with GIE's default profile (queue 2, kv-cache 2, prefix 3,
// max-score picker) for a 4,000-token (16 KB) chat prompt, over 100 and 1,000 endpoints whose
// prefix index already holds earlier prompts. Run: build/bench/scheduler_bench
#include <benchmark/benchmark.h>

#include <random>

#include "api/endpoint_picker_config.h"
#include "common/random.h"
#include "request/tokenizer.h"
#include "scheduling/config_loader.h"

namespace infergate::scheduling {
namespace {

struct Setup {
  explicit Setup(int endpoints) {
    auto built = build_scheduler(api::default_endpoint_picker_config());
    if (!built) throw std::runtime_error(built.status().message());
    setup = std::move(*built);
    std::vector<datastore::EndpointSpec> specs;
    for (int i = 0; i < endpoints; ++i) {
      specs.push_back({.pod_name = "vllm-" + std::to_string(i),
                       .address = "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250),
                       .port = 8000});
    }
    snapshot = store.set_endpoints(specs);
    SplitMix64 rng(1);
    for (const auto& endpoint : snapshot->endpoints) {
      auto metrics = std::make_shared<datastore::EndpointMetrics>();
      metrics->waiting_requests = static_cast<int>(rng.next_below(20));
      metrics->running_requests = static_cast<int>(rng.next_below(200));
      metrics->kv_cache_usage = rng.next_unit();
      metrics->cache_block_size = 16;
      metrics->cache_num_blocks = 27000;
      store.update_metrics(*endpoint.info, metrics);
    }
    // 64 system prompts of ~2,000 tokens; each request adds a ~2,000-token question.
    for (int group = 0; group < 64; ++group) {
      system_prompts.push_back(request::make_text_with_tokens(2000, 1000 + group));
    }
    // Warm the index: earlier requests of every group were routed somewhere.
    for (int i = 0; i < 2000; ++i) decide(make_prompt(i), true);
  }

  std::string make_prompt(int i) const {
    return R"([{"role":"system","content":")" + system_prompts[i % 64] +
           R"("},{"role":"user","content":")" + request::make_text_with_tokens(2000, i) + R"("}])";
  }

  void decide(const std::string& prompt, bool record) {
    SchedulingRequest request{.target_model = "meta-llama/Llama-3.1-8B-Instruct",
                              .prompt_bytes = prompt};
    state.prefix_matched = false;
    ++state.random_seed;
    auto result = setup.scheduler->schedule(request, *snapshot, TimePoint{}, state);
    if (!result) throw std::runtime_error(result.status().message());
    if (record) {
      SchedulingContext context{request, *snapshot, TimePoint{}, state};
      setup.scheduler->pre_request(context, *result);
    }
    benchmark::DoNotOptimize(result->primary_result().targets.front());
  }

  SchedulerSetup setup;
  datastore::Datastore store;
  std::shared_ptr<const datastore::Snapshot> snapshot;
  std::vector<std::string> system_prompts;
  CycleState state;
};

void BM_Decision(benchmark::State& bench_state) {
  Setup setup(static_cast<int>(bench_state.range(0)));
  std::vector<std::string> prompts;
  for (int i = 0; i < 64; ++i) prompts.push_back(setup.make_prompt(100000 + i));
  std::size_t next = 0;
  for (auto _ : bench_state) setup.decide(prompts[next++ % prompts.size()], false);
  bench_state.counters["prompt_bytes"] = static_cast<double>(prompts[0].size());
}
BENCHMARK(BM_Decision)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

void BM_DecisionAndRecord(benchmark::State& bench_state) {
  Setup setup(static_cast<int>(bench_state.range(0)));
  std::vector<std::string> prompts;
  for (int i = 0; i < 64; ++i) prompts.push_back(setup.make_prompt(200000 + i));
  std::size_t next = 0;
  for (auto _ : bench_state) setup.decide(prompts[next++ % prompts.size()], true);
}
BENCHMARK(BM_DecisionAndRecord)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace infergate::scheduling

BENCHMARK_MAIN();
