#include "sim/step_time.h"

#include <gtest/gtest.h>

namespace infergate::sim {
namespace {

double step_ms(const StepShape& shape) {
  return to_seconds(StepTimeParams{}.step_duration(shape)) * 1e3;
}

TEST(StepTimeTest, SmallBatchesAreBoundByReadingTheWeights) {
  const StepTimeParams params;
  const double one =
      step_ms({.scheduled_tokens = 1, .num_sequences = 1, .decode_context_tokens = 230});
  EXPECT_NEAR(one, params.fixed_ms + params.weights_read_ms + 0.005 + 230 * 0.05e-3, 1e-6);
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

TEST(StepTimeTest, ProfilesAreFoundByName) {
  ASSERT_TRUE(find_profile("llama3-8b-h100").ok());
  EXPECT_EQ(profiles().front().name, "llama3-8b-h100");
  auto missing = find_profile("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("llama3-8b-h100"), std::string::npos);
}

}  // namespace
}  // namespace infergate::sim
