#include "sim/step_time.h"

#include <gtest/gtest.h>

namespace infergate::sim {
namespace {

// Explicit constants, so that recalibrating the default profile leaves these checks alone.
const StepTimeParams kParams{.fixed_ms = 1.0,
                             .weights_read_ms = 6.0,
                             .per_token_us = 30.0,
                             .per_sequence_us = 5.0,
                             .kv_read_per_context_token_us = 0.05,
                             .attention_per_pair_ns = 1.0,
                             .frontend_ms = 20.0};

double step_ms(const StepShape& shape) { return to_seconds(kParams.step_duration(shape)) * 1e3; }

TEST(StepTimeTest, SmallBatchesAreBoundByReadingTheWeights) {
  const double one =
      step_ms({.scheduled_tokens = 1, .num_sequences = 1, .decode_context_tokens = 230});
  EXPECT_NEAR(one, 1.0 + 6.0 + 0.005 + 230 * 0.05e-3, 1e-6);
  const double sixteen =
      step_ms({.scheduled_tokens = 16, .num_sequences = 16, .decode_context_tokens = 16 * 230});
  EXPECT_LT(sixteen - one, 0.5) << "decode batches below the roofline knee cost about the same";
}

TEST(StepTimeTest, LargeBatchesAreBoundByCompute) {
  const double big = step_ms(
      {.scheduled_tokens = 4096, .num_sequences = 1, .prefill_attention_pairs = 4096.0 * 2048});
  // 4096 tokens x 30 us = 122.9 ms of linear work, plus 8.4 ms of attention.
  EXPECT_NEAR(big, 1.0 + 122.88 + 0.005 + 8.388608, 1e-3);
}

TEST(StepTimeTest, DefaultProfileMatchesTheCalibrationAnchorsItWasFittedTo) {
  const StepTimeParams params = profiles().front().step_time;
  auto ms = [&](const StepShape& shape) { return to_seconds(params.step_duration(shape)) * 1e3; };
  // One decoding sequence: ~7.2 ms per output token (docs/simulator.md).
  EXPECT_NEAR(ms({.scheduled_tokens = 1, .num_sequences = 1, .decode_context_tokens = 236}), 7.2,
              0.3);
  // 128 decodes plus two 204-token prefills per step: ~19 ms.
  EXPECT_NEAR(ms({.scheduled_tokens = 128 + 408,
                  .num_sequences = 130,
                  .decode_context_tokens = 128 * 236,
                  .prefill_attention_pairs = 2 * 204 * 102}),
              19.0, 1.0);
}

TEST(StepTimeTest, ProfilesAreFoundByName) {
  ASSERT_TRUE(find_profile("llama3-8b-h100").ok());
  EXPECT_EQ(profiles().front().name, "llama3-8b-h100");
  auto missing = find_profile("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("llama3-8b-h100"), std::string::npos);
}

}  // namespace
}  // namespace infergate::sim
