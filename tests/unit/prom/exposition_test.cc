#include "prom/exposition.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

namespace infergate::prom {
namespace {

struct FormatCase {
  const char* description;
  double input;
  const char* expected;
};

TEST(ExpositionTest, FormatsNumbersLikePrometheusClient) {
  // Expected strings are what Python prometheus_client's floatToGoString prints.
  const std::vector<FormatCase> cases = {
      {"zero", 0.0, "0.0"},
      {"negative zero keeps its sign", -0.0, "-0.0"},
      {"integral value gets .0", 5.0, "5.0"},
      {"short fraction", 0.25, "0.25"},
      {"shortest round-trip digits", 0.1, "0.1"},
      {"sum with representation error", 0.1 + 0.2, "0.30000000000000004"},
      {"bucket bound", 0.005, "0.005"},
      {"smallest fixed-form exponent", 0.0001, "0.0001"},
      {"fixed form with several digits", 0.00012345, "0.00012345"},
      {"exponent -5 switches to exponent form", 1e-05, "1e-05"},
      {"exponent form with mantissa", 1.5e-07, "1.5e-07"},
      {"negative small value", -1e-05, "-1e-05"},
      {"six integer digits stay fixed", 999999.0, "999999.0"},
      {"fixed with fraction", 123.456, "123.456"},
      {"seven integer digits use Go's form", 1e6, "1e+06"},
      {"Go form keeps all digits", 1234567.0, "1.234567e+06"},
      {"unix timestamp", 1.7e9, "1.7e+09"},
      {"Go form with fractional digits", 1000000.5, "1.0000005e+06"},
      {"Go form with fraction and integer digits", 12345678.9, "1.23456789e+07"},
      {"Go form pads the exponent with 0 even when it has two digits", 1e15, "1e+015"},
      {"largest fixed repr in Go form", 9999999999999998.0, "9.999999999999998e+015"},
      {"negative large value stays as repr", -1e6, "-1000000.0"},
      {"repr exponent form from 1e16", 1e16, "1e+16"},
      {"repr exponent form with mantissa", 1.5e16, "1.5e+16"},
      {"negative repr exponent form", -1.5e16, "-1.5e+16"},
      {"three-digit exponent", 1e100, "1e+100"},
      {"largest double", std::numeric_limits<double>::max(), "1.7976931348623157e+308"},
      {"smallest subnormal", std::numeric_limits<double>::denorm_min(), "5e-324"},
      {"positive infinity", std::numeric_limits<double>::infinity(), "+Inf"},
      {"negative infinity", -std::numeric_limits<double>::infinity(), "-Inf"},
      {"not a number", std::numeric_limits<double>::quiet_NaN(), "NaN"},
  };
  for (const FormatCase& test_case : cases) {
    EXPECT_EQ(format_value(test_case.input), test_case.expected) << test_case.description;
  }
}

TEST(ExpositionTest, AppendValueAppends) {
  std::string out = "x ";
  append_value(out, 2.5);
  EXPECT_EQ(out, "x 2.5");
}

struct EscapeCase {
  const char* description;
  std::string input;
  std::string expected_label_value;
  std::string expected_help;
};

TEST(ExpositionTest, EscapesLabelValuesAndHelp) {
  const std::vector<EscapeCase> cases = {
      {"plain text", "plain", "plain", "plain"},
      {"backslash", "a\\b", "a\\\\b", "a\\\\b"},
      {"double quote only in label values", "say \"hi\"", "say \\\"hi\\\"", "say \"hi\""},
      {"newline", "one\ntwo", "one\\ntwo", "one\\ntwo"},
      {"all together", "\\\"\n", "\\\\\\\"\\n", "\\\\\"\\n"},
      {"utf-8 passes through", "caf\xc3\xa9", "caf\xc3\xa9", "caf\xc3\xa9"},
  };
  for (const EscapeCase& test_case : cases) {
    std::string label_value;
    append_escaped_label_value(label_value, test_case.input);
    EXPECT_EQ(label_value, test_case.expected_label_value) << test_case.description;
    std::string help;
    append_escaped_help(help, test_case.input);
    EXPECT_EQ(help, test_case.expected_help) << test_case.description;
  }
}

}  // namespace
}  // namespace infergate::prom
