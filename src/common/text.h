#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace infergate {

// `text` without leading and trailing spaces and tabs (HTTP optional whitespace, list entries).
inline std::string_view trim_blanks(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// The hash of std::unordered_map<std::string, V, StringHash, std::equal_to<>>: such a map is
// searched by std::string_view without building a std::string.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
};

}  // namespace infergate
