#pragma once

// Helpers shared by the fuzz targets: reading choices off the front of the input, cutting the
// rest into pieces (to check that parsers fed in pieces agree with parsers fed whole), and
// failing loudly when a property does not hold.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace infergate::fuzz {

// Aborts with `what` when `condition` is false. Both libFuzzer and the corpus replay report an
// abort as a failure with the input that caused it.
inline void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "property violated: %s\n", what);
    std::abort();
  }
}

class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size)
      : rest_(reinterpret_cast<const char*>(data), size) {}

  // The next byte (0 when the input is used up).
  std::uint8_t take_byte() {
    if (rest_.empty()) return 0;
    const auto byte = static_cast<std::uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return byte;
  }

  // What is left.
  std::string_view rest() const { return rest_; }

 private:
  std::string_view rest_;
};

// `text` cut into pieces whose lengths come from `seed` (so a given input always cuts the same
// way): lengths 1..16 with many small ones, so that every kind of boundary (inside a line, a
// "\r\n", an escape) is met.
inline std::vector<std::string_view> pieces(std::string_view text, std::uint8_t seed) {
  std::vector<std::string_view> out;
  std::uint32_t state = seed * 2654435761u + 1;
  while (!text.empty()) {
    state = state * 1664525u + 1013904223u;
    const std::size_t length = std::min<std::size_t>(text.size(), 1 + ((state >> 24) % 16));
    out.push_back(text.substr(0, length));
    text.remove_prefix(length);
  }
  return out;
}

}  // namespace infergate::fuzz
