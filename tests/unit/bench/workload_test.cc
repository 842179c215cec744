#include "bench/workload.h"

#include <gtest/gtest.h>

#include <fstream>
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
  EXPECT_EQ(*parse_workload_kind("sharegpt"), WorkloadKind::kShareGpt);
  EXPECT_EQ(*parse_workload_kind("multi-turn"), WorkloadKind::kMultiTurn);
  EXPECT_EQ(*parse_workload_kind("trace"), WorkloadKind::kTrace);
  for (WorkloadKind kind :
       {WorkloadKind::kRandom, WorkloadKind::kSharedPrefix, WorkloadKind::kShareGpt,
        WorkloadKind::kMultiTurn, WorkloadKind::kTrace}) {
    EXPECT_EQ(*parse_workload_kind(to_string(kind)), kind);
  }
  EXPECT_EQ(parse_workload_kind("sonnet").status().message(),
            "--workload must be random, shared-prefix, sharegpt, multi-turn or trace, got "
            "'sonnet'");
}

// --- sharegpt ---------------------------------------------------------------------------------

WorkloadOptions sharegpt_options(Api api = Api::kCompletions) {
  WorkloadOptions options = random_options(api);
  options.kind = WorkloadKind::kShareGpt;
  return options;
}

std::string prompt_text(const json& body) {
  if (body.contains("prompt")) return body["prompt"];
  std::string text;
  for (const json& message : body["messages"]) text += message["content"].get<std::string>();
  return text;
}

TEST(ShareGptWorkloadTest, LengthsPassTheFilterMatchThePublishedMeansAndAreExact) {
  const Workload workload = make(sharegpt_options());
  const Workload again = make(sharegpt_options());
  WorkloadOptions other_seed_options = sharegpt_options();
  other_seed_options.seed = 8;
  const Workload other_seed = make(other_seed_options);
  constexpr int kRequests = 3000;
  double prompt_sum = 0;
  double output_sum = 0;
  std::set<std::size_t> distinct_lengths;
  int differs_from_other_seed = 0;
  for (std::uint64_t index = 0; index < kRequests; ++index) {
    const GeneratedRequest generated = workload.request(index);
    ASSERT_EQ(generated.body, again.request(index).body);
    differs_from_other_seed += generated.body != other_seed.request(index).body;
    const json body = json::parse(generated.body);
    ASSERT_EQ(count_tokens(prompt_text(body)), generated.prompt_tokens);
    ASSERT_EQ(body["max_tokens"], generated.output_tokens);
    EXPECT_EQ(body["ignore_eos"], true);
    ASSERT_GE(generated.prompt_tokens, 4u);
    ASSERT_LE(generated.prompt_tokens, 1024u);
    ASSERT_GE(generated.output_tokens, 4);
    ASSERT_LE(generated.prompt_tokens + static_cast<std::size_t>(generated.output_tokens), 2048u);
    prompt_sum += static_cast<double>(generated.prompt_tokens);
    output_sum += generated.output_tokens;
    distinct_lengths.insert(generated.prompt_tokens);
  }
  EXPECT_EQ(differs_from_other_seed, kRequests);
  // Published means of the filtered set: ~202 prompt / ~179 output tokens (vLLM v0.6.0 blog).
  // The sample mean's standard error at n = 3000 is ~3 %: these bounds are ~3 sigma.
  EXPECT_NEAR(prompt_sum / kRequests, 202, 202 * 0.1);
  EXPECT_NEAR(output_sum / kRequests, 179, 179 * 0.1);
  EXPECT_GT(distinct_lengths.size(), 300u) << "lengths spread, not one fixed length";
}

TEST(ShareGptWorkloadTest, ChatSendsOneUserMessage) {
  const GeneratedRequest generated = make(sharegpt_options(Api::kChat)).request(5);
  const json body = json::parse(generated.body);
  ASSERT_EQ(body["messages"].size(), 1u);
  EXPECT_EQ(body["messages"][0]["role"], "user");
  EXPECT_EQ(count_tokens(body["messages"][0]["content"].get<std::string>()),
            generated.prompt_tokens);
}

// --- multi-turn -------------------------------------------------------------------------------

