#pragma once

namespace infergate::cli {

// The release this binary was built from.
inline constexpr const char* kVersion = "0.1.0";

}  // namespace infergate::cli
