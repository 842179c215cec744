#include "sim/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>

namespace infergate::sim {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
  }
  return "unknown";
}

struct Engine::Request {
  EngineRequest spec;
  std::vector<std::uint32_t> tokens;  // prompt, then generated tokens
  int num_prompt = 0;
  int num_output = 0;
  int num_computed = 0;                 // tokens whose KV is in the request's blocks
  std::vector<BlockHash> block_hashes;  // of every full block of `tokens` hashed so far
  std::vector<BlockId> blocks;
  int num_cached_blocks = 0;  // leading blocks already registered in the prefix cache
  int cached_tokens = -1;     // prefix hit at first scheduling; -1 before it
  bool aborted = false;
  std::mt19937_64 sampler;
  TimePoint queued{};
  std::optional<TimePoint> first_scheduled;
  std::optional<TimePoint> first_token;
  std::optional<TimePoint> last_token;
};

Engine::Engine(EngineConfig config)
    : config_(std::move(config)),
      kv_(config_.num_gpu_blocks, config_.block_size, config_.enable_prefix_caching) {
  if (config_.output_token_ids.empty()) {
    for (std::uint32_t id = 0; id < 256; ++id) config_.output_token_ids.push_back(id);
  }
}

Engine::~Engine() = default;

Status Engine::add_request(EngineRequest spec, TimePoint now) {
  const auto num_prompt = static_cast<std::int64_t>(spec.prompt_tokens.size());
  if (num_prompt == 0) return Status::bad_request("the prompt must contain at least one token");
  if (spec.max_output_tokens < 1) return Status::bad_request("max_tokens must be at least 1");
  if (num_prompt + spec.max_output_tokens > config_.max_model_len) {
    return Status::bad_request(fmt::format(
        "This model's maximum context length is {} tokens. However, you requested {} tokens "
        "({} in the prompt, {} in the completion). Please reduce the length of the prompt or "
        "completion.",
        config_.max_model_len, num_prompt + spec.max_output_tokens, num_prompt,
        spec.max_output_tokens));
  }
  const std::int64_t blocks_needed =
      (num_prompt + spec.max_output_tokens + config_.block_size - 1) / config_.block_size;
  if (blocks_needed > kv_.usable_blocks()) {
    return Status::bad_request(
        fmt::format("the request needs {} KV-cache blocks but the cache holds only {}",
                    blocks_needed, kv_.usable_blocks()));
  }
  if (requests_.contains(spec.id)) {
    return Status::bad_request(fmt::format("duplicate request id {}", spec.id));
  }

  auto request = std::make_unique<Request>();
  request->tokens = spec.prompt_tokens;
  request->tokens.reserve(spec.prompt_tokens.size() +
                          static_cast<std::size_t>(spec.max_output_tokens));
  request->num_prompt = static_cast<int>(num_prompt);
  request->sampler.seed(spec.sampling_seed);
  request->queued = now;
  request->spec = std::move(spec);
  request->spec.prompt_tokens.clear();  // kept once, in `tokens`
  waiting_.push_back(request.get());
  requests_.emplace(request->spec.id, std::move(request));
  return Status::ok();
}

std::optional<FinishedRequest> Engine::abort_request(std::uint64_t id, TimePoint now) {
  auto it = requests_.find(id);
  if (it == requests_.end() || it->second->aborted) return std::nullopt;
  Request& request = *it->second;
  if (step_in_flight_) {
    request.aborted = true;
    aborted_during_step_.push_back(id);
    return std::nullopt;
  }
  (void)now;
  FinishedRequest record = finish_record(request, FinishReason::kAbort);
  remove_request(id);
  return record;
}

void Engine::remove_request(std::uint64_t id) {
  auto it = requests_.find(id);
  assert(it != requests_.end());
  Request* request = it->second.get();
  kv_.release(request->blocks);
  std::erase(running_, request);
  std::erase(waiting_, request);
  requests_.erase(it);
}

void Engine::ensure_block_hashes(Request& request, int num_full_blocks) {
  const auto block_size = static_cast<std::size_t>(config_.block_size);
  while (static_cast<int>(request.block_hashes.size()) < num_full_blocks) {
    const std::size_t index = request.block_hashes.size();
    const BlockHash parent =
        index == 0 ? request.spec.prefix_root_hash : request.block_hashes[index - 1];
    std::span<const std::uint32_t> block(request.tokens.data() + index * block_size, block_size);
    request.block_hashes.push_back(chain_block_hash(parent, block));
  }
}

