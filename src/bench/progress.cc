#include "bench/progress.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace infergate::bench {

std::string format_progress_line(const ProgressState& state, std::size_t width) {
  constexpr std::size_t kBarCells = 20;
  std::string bar;
  if (state.total_s > 0 && state.elapsed_s >= state.total_s) {
    bar = "draining";
  } else {
    const double share =
        state.total_s > 0 ? std::clamp(state.elapsed_s / state.total_s, 0.0, 1.0) : 0.0;
    const auto filled = static_cast<std::size_t>(std::floor(share * kBarCells));
    bar = "[" + std::string(filled, '#') + std::string(kBarCells - filled, '.') + "]";
  }
  std::string line = fmt::format("{} {} {:.1f}/{:.1f} s  done {}  in flight {}  errors {}",
                                 state.stage, bar, std::min(state.elapsed_s, state.total_s),
                                 state.total_s, state.done, state.in_flight, state.errors);
  if (width > 0 && line.size() >= width) line.resize(width - 1);
  return line;
}

}  // namespace infergate::bench
