#pragma once

// The load generator: launches a Workload's requests against one OpenAI-compatible server, open
// loop (Poisson arrivals at a fixed rate) or closed loop (a fixed number in flight), streams every
// response and records what happened to each request (bench/stream.h).

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "bench/stream.h"
#include "bench/workload.h"
#include "common/clock.h"
#include "common/random.h"
#include "common/status.h"
#include "http/client.h"

namespace infergate::bench {

namespace asio = boost::asio;

// The server under test, from --url.
struct Target {
  std::string host;  // a name or an IP literal (IPv6 without brackets)
  std::uint16_t port = 80;
  std::string base_path;  // "" or "/prefix", never ending in '/'

  // "http://host:port<base_path>", IPv6 hosts in brackets.
  std::string url() const;
  // The request target for an API path such as "/v1/completions": base_path + api_path, except
  // that a base path ending in "/v1" is not doubled (http://h:8000/v1 works as well as
  // http://h:8000).
  std::string request_target(std::string_view api_path) const;
};

// Parses "http://host[:port][/base/path]". Errors (400) explain what is wrong: other schemes
// (https is not supported), a missing host, a bad port, user info, a query or fragment.
Result<Target> parse_target_url(std::string_view url);

// Arrival times of a Poisson process: exponential gaps with mean 1 / rate_per_second drawn from a
// seeded generator, so a seed fixes the schedule exactly.
class PoissonArrivals {
 public:
  PoissonArrivals(double rate_per_second, std::uint64_t seed)
      : rng_(seed), rate_per_second_(rate_per_second) {}

  // The next arrival, as time since the start of the schedule (non-decreasing).
  Duration next() {
    elapsed_seconds_ += rng_.next_exponential(rate_per_second_);
    return from_seconds(elapsed_seconds_);
  }

 private:
  SplitMix64 rng_;
  double rate_per_second_;
  double elapsed_seconds_ = 0;
};

enum class LoadMode {
  kRate,         // open loop: Poisson arrivals at `rate`, whatever the server's latency
  kConcurrency,  // closed loop: `concurrency` requests always in flight, each sent as one ends
};

struct LoadOptions {
  Target target;
  LoadMode mode = LoadMode::kRate;
  double rate = 1;      // kRate: mean requests per second
  int concurrency = 1;  // kConcurrency
  // Requests launched (kRate: scheduled) during the warm-up are sent but not measured; the
  // measured window is [warmup, warmup + duration).
  Duration warmup{};
  Duration duration = std::chrono::seconds(30);
  // Whole-request limit, from launch to the end of the stream (connecting included).
  Duration timeout = std::chrono::seconds(60);
  std::uint64_t seed = 1;  // arrival times (the workload has its own seed)
  // Interval of the progress log line (spdlog info); zero: none.
  Duration progress_interval{};
};

// 400 naming the flag: rate > 0 and finite, concurrency >= 1, duration > 0, warmup >= 0,
// timeout >= 1 ms.
Status validate(const LoadOptions& options);

// Everything a run produced. Times are on the run's clock: steady time since the run started.
struct RunResult {
  std::deque<RequestRecord> records;  // every launched request (warm-up too), in launch order
  TimePoint window_start{};           // = warmup
  TimePoint window_end{};             // = warmup + duration, or the stop time if stopped early
  TimePoint finished{};               // the last request finished
  std::size_t connections_opened = 0;
  // Requests re-sent once on a fresh connection because a reused keep-alive connection turned
  // out to be closed by the server before any response arrived.
  std::size_t stale_connection_retries = 0;
  bool stopped_early = false;
};

// Runs one benchmark on one executor. Every request is its own coroutine on `executor` (thousands
// can be in flight; one thread suffices); each takes an idle keep-alive connection from the
// generator's pool, or opens a new one, and returns it to the pool when its response is complete.
// Requests are POSTed with `stream: true` and every body read is timestamped on arrival.
//
// Threading: `executor` must be run by one thread (e.g. an io_context with one thread), and
// run() and stop() must be called on it. The generator and `workload` must outlive run().
//
// Open loop: the schedule is PoissonArrivals(rate, seed), or the workload's own arrival times
// when it has them (Workload::has_fixed_arrivals: a trace; `rate` is then unused and launching
// ends early when the trace does); a request is launched when its arrival
// time comes (RequestRecord::scheduled) and its launch time (start) is recorded: start - scheduled
// is the schedule lag, which grows when the generator cannot keep up (a busy or overloaded
// thread). A request belongs to the measured window by its scheduled time (kRate) or its start
// (kConcurrency).
class LoadGenerator {
 public:
  LoadGenerator(asio::any_io_executor executor, LoadOptions options, const Workload& workload);
  LoadGenerator(const LoadGenerator&) = delete;
  LoadGenerator& operator=(const LoadGenerator&) = delete;

  // Launches requests for warmup + duration, then waits for every request in flight to finish
  // (each is bounded by the timeout), closes the idle connections and returns. Call once.
  asio::awaitable<RunResult> run();

  // Stops launching (e.g. on SIGINT); requests in flight run to their end. Idempotent.
  void stop();

  // Live figures, for progress output (read on the executor's thread).
  std::size_t launched() const { return records_.size(); }
  std::size_t in_flight() const { return requests_in_flight_; }
  std::size_t failed() const { return requests_failed_; }  // finished, not a success

 private:
  TimePoint now() const;
  RequestRecord& new_record(TimePoint scheduled);
  asio::awaitable<void> open_loop(TimePoint launch_end);
  asio::awaitable<void> closed_loop_worker(TimePoint launch_end);
  asio::awaitable<void> progress_loop();
  asio::awaitable<void> execute(RequestRecord& record);
  // Sends `body` and streams the response into `record`. Returns false, leaving `record`
  // pending, when a reused connection failed before any response byte (the caller retries).
  asio::awaitable<bool> exchange(http::ClientConnection& connection, bool reused,
                                 const std::string& body, RequestRecord& record,
                                 TimePoint deadline);
  void task_done();

  asio::any_io_executor executor_;
  LoadOptions options_;
  const Workload& workload_;
  std::string request_target_;
  std::chrono::steady_clock::time_point origin_;
  std::deque<RequestRecord> records_;
  std::vector<http::ClientConnection> idle_connections_;
  asio::steady_timer launch_timer_;   // open loop: the next arrival; both: the launch window
  asio::steady_timer drained_timer_;  // cancelled when the last task ends
  asio::steady_timer progress_timer_;
  std::size_t active_tasks_ = 0;  // request coroutines and closed-loop workers
  std::size_t requests_in_flight_ = 0;
  std::size_t requests_failed_ = 0;
  std::size_t connections_opened_ = 0;
  std::size_t stale_connection_retries_ = 0;
  bool stopping_ = false;
};

}  // namespace infergate::bench
