#include "bench/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace infergate::bench {

double percentile_of_sorted(std::span<const double> sorted, double p) {
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lower = static_cast<std::size_t>(std::floor(rank));
  const std::size_t upper = std::min(lower + 1, sorted.size() - 1);
  const double fraction = rank - static_cast<double>(lower);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}

Distribution summarize(std::vector<double> samples) {
  Distribution result;
  if (samples.empty()) return result;
  std::sort(samples.begin(), samples.end());
  result.count = samples.size();
  result.mean =
      std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(samples.size());
  result.min = samples.front();
  result.max = samples.back();
  result.p50 = percentile_of_sorted(samples, 50);
  result.p90 = percentile_of_sorted(samples, 90);
  result.p99 = percentile_of_sorted(samples, 99);
  return result;
}

}  // namespace infergate::bench
