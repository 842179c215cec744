#pragma once

#include <cmath>
#include <cstdint>

// Deterministic randomness for workloads, generated text and simulations: the same seed gives the
// same sequence on every platform (std:: distributions are implementation-defined, so none are
// used). Not for cryptography.
namespace infergate {

// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit state, full period, good enough statistically
// for workload shapes.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next_u64() {
    state_ += 0x9E3779B97F4A7C15ULL;
    std::uint64_t mixed = state_;
    mixed = (mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9ULL;
    mixed = (mixed ^ (mixed >> 27)) * 0x94D049BB133111EBULL;
    return mixed ^ (mixed >> 31);
  }

  // Uniform in [0, 1), 53 random bits.
  double next_unit() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Uniform in [0, bound) for bound >= 1 (modulo bias below bound / 2^64: negligible here).
  std::uint64_t next_below(std::uint64_t bound) { return next_u64() % bound; }

  // Exponentially distributed with the given rate (mean 1 / rate), by inversion.
  double next_exponential(double rate) { return -std::log1p(-next_unit()) / rate; }

 private:
  std::uint64_t state_;
};

// A seed for one purpose (`domain`) and one item (`a`, `b`) derived from the user's seed, so that
// e.g. group 3's system prompt does not change when the number of groups does.
inline std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t domain, std::uint64_t a = 0,
                                 std::uint64_t b = 0) {
  SplitMix64 mix(seed ^ (domain * 0xD1B54A32D192ED03ULL));
  std::uint64_t value = mix.next_u64();
  value = SplitMix64(value ^ a).next_u64();
  return SplitMix64(value ^ (b * 0x9E3779B97F4A7C15ULL)).next_u64();
}

}  // namespace infergate
