#include "bench/workload.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "common/random.h"
#include "request/tokenizer.h"

namespace infergate::bench {
namespace {

using json = nlohmann::json;

// Seed domains: each kind of text (and the shuffle) draws from its own stream.
constexpr std::uint64_t kRandomPromptDomain = 1;
constexpr std::uint64_t kSystemPromptDomain = 2;
constexpr std::uint64_t kQuestionDomain = 3;
constexpr std::uint64_t kPoolShuffleDomain = 4;
// 5 is the load generator's arrival domain.
constexpr std::uint64_t kShareGptLengthDomain = 6;
constexpr std::uint64_t kShareGptPromptDomain = 7;
constexpr std::uint64_t kChatSystemDomain = 8;
constexpr std::uint64_t kChatUserDomain = 9;
constexpr std::uint64_t kChatAssistantDomain = 10;
constexpr std::uint64_t kTracePromptDomain = 11;

// ShareGPT-like lengths (benchmarks facts §1.1): vLLM's filter keeps prompts of 4..1024 tokens,
// outputs of at least 4 and prompt + output <= 2048; the reported means of the filtered
// single-turn set are about 202 / 179 (vLLM v0.6.0 blog, Llama-3 tokenizer). The dataset's
// medians and tails are not published, so the shapes are log-normal with sigma 1 and the medians
// chosen so that the means after the filter are ~202 and ~179.
constexpr double kShareGptPromptLogMedian = 4.965;
constexpr double kShareGptOutputLogMedian = 4.73;
constexpr double kShareGptLogSigma = 1.0;
constexpr int kShareGptMinTokens = 4;
constexpr int kShareGptMaxPromptTokens = 1024;
constexpr int kShareGptMaxTotalTokens = 2048;

constexpr double kMaxTraceTimestampSeconds = 1e7;

constexpr std::size_t kMaxPoolSize = 10'000'000;
constexpr int kMaxTokensPerText = 10'000'000;

json base_body(const WorkloadOptions& options, int output_tokens) {
  return json{{"model", options.model},
              {"max_tokens", output_tokens},
              {"ignore_eos", true},
              {"stream", true},
              {"stream_options", {{"include_usage", true}}}};
}

Status check_range(int value, int min, std::string_view flag) {
  if (value < min || value > kMaxTokensPerText) {
    return Status::bad_request(
        fmt::format("{} must be between {} and {}, got {}", flag, min, kMaxTokensPerText, value));
  }
  return {};
}

// A standard normal draw (Box-Muller; our own, since std:: distributions differ by library).
double next_normal(SplitMix64& rng) {
  const double radius = std::sqrt(-2.0 * std::log1p(-rng.next_unit()));
  return radius * std::cos(2.0 * std::numbers::pi * rng.next_unit());
}

int log_normal_tokens(SplitMix64& rng, double log_median) {
  const double value = std::exp(log_median + kShareGptLogSigma * next_normal(rng));
  return static_cast<int>(std::min(std::round(value), 1e9));
}

// Request index's ShareGPT-like (prompt, output) lengths: redrawn until they pass the filter.
std::pair<int, int> sharegpt_lengths(std::uint64_t seed, std::uint64_t index) {
  SplitMix64 rng(derive_seed(seed, kShareGptLengthDomain, index));
  while (true) {
    const int prompt = log_normal_tokens(rng, kShareGptPromptLogMedian);
    const int output = log_normal_tokens(rng, kShareGptOutputLogMedian);
    if (prompt >= kShareGptMinTokens && prompt <= kShareGptMaxPromptTokens &&
        output >= kShareGptMinTokens && prompt + output <= kShareGptMaxTotalTokens) {
      return {prompt, output};
    }
  }
}

// The prompt (text or chat messages) of one single-message request.
void set_user_prompt(json& body, Api api, std::string text) {
  if (api == Api::kChat) {
    body["messages"] = json::array({{{"role", "user"}, {"content", std::move(text)}}});
  } else {
    body["prompt"] = std::move(text);
  }
}

Status trace_error(std::string_view name, std::size_t line, std::string_view what) {
  return Status::bad_request(fmt::format("--trace {}:{}: {}", name, line, what));
}

// A trace field that must be an integer in [1, kMaxTokensPerText].
Result<int> trace_token_count(const json& object, const char* field, std::string_view name,
                              std::size_t line) {
  const json& value = object.at(field);
  if (!value.is_number_integer() || value.get<std::int64_t>() < 1 ||
      value.get<std::int64_t>() > kMaxTokensPerText) {
    return trace_error(name, line,
                       fmt::format("\"{}\" must be an integer between 1 and {}, got {}", field,
                                   kMaxTokensPerText, value.dump()));
  }
  return static_cast<int>(value.get<std::int64_t>());
}

}  // namespace

Result<std::vector<TraceEntry>> parse_trace(std::string_view text, std::string_view name) {
  std::vector<TraceEntry> entries;
  std::size_t line_number = 0;
  while (!text.empty()) {
    const std::size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const json object = json::parse(line, nullptr, false);
    if (object.is_discarded()) return trace_error(name, line_number, "not valid JSON");
    if (!object.is_object()) return trace_error(name, line_number, "not a JSON object");

    TraceEntry entry;
    const auto timestamp = object.find("timestamp");
    if (timestamp == object.end()) {
      return trace_error(name, line_number, "\"timestamp\" (seconds from the start) is missing");
    }
    if (!timestamp->is_number() || !(timestamp->get<double>() >= 0) ||
        !(timestamp->get<double>() <= kMaxTraceTimestampSeconds)) {
      return trace_error(name, line_number,
                         fmt::format("\"timestamp\" must be a number of seconds between 0 and "
                                     "{:g}, got {}",
                                     kMaxTraceTimestampSeconds, timestamp->dump()));
    }
    entry.timestamp_s = timestamp->get<double>();

    const bool has_prompt = object.contains("prompt");
    const bool has_length = object.contains("prompt_tokens");
    if (has_prompt == has_length) {
      return trace_error(name, line_number,
                         "give exactly one of \"prompt\" (text) and \"prompt_tokens\" (length)");
    }
    if (has_prompt) {
      const json& prompt = object.at("prompt");
      if (!prompt.is_string() || prompt.get_ref<const std::string&>().empty()) {
        return trace_error(name, line_number, "\"prompt\" must be a non-empty string");
      }
      entry.prompt = prompt.get<std::string>();
      const std::size_t tokens = request::count_tokens(entry.prompt);
      if (tokens > static_cast<std::size_t>(kMaxTokensPerText)) {
        return trace_error(name, line_number, "\"prompt\" is too long");
      }
      entry.prompt_tokens = static_cast<int>(tokens);
    } else {
      auto tokens = trace_token_count(object, "prompt_tokens", name, line_number);
      if (!tokens) return tokens.status();
      entry.prompt_tokens = *tokens;
    }
    if (!object.contains("output_tokens")) {
      return trace_error(name, line_number, "\"output_tokens\" is missing");
    }
    auto output = trace_token_count(object, "output_tokens", name, line_number);
    if (!output) return output.status();
    entry.output_tokens = *output;

    if (const auto session = object.find("session_id"); session != object.end()) {
      if (session->is_string()) {
        entry.session = session->get<std::string>();
      } else if (session->is_number_integer()) {
        entry.session = session->dump();
      } else {
        return trace_error(name, line_number, "\"session_id\" must be a string or an integer");
      }
    }
    entries.push_back(std::move(entry));
  }
  if (entries.empty()) {
    return Status::bad_request(fmt::format("--trace {}: no requests in the trace", name));
  }
  std::stable_sort(entries.begin(), entries.end(), [](const TraceEntry& a, const TraceEntry& b) {
    return a.timestamp_s < b.timestamp_s;
  });
  // Length-only prompts of one session extend the session's previous prompt when they are at
  // least as long: a turn's prompt carries the conversation so far.
  std::unordered_map<std::string, int> last_of_session;
  for (std::size_t index = 0; index < entries.size(); ++index) {
    TraceEntry& entry = entries[index];
    if (entry.session.empty()) continue;
    auto [it, inserted] = last_of_session.try_emplace(entry.session, static_cast<int>(index));
    if (inserted) continue;
    const TraceEntry& previous = entries[static_cast<std::size_t>(it->second)];
    if (entry.prompt.empty() && previous.prompt.empty() &&
        entry.prompt_tokens >= previous.prompt_tokens) {
      entry.prefix_entry = it->second;
    }
    it->second = static_cast<int>(index);
  }
  return entries;
}

std::string_view to_string(Api api) { return api == Api::kChat ? "chat" : "completions"; }

std::string_view to_string(WorkloadKind kind) {
  switch (kind) {
    case WorkloadKind::kRandom:
      return "random";
    case WorkloadKind::kSharedPrefix:
      return "shared-prefix";
    case WorkloadKind::kShareGpt:
      return "sharegpt";
    case WorkloadKind::kMultiTurn:
      return "multi-turn";
    case WorkloadKind::kTrace:
      return "trace";
  }
  return "random";
}

Result<Api> parse_api(std::string_view name) {
  if (name == "completions") return Api::kCompletions;
  if (name == "chat") return Api::kChat;
  return Status::bad_request(fmt::format("--api must be completions or chat, got '{}'", name));
}

Result<WorkloadKind> parse_workload_kind(std::string_view name) {
  if (name == "random") return WorkloadKind::kRandom;
  if (name == "shared-prefix") return WorkloadKind::kSharedPrefix;
  if (name == "sharegpt") return WorkloadKind::kShareGpt;
  if (name == "multi-turn") return WorkloadKind::kMultiTurn;
  if (name == "trace") return WorkloadKind::kTrace;
  return Status::bad_request(fmt::format(
      "--workload must be random, shared-prefix, sharegpt, multi-turn or trace, got '{}'", name));
}

Result<Workload> Workload::create(WorkloadOptions options) {
  if (options.model.empty()) return Status::bad_request("--model must not be empty");
  for (const auto& [value, flag] :
       {std::pair{options.prompt_tokens, "--prompt-tokens"},
        std::pair{options.output_tokens, "--output-tokens"},
        std::pair{options.num_groups, "--num-groups"},
        std::pair{options.prompts_per_group, "--prompts-per-group"},
        std::pair{options.system_prompt_tokens, "--system-prompt-tokens"},
        std::pair{options.question_tokens, "--question-tokens"},
        std::pair{options.num_sessions, "--sessions"},
        std::pair{options.turns_per_session, "--turns"},
        std::pair{options.user_turn_tokens, "--user-tokens"}}) {
    if (Status status = check_range(value, 1, flag); !status.is_ok()) return status;
  }
  if (options.kind == WorkloadKind::kMultiTurn &&
      static_cast<std::size_t>(options.num_sessions) *
              static_cast<std::size_t>(options.turns_per_session) >
          kMaxPoolSize) {
    return Status::bad_request(
        fmt::format("--sessions x --turns must be at most {}", kMaxPoolSize));
  }
  if (options.kind == WorkloadKind::kTrace) {
    if (options.trace_path.empty()) {
      return Status::bad_request("--workload trace needs --trace FILE");
    }
    std::ifstream file(options.trace_path, std::ios::binary);
    if (!file) {
      return Status::bad_request(fmt::format("--trace: cannot read '{}'", options.trace_path));
    }
    std::ostringstream contents;
    contents << file.rdbuf();
    auto trace = parse_trace(contents.str(), options.trace_path);
    if (!trace) return trace.status();
    Workload workload(std::move(options));
    workload.trace_ = std::move(*trace);
    return workload;
  }
  if (options.kind == WorkloadKind::kSharedPrefix &&
      static_cast<std::size_t>(options.num_groups) *
              static_cast<std::size_t>(options.prompts_per_group) >
          kMaxPoolSize) {
    return Status::bad_request(
        fmt::format("--num-groups x --prompts-per-group must be at most {}", kMaxPoolSize));
  }
  return Workload(std::move(options));
}

Workload::Workload(WorkloadOptions options) : options_(std::move(options)) {
  if (options_.kind != WorkloadKind::kSharedPrefix) return;
  system_prompts_.reserve(static_cast<std::size_t>(options_.num_groups));
  for (int group = 0; group < options_.num_groups; ++group) {
    system_prompts_.push_back(request::make_text_with_tokens(
        static_cast<std::size_t>(options_.system_prompt_tokens),
        derive_seed(options_.seed, kSystemPromptDomain, static_cast<std::uint64_t>(group))));
  }
  const std::size_t pool_size = static_cast<std::size_t>(options_.num_groups) *
                                static_cast<std::size_t>(options_.prompts_per_group);
  pool_order_.resize(pool_size);
  for (std::size_t entry = 0; entry < pool_size; ++entry) {
    pool_order_[entry] = static_cast<std::uint32_t>(entry);
  }
  // Fisher-Yates with our own generator: std::shuffle's order differs between standard libraries.
  SplitMix64 rng(derive_seed(options_.seed, kPoolShuffleDomain));
  for (std::size_t last = pool_size; last > 1; --last) {
    std::swap(pool_order_[last - 1], pool_order_[rng.next_below(last)]);
  }
}

std::string_view Workload::path() const {
  return options_.api == Api::kChat ? "/v1/chat/completions" : "/v1/completions";
}

std::string Workload::question(int group, int prompt_index) const {
  return request::make_text_with_tokens(
      static_cast<std::size_t>(options_.question_tokens),
      derive_seed(options_.seed, kQuestionDomain, static_cast<std::uint64_t>(group),
                  static_cast<std::uint64_t>(prompt_index)));
}

std::optional<Duration> Workload::fixed_arrival(std::uint64_t index) const {
  if (options_.kind != WorkloadKind::kTrace || index >= trace_.size()) return std::nullopt;
  return from_seconds(trace_[index].timestamp_s);
}

std::string Workload::trace_prompt(std::size_t entry) const {
  if (!trace_[entry].prompt.empty()) return trace_[entry].prompt;
  // The session's chain of length-only prompts, oldest first; each adds text to the previous.
  std::vector<std::size_t> chain = {entry};
  while (trace_[chain.back()].prefix_entry >= 0) {
    chain.push_back(static_cast<std::size_t>(trace_[chain.back()].prefix_entry));
  }
  std::string prompt;
  int prompt_tokens = 0;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const TraceEntry& traced = trace_[*it];
    prompt += request::make_text_with_tokens(
        static_cast<std::size_t>(traced.prompt_tokens - prompt_tokens),
        derive_seed(options_.seed, kTracePromptDomain, *it));
    prompt_tokens = traced.prompt_tokens;
  }
  return prompt;
}

