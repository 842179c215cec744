#include "common/status.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace infergate {
namespace {

TEST(StatusTest, OpenAiErrorBodyCarriesMessageTypeAndCode) {
  auto body =
      nlohmann::json::parse(Status::not_found("The model `x` does not exist.").to_openai_json());
  EXPECT_EQ(body["error"]["message"], "The model `x` does not exist.");
  EXPECT_EQ(body["error"]["type"], "NotFoundError");
  EXPECT_EQ(body["error"]["code"], 404);
  EXPECT_TRUE(body["error"]["param"].is_null());
}

TEST(StatusTest, ExplicitTypeWins) {
  Status status(429, "slow down", "rate_limit");
  EXPECT_EQ(status.type(), "rate_limit");
  EXPECT_FALSE(status.is_ok());
  EXPECT_TRUE(Status::ok().is_ok());
}

TEST(ResultTest, HoldsValueOrStatus) {
  Result<int> value = 7;
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, 7);
  Result<int> error = Status::bad_request("nope");
  ASSERT_FALSE(error.ok());
  EXPECT_EQ(error.status().http_status(), 400);
}

}  // namespace
}  // namespace infergate
