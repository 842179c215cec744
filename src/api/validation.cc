#include "api/validation.h"

#include <cctype>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace infergate::api {
namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// Name part of a label key, and label values.
std::string qualified_name_part_problem(std::string_view text) {
  if (text.size() > 63) return "must be at most 63 characters";
  for (char c : text) {
    if (!is_alnum(c) && c != '-' && c != '_' && c != '.') {
      return "must consist of alphanumeric characters, '-', '_' or '.'";
    }
  }
  if (!text.empty() && (!is_alnum(text.front()) || !is_alnum(text.back()))) {
    return "must start and end with an alphanumeric character";
  }
  return {};
}

constexpr long double kInt64Limit = 9223372036854775807.0L;

}  // namespace

std::string dns_subdomain_problem(std::string_view name) {
  if (name.empty()) return "must not be empty";
  if (name.size() > 253) return "must be at most 253 characters";
  for (char c : name) {
    if (!is_lower_alnum(c) && c != '-' && c != '.') {
      return "must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'), got \"" +
             std::string(name) + "\"";
    }
  }
  if (!is_lower_alnum(name.front()) || !is_lower_alnum(name.back())) {
    return "must start and end with a lowercase alphanumeric character, got \"" +
           std::string(name) + "\"";
  }
  return {};
}

std::string dns_label_problem(std::string_view name) {
  if (name.empty()) return "must not be empty";
  if (name.size() > 63) return "must be at most 63 characters";
  for (char c : name) {
    if (!is_lower_alnum(c) && c != '-') {
      return "must be a lowercase RFC 1123 label (a-z, 0-9, '-'), got \"" + std::string(name) +
             "\"";
    }
  }
  if (!is_lower_alnum(name.front()) || !is_lower_alnum(name.back())) {
    return "must start and end with a lowercase alphanumeric character, got \"" +
           std::string(name) + "\"";
  }
  return {};
}

std::string label_key_problem(std::string_view key) {
  std::string_view name = key;
  const size_t slash = key.find('/');
  if (slash != std::string_view::npos) {
    std::string_view prefix = key.substr(0, slash);
    name = key.substr(slash + 1);
    if (std::string problem = dns_subdomain_problem(prefix); !problem.empty()) {
      return "prefix of \"" + std::string(key) + "\" " + problem;
    }
  }
  if (name.empty()) return "name part of \"" + std::string(key) + "\" must not be empty";
  if (std::string problem = qualified_name_part_problem(name); !problem.empty()) {
    return "name part of \"" + std::string(key) + "\" " + problem;
  }
  return {};
}

std::string label_value_problem(std::string_view value) {
  return qualified_name_part_problem(value);
}

std::optional<int64_t> parse_quantity(std::string_view text) {
  // <sign><digits>[.<digits>]<suffix>, suffix binary (Ki..Ei), decimal (n u m k M G T P E) or a
  // decimal exponent (e3 / E3).
  size_t pos = 0;
  bool negative = false;
  if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    negative = text[pos] == '-';
    ++pos;
  }
  const size_t number_start = pos;
  bool seen_digit = false;
  bool seen_point = false;
  while (pos < text.size()) {
    const char c = text[pos];
    if (std::isdigit(static_cast<unsigned char>(c))) {
      seen_digit = true;
    } else if (c == '.' && !seen_point) {
      seen_point = true;
    } else {
      break;
    }
    ++pos;
  }
  if (!seen_digit) return std::nullopt;
  const std::string number(text.substr(number_start, pos - number_start));
  const std::string_view suffix = text.substr(pos);

  long double multiplier = 1.0L;
  static const std::vector<std::pair<std::string_view, long double>> kSuffixes = {
      {"", 1.0L},      {"Ki", 0x1p10L}, {"Mi", 0x1p20L}, {"Gi", 0x1p30L},
      {"Ti", 0x1p40L}, {"Pi", 0x1p50L}, {"Ei", 0x1p60L}, {"n", 1e-9L},
      {"u", 1e-6L},    {"m", 1e-3L},    {"k", 1e3L},     {"M", 1e6L},
      {"G", 1e9L},     {"T", 1e12L},    {"P", 1e15L},    {"E", 1e18L}};
  bool matched = false;
  for (const auto& [name, value] : kSuffixes) {
    if (suffix == name) {
      multiplier = value;
      matched = true;
      break;
    }
  }
  if (!matched) {
    if (suffix.size() < 2 || (suffix[0] != 'e' && suffix[0] != 'E')) return std::nullopt;
    std::string_view exponent = suffix.substr(1);
    bool exponent_negative = false;
    if (exponent[0] == '+' || exponent[0] == '-') {
      exponent_negative = exponent[0] == '-';
      exponent.remove_prefix(1);
    }
    if (exponent.empty() || exponent.size() > 3) return std::nullopt;
    int power = 0;
    for (char c : exponent) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
      power = power * 10 + (c - '0');
    }
    multiplier = std::pow(10.0L, exponent_negative ? -power : power);
  }
  const long double magnitude = std::ceil(std::strtold(number.c_str(), nullptr) * multiplier);
  if (magnitude > kInt64Limit) return std::nullopt;
  const auto whole = static_cast<int64_t>(magnitude);
  return negative ? -whole : whole;
}

std::optional<std::chrono::nanoseconds> parse_go_duration(std::string_view text) {
  size_t pos = 0;
  bool negative = false;
  if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    negative = text[pos] == '-';
    ++pos;
  }
  if (text.substr(pos) == "0") return std::chrono::nanoseconds(0);
  if (pos == text.size()) return std::nullopt;
  static const std::vector<std::pair<std::string_view, long double>> kUnits = {
      {"ns", 1.0L}, {"us", 1e3L}, {"\xc2\xb5s", 1e3L}, {"\xce\xbcs", 1e3L},
      {"ms", 1e6L}, {"s", 1e9L},  {"m", 60e9L},        {"h", 3600e9L}};
  long double total = 0.0L;
  while (pos < text.size()) {
    const size_t number_start = pos;
    bool seen_digit = false;
    bool seen_point = false;
    while (pos < text.size() && (std::isdigit(static_cast<unsigned char>(text[pos])) ||
                                 (text[pos] == '.' && !seen_point))) {
      if (text[pos] == '.') {
        seen_point = true;
      } else {
        seen_digit = true;
      }
      ++pos;
    }
    if (!seen_digit) return std::nullopt;
    const std::string number(text.substr(number_start, pos - number_start));
    const size_t unit_start = pos;
    while (pos < text.size() && !std::isdigit(static_cast<unsigned char>(text[pos])) &&
           text[pos] != '.') {
      ++pos;
    }
    const std::string_view unit = text.substr(unit_start, pos - unit_start);
    bool matched = false;
    for (const auto& [name, scale] : kUnits) {
      if (unit == name) {
        total += std::strtold(number.c_str(), nullptr) * scale;
        matched = true;
        break;
      }
    }
    if (!matched) return std::nullopt;
  }
  if (total > kInt64Limit) return std::nullopt;
  const auto nanoseconds = static_cast<int64_t>(total);
  return std::chrono::nanoseconds(negative ? -nanoseconds : nanoseconds);
}

}  // namespace infergate::api