GeneratedRequest Workload::multi_turn_request(std::uint64_t index) const {
  const auto sessions = static_cast<std::uint64_t>(options_.num_sessions);
  const auto turns = static_cast<std::uint64_t>(options_.turns_per_session);
  const std::uint64_t round = index / (sessions * turns);
  const std::uint64_t within = index % (sessions * turns);
  const std::uint64_t session = round * sessions + within % sessions;
  const int turn = static_cast<int>(within / sessions);

  GeneratedRequest generated;
  generated.output_tokens = options_.output_tokens;
  generated.session = std::to_string(session);
  generated.turn = turn;
  json body = base_body(options_, options_.output_tokens);
  // One system prompt for every session (an application's instructions), then the conversation.
  std::string system_text =
      request::make_text_with_tokens(static_cast<std::size_t>(options_.system_prompt_tokens),
                                     derive_seed(options_.seed, kChatSystemDomain));
  json messages = json::array({{{"role", "system"}, {"content", system_text}}});
  std::string prompt = std::move(system_text);
  for (int past = 0; past <= turn; ++past) {
    std::string user_text = request::make_text_with_tokens(
        static_cast<std::size_t>(options_.user_turn_tokens),
        derive_seed(options_.seed, kChatUserDomain, session, static_cast<std::uint64_t>(past)));
    prompt += user_text;
    messages.push_back({{"role", "user"}, {"content", std::move(user_text)}});
    if (past == turn) break;
    std::string reply =
        request::make_text_with_tokens(static_cast<std::size_t>(options_.output_tokens),
                                       derive_seed(options_.seed, kChatAssistantDomain, session,
                                                   static_cast<std::uint64_t>(past)));
    prompt += reply;
    messages.push_back({{"role", "assistant"}, {"content", std::move(reply)}});
  }
  generated.prompt_tokens =
      static_cast<std::size_t>(options_.system_prompt_tokens) +
      static_cast<std::size_t>(turn + 1) * static_cast<std::size_t>(options_.user_turn_tokens) +
      static_cast<std::size_t>(turn) * static_cast<std::size_t>(options_.output_tokens);
  if (options_.api == Api::kChat) {
    body["messages"] = std::move(messages);
  } else {
    body["prompt"] = std::move(prompt);
  }
  generated.body = body.dump();
  return generated;
}