WorkloadOptions multi_turn_options(Api api = Api::kCompletions) {
  WorkloadOptions options = random_options(api);
  options.kind = WorkloadKind::kMultiTurn;
  options.num_sessions = 3;
  options.turns_per_session = 4;
  options.system_prompt_tokens = 32;
  options.user_turn_tokens = 16;
  options.output_tokens = 8;
  return options;
}

TEST(MultiTurnWorkloadTest, TurnsGoRoundRobinOverSessionsAndPromptsGrowByExactCounts) {
  const Workload workload = make(multi_turn_options());
  const Workload again = make(multi_turn_options());
  for (std::uint64_t index = 0; index < 24; ++index) {
    const GeneratedRequest generated = workload.request(index);
    EXPECT_EQ(generated.body, again.request(index).body);
    const int turn = static_cast<int>((index % 12) / 3);
    EXPECT_EQ(generated.turn, turn) << index;
    EXPECT_EQ(generated.session, std::to_string((index / 12) * 3 + index % 3)) << index;
    const std::size_t expected =
        32 + 16 * static_cast<std::size_t>(turn + 1) + 8 * static_cast<std::size_t>(turn);
    EXPECT_EQ(generated.prompt_tokens, expected);
    const json body = json::parse(generated.body);
    EXPECT_EQ(count_tokens(body["prompt"].get<std::string>()), expected);
    EXPECT_EQ(body["max_tokens"], 8);
  }
}

TEST(MultiTurnWorkloadTest, EachTurnCarriesTheWholeConversationSoFar) {
  const Workload workload = make(multi_turn_options());
  // Session 1: requests 1, 4, 7, 10. Each prompt starts with the previous one (the previous
  // turn's prompt, then that turn's reply, then the new user turn).
  std::string previous;
  for (std::uint64_t index : {1u, 4u, 7u, 10u}) {
    const std::string prompt = json::parse(workload.request(index).body)["prompt"];
    EXPECT_TRUE(prompt.starts_with(previous)) << index;
    EXPECT_GT(prompt.size(), previous.size());
    previous = prompt;
  }
  // Sessions share the system prompt and nothing else.
  const std::string first = json::parse(workload.request(0).body)["prompt"];
  const std::string second = json::parse(workload.request(1).body)["prompt"];
  std::size_t common = 0;
  while (common < first.size() && first[common] == second[common]) ++common;
  EXPECT_GE(count_tokens(first.substr(0, common)), 31u);
  EXPECT_LE(count_tokens(first.substr(0, common)), 33u);
  // A new round of sessions (request 12 on) starts over from turn 0 with new user text.
  const std::string restarted = json::parse(workload.request(12).body)["prompt"];
  EXPECT_EQ(count_tokens(restarted), 48u);
  EXPECT_NE(restarted, first);
}

TEST(MultiTurnWorkloadTest, ChatMessagesAlternateAndExtendThePreviousTurn) {
  const Workload workload = make(multi_turn_options(Api::kChat));
  json previous = json::array();
  for (std::uint64_t index : {2u, 5u, 8u, 11u}) {
    const GeneratedRequest generated = workload.request(index);
    const json messages = json::parse(generated.body)["messages"];
    ASSERT_EQ(messages.size(), 2u * static_cast<std::size_t>(generated.turn) + 2);
    EXPECT_EQ(messages[0]["role"], "system");
    EXPECT_EQ(count_tokens(messages[0]["content"].get<std::string>()), 32u);
    for (std::size_t i = 1; i < messages.size(); ++i) {
      EXPECT_EQ(messages[i]["role"], i % 2 == 1 ? "user" : "assistant");
      EXPECT_EQ(count_tokens(messages[i]["content"].get<std::string>()), i % 2 == 1 ? 16u : 8u);
    }
    // Everything the previous turn sent is repeated verbatim, in order.
    for (std::size_t i = 0; i < previous.size(); ++i) EXPECT_EQ(messages[i], previous[i]);
    previous = messages;
  }
}

