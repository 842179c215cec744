#include "common/clock.h"

#include <gtest/gtest.h>

namespace infergate {
namespace {

TEST(ClockTest, ManualClockMovesOnlyWhenTold) {
  ManualClock clock(from_seconds(1));
  EXPECT_EQ(clock.now(), from_seconds(1));
  clock.advance(from_milliseconds(250));
  EXPECT_EQ(clock.now(), from_milliseconds(1250));
  clock.set(from_seconds(3));
  EXPECT_DOUBLE_EQ(to_seconds(clock.now()), 3.0);
}

TEST(ClockTest, ScaledClockConvertsSimulatedToRealDurations) {
  ScaledClock clock(10.0);
  EXPECT_EQ(clock.to_real(from_seconds(1)), from_milliseconds(100));
  EXPECT_GE(clock.now().count(), 0);
}

}  // namespace
}  // namespace infergate
