#include "bench/workload.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "request/tokenizer.h"

namespace infergate::bench {
namespace {

using json = nlohmann::json;
using request::count_tokens;

WorkloadOptions random_options(Api api = Api::kCompletions) {
  WorkloadOptions options;
  options.model = "m";
  options.api = api;
  options.prompt_tokens = 204;
  options.output_tokens = 64;
  options.seed = 7;
  return options;
}

WorkloadOptions shared_prefix_options(Api api = Api::kCompletions) {
  WorkloadOptions options = random_options(api);
  options.kind = WorkloadKind::kSharedPrefix;
  options.num_groups = 3;
  options.prompts_per_group = 4;
  options.system_prompt_tokens = 128;
  options.question_tokens = 76;
  return options;
}

Workload make(WorkloadOptions options) {
  auto workload = Workload::create(std::move(options));
  EXPECT_TRUE(workload.ok()) << workload.status().message();
  return std::move(*workload);
}

TEST(WorkloadTest, BodiesAskForStreamingWithUsageAndExactOutputLength) {
  for (Api api : {Api::kCompletions, Api::kChat}) {
    const json body = json::parse(make(random_options(api)).request(0).body);
    EXPECT_EQ(body["model"], "m");
    EXPECT_EQ(body["max_tokens"], 64);
    EXPECT_EQ(body["ignore_eos"], true);
    EXPECT_EQ(body["stream"], true);
    EXPECT_EQ(body["stream_options"]["include_usage"], true);
    EXPECT_EQ(body.contains("prompt"), api == Api::kCompletions);
    EXPECT_EQ(body.contains("messages"), api == Api::kChat);
  }
  EXPECT_EQ(make(random_options(Api::kCompletions)).path(), "/v1/completions");
  EXPECT_EQ(make(random_options(Api::kChat)).path(), "/v1/chat/completions");
}

TEST(WorkloadTest, RandomPromptsAreDistinctExactLengthAndDeterministic) {
  const Workload workload = make(random_options());
  const Workload again = make(random_options());
  WorkloadOptions other_seed_options = random_options();
  other_seed_options.seed = 8;
  const Workload other_seed = make(other_seed_options);
  std::set<std::string> prompts;
  for (std::uint64_t index = 0; index < 50; ++index) {
    const GeneratedRequest generated = workload.request(index);
    EXPECT_EQ(generated.body, again.request(index).body);
    EXPECT_NE(generated.body, other_seed.request(index).body);
    EXPECT_EQ(generated.prompt_tokens, 204u);
    EXPECT_EQ(generated.group, -1);
    const std::string prompt = json::parse(generated.body)["prompt"];
    EXPECT_EQ(count_tokens(prompt), 204u);
    prompts.insert(prompt);
  }
  EXPECT_EQ(prompts.size(), 50u);
}

TEST(WorkloadTest, RandomChatPutsThePromptInOneUserMessage) {
  const json body = json::parse(make(random_options(Api::kChat)).request(3).body);
  ASSERT_EQ(body["messages"].size(), 1u);
  EXPECT_EQ(body["messages"][0]["role"], "user");
  EXPECT_EQ(count_tokens(body["messages"][0]["content"].get<std::string>()), 204u);
}

TEST(WorkloadTest, SharedPrefixCyclesAShuffledPoolOfEveryGroupAndQuestion) {
  const Workload workload = make(shared_prefix_options());
  ASSERT_EQ(workload.pool_size(), 12u);
  std::set<std::pair<int, int>> seen;
  std::vector<std::pair<int, int>> order;
  for (std::uint64_t index = 0; index < 12; ++index) {
    const GeneratedRequest generated = workload.request(index);
    seen.insert({generated.group, generated.prompt_index});
    order.emplace_back(generated.group, generated.prompt_index);
    // Cycling: request i + pool size repeats request i exactly.
    EXPECT_EQ(workload.request(index + 12).body, generated.body);
    EXPECT_EQ(workload.request(index + 24).body, generated.body);
  }
  EXPECT_EQ(seen.size(), 12u);  // every (group, question) once per cycle
  std::vector<std::pair<int, int>> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_NE(order, sorted) << "the pool should be shuffled";
}

TEST(WorkloadTest, SharedPrefixPromptsOfAGroupStartWithItsSystemPrompt) {
  const Workload workload = make(shared_prefix_options());
  for (int group = 0; group < 3; ++group) {
    EXPECT_EQ(count_tokens(workload.system_prompt(group)), 128u);
  }
  EXPECT_NE(workload.system_prompt(0), workload.system_prompt(1));
  EXPECT_NE(workload.system_prompt(1), workload.system_prompt(2));
  std::set<std::string> questions;
  for (std::uint64_t index = 0; index < 12; ++index) {
    const GeneratedRequest generated = workload.request(index);
    const std::string prompt = json::parse(generated.body)["prompt"];
    const std::string& system = workload.system_prompt(generated.group);
    ASSERT_TRUE(prompt.starts_with(system)) << "request " << index;
    const std::string question = prompt.substr(system.size());
    EXPECT_EQ(question, workload.question(generated.group, generated.prompt_index));
    EXPECT_EQ(count_tokens(question), 76u);
    EXPECT_EQ(count_tokens(prompt), 204u);
    EXPECT_EQ(generated.prompt_tokens, 204u);
    questions.insert(question);
  }
  EXPECT_EQ(questions.size(), 12u);
}

TEST(WorkloadTest, SharedPrefixChatSendsTheSystemPromptAsTheSystemMessage) {
  const Workload workload = make(shared_prefix_options(Api::kChat));
  for (std::uint64_t index = 0; index < 12; ++index) {
    const GeneratedRequest generated = workload.request(index);
    const json messages = json::parse(generated.body)["messages"];
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_EQ(messages[0]["role"], "system");
    EXPECT_EQ(messages[0]["content"], workload.system_prompt(generated.group));
    EXPECT_EQ(messages[1]["role"], "user");
    EXPECT_EQ(messages[1]["content"], workload.question(generated.group, generated.prompt_index));
  }
}

TEST(WorkloadTest, GroupTextsDoNotDependOnThePoolShape) {
  WorkloadOptions more_groups = shared_prefix_options();
  more_groups.num_groups = 5;
  more_groups.prompts_per_group = 2;
  const Workload small = make(shared_prefix_options());
  const Workload large = make(more_groups);
  EXPECT_EQ(small.system_prompt(2), large.system_prompt(2));
  EXPECT_EQ(small.question(1, 1), large.question(1, 1));
}

TEST(WorkloadTest, CreateRejectsBadOptionsNamingTheFlag) {
  const std::vector<std::pair<std::function<void(WorkloadOptions&)>, std::string>> cases = {
      {[](WorkloadOptions& o) { o.model.clear(); }, "--model"},
      {[](WorkloadOptions& o) { o.prompt_tokens = 0; }, "--prompt-tokens"},
      {[](WorkloadOptions& o) { o.output_tokens = -1; }, "--output-tokens"},
      {[](WorkloadOptions& o) { o.num_groups = 0; }, "--num-groups"},
      {[](WorkloadOptions& o) { o.prompts_per_group = 0; }, "--prompts-per-group"},
      {[](WorkloadOptions& o) { o.system_prompt_tokens = 0; }, "--system-prompt-tokens"},
      {[](WorkloadOptions& o) { o.question_tokens = 0; }, "--question-tokens"},
      {[](WorkloadOptions& o) {
         o.num_groups = 100'000;
         o.prompts_per_group = 1'000;
       },
       "--num-groups x --prompts-per-group"},
  };
  for (const auto& [mutate, flag] : cases) {
    WorkloadOptions options = shared_prefix_options();
    mutate(options);
    auto workload = Workload::create(options);
    ASSERT_FALSE(workload.ok()) << flag;
    EXPECT_EQ(workload.status().http_status(), 400);
    EXPECT_NE(workload.status().message().find(flag), std::string::npos)
        << workload.status().message();
  }
}

TEST(WorkloadTest, ParsesApiAndWorkloadNames) {
  EXPECT_EQ(*parse_api("completions"), Api::kCompletions);
  EXPECT_EQ(*parse_api("chat"), Api::kChat);
  EXPECT_FALSE(parse_api("responses").ok());
  EXPECT_EQ(*parse_workload_kind("random"), WorkloadKind::kRandom);
  EXPECT_EQ(*parse_workload_kind("shared-prefix"), WorkloadKind::kSharedPrefix);
  EXPECT_EQ(parse_workload_kind("sharegpt").status().message(),
            "--workload must be random or shared-prefix, got 'sharegpt'");
}

}  // namespace
}  // namespace infergate::bench
