#include "prom/exposition.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <system_error>

namespace infergate::prom {
namespace {

// The shortest round-trip decimal digits of a finite, non-negative double, and the position of
// the decimal point relative to them: value = 0.<digits> * 10^decimal_point.
struct ShortestDecimal {
  std::string digits;
  int decimal_point = 0;
};

ShortestDecimal shortest_decimal(double magnitude) {
  // to_chars without a precision picks the shortest digits that round-trip, as Python's repr
  // does; the scientific form gives us the digits and exponent without any guessing.
  char buffer[64];
  auto [end, error] =
      std::to_chars(buffer, buffer + sizeof(buffer), magnitude, std::chars_format::scientific);
  (void)error;  // 64 bytes always suffice for a double.
  std::string_view text(buffer, static_cast<std::size_t>(end - buffer));
  std::size_t exponent_at = text.find('e');
  ShortestDecimal decimal;
  for (char c : text.substr(0, exponent_at)) {
    if (c != '.') {
      decimal.digits.push_back(c);
    }
  }
  int exponent = 0;
  std::string_view exponent_text = text.substr(exponent_at + 1);
  if (exponent_text.front() == '+') {
    exponent_text.remove_prefix(1);
  }
  std::from_chars(exponent_text.data(), exponent_text.data() + exponent_text.size(), exponent);
  decimal.decimal_point = exponent + 1;
  return decimal;
}

}  // namespace

void append_value(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  if (std::signbit(value)) {
    out.push_back('-');
  }
  ShortestDecimal decimal = shortest_decimal(std::fabs(value));
  const std::string& digits = decimal.digits;
  const int digit_count = static_cast<int>(digits.size());
  const int point = decimal.decimal_point;

  // Python's repr switches to exponent form outside -4 < point <= 16.
  if (point > -4 && point <= 16) {
    if (value > 0 && point > 6) {
      // prometheus_client's Go-like form for large positive values; `digits` never has trailing
      // zeros, which is what its rstrip('0.') leaves.
      out.push_back(digits[0]);
      if (digit_count > 1) {
        out.push_back('.');
        out.append(digits, 1);
      }
      out += "e+0";
      out += std::to_string(point - 1);
      return;
    }
    if (point <= 0) {
      out += "0.";
      out.append(static_cast<std::size_t>(-point), '0');
      out += digits;
    } else if (point < digit_count) {
      out.append(digits, 0, static_cast<std::size_t>(point));
      out.push_back('.');
      out.append(digits, static_cast<std::size_t>(point));
    } else {
      out += digits;
      out.append(static_cast<std::size_t>(point - digit_count), '0');
      out += ".0";
    }
    return;
  }

  out.push_back(digits[0]);
  if (digit_count > 1) {
    out.push_back('.');
    out.append(digits, 1);
  }
  const int exponent = point - 1;
  out.push_back('e');
  out.push_back(exponent < 0 ? '-' : '+');
  const int exponent_magnitude = std::abs(exponent);
  if (exponent_magnitude < 10) {
    out.push_back('0');
  }
  out += std::to_string(exponent_magnitude);
}

std::string format_value(double value) {
  std::string out;
  append_value(out, value);
  return out;
}

void append_escaped_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out.push_back(c);
    }
  }
}

void append_escaped_help(std::string& out, std::string_view help) {
  for (char c : help) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out.push_back(c);
    }
  }
}

}  // namespace infergate::prom