GeneratedRequest Workload::request(std::uint64_t index) const {
  if (options_.kind == WorkloadKind::kMultiTurn) return multi_turn_request(index);
  GeneratedRequest generated;
  generated.output_tokens = options_.output_tokens;
  if (options_.kind == WorkloadKind::kShareGpt) {
    const auto [prompt_tokens, output_tokens] = sharegpt_lengths(options_.seed, index);
    generated.output_tokens = output_tokens;
    generated.prompt_tokens = static_cast<std::size_t>(prompt_tokens);
  } else if (options_.kind == WorkloadKind::kTrace) {
    const std::size_t entry = index % trace_.size();
    generated.output_tokens = trace_[entry].output_tokens;
    generated.prompt_tokens = static_cast<std::size_t>(trace_[entry].prompt_tokens);
    generated.session = trace_[entry].session;
  }
  json body = base_body(options_, generated.output_tokens);
  if (options_.kind == WorkloadKind::kRandom) {
    std::string text =
        request::make_text_with_tokens(static_cast<std::size_t>(options_.prompt_tokens),
                                       derive_seed(options_.seed, kRandomPromptDomain, index));
    generated.prompt_tokens = static_cast<std::size_t>(options_.prompt_tokens);
    set_user_prompt(body, options_.api, std::move(text));
  } else if (options_.kind == WorkloadKind::kShareGpt) {
    set_user_prompt(
        body, options_.api,
        request::make_text_with_tokens(generated.prompt_tokens,
                                       derive_seed(options_.seed, kShareGptPromptDomain, index)));
  } else if (options_.kind == WorkloadKind::kTrace) {
    set_user_prompt(body, options_.api, trace_prompt(index % trace_.size()));
  } else {
    const std::uint32_t entry = pool_order_[index % pool_order_.size()];
    generated.group =
        static_cast<int>(entry / static_cast<std::uint32_t>(options_.prompts_per_group));
    generated.prompt_index =
        static_cast<int>(entry % static_cast<std::uint32_t>(options_.prompts_per_group));
    generated.prompt_tokens = static_cast<std::size_t>(options_.system_prompt_tokens) +
                              static_cast<std::size_t>(options_.question_tokens);
    std::string question_text = question(generated.group, generated.prompt_index);
    const std::string& system_text = system_prompts_[static_cast<std::size_t>(generated.group)];
    if (options_.api == Api::kChat) {
      body["messages"] = json::array({{{"role", "system"}, {"content", system_text}},
                                      {{"role", "user"}, {"content", std::move(question_text)}}});
    } else {
      body["prompt"] = system_text + question_text;
    }
  }
  generated.body = body.dump();
  return generated;
}

}  // namespace infergate::bench
