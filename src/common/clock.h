#pragma once

#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace infergate {

// Time on the project's clocks is a duration since the clock's own epoch. Pure code (the engine
// model, the scheduler) never reads a clock itself: it is handed `now` by its driver, so the same
// code runs in real time, scaled time and virtual time.
using Duration = std::chrono::nanoseconds;
using TimePoint = Duration;

inline constexpr double to_seconds(Duration d) { return std::chrono::duration<double>(d).count(); }
inline constexpr Duration from_seconds(double seconds) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(seconds));
}
inline constexpr Duration from_milliseconds(double ms) { return from_seconds(ms / 1000.0); }
inline constexpr Duration from_microseconds(double us) { return from_seconds(us / 1e6); }

// A source of `now`. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

// Monotonic real time since construction.
class SteadyClock final : public Clock {
 public:
  SteadyClock() : start_(std::chrono::steady_clock::now()) {}
  TimePoint now() const override {
    return std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - start_);
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Real time multiplied by `scale` (scale 10: ten simulated seconds per real second). Converts
// simulated durations back to real ones for timers.
class ScaledClock final : public Clock {
 public:
  explicit ScaledClock(double scale) : scale_(scale) {}
  TimePoint now() const override {
    return Duration(static_cast<std::int64_t>(static_cast<double>(real_.now().count()) * scale_));
  }
  Duration to_real(Duration simulated) const {
    return Duration(static_cast<std::int64_t>(static_cast<double>(simulated.count()) / scale_));
  }
  double scale() const { return scale_; }

 private:
  SteadyClock real_;
  double scale_;
};

// A clock that moves only when told to: tests and virtual-time simulation.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start = TimePoint{0}) : now_(start.count()) {}
  TimePoint now() const override { return Duration(now_.load(std::memory_order_acquire)); }
  void set(TimePoint t) { now_.store(t.count(), std::memory_order_release); }
  void advance(Duration d) { now_.fetch_add(d.count(), std::memory_order_acq_rel); }

 private:
  std::atomic<std::int64_t> now_;
};

// std::chrono::steady_clock's time as of the kernel's last tick (CLOCK_MONOTONIC_COARSE, which
// steady_clock's CLOCK_MONOTONIC runs ahead of by a few milliseconds at most) at a fraction of the
// cost of a precise read: for ages of seconds, such as how long a connection has been idle.
inline std::chrono::steady_clock::time_point coarse_steady_now() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  return std::chrono::steady_clock::time_point(std::chrono::seconds(now.tv_sec) +
                                               std::chrono::nanoseconds(now.tv_nsec));
}

// Seconds since the Unix epoch, for wire fields such as OpenAI's `created`.
inline std::int64_t unix_time_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
inline double unix_time_seconds_fractional() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace infergate
