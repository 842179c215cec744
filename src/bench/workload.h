#pragma once

// Request generators for `infergate bench`: which prompts are sent, in which order, with which
// output length. Deterministic: the same options (seed included) give byte-identical bodies.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace infergate::bench {

// Which OpenAI endpoint requests go to.
enum class Api {
  kCompletions,  // POST <base>/v1/completions with `prompt`
  kChat,         // POST <base>/v1/chat/completions with `messages`
};

enum class WorkloadKind {
  // Every prompt distinct, exactly `prompt_tokens` tokens.
  kRandom,
  // inference-perf's shared_prefix data: `num_groups` groups x `prompts_per_group` prompts; every
  // prompt of a group starts with the group's system prompt (`system_prompt_tokens` tokens) and
  // adds its own question (`question_tokens` tokens). The pool is shuffled once (seeded) and
  // request i uses pool entry i mod pool size, so full prompts repeat every pool-size requests.
  kSharedPrefix,
};

std::string_view to_string(Api api);
std::string_view to_string(WorkloadKind kind);
Result<Api> parse_api(std::string_view name);                     // "completions" | "chat"
Result<WorkloadKind> parse_workload_kind(std::string_view name);  // "random" | "shared-prefix"

struct WorkloadOptions {
  WorkloadKind kind = WorkloadKind::kRandom;
  Api api = Api::kCompletions;
  std::string model;
  int prompt_tokens = 204;  // kRandom
  int output_tokens = 64;  // max_tokens, sent with ignore_eos so every request generates exactly it
  int num_groups = 10;     // kSharedPrefix
  int prompts_per_group = 10;
  int system_prompt_tokens = 128;
  int question_tokens = 76;
  std::uint64_t seed = 1;
};

// One request to send.
struct GeneratedRequest {
  std::string body;  // JSON
  // Prompt tokens under the project tokenizer (request/tokenizer.h), not counting the chat
  // template: prompt_tokens for kRandom, system + question tokens for kSharedPrefix.
  std::size_t prompt_tokens = 0;
  int group = -1;         // kSharedPrefix: the prompt's group; -1 for kRandom
  int prompt_index = -1;  // kSharedPrefix: the prompt's index within its group
};

// Builds request bodies. Every body has `model`, `max_tokens` = output_tokens, `ignore_eos: true`,
// `stream: true` and `stream_options: {"include_usage": true}`, and then:
//   completions: `prompt` = text (kRandom) or system prompt + question (kSharedPrefix; the texts
//                are joined as they are, and since each starts with a space the token count is
//                exactly system_prompt_tokens + question_tokens);
//   chat:        `messages` = [{user: text}] (kRandom) or
//                [{system: system prompt}, {user: question}] (kSharedPrefix).
// Texts come from request::make_text_with_tokens with a seed derived from the workload seed and
// the text's identity (request index for kRandom; group, or group and question, for
// kSharedPrefix), so a group's system prompt does not depend on the pool's size or order.
//
// Immutable after create(); request() is const and safe from any thread.
class Workload {
 public:
  // Validates: token counts, num_groups and prompts_per_group >= 1, pool size <= 10 million,
  // model non-empty. Errors are 400s naming the option (by its CLI flag).
  static Result<Workload> create(WorkloadOptions options);

  const WorkloadOptions& options() const { return options_; }
  // "/v1/completions" or "/v1/chat/completions".
  std::string_view path() const;

  // The request with the given sequence number (0, 1, 2, ...).
  GeneratedRequest request(std::uint64_t index) const;

  // kSharedPrefix parts, for tests and reports.
  std::size_t pool_size() const { return pool_order_.size(); }
  const std::string& system_prompt(int group) const {
    return system_prompts_[static_cast<std::size_t>(group)];
  }
  std::string question(int group, int prompt_index) const;

 private:
  explicit Workload(WorkloadOptions options);

  WorkloadOptions options_;
  std::vector<std::string> system_prompts_;  // one per group, generated once
  std::vector<std::uint32_t> pool_order_;    // shuffled pool: group * prompts_per_group + prompt
};

}  // namespace infergate::bench
