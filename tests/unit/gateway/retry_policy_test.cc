#include "gateway/retry_policy.h"

#include <gtest/gtest.h>

namespace infergate::gateway {
namespace {

using std::chrono::seconds;

TEST(RetryPolicy, WhichFailuresAreRetried) {
  struct Row {
    AttemptFailure failure;
    bool retried;
    std::string_view reason;
  };
  const std::vector<Row> rows = {
      {AttemptFailure::kConnectRefused, true, "upstream_connect"},
      {AttemptFailure::kConnectTimeout, true, "upstream_connect_timeout"},
      {AttemptFailure::kReset, true, "upstream_reset"},
      {AttemptFailure::kServerError, true, "upstream_5xx"},
      // The endpoint may be busy with the request: another attempt would double the work.
      {AttemptFailure::kFirstByteTimeout, false, "upstream_timeout"},
  };
  for (const auto& row : rows) {
    EXPECT_EQ(is_retryable(row.failure), row.retried) << row.reason;
    EXPECT_EQ(failure_name(row.failure), row.reason);
  }
}

class EndpointHealthTest : public ::testing::Test {
 protected:
  ManualClock clock_{seconds(100)};
  EndpointHealth health_{clock_, {.consecutive_failures = 3, .cooldown = seconds(30)}};
};

TEST_F(EndpointHealthTest, HealthyPoolHasNothingEjected) {
  EXPECT_TRUE(health_.ejected().empty());
  health_.record_success("10.0.0.1:8000");  // unknown endpoint: nothing to clear
  EXPECT_FALSE(health_.is_ejected("10.0.0.1:8000"));
  EXPECT_EQ(health_.ejections(), 0u);
}

TEST_F(EndpointHealthTest, ConsecutiveFailuresEjectForTheCooldown) {
  EXPECT_FALSE(health_.record_failure("a:1"));
  EXPECT_FALSE(health_.record_failure("a:1"));
  EXPECT_FALSE(health_.is_ejected("a:1"));
  EXPECT_TRUE(health_.record_failure("a:1"));  // the third in a row
  EXPECT_TRUE(health_.is_ejected("a:1"));
  EXPECT_EQ(health_.ejected(), std::vector<std::string>{"a:1"});
  EXPECT_EQ(health_.ejections(), 1u);

  // Failures reported while ejected (requests already on their way) change nothing.
  EXPECT_FALSE(health_.record_failure("a:1"));
  EXPECT_EQ(health_.ejections(), 1u);

  clock_.advance(seconds(29));
  EXPECT_TRUE(health_.is_ejected("a:1"));
  clock_.advance(seconds(1));
  EXPECT_FALSE(health_.is_ejected("a:1"));
  EXPECT_TRUE(health_.ejected().empty());
}

TEST_F(EndpointHealthTest, SuccessResetsTheCount) {
  health_.record_failure("a:1");
  health_.record_failure("a:1");
  health_.record_success("a:1");
  EXPECT_FALSE(health_.record_failure("a:1"));
  EXPECT_FALSE(health_.record_failure("a:1"));
  EXPECT_FALSE(health_.is_ejected("a:1"));
}

TEST_F(EndpointHealthTest, CountsArePerEndpoint) {
  health_.record_failure("a:1");
  health_.record_failure("b:1");
  health_.record_failure("a:1");
  health_.record_failure("b:1");
  EXPECT_TRUE(health_.record_failure("b:1"));
  EXPECT_EQ(health_.ejected(), std::vector<std::string>{"b:1"});
  EXPECT_TRUE(health_.record_failure("a:1"));
  EXPECT_EQ(health_.ejected(), (std::vector<std::string>{"a:1", "b:1"}));
}

TEST_F(EndpointHealthTest, AfterTheCooldownOneFailureEjectsAgainAndASuccessClears) {
  for (int failure = 0; failure < 3; ++failure) health_.record_failure("a:1");
  clock_.advance(seconds(30));
  EXPECT_FALSE(health_.is_ejected("a:1"));
  EXPECT_TRUE(health_.record_failure("a:1"));  // on probation
  EXPECT_TRUE(health_.is_ejected("a:1"));
  EXPECT_EQ(health_.ejections(), 2u);

  clock_.advance(seconds(30));
  health_.record_success("a:1");  // back to normal: three failures needed again
  EXPECT_FALSE(health_.record_failure("a:1"));
  EXPECT_FALSE(health_.record_failure("a:1"));
  EXPECT_TRUE(health_.record_failure("a:1"));
}

TEST_F(EndpointHealthTest, SuccessWhileEjectedDoesNotEndTheCooldown) {
  for (int failure = 0; failure < 3; ++failure) health_.record_failure("a:1");
  health_.record_success("a:1");  // a response that was already on its way
  EXPECT_TRUE(health_.is_ejected("a:1"));
}

TEST(EndpointHealth, ZeroFailuresDisablesEjection) {
  ManualClock clock;
  EndpointHealth health(clock, {.consecutive_failures = 0, .cooldown = seconds(30)});
  for (int failure = 0; failure < 100; ++failure) EXPECT_FALSE(health.record_failure("a:1"));
  EXPECT_TRUE(health.ejected().empty());
}

TEST(AttemptPlan, WalksTheDestinationListThenStopsAtTheBudget) {
  AttemptPlan plan(/*max_retries=*/2);
  plan.set_destinations("10.0.0.1:8000, 10.0.0.2:8000,[::1]:8000,10.0.0.4:8000");
  EXPECT_EQ(plan.next(), "10.0.0.1:8000");
  plan.record_attempt("10.0.0.1:8000");
  EXPECT_TRUE(plan.can_retry());
  EXPECT_EQ(plan.next(), "10.0.0.2:8000");
  plan.record_attempt("10.0.0.2:8000");
  EXPECT_EQ(plan.next(), "[::1]:8000");
  plan.record_attempt("[::1]:8000");
  // Three attempts = the first + two retries: the budget is spent.
  EXPECT_FALSE(plan.can_retry());
  EXPECT_EQ(plan.next(), std::nullopt);
  EXPECT_EQ(plan.attempted(),
            (std::vector<std::string>{"10.0.0.1:8000", "10.0.0.2:8000", "[::1]:8000"}));
}

TEST(AttemptPlan, AReRouteSkipsWhatWasAlreadyTried) {
  AttemptPlan plan(/*max_retries=*/3);
  plan.set_destinations("a:1");
  ASSERT_EQ(plan.next(), "a:1");
  plan.record_attempt("a:1");
  EXPECT_EQ(plan.next(), std::nullopt);  // used up: the caller re-routes
  EXPECT_TRUE(plan.can_retry());
  plan.set_destinations("a:1,b:1");  // the picker named a:1 again
  EXPECT_EQ(plan.next(), "b:1");
  EXPECT_TRUE(plan.was_attempted("a:1"));
  EXPECT_FALSE(plan.was_attempted("b:1"));
}

TEST(AttemptPlan, ZeroRetriesMeansOneAttempt) {
  AttemptPlan plan(/*max_retries=*/0);
  plan.set_destinations("a:1,b:1");
  ASSERT_EQ(plan.next(), "a:1");
  plan.record_attempt("a:1");
  EXPECT_FALSE(plan.can_retry());
  EXPECT_EQ(plan.next(), std::nullopt);
}

TEST(AllowedCandidates, Table) {
  struct Row {
    std::string description;
    std::vector<std::string> ejected;
    std::vector<std::string> attempted;
    std::vector<std::string> expected;
  };
  const std::vector<std::string> pool = {"a:1", "b:1", "c:1"};
  const std::vector<Row> rows = {
      {"healthy, first pick", {}, {}, {"a:1", "b:1", "c:1"}},
      {"ejected left out", {"b:1"}, {}, {"a:1", "c:1"}},
      {"tried left out", {}, {"a:1"}, {"b:1", "c:1"}},
      {"both left out", {"c:1"}, {"a:1"}, {"b:1"}},
      {"everything ejected, first pick: ejection ignored", {"a:1", "b:1", "c:1"}, {}, pool},
      {"nothing left for a retry", {"b:1", "c:1"}, {"a:1"}, {}},
      {"every endpoint tried", {}, {"a:1", "b:1", "c:1"}, {}},
      {"unknown names are ignored", {"z:9"}, {}, {"a:1", "b:1", "c:1"}},
  };
  for (const auto& row : rows) {
    EXPECT_EQ(allowed_candidates(pool, row.ejected, row.attempted), row.expected)
        << row.description;
  }
}

}  // namespace
}  // namespace infergate::gateway
