#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sim/engine.h"
#include "sim/metrics.h"

namespace boost::asio {
class io_context;
}

namespace infergate::sim {

struct LoraModule {
  std::string name;
  std::string path;
};

// Everything `infergate sim` can be told (see `infergate sim --help` for the flag of each field).
struct SimOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;
  std::string model = "meta-llama/Llama-3.1-8B-Instruct";
  std::vector<std::string> served_model_names;  // names clients may use; empty: {model}
  std::vector<LoraModule> lora_modules;         // adapters loaded at start
  EngineConfig engine;
  double time_scale = 1.0;  // simulated seconds per real second
  std::uint64_t seed = 0;
  double failure_rate_percent = 0;              // share of requests answered with an injected error
  std::vector<unsigned> failure_codes = {503};  // statuses injected failures draw from
  std::size_t max_request_body_bytes = 4u << 20;
  MetricsStyle metrics_style = MetricsStyle::kVllm;
  // Without ignore_eos a request stops early, after a deterministic pseudo-random number of
  // tokens drawn uniformly from [1, 2 * mean_output_tokens] (or max_tokens, when that is smaller).
  int mean_output_tokens = 128;
};

// A model server that behaves like vLLM's OpenAI-compatible server from the outside: the
// completions and chat completions APIs with SSE streaming and usage, /v1/models, runtime LoRA
// loading, /health and vLLM's /metrics, backed by the Engine model advancing on a (scaled) real
// clock. HTTP paths and shapes: model-server facts §1; docs/simulator.md.
//
// Threading: the io_context passed in must be run by exactly one thread; the engine, the HTTP
// handlers and the metrics all live on it.
class SimServer {
 public:
  // Binds the listening socket (throws std::runtime_error on failure: start-up only).
  SimServer(boost::asio::io_context& io, SimOptions options);
  ~SimServer();
  SimServer(const SimServer&) = delete;
  SimServer& operator=(const SimServer&) = delete;

  std::uint16_t port() const;
  void start();
  // Stops accepting; requests in flight are aborted in the engine; returns at once.
  void stop();

  // Inspection for tests, on the io_context's thread.
  const Engine& engine() const;
  std::string metrics_text();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace infergate::sim
