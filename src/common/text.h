#pragma once

#include <string_view>

namespace infergate {

// `text` without leading and trailing spaces and tabs (HTTP optional whitespace, list entries).
inline std::string_view trim_blanks(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace infergate
