#pragma once

#include <string>
#include <string_view>

// Building blocks of the Prometheus text exposition format 0.0.4, written the way Python's
// prometheus_client writes them (vLLM's /metrics comes from it, and our simulator must match it
// byte for byte). Pure functions: safe from any thread.

namespace infergate::prom {

// The Content-Type of a /metrics response in this format.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Appends `value` as prometheus_client's floatToGoString does:
// - `+Inf`, `-Inf`, `NaN`;
// - otherwise Python's repr(float): shortest digits that round-trip, `.0` on integral values
//   (`5.0`, `-0.0`), exponent form when the decimal exponent is < -4 or >= 16 (`1e-05`,
//   `1.5e+16`), fixed form otherwise (`0.0001`, `0.25`);
// - except that positive values printed by repr with 7 or more integer digits switch to Go's
//   exponent form with the mantissa's trailing zeros removed (`1e+06`, `1.234567e+06`,
//   `1.7e+09`). The exponent is written as `e+0` followed by the decimal exponent, so 1e15 is
//   `1e+015`: prometheus_client does exactly this and we reproduce it.
void append_value(std::string& out, double value);
std::string format_value(double value);

// Appends a label value with `\` -> `\\`, `"` -> `\"` and newline -> `\n`.
void append_escaped_label_value(std::string& out, std::string_view value);

// Appends HELP text with `\` -> `\\` and newline -> `\n` (quotes stay as they are).
void append_escaped_help(std::string& out, std::string_view help);

}  // namespace infergate::prom
