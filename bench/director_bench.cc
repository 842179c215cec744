// The director's whole per-request work for the ext_proc and gateway front ends: parse the body,
// rewrite, priority, candidates, schedule (GIE's default profile), pre-request hooks, body copy,
// in-flight accounting, metrics; then a JSON response with usage and finish(). Bodies of 2 KB and
// 220 KB, pools of 3 and 100 endpoints. Run: build/bench/director_bench
#include <benchmark/benchmark.h>

#include "api/endpoint_picker_config.h"
#include "common/random.h"
#include "director/director.h"
#include "prom/registry.h"
#include "request/tokenizer.h"

namespace infergate::director {
namespace {

struct Fixture {
  explicit Fixture(int endpoints) {
    std::vector<datastore::EndpointSpec> specs;
    for (int i = 0; i < endpoints; ++i) {
      specs.push_back({.pod_name = "vllm-" + std::to_string(i),
                       .namespace_name = "default",
                       .address = "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250),
                       .port = 8000});
    }
    auto snapshot = store.set_endpoints(specs);
    SplitMix64 rng(1);
    for (const auto& endpoint : snapshot->endpoints) {
      auto metrics = std::make_shared<datastore::EndpointMetrics>();
      metrics->waiting_requests = static_cast<int>(rng.next_below(20));
      metrics->running_requests = static_cast<int>(rng.next_below(200));
      metrics->kv_cache_usage = rng.next_unit();
      store.update_metrics(*endpoint.info, metrics);
    }
    auto setup = scheduling::build_scheduler(api::default_endpoint_picker_config());
    if (!setup) throw std::runtime_error(setup.status().message());
    director = std::make_unique<Director>(store, std::move(*setup), nullptr, clock, registry,
                                          DirectorOptions{.seed = 7});
  }

  // A chat body of about `bytes` bytes; `variant` changes the text.
  static std::string body(std::size_t bytes, int variant) {
    const std::string text =
        request::make_text_with_tokens(bytes / 4, static_cast<std::uint64_t>(variant));
    return R"({"model":"meta-llama/Llama-3.1-8B-Instruct","max_tokens":128,"messages":[{"role":"user","content":")" +
           text + R"("}]})";
  }

  SteadyClock clock;
  datastore::Datastore store;
  prom::Registry registry;
  std::unique_ptr<Director> director;
};

void route_and_finish(benchmark::State& state) {
  Fixture fixture(static_cast<int>(state.range(0)));
  std::vector<std::string> bodies;
  for (int i = 0; i < 64; ++i)
    bodies.push_back(Fixture::body(static_cast<std::size_t>(state.range(1)), i));
  const Headers headers{{":path", "/v1/chat/completions"},
                        {":method", "POST"},
                        {"content-type", "application/json"},
                        {"x-request-id", "bench"}};
  const Headers response_headers{{":status", "200"}, {"content-type", "application/json"}};
  const std::string response =
      R"({"id":"c","model":"meta-llama/Llama-3.1-8B-Instruct","choices":[],"usage":{"prompt_tokens":500,"completion_tokens":128,"total_tokens":628}})";
  const std::optional<std::vector<std::string>> no_subset;
  std::string out;
  std::size_t i = 0;
  for (auto _ : state) {
    auto routed = fixture.director->route(
        {.headers = headers, .body = bodies[i++ % bodies.size()], .subset = no_subset});
    if (!routed) {
      state.SkipWithError(routed.status().message().c_str());
      break;
    }
    routed->on_response_headers(response_headers);
    out.clear();
    routed->on_response_body(response, true, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(route_and_finish)
    ->ArgNames({"endpoints", "body_bytes"})
    ->Args({3, 2048})
    ->Args({100, 2048})
    ->Args({3, 220 * 1024})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace infergate::director

BENCHMARK_MAIN();