TEST(MultiTurnWorkloadTest, ValidatesItsOptions) {
  WorkloadOptions options = multi_turn_options();
  options.num_sessions = 0;
  EXPECT_NE(Workload::create(options).status().message().find("--sessions"), std::string::npos);
  options = multi_turn_options();
  options.turns_per_session = 0;
  EXPECT_NE(Workload::create(options).status().message().find("--turns"), std::string::npos);
  options = multi_turn_options();
  options.user_turn_tokens = 0;
  EXPECT_NE(Workload::create(options).status().message().find("--user-tokens"), std::string::npos);
}

// --- trace ------------------------------------------------------------------------------------

TEST(TraceTest, ParsesLinesSortsByTimestampAndChainsSessionPrompts) {
  const std::string text =
      R"({"timestamp": 0.5, "prompt_tokens": 40, "output_tokens": 7, "session_id": "a"})"
      "\n\n"
      R"({"timestamp": 0, "prompt": "Hello there, world", "output_tokens": 3, "extra": 1})"
      "\n"
      R"({"timestamp": 1.25, "prompt_tokens": 90, "output_tokens": 5, "session_id": "a"})"
      "\r\n"
      R"({"timestamp": 1.25, "prompt_tokens": 10, "output_tokens": 5, "session_id": 7})"
      "\n"
      R"({"timestamp": 2, "prompt_tokens": 20, "output_tokens": 5, "session_id": "a"})";
  auto trace = parse_trace(text, "t.jsonl");
  ASSERT_TRUE(trace.ok()) << trace.status().message();
  ASSERT_EQ(trace->size(), 5u);
  EXPECT_EQ((*trace)[0].prompt, "Hello there, world");
  EXPECT_EQ((*trace)[0].prompt_tokens, static_cast<int>(count_tokens("Hello there, world")));
  EXPECT_EQ((*trace)[0].output_tokens, 3);
  EXPECT_EQ((*trace)[1].timestamp_s, 0.5);
  EXPECT_EQ((*trace)[1].session, "a");
  EXPECT_EQ((*trace)[2].prompt_tokens, 90);
  EXPECT_EQ((*trace)[2].prefix_entry, 1) << "a longer prompt of session a extends the last one";
  EXPECT_EQ((*trace)[3].session, "7");
  EXPECT_EQ((*trace)[3].prefix_entry, -1);
  EXPECT_EQ((*trace)[4].prefix_entry, -1) << "a shorter prompt starts a new conversation";
}

TEST(TraceTest, BadLinesAreNamedWithTheReason) {
  const std::string good = R"({"timestamp": 0, "prompt_tokens": 4, "output_tokens": 4})";
  struct Case {
    std::string line;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"{not json", "t.jsonl:2: not valid JSON"},
      {"[1, 2]", "t.jsonl:2: not a JSON object"},
      {R"({"prompt_tokens": 4, "output_tokens": 4})", "t.jsonl:2: \"timestamp\""},
      {R"({"timestamp": -1, "prompt_tokens": 4, "output_tokens": 4})", "t.jsonl:2: \"timestamp\""},
      {R"({"timestamp": "0", "prompt_tokens": 4, "output_tokens": 4})", "t.jsonl:2: \"timestamp\""},
      {R"({"timestamp": 0, "output_tokens": 4})", "t.jsonl:2: give exactly one of"},
      {R"({"timestamp": 0, "prompt": "x", "prompt_tokens": 4, "output_tokens": 4})",
       "t.jsonl:2: give exactly one of"},
      {R"({"timestamp": 0, "prompt": "", "output_tokens": 4})", "t.jsonl:2: \"prompt\""},
      {R"({"timestamp": 0, "prompt_tokens": 0, "output_tokens": 4})",
       "t.jsonl:2: \"prompt_tokens\" must be an integer"},
      {R"({"timestamp": 0, "prompt_tokens": 2.5, "output_tokens": 4})",
       "t.jsonl:2: \"prompt_tokens\" must be an integer"},
      {R"({"timestamp": 0, "prompt_tokens": 4})", "t.jsonl:2: \"output_tokens\" is missing"},
      {R"({"timestamp": 0, "prompt_tokens": 4, "output_tokens": 4, "session_id": [1]})",
       "t.jsonl:2: \"session_id\""},
  };
  for (const Case& test : cases) {
    auto trace = parse_trace(good + "\n" + test.line + "\n", "t.jsonl");
    ASSERT_FALSE(trace.ok()) << test.line;
    EXPECT_EQ(trace.status().http_status(), 400);
    EXPECT_NE(trace.status().message().find("--trace " + test.expected), std::string::npos)
        << test.line << " -> " << trace.status().message();
  }
  EXPECT_NE(parse_trace("\n  \n", "e.jsonl").status().message().find("no requests"),
            std::string::npos);
}

