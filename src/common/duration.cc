#include "common/duration.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>

namespace infergate {
namespace {

struct Unit {
  std::string_view name;
  double nanoseconds;
};
// Longer names first so that "ms" is not read as "m".
constexpr Unit kUnits[] = {{"ns", 1},  {"us", 1e3}, {"µs", 1e3},  {"ms", 1e6},
                           {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};

}  // namespace

Result<Duration> parse_duration(std::string_view text) {
  auto invalid = [&] {
    return Status::bad_request(fmt::format(
        "invalid duration '{}' (expected e.g. 50ms, 1.5s, 2m30s; units ns, us, ms, s, m, h)",
        text));
  };
  if (text == "0") return Duration{0};
  if (text.empty()) return invalid();
  std::string_view rest = text;
  double total_ns = 0;
  while (!rest.empty()) {
    std::size_t digits = 0;
    while (digits < rest.size() &&
           ((rest[digits] >= '0' && rest[digits] <= '9') || rest[digits] == '.')) {
      ++digits;
    }
    if (digits == 0) return invalid();
    double value = 0;
    auto [end, error] = std::from_chars(rest.data(), rest.data() + digits, value);
    if (error != std::errc() || end != rest.data() + digits) return invalid();
    rest.remove_prefix(digits);
    const Unit* unit = nullptr;
    for (const Unit& candidate : kUnits) {
      if (rest.starts_with(candidate.name) &&
          (unit == nullptr || candidate.name.size() > unit->name.size())) {
        unit = &candidate;
      }
    }
    if (unit == nullptr) return invalid();
    rest.remove_prefix(unit->name.size());
    total_ns += value * unit->nanoseconds;
  }
  if (!std::isfinite(total_ns) || total_ns > 9.2e18) return invalid();
  return Duration(static_cast<std::int64_t>(std::llround(total_ns)));
}

std::string format_duration(Duration duration) {
  const std::int64_t ns = duration.count();
  if (ns == 0) return "0s";
  if (ns % 1'000'000'000 != 0) {
    if (ns % 1'000'000 == 0) return fmt::format("{}ms", ns / 1'000'000);
    if (ns % 1'000 == 0) return fmt::format("{}us", ns / 1'000);
    return fmt::format("{}ns", ns);
  }
  std::int64_t seconds = ns / 1'000'000'000;
  std::string out;
  if (seconds >= 3600) {
    out += fmt::format("{}h", seconds / 3600);
    seconds %= 3600;
  }
  if (seconds >= 60) {
    out += fmt::format("{}m", seconds / 60);
    seconds %= 60;
  }
  if (seconds > 0 || out.empty()) out += fmt::format("{}s", seconds);
  return out;
}

}  // namespace infergate
