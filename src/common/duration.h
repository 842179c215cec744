#pragma once

#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/status.h"

namespace infergate {

// Parses a Go-style duration as GIE's flags and configuration write them: a sequence of decimal
// numbers with units, e.g. "50ms", "1.5s", "2m30s", "0"; units ns, us (or µs), ms, s, m, h.
// Negative durations are rejected. Errors are 400 Statuses naming the text.
Result<Duration> parse_duration(std::string_view text);

// The shortest Go-style spelling of a duration ("50ms", "2s", "1m30s").
std::string format_duration(Duration duration);

}  // namespace infergate