bool Engine::allocate_for(Request& request, int num_new_tokens,
                          std::span<const BlockId> hit_blocks) {
  const int block_size = config_.block_size;
  const int total_tokens =
      request.num_computed + static_cast<int>(hit_blocks.size()) * block_size + num_new_tokens;
  const int required_blocks = (total_tokens + block_size - 1) / block_size;
  const int new_blocks =
      std::max(0, required_blocks - static_cast<int>(request.blocks.size() + hit_blocks.size()));
  return kv_.allocate(request.blocks, hit_blocks, new_blocks);
}

void Engine::preempt(Request& request) {
  // Recompute preemption: the blocks go back to the free queue still cached, so the request
  // usually hits its own prefix when it is scheduled again.
  kv_.release(request.blocks);
  request.num_computed = 0;
  request.num_cached_blocks = 0;
  waiting_.push_front(&request);
  ++counters_.preemptions;
}

std::optional<Duration> Engine::begin_step(TimePoint now) {
  assert(!step_in_flight_);
  step_batch_.clear();
  if (requests_.empty()) return std::nullopt;

  // Two passes at most: a pass that only preempted (and so admitted nothing) is followed by one
  // that admits the preempted requests again.
  for (int pass = 0; pass < 2 && step_batch_.empty(); ++pass) {
    int token_budget = config_.max_num_batched_tokens;
    std::vector<int> scheduled_loras;
    auto note_lora = [&](const Request& request) {
      const int lora = request.spec.lora_id;
      if (lora > 0 && std::find(scheduled_loras.begin(), scheduled_loras.end(), lora) ==
                          scheduled_loras.end()) {
        scheduled_loras.push_back(lora);
      }
    };

    // 1. Running requests first, in order; when blocks run out, the newest running request is
    //    preempted until the allocation fits or the request itself was the one preempted.
    bool preempted = false;
    std::size_t index = 0;
    while (index < running_.size() && token_budget > 0) {
      Request* request = running_[index];
      const int num_new =
          std::min(static_cast<int>(request->tokens.size()) - request->num_computed, token_budget);
      bool scheduled = false;
      while (true) {
        if (allocate_for(*request, num_new, {})) {
          scheduled = true;
          break;
        }
        Request* victim = running_.back();
        running_.pop_back();
        preempt(*victim);
        preempted = true;
        if (victim == request) break;
      }
      if (!scheduled) break;
      step_batch_.push_back({request, num_new});
      token_budget -= num_new;
      note_lora(*request);
      ++index;
    }

    // 2. Then waiting requests, first come first served, unless this step preempted.
    if (preempted) continue;
    std::vector<Request*> skipped;
    while (!waiting_.empty() && token_budget > 0 &&
           static_cast<int>(running_.size()) < config_.max_num_seqs) {
      Request* request = waiting_.front();
      const int lora = request->spec.lora_id;
      if (lora > 0 && static_cast<int>(scheduled_loras.size()) >= config_.max_loras &&
          std::find(scheduled_loras.begin(), scheduled_loras.end(), lora) ==
              scheduled_loras.end()) {
        // Its adapter would exceed max_loras in this batch: it waits, keeping its place.
        skipped.push_back(request);
        waiting_.pop_front();
        continue;
      }
      const int num_tokens = static_cast<int>(request->tokens.size());
      // At least one token must be computed to produce output, so a full hit stops one block short.
      const int max_hit_blocks = (num_tokens - 1) / config_.block_size;
      ensure_block_hashes(*request, max_hit_blocks);
      const std::vector<BlockId> hits =
          kv_.find_cached_prefix(std::span<const BlockHash>(request->block_hashes)
                                     .first(static_cast<std::size_t>(max_hit_blocks)));
      const int hit_tokens = static_cast<int>(hits.size()) * config_.block_size;
      const int num_new = std::min(num_tokens - hit_tokens, token_budget);
      if (!allocate_for(*request, num_new, hits)) break;

      if (kv_.prefix_caching()) {
        counters_.prefix_queries += static_cast<std::uint64_t>(num_tokens);
        counters_.prefix_hits += static_cast<std::uint64_t>(hit_tokens);
      }
      if (request->cached_tokens < 0) request->cached_tokens = hit_tokens;
      if (!request->first_scheduled) request->first_scheduled = now;
      request->num_computed = hit_tokens;
      request->num_cached_blocks = static_cast<int>(hits.size());
      waiting_.pop_front();
      running_.push_back(request);
      step_batch_.push_back({request, num_new});
      token_budget -= num_new;
      note_lora(*request);
    }
    for (auto it = skipped.rbegin(); it != skipped.rend(); ++it) waiting_.push_front(*it);
  }
  if (step_batch_.empty()) return std::nullopt;

  StepShape shape;
  for (const auto& [request, num_new] : step_batch_) {
    shape.scheduled_tokens += num_new;
    ++shape.num_sequences;
    const bool decode = num_new == 1 &&
                        request->num_computed + 1 == static_cast<int>(request->tokens.size()) &&
                        request->num_output > 0;
    if (decode) {
      shape.decode_context_tokens += request->num_computed + 1;
    } else {
      shape.prefill_attention_pairs += num_new * (request->num_computed + num_new / 2.0);
    }
  }
  step_in_flight_ = true;
  step_start_ = now;
  return config_.step_time.step_duration(shape);
}