std::string write_temp_file(const std::string& name, const std::string& contents) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << contents;
  return path;
}

WorkloadOptions trace_options(std::string path, Api api = Api::kCompletions) {
  WorkloadOptions options = random_options(api);
  options.kind = WorkloadKind::kTrace;
  options.trace_path = std::move(path);
  return options;
}

TEST(TraceWorkloadTest, ReplaysEntriesWithTheirLengthsArrivalsAndSharedSessionPrefixes) {
  const std::string path = write_temp_file(
      "infergate_workload_trace.jsonl",
      R"({"timestamp": 0.25, "prompt_tokens": 30, "output_tokens": 6, "session_id": "s"})"
      "\n"
      R"({"timestamp": 0.5, "prompt": "What is a KV cache?", "output_tokens": 9})"
      "\n"
      R"({"timestamp": 1.5, "prompt_tokens": 50, "output_tokens": 4, "session_id": "s"})"
      "\n");
  const Workload workload = make(trace_options(path));
  const Workload again = make(trace_options(path));
  ASSERT_TRUE(workload.has_fixed_arrivals());
  EXPECT_EQ(workload.fixed_arrival(0), from_seconds(0.25));
  EXPECT_EQ(workload.fixed_arrival(2), from_seconds(1.5));
  EXPECT_EQ(workload.fixed_arrival(3), std::nullopt);

  const std::vector<std::size_t> prompt_tokens = {30, count_tokens("What is a KV cache?"), 50};
  const std::vector<int> output_tokens = {6, 9, 4};
  for (std::uint64_t index = 0; index < 6; ++index) {  // closed loop wraps around
    const GeneratedRequest generated = workload.request(index);
    EXPECT_EQ(generated.body, again.request(index).body);
    const json body = json::parse(generated.body);
    EXPECT_EQ(generated.prompt_tokens, prompt_tokens[index % 3]);
    EXPECT_EQ(count_tokens(body["prompt"].get<std::string>()), prompt_tokens[index % 3]);
    EXPECT_EQ(body["max_tokens"], output_tokens[index % 3]);
    EXPECT_EQ(generated.output_tokens, output_tokens[index % 3]);
  }
  EXPECT_EQ(json::parse(workload.request(1).body)["prompt"], "What is a KV cache?");
  const std::string first = json::parse(workload.request(0).body)["prompt"];
  const std::string third = json::parse(workload.request(2).body)["prompt"];
  EXPECT_TRUE(third.starts_with(first)) << "the session's second turn carries its first";
  EXPECT_EQ(workload.request(2).session, "s");

  const json chat = json::parse(make(trace_options(path, Api::kChat)).request(1).body);
  EXPECT_EQ(chat["messages"][0]["content"], "What is a KV cache?");
}

TEST(TraceWorkloadTest, OtherKindsHaveNoFixedArrivals) {
  const Workload workload = make(random_options());
  EXPECT_FALSE(workload.has_fixed_arrivals());
  EXPECT_EQ(workload.fixed_arrival(0), std::nullopt);
}

TEST(TraceWorkloadTest, StartUpErrorsNameTheFileAndLine) {
  EXPECT_EQ(Workload::create(trace_options("")).status().message(),
            "--workload trace needs --trace FILE");
  const std::string missing = ::testing::TempDir() + "infergate_no_such_trace.jsonl";
  EXPECT_EQ(Workload::create(trace_options(missing)).status().message(),
            "--trace: cannot read '" + missing + "'");
  const std::string bad = write_temp_file(
      "infergate_bad_trace.jsonl",
      "{\"timestamp\": 0, \"prompt_tokens\": 3, \"output_tokens\": 2}\n{\"timestamp\": 1}\n");
  const auto status = Workload::create(trace_options(bad)).status();
  EXPECT_EQ(status.http_status(), 400);
  EXPECT_NE(status.message().find(bad + ":2:"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace infergate::bench
