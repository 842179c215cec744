#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace infergate {

// Sets the process-wide log level from a name (trace, debug, info, warn, error, off).
// Returns false for an unknown name.
bool set_log_level(std::string_view level);

}  // namespace infergate
