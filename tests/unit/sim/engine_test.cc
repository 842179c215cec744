#include "sim/engine.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace infergate::sim {
namespace {

std::vector<std::uint32_t> tokens_from(std::uint32_t first, int count) {
  std::vector<std::uint32_t> tokens;
  for (int i = 0; i < count; ++i) tokens.push_back(first + static_cast<std::uint32_t>(i));
  return tokens;
}

EngineRequest make_request(std::uint64_t id, std::vector<std::uint32_t> prompt, int output_tokens,
                           int lora_id = 0, std::string_view salt = "") {
  EngineRequest request;
  request.id = id;
  request.prompt_tokens = std::move(prompt);
  request.max_output_tokens = output_tokens;
  request.stop_after_tokens = output_tokens;
  request.lora_id = lora_id;
  request.prefix_root_hash = root_block_hash(lora_id == 0 ? "base" : "adapter", salt);
  request.sampling_seed = id;
  return request;
}

// Drives an engine in virtual time, checking the cache after every step.
struct Driver {
  Engine& engine;
  TimePoint now{};
  std::vector<StepOutput> steps;
  std::map<std::uint64_t, FinishedRequest> finished;

  bool step() {
    auto duration = engine.begin_step(now);
    if (!duration) return false;
    now += *duration;
    steps.push_back(engine.finish_step(now));
    for (const auto& record : steps.back().finished) finished.emplace(record.request_id, record);
    EXPECT_TRUE(engine.kv_cache().check_invariants());
    return true;
  }
  void run_until_idle(int max_steps = 100000) {
    for (int i = 0; i < max_steps && step(); ++i) {
    }
  }
};

TEST(EngineTest, PrefillThenOneTokenPerStep) {
  Engine engine({.num_gpu_blocks = 100});
  ASSERT_TRUE(engine.add_request(make_request(1, tokens_from(0, 100), 10), TimePoint{}).is_ok());
  Driver driver{engine};
  driver.run_until_idle();
  ASSERT_EQ(driver.steps.size(), 10u);
  EXPECT_EQ(driver.steps[0].scheduled_tokens, 100);
  for (std::size_t i = 1; i < driver.steps.size(); ++i)
    EXPECT_EQ(driver.steps[i].scheduled_tokens, 1);
  const FinishedRequest& record = driver.finished.at(1);
  EXPECT_EQ(record.output_tokens, 10);
  EXPECT_EQ(record.reason, FinishReason::kLength);
  EXPECT_EQ(*record.first_token, driver.steps[0].end);
  EXPECT_EQ(engine.kv_cache().free_blocks(), engine.kv_cache().usable_blocks());
  EXPECT_EQ(engine.counters().prompt_tokens, 100u);
  EXPECT_EQ(engine.counters().generation_tokens, 10u);
}

TEST(EngineTest, SimulatedEosStopsEarlyWithReasonStop) {
  Engine engine({.num_gpu_blocks = 100});
  auto request = make_request(1, tokens_from(0, 20), 50);
  request.stop_after_tokens = 7;
  ASSERT_TRUE(engine.add_request(request, TimePoint{}).is_ok());
  Driver driver{engine};
  driver.run_until_idle();
  EXPECT_EQ(driver.finished.at(1).output_tokens, 7);
  EXPECT_EQ(driver.finished.at(1).reason, FinishReason::kStop);
}

TEST(EngineTest, LongPromptsArePrefilledInChunksUnderTheTokenBudget) {
  Engine engine({.num_gpu_blocks = 100, .max_num_batched_tokens = 64});
  ASSERT_TRUE(engine.add_request(make_request(1, tokens_from(0, 200), 2), TimePoint{}).is_ok());
  Driver driver{engine};
  driver.run_until_idle();
  std::vector<int> scheduled;
  for (const auto& step : driver.steps) scheduled.push_back(step.scheduled_tokens);
  EXPECT_EQ(scheduled, (std::vector<int>{64, 64, 64, 8, 1}));
  EXPECT_TRUE(driver.steps[2].tokens.empty()) << "no token before the prompt is done";
  EXPECT_EQ(driver.steps[3].tokens.size(), 1u);
}

TEST(EngineTest, RunningRequestsGoFirstAndWaitingOnesFillTheBudget) {
  Engine engine({.num_gpu_blocks = 1000, .max_num_batched_tokens = 100});
  ASSERT_TRUE(engine.add_request(make_request(1, tokens_from(0, 90), 5), TimePoint{}).is_ok());
  Driver driver{engine};
  ASSERT_TRUE(driver.step());
  ASSERT_TRUE(engine.add_request(make_request(2, tokens_from(1000, 150), 5), driver.now).is_ok());
  ASSERT_TRUE(driver.step());
  // Request 1 decodes one token, request 2 gets the remaining 99 tokens of budget.
  EXPECT_EQ(driver.steps[1].scheduled_tokens, 100);
  EXPECT_EQ(engine.num_running(), 2);
}

TEST(EngineTest, MaxNumSeqsBoundsTheRunningSet) {
  Engine engine({.num_gpu_blocks = 1000, .max_num_seqs = 2});
  for (std::uint64_t id = 1; id <= 3; ++id) {
    ASSERT_TRUE(
        engine.add_request(make_request(id, tokens_from(id * 100, 10), 3), TimePoint{}).is_ok());
  }
  Driver driver{engine};
  ASSERT_TRUE(driver.step());
  EXPECT_EQ(engine.num_running(), 2);
  EXPECT_EQ(engine.num_waiting(), 1);
  driver.run_until_idle();
  EXPECT_EQ(driver.finished.size(), 3u);
}

TEST(EngineTest, PrefixHitsStopOneBlockShortOfAFullMatch) {
  Engine engine({.num_gpu_blocks = 100});
  Driver driver{engine};
  ASSERT_TRUE(engine.add_request(make_request(1, tokens_from(0, 64), 1), driver.now).is_ok());
  driver.run_until_idle();
  // Identical 64-token prompt: 3 of 4 blocks hit, the last token must be recomputed.
  ASSERT_TRUE(engine.add_request(make_request(2, tokens_from(0, 64), 1), driver.now).is_ok());
  // 65 tokens sharing the first 64: all 4 blocks hit.
  ASSERT_TRUE(engine.add_request(make_request(3, tokens_from(0, 65), 1), driver.now).is_ok());
  // Same tokens under another cache_salt or adapter: no hit.
  ASSERT_TRUE(
      engine.add_request(make_request(4, tokens_from(0, 64), 1, 0, "salt"), driver.now).is_ok());
  ASSERT_TRUE(engine.add_request(make_request(5, tokens_from(0, 64), 1, 1), driver.now).is_ok());
  driver.run_until_idle();
  EXPECT_EQ(driver.finished.at(2).cached_tokens, 48);
  EXPECT_EQ(driver.finished.at(3).cached_tokens, 64);
  EXPECT_EQ(driver.finished.at(4).cached_tokens, 0);
  EXPECT_EQ(driver.finished.at(5).cached_tokens, 0);
  EXPECT_EQ(engine.counters().prefix_queries, 64u * 4 + 65);
  EXPECT_EQ(engine.counters().prefix_hits, 48u + 64);
}

TEST(EngineTest, DecodeFilledBlocksAreCachedForTheNextTurn) {
  EngineConfig config{.num_gpu_blocks = 100};
  for (std::uint32_t id = 5000; id < 5016; ++id) config.output_token_ids.push_back(id);
  Engine engine(config);
  Driver driver{engine};
  auto first_prompt = tokens_from(0, 20);
  ASSERT_TRUE(engine.add_request(make_request(1, first_prompt, 30), driver.now).is_ok());
  driver.run_until_idle();
  // The next turn's prompt is the conversation so far: prompt + generated tokens + more.
  std::vector<std::uint32_t> next_turn = first_prompt;
  for (const auto& step : driver.steps) {
    for (const auto& token : step.tokens)
      next_turn.push_back(engine.config().output_token_ids[token.vocab_index]);
  }
  ASSERT_EQ(next_turn.size(), 50u);
  auto more = tokens_from(9000, 14);
  next_turn.insert(next_turn.end(), more.begin(), more.end());
  ASSERT_TRUE(engine.add_request(make_request(2, next_turn, 1), driver.now).is_ok());
  driver.run_until_idle();
  // 50 tokens were computed in turn one (the 50th token's KV never was): 3 full blocks.
  EXPECT_EQ(driver.finished.at(2).cached_tokens, 48);
}

TEST(EngineTest, PreemptsTheNewestRunningRequestWhenBlocksRunOut) {
  // 8 usable blocks; two requests of 2 blocks of prompt each growing to 5 blocks.
  Engine engine({.num_gpu_blocks = 9, .enable_prefix_caching = false});
  Driver driver{engine};
  ASSERT_TRUE(engine.add_request(make_request(1, tokens_from(0, 32), 48), driver.now).is_ok());
  ASSERT_TRUE(engine.add_request(make_request(2, tokens_from(100, 32), 48), driver.now).is_ok());
  driver.run_until_idle();
  EXPECT_GT(engine.counters().preemptions, 0u);
  ASSERT_EQ(driver.finished.size(), 2u);
  EXPECT_EQ(driver.finished.at(1).output_tokens, 48);
  EXPECT_EQ(driver.finished.at(2).output_tokens, 48);
  // The older request is never the victim, so it finishes first.
  EXPECT_LT(*driver.finished.at(1).last_token, *driver.finished.at(2).last_token);
  EXPECT_EQ(engine.kv_cache().free_blocks(), 8);
}

TEST(EngineTest, PreemptedRequestsHitTheirOwnCachedPrefixWhenResumed) {
  Engine engine({.num_gpu_blocks = 9});
  Driver driver{engine};
  ASSERT_TRUE(engine.add_request(make_request(1, tokens_from(0, 32), 48), driver.now).is_ok());
  ASSERT_TRUE(engine.add_request(make_request(2, tokens_from(100, 32), 48), driver.now).is_ok());
  driver.run_until_idle();
  EXPECT_GT(engine.counters().preemptions, 0u);
  EXPECT_GT(engine.counters().prefix_hits, 0u);
  EXPECT_EQ(driver.finished.at(2).output_tokens, 48);
}

TEST(EngineTest, WaitingRequestWhoseAdapterWouldExceedMaxLorasWaitsInPlace) {
  Engine engine({.num_gpu_blocks = 1000, .max_loras = 1});
  Driver driver{engine};
  ASSERT_TRUE(engine.add_request(make_request(1, tokens_from(0, 10), 3, 1), driver.now).is_ok());
  ASSERT_TRUE(engine.add_request(make_request(2, tokens_from(100, 10), 3, 2), driver.now).is_ok());
  ASSERT_TRUE(engine.add_request(make_request(3, tokens_from(200, 10), 3, 0), driver.now).is_ok());
  ASSERT_TRUE(engine.add_request(make_request(4, tokens_from(300, 10), 3, 1), driver.now).is_ok());
  ASSERT_TRUE(driver.step());
  EXPECT_EQ(engine.num_running(), 3) << "adapter 1 twice and the base model";
  EXPECT_EQ(engine.waiting_lora_ids(), std::vector<int>{2});
  EXPECT_EQ(engine.running_lora_ids(), std::vector<int>{1});
  driver.run_until_idle();
  EXPECT_GT(*driver.finished.at(2).first_scheduled, *driver.finished.at(1).first_scheduled);
  EXPECT_EQ(driver.finished.size(), 4u);
}

TEST(EngineTest, AbortsFreeBlocksWhetherWaitingRunningOrMidStep) {
  Engine engine({.num_gpu_blocks = 100, .max_num_seqs = 1});
  Driver driver{engine};
  ASSERT_TRUE(engine.add_request(make_request(1, tokens_from(0, 40), 10), driver.now).is_ok());
  ASSERT_TRUE(engine.add_request(make_request(2, tokens_from(100, 40), 10), driver.now).is_ok());
  ASSERT_TRUE(driver.step());
  auto waiting = engine.abort_request(2, driver.now);
  ASSERT_TRUE(waiting.has_value());
  EXPECT_EQ(waiting->reason, FinishReason::kAbort);
  EXPECT_FALSE(waiting->first_scheduled.has_value());

  auto duration = engine.begin_step(driver.now);
  ASSERT_TRUE(duration.has_value());
  EXPECT_FALSE(engine.abort_request(1, driver.now).has_value()) << "deferred to the step's end";
  StepOutput output = engine.finish_step(driver.now + *duration);
  EXPECT_TRUE(output.tokens.empty());
  ASSERT_EQ(output.finished.size(), 1u);
  EXPECT_EQ(output.finished[0].reason, FinishReason::kAbort);
  EXPECT_FALSE(engine.has_unfinished_requests());
  EXPECT_EQ(engine.kv_cache().free_blocks(), engine.kv_cache().usable_blocks());
  EXPECT_TRUE(engine.kv_cache().check_invariants());
}

TEST(EngineTest, RejectsRequestsThatCanNeverFit) {
  Engine engine({.num_gpu_blocks = 5, .max_model_len = 1000});
  EXPECT_EQ(engine.add_request(make_request(1, tokens_from(0, 990), 20), TimePoint{}).http_status(),
            400);
  EXPECT_EQ(engine.add_request(make_request(2, tokens_from(0, 100), 1), TimePoint{}).http_status(),
            400)
      << "7 blocks > 4 usable";
  EXPECT_EQ(engine.add_request(make_request(3, {}, 1), TimePoint{}).http_status(), 400);
  EXPECT_FALSE(engine.has_unfinished_requests());
}

TEST(EngineTest, GeneratedTokensAreDeterministicFromTheSeed) {
  auto run = [] {
    Engine engine({.num_gpu_blocks = 100});
    Driver driver{engine};
    EXPECT_TRUE(engine.add_request(make_request(7, tokens_from(0, 10), 20), driver.now).is_ok());
    driver.run_until_idle();
    std::vector<std::uint32_t> indices;
    for (const auto& step : driver.steps) {
      for (const auto& token : step.tokens) indices.push_back(token.vocab_index);
    }
    return indices;
  };
  EXPECT_EQ(run(), run());
}

// Random arrivals, shared prefixes, adapters, aborts and a small cache: whatever happens, blocks
// never leak and every request leaves the engine exactly once.
TEST(EngineTest, BlockAccountingNeverLeaksUnderRandomLoad) {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    std::mt19937_64 rng(seed);
    Engine engine({.num_gpu_blocks = 60,
                   .max_num_seqs = 8,
                   .max_num_batched_tokens = 128,
                   .max_model_len = 400,
                   .max_loras = 2});
    Driver driver{engine};
    std::uint64_t next_id = 1;
    std::size_t aborted = 0;
    for (int round = 0; round < 300; ++round) {
      if (rng() % 3 == 0) {
        const auto prefix = static_cast<std::uint32_t>(rng() % 4) * 1000;
        auto prompt = tokens_from(prefix, 16 + static_cast<int>(rng() % 100));
        prompt.push_back(static_cast<std::uint32_t>(rng()));
        auto request = make_request(next_id++, prompt, 1 + static_cast<int>(rng() % 100),
                                    static_cast<int>(rng() % 4));
        request.stop_after_tokens = 1 + static_cast<int>(rng() % 100);
        EXPECT_TRUE(engine.add_request(request, driver.now).is_ok());
      }
      if (rng() % 10 == 0 && next_id > 1) {
        if (engine.abort_request(1 + rng() % (next_id - 1), driver.now)) ++aborted;
      }
      driver.step();
    }
    driver.run_until_idle();
    EXPECT_FALSE(engine.has_unfinished_requests());
    EXPECT_EQ(driver.finished.size() + aborted, next_id - 1) << "seed " << seed;
    EXPECT_EQ(engine.kv_cache().free_blocks(), engine.kv_cache().usable_blocks());
    EXPECT_TRUE(engine.kv_cache().check_invariants());
  }
}

}  // namespace
}  // namespace infergate::sim
