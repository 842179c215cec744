#pragma once

// The one-line progress bar `infergate bench` redraws on a terminal (stderr, only when it is a
// TTY; --no-progress turns it off). Pure formatting: the caller reads the generator's live
// figures and the clock and redraws the line ("\r" + line + erase-to-end) every few hundred ms.

#include <cstddef>
#include <string>

namespace infergate::bench {

struct ProgressState {
  std::string stage;     // e.g. "run 2/6 round-robin 10 req/s"
  double elapsed_s = 0;  // since the run started (warm-up included)
  double total_s = 0;    // warm-up + measured duration: the launch window
  std::size_t done = 0;  // requests finished (successes and failures)
  std::size_t in_flight = 0;
  std::size_t errors = 0;  // finished requests that failed
};

// "<stage> [#####.....] 12.3/40.0 s  done 123  in flight 4  errors 0", the bar filling with the
// launch window; once the window is over "draining" replaces the bar. Cut to `width` - 1 columns
// (so that the cursor never wraps); `width` 0 means no limit.
std::string format_progress_line(const ProgressState& state, std::size_t width);

}  // namespace infergate::bench
