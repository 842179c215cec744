#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "sim/kv_cache.h"
#include "sim/step_time.h"

namespace infergate::sim {

struct EngineConfig {
  int block_size = 16;
  int num_gpu_blocks = 27000;
  bool enable_prefix_caching = true;
  int max_num_seqs = 1024;
  int max_num_batched_tokens = 8192;
  int max_model_len = 131072;
  int max_loras = 1;
  StepTimeParams step_time;
  // Token ids the engine samples generated tokens from (index i is reported as vocab_index i).
  // Empty: a vocabulary of 256 ids 0..255.
  std::vector<std::uint32_t> output_token_ids;
};

enum class FinishReason { kStop, kLength, kAbort };
const char* finish_reason_name(FinishReason reason);

struct EngineRequest {
  std::uint64_t id = 0;
  std::vector<std::uint32_t> prompt_tokens;
  int max_output_tokens = 16;  // stop with "length" after this many
  int stop_after_tokens = 16;  // stop with "stop" after this many (the simulated EOS), when fewer
  int lora_id = 0;             // 0 = base model; adapters are numbered from 1
  std::uint64_t prefix_root_hash = 0;  // root_block_hash(model or adapter, cache_salt)
  std::uint64_t sampling_seed = 0;     // generated tokens are a deterministic function of it
};

// One generated token, in the order tokens were produced within the step.
struct TokenEvent {
  std::uint64_t request_id;
  std::uint32_t vocab_index;
  bool finished;
  FinishReason reason;  // meaningful when finished
};

// Engine-side lifecycle of a request that left the engine (finished or aborted), for metrics.
struct FinishedRequest {
  std::uint64_t request_id;
  FinishReason reason;
  int lora_id;
  int prompt_tokens;
  int output_tokens;
  int cached_tokens;  // prefix-cache hit at first scheduling
  TimePoint queued;
  std::optional<TimePoint> first_scheduled;
  std::optional<TimePoint> first_token;
  std::optional<TimePoint> last_token;
  int max_output_tokens;
};

struct StepOutput {
  TimePoint start;
  TimePoint end;
  int scheduled_tokens = 0;
  std::vector<TokenEvent> tokens;
  std::vector<FinishedRequest> finished;  // includes requests aborted during the step
};

// Running totals since start (Prometheus counters are derived from these).
struct EngineCounters {
  std::uint64_t prompt_tokens = 0;  // prompt tokens of requests whose prefill completed
  std::uint64_t generation_tokens = 0;
  std::uint64_t prefix_queries = 0;  // tokens looked up in the prefix cache
  std::uint64_t prefix_hits = 0;     // tokens found
  std::uint64_t preemptions = 0;
  std::uint64_t steps = 0;
};

// An iteration-level model of a vLLM V1 engine: continuous batching with chunked prefill, a paged
// KV cache with prefix caching, recompute preemption and LoRA batch limits (model-server facts §2).
//
// Pure and single-threaded: no clock, no I/O, no threads. A driver (the `sim` HTTP server in real
// time, the cluster simulation in virtual time) feeds requests in and runs steps:
//   add_request / abort_request at any time;
//   begin_step(now) plans a batch and returns its duration (nullopt: nothing to do);
//   finish_step(now + duration) applies it and reports the tokens it produced.
// Requests added or aborted while a step is in flight take part from the next step on.
class Engine {
 public:
  explicit Engine(EngineConfig config);
  ~Engine();

  const EngineConfig& config() const { return config_; }

  // Rejects (400) a request that could never fit: context over max_model_len or more KV blocks
  // than the whole cache. `now` is when it enters the waiting queue.
  Status add_request(EngineRequest request, TimePoint now);
  // Removes a request wherever it is; its blocks return to the free queue. Unknown ids are ignored.
  // Returns the request's record when it was removed right away (not in a running step).
  std::optional<FinishedRequest> abort_request(std::uint64_t id, TimePoint now);

  bool has_unfinished_requests() const { return !requests_.empty(); }
  bool step_in_flight() const { return step_in_flight_; }

  std::optional<Duration> begin_step(TimePoint now);
  StepOutput finish_step(TimePoint now);

  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  double kv_cache_usage() const { return kv_.usage(); }
  const KvCache& kv_cache() const { return kv_; }
  // KvCache::reset_prefix_cache (free blocks lose their cached hashes; blocks of running or
  // preempted-and-kept requests stay). Safe at any time, also while a step is in flight.
  int reset_prefix_cache() { return kv_.reset_prefix_cache(); }
  const EngineCounters& counters() const { return counters_; }
  // Distinct adapters among running and waiting requests (lora ids, ascending).
  std::vector<int> running_lora_ids() const;
  std::vector<int> waiting_lora_ids() const;

 private:
  struct Request;
  struct Scheduled {
    Request* request;
    int num_tokens;
  };

  void ensure_block_hashes(Request& request, int num_full_blocks);
  bool allocate_for(Request& request, int num_new_tokens, std::span<const BlockId> hit_blocks);
  void preempt(Request& request);
  FinishedRequest finish_record(const Request& request, FinishReason reason) const;
  void remove_request(std::uint64_t id);

  EngineConfig config_;
  KvCache kv_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Request>> requests_;
  std::vector<Request*> running_;
  std::deque<Request*> waiting_;
  std::vector<Scheduled> step_batch_;
  std::vector<std::uint64_t> aborted_during_step_;
  bool step_in_flight_ = false;
  TimePoint step_start_{};
  EngineCounters counters_;
};

}  // namespace infergate::sim
