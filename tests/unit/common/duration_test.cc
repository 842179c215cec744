#include "common/duration.h"

#include <gtest/gtest.h>

namespace infergate {
namespace {

TEST(DurationTest, ParsesGoDurations) {
  struct Case {
    const char* text;
    Duration expected;
  };
  const std::vector<Case> cases = {
      {"0", Duration{0}},
      {"50ms", from_milliseconds(50)},
      {"200ms", from_milliseconds(200)},
      {"1.5s", from_milliseconds(1500)},
      {"2m30s", from_seconds(150)},
      {"1h", from_seconds(3600)},
      {"10us", from_microseconds(10)},
      {"10µs", from_microseconds(10)},
      {"7ns", Duration{7}},
  };
  for (const auto& test : cases) {
    auto parsed = parse_duration(test.text);
    ASSERT_TRUE(parsed.ok()) << test.text;
    EXPECT_EQ(*parsed, test.expected) << test.text;
  }
}

TEST(DurationTest, RejectsMalformedDurations) {
  for (const char* text : {"", "5", "ms", "-1s", "1x", "1.2.3s", "s5", "1e3s"}) {
    auto parsed = parse_duration(text);
    EXPECT_FALSE(parsed.ok()) << text;
    if (!parsed.ok()) {
      EXPECT_NE(parsed.status().message().find("invalid duration"), std::string::npos);
    }
  }
}

TEST(DurationTest, FormatsShortest) {
  EXPECT_EQ(format_duration(from_milliseconds(50)), "50ms");
  EXPECT_EQ(format_duration(from_seconds(2)), "2s");
  EXPECT_EQ(format_duration(from_seconds(90)), "1m30s");
  EXPECT_EQ(format_duration(Duration{0}), "0s");
  EXPECT_EQ(parse_duration(format_duration(from_seconds(3725))).value(), from_seconds(3725));
}

}  // namespace
}  // namespace infergate
