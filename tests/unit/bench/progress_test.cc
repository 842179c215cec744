#include "bench/progress.h"

#include <gtest/gtest.h>

namespace infergate::bench {
namespace {

TEST(ProgressTest, BarFillsWithTheLaunchWindow) {
  ProgressState state{.stage = "run 1 of 2 infergate 8 req/s",
                      .elapsed_s = 15,
                      .total_s = 60,
                      .done = 100,
                      .in_flight = 7,
                      .errors = 2};
  EXPECT_EQ(format_progress_line(state, 0),
            "run 1 of 2 infergate 8 req/s [#####...............] 15.0/60.0 s  done 100  in "
            "flight 7  errors 2");
}

TEST(ProgressTest, DrainingAfterTheWindowAndCutToTheTerminal) {
  ProgressState state{.stage = "s", .elapsed_s = 75, .total_s = 60, .done = 9, .in_flight = 1};
  EXPECT_EQ(format_progress_line(state, 0),
            "s draining 60.0/60.0 s  done 9  in flight 1  errors 0");
  EXPECT_EQ(format_progress_line(state, 11), "s draining");
}

}  // namespace
}  // namespace infergate::bench
