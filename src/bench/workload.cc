#include "bench/workload.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
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

constexpr std::size_t kMaxPoolSize = 10'000'000;
constexpr int kMaxTokensPerText = 10'000'000;

json base_body(const WorkloadOptions& options) {
  return json{{"model", options.model},
              {"max_tokens", options.output_tokens},
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

}  // namespace

std::string_view to_string(Api api) { return api == Api::kChat ? "chat" : "completions"; }

std::string_view to_string(WorkloadKind kind) {
  return kind == WorkloadKind::kSharedPrefix ? "shared-prefix" : "random";
}

Result<Api> parse_api(std::string_view name) {
  if (name == "completions") return Api::kCompletions;
  if (name == "chat") return Api::kChat;
  return Status::bad_request(fmt::format("--api must be completions or chat, got '{}'", name));
}

Result<WorkloadKind> parse_workload_kind(std::string_view name) {
  if (name == "random") return WorkloadKind::kRandom;
  if (name == "shared-prefix") return WorkloadKind::kSharedPrefix;
  return Status::bad_request(
      fmt::format("--workload must be random or shared-prefix, got '{}'", name));
}

Result<Workload> Workload::create(WorkloadOptions options) {
  if (options.model.empty()) return Status::bad_request("--model must not be empty");
  for (const auto& [value, flag] :
       {std::pair{options.prompt_tokens, "--prompt-tokens"},
        std::pair{options.output_tokens, "--output-tokens"},
        std::pair{options.num_groups, "--num-groups"},
        std::pair{options.prompts_per_group, "--prompts-per-group"},
        std::pair{options.system_prompt_tokens, "--system-prompt-tokens"},
        std::pair{options.question_tokens, "--question-tokens"}}) {
    if (Status status = check_range(value, 1, flag); !status.is_ok()) return status;
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

GeneratedRequest Workload::request(std::uint64_t index) const {
  GeneratedRequest generated;
  json body = base_body(options_);
  if (options_.kind == WorkloadKind::kRandom) {
    std::string text =
        request::make_text_with_tokens(static_cast<std::size_t>(options_.prompt_tokens),
                                       derive_seed(options_.seed, kRandomPromptDomain, index));
    generated.prompt_tokens = static_cast<std::size_t>(options_.prompt_tokens);
    if (options_.api == Api::kChat) {
      body["messages"] = json::array({{{"role", "user"}, {"content", std::move(text)}}});
    } else {
      body["prompt"] = std::move(text);
    }
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
