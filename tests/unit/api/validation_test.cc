#include "api/validation.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace infergate::api {
namespace {

struct QuantityCase {
  const char* description;
  const char* input;
  std::optional<int64_t> expected;
};

TEST(ValidationTest, ParsesKubernetesQuantities) {
  const std::vector<QuantityCase> cases = {
      {"plain integer", "1500", 1500},
      {"binary suffix", "10Gi", 10LL << 30},
      {"binary Ki", "2Ki", 2048},
      {"decimal suffix", "2G", 2'000'000'000},
      {"decimal k", "3k", 3000},
      {"fraction rounds up", "1.5Mi", 1572864},
      {"milli rounds up to a whole unit", "1500m", 2},
      {"exponent", "1e3", 1000},
      {"explicit plus", "+7", 7},
      {"negative parses (callers reject)", "-1Ki", -1024},
      {"unknown suffix", "10GB", std::nullopt},
      {"no digits", "Gi", std::nullopt},
      {"empty", "", std::nullopt},
      {"overflow", "9Ei", std::nullopt},
  };
  for (const QuantityCase& test_case : cases) {
    EXPECT_EQ(parse_quantity(test_case.input), test_case.expected) << test_case.description;
  }
}

struct DurationCase {
  const char* description;
  const char* input;
  std::optional<int64_t> expected_ns;
};

TEST(ValidationTest, ParsesGoDurations) {
  const std::vector<DurationCase> cases = {
      {"seconds", "30s", 30'000'000'000},
      {"milliseconds", "200ms", 200'000'000},
      {"compound", "1h30m", 5'400'000'000'000},
      {"fraction", "1.5s", 1'500'000'000},
      {"micro with u", "5us", 5000},
      {"micro sign", "5\xc2\xb5s", 5000},
      {"nanoseconds", "7ns", 7},
      {"bare zero", "0", 0},
      {"negative", "-2s", -2'000'000'000},
      {"missing unit", "30", std::nullopt},
      {"unknown unit", "3d", std::nullopt},
      {"empty", "", std::nullopt},
      {"unit only", "s", std::nullopt},
  };
  for (const DurationCase& test_case : cases) {
    auto parsed = parse_go_duration(test_case.input);
    std::optional<int64_t> got;
    if (parsed) got = parsed->count();
    EXPECT_EQ(got, test_case.expected_ns) << test_case.description;
  }
}

struct NameCase {
  const char* description;
  std::string input;
  bool valid;
};

TEST(ValidationTest, ChecksNamesAndLabels) {
  const std::vector<NameCase> subdomains = {
      {"simple", "my-pool", true},
      {"dots", "pool.v1", true},
      {"uppercase", "My-Pool", false},
      {"leading dash", "-pool", false},
      {"trailing dot", "pool.", false},
      {"underscore", "my_pool", false},
      {"254 chars", std::string(254, 'a'), false},
      {"253 chars", std::string(253, 'a'), true},
  };
  for (const NameCase& test_case : subdomains) {
    EXPECT_EQ(dns_subdomain_problem(test_case.input).empty(), test_case.valid)
        << test_case.description;
  }
  const std::vector<NameCase> label_keys = {
      {"plain", "app", true},
      {"prefixed", "app.kubernetes.io/name", true},
      {"uppercase name part", "Team_Name", true},
      {"empty name part", "example.com/", false},
      {"bad prefix", "Example.com/app", false},
      {"space", "my app", false},
      {"64 char name", std::string(64, 'a'), false},
  };
  for (const NameCase& test_case : label_keys) {
    EXPECT_EQ(label_key_problem(test_case.input).empty(), test_case.valid) << test_case.description;
  }
  const std::vector<NameCase> label_values = {
      {"empty is valid", "", true},
      {"plain", "vllm-llama3-8b", true},
      {"trailing dash", "vllm-", false},
      {"slash", "a/b", false},
  };
  for (const NameCase& test_case : label_values) {
    EXPECT_EQ(label_value_problem(test_case.input).empty(), test_case.valid)
        << test_case.description;
  }
}

}  // namespace
}  // namespace infergate::api
