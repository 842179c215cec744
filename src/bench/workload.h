#pragma once

// Request generators for `infergate bench`: which prompts are sent, in which order, with which
// output length. Deterministic: the same options (seed included) give byte-identical bodies.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
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
  // ShareGPT-like single-turn requests: request i draws its prompt and output lengths (seeded by
  // i) from log-normal distributions truncated by vLLM's ShareGPT filter (prompt 4..1024, output
  // >= 4, prompt + output <= 2048) whose means match the published ShareGPT figures (about 202
  // prompt / 179 output tokens; see kShareGpt* in workload.cc). The prompt is distinct text of
  // exactly that length and max_tokens is the drawn output length.
  kShareGpt,
  // Chat sessions: `num_sessions` conversations of `turns_per_session` turns. Every session starts
  // with the same system prompt (`system_prompt_tokens`); turn k (0-based) sends the system
  // prompt, the user turns 0..k (`user_turn_tokens` each) and, between them, the assistant
  // replies 0..k-1 (`output_tokens` each, generated text standing in for the server's answers),
  // so each turn's prompt extends the previous one. Requests go round-robin over the sessions:
  // request i is turn (i / num_sessions) mod turns_per_session of session i mod num_sessions;
  // after num_sessions x turns_per_session requests a fresh set of sessions starts. A session's
  // turns are therefore sent in order, num_sessions requests apart (the load generator does not
  // wait for the previous turn's answer).
  kMultiTurn,
  // Replay of a JSONL trace file (`trace_path`, format in parse_trace()). Request i is trace entry
  // i (wrapping around in closed loop); in open loop the arrivals follow the trace's timestamps
  // (fixed_arrival()) instead of a Poisson process.
  kTrace,
};

std::string_view to_string(Api api);
std::string_view to_string(WorkloadKind kind);
Result<Api> parse_api(std::string_view name);  // "completions" | "chat"
// "random" | "shared-prefix" | "sharegpt" | "multi-turn" | "trace"
Result<WorkloadKind> parse_workload_kind(std::string_view name);

// One request of a trace.
struct TraceEntry {
  double timestamp_s = 0;  // arrival, seconds from the start of the run
  std::string prompt;      // the prompt text, when the trace gives one
  int prompt_tokens = 0;   // its length in tokens (counted when the trace gives the text)
  int output_tokens = 0;   // max_tokens
  std::string session;     // optional session id ("" when none)
  // When the trace gives a length only: the previous entry of the same session, when this
  // prompt is at least as long (the conversation so far, then new text). -1: none.
  int prefix_entry = -1;
};

// Parses a JSONL trace: one JSON object per line, blank lines skipped, fields
//   "timestamp"     number >= 0, required: arrival in seconds from the start of the run;
//   "prompt"        string, or
//   "prompt_tokens" integer >= 1: exactly one of the two;
//   "output_tokens" integer >= 1, required: sent as max_tokens (with ignore_eos);
//   "session_id"    string or integer, optional.
// Other fields are ignored. Entries are ordered by timestamp (stable: ties keep file order).
// Errors (400) name the file and line: "--trace <name>:<line>: ...". Pure; `name` is only used
// in messages.
Result<std::vector<TraceEntry>> parse_trace(std::string_view text, std::string_view name);

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
  int num_sessions = 10;  // kMultiTurn (system_prompt_tokens and output_tokens apply too)
  int turns_per_session = 5;
  int user_turn_tokens = 64;
  std::string trace_path;  // kTrace: the JSONL file, read by Workload::create
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
  int output_tokens = 0;  // max_tokens of this request
  std::string session;    // kMultiTurn: the session number; kTrace: its session_id; else ""
  int turn = -1;          // kMultiTurn: the turn within the session (0-based)
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
  // Validates: token counts, num_groups, prompts_per_group, num_sessions, turns_per_session >= 1,
  // pool size <= 10 million, model non-empty; kTrace reads and parses `trace_path` (start-up
  // only: it does file I/O). Errors are 400s naming the option (by its CLI flag).
  static Result<Workload> create(WorkloadOptions options);

  const WorkloadOptions& options() const { return options_; }
  // "/v1/completions" or "/v1/chat/completions".
  std::string_view path() const;

  // The request with the given sequence number (0, 1, 2, ...).
  GeneratedRequest request(std::uint64_t index) const;

  // kTrace: open-loop arrivals are fixed by the workload rather than drawn by the load generator.
  bool has_fixed_arrivals() const { return options_.kind == WorkloadKind::kTrace; }
  // kTrace: request `index`'s arrival since the start of the run; nullopt past the trace's end
  // (and for every other kind).
  std::optional<Duration> fixed_arrival(std::uint64_t index) const;
  // kTrace: the parsed trace.
  const std::vector<TraceEntry>& trace() const { return trace_; }

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
  std::vector<TraceEntry> trace_;            // kTrace
  std::string trace_prompt(std::size_t entry) const;
  GeneratedRequest multi_turn_request(std::uint64_t index) const;
};

}  // namespace infergate::bench