StepOutput Engine::finish_step(TimePoint now) {
  assert(step_in_flight_);
  StepOutput output;
  output.start = step_start_;
  output.end = now;
  const int block_size = config_.block_size;
  const auto& vocab = config_.output_token_ids;
  std::vector<std::uint64_t> finished_ids;

  for (const auto& [request, num_new] : step_batch_) {
    output.scheduled_tokens += num_new;
    if (request->aborted) continue;
    request->num_computed += num_new;

    // Register every block the step filled (prompt or generated tokens alike).
    const int full_blocks = request->num_computed / block_size;
    if (full_blocks > request->num_cached_blocks) {
      ensure_block_hashes(*request, full_blocks);
      for (int i = request->num_cached_blocks; i < full_blocks; ++i) {
        kv_.cache_block(request->blocks[static_cast<std::size_t>(i)],
                        request->block_hashes[static_cast<std::size_t>(i)]);
      }
      request->num_cached_blocks = full_blocks;
    }
    if (request->num_computed < static_cast<int>(request->tokens.size())) continue;  // mid-prefill

    const auto vocab_index = static_cast<std::uint32_t>(request->sampler() % vocab.size());
    request->tokens.push_back(vocab[vocab_index]);
    ++request->num_output;
    ++counters_.generation_tokens;
    if (request->num_output == 1) {
      request->first_token = now;
      counters_.prompt_tokens += static_cast<std::uint64_t>(request->num_prompt);
    }
    request->last_token = now;

    const EngineRequest& spec = request->spec;
    bool finished = true;
    FinishReason reason = FinishReason::kLength;
    if (request->num_output >= spec.stop_after_tokens &&
        spec.stop_after_tokens < spec.max_output_tokens) {
      reason = FinishReason::kStop;
    } else if (request->num_output < spec.max_output_tokens &&
               static_cast<int>(request->tokens.size()) < config_.max_model_len) {
      finished = false;
    }
    output.tokens.push_back({spec.id, vocab_index, finished, reason});
    if (finished) {
      output.finished.push_back(finish_record(*request, reason));
      finished_ids.push_back(spec.id);
    }
  }
  for (std::uint64_t id : aborted_during_step_) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;
    output.finished.push_back(finish_record(*it->second, FinishReason::kAbort));
    finished_ids.push_back(id);
  }
  step_batch_.clear();
  aborted_during_step_.clear();
  step_in_flight_ = false;
  ++counters_.steps;
  for (std::uint64_t id : finished_ids) remove_request(id);
  return output;
}

FinishedRequest Engine::finish_record(const Request& request, FinishReason reason) const {
  return FinishedRequest{
      .request_id = request.spec.id,
      .reason = reason,
      .lora_id = request.spec.lora_id,
      .prompt_tokens = request.num_prompt,
      .output_tokens = request.num_output,
      .cached_tokens = std::max(0, request.cached_tokens),
      .queued = request.queued,
      .first_scheduled = request.first_scheduled,
      .first_token = request.first_token,
      .last_token = request.last_token,
      .max_output_tokens = request.spec.max_output_tokens,
  };
}

namespace {
std::vector<int> distinct_loras(auto&& requests) {
  std::vector<int> ids;
  for (const auto* request : requests) {
    const int lora = request->spec.lora_id;
    if (lora > 0 && std::find(ids.begin(), ids.end(), lora) == ids.end()) ids.push_back(lora);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}
}  // namespace

std::vector<int> Engine::running_lora_ids() const { return distinct_loras(running_); }
std::vector<int> Engine::waiting_lora_ids() const { return distinct_loras(waiting_); }

}  // namespace infergate::sim
