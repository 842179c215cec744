#include "bench/load.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/verb.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <utility>

namespace infergate::bench {
namespace {

constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint64_t kArrivalsDomain = 5;
constexpr std::size_t kMaxErrorBodyBytes = 200;

Status bad_url(std::string_view url, std::string_view why) {
  return Status::bad_request(fmt::format(
      "--url '{}': {} (expected http://host:port, e.g. http://127.0.0.1:8000)", url, why));
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
  }
  return true;
}

// The budget left for one client call; at least 1 ms so that an expired deadline still makes the
// call fail with a timeout rather than wait forever.
std::chrono::milliseconds remaining(TimePoint deadline, TimePoint now) {
  return std::max(std::chrono::milliseconds(1),
                  std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
}

}  // namespace

std::string Target::url() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}{}", ipv6 ? "[" : "", host, ipv6 ? "]" : "", port, base_path);
}

std::string Target::request_target(std::string_view api_path) const {
  constexpr std::string_view kVersion = "/v1";
  if (base_path.ends_with(kVersion) && api_path.starts_with("/v1/")) {
    return base_path + std::string(api_path.substr(kVersion.size()));
  }
  return base_path + std::string(api_path);
}

Result<Target> parse_target_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (starts_with_ignoring_case(url, "https://")) {
    return bad_url(url, "https is not supported; use http://");
  }
  if (!starts_with_ignoring_case(url, kScheme)) return bad_url(url, "must start with http://");
  std::string_view rest = url.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return bad_url(url, "a query or fragment is not allowed");
  }
  const std::size_t path_start = rest.find('/');
  std::string_view authority = rest.substr(0, path_start);
  std::string_view path = path_start == std::string_view::npos ? "" : rest.substr(path_start);
  if (authority.find('@') != std::string_view::npos) {
    return bad_url(url, "user info is not supported");
  }

  Target target;
  std::string_view port_text;
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad_url(url, "unterminated IPv6 address");
    target.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) return bad_url(url, "unexpected text after the IPv6 address");
      port_text = after.substr(1);
      if (port_text.empty()) return bad_url(url, "empty port");
    }
  } else {
    const std::size_t colon = authority.find(':');
    target.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad_url(url, "empty port");
    }
  }
  if (target.host.empty()) return bad_url(url, "missing host");
  if (!port_text.empty()) {
    unsigned port = 0;
    const auto [end, error] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (error != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return bad_url(url, fmt::format("bad port '{}'", port_text));
    }
    target.port = static_cast<std::uint16_t>(port);
  }
  while (path.ends_with('/')) path.remove_suffix(1);
  target.base_path = std::string(path);
  return target;
}

Status validate(const LoadOptions& options) {
  if (options.mode == LoadMode::kRate && !(options.rate > 0 && std::isfinite(options.rate))) {
    return Status::bad_request(fmt::format("--rate must be > 0, got {}", options.rate));
  }
  if (options.mode == LoadMode::kConcurrency && options.concurrency < 1) {
    return Status::bad_request(
        fmt::format("--concurrency must be >= 1, got {}", options.concurrency));
  }
  if (options.duration <= Duration::zero()) return Status::bad_request("--duration must be > 0");
  if (options.warmup < Duration::zero()) return Status::bad_request("--warmup must be >= 0");
  if (options.timeout < std::chrono::milliseconds(1)) {
    return Status::bad_request("--timeout must be at least 1 ms");
  }
  return {};
}

LoadGenerator::LoadGenerator(asio::any_io_executor executor, LoadOptions options,
                             const Workload& workload)
    : executor_(executor),
      options_(std::move(options)),
      workload_(workload),
      request_target_(options_.target.request_target(workload.path())),
      launch_timer_(executor),
      drained_timer_(executor),
      progress_timer_(executor) {}

TimePoint LoadGenerator::now() const {
  return std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - origin_);
}

void LoadGenerator::stop() {
  stopping_ = true;
  launch_timer_.cancel();
}

RequestRecord& LoadGenerator::new_record(TimePoint scheduled) {
  RequestRecord& record = records_.emplace_back();
  record.index = records_.size() - 1;
  record.scheduled = scheduled;
  record.measured = scheduled >= options_.warmup;
  return record;
}

void LoadGenerator::task_done() {
  if (--active_tasks_ == 0) drained_timer_.cancel();
}

asio::awaitable<RunResult> LoadGenerator::run() {
  origin_ = std::chrono::steady_clock::now();
  const TimePoint launch_end = options_.warmup + options_.duration;
  if (options_.progress_interval > Duration::zero()) {
    ++active_tasks_;
    asio::co_spawn(executor_, progress_loop(), asio::detached);
  }

  if (options_.mode == LoadMode::kRate) {
    co_await open_loop(launch_end);
  } else {
    for (int worker = 0; worker < options_.concurrency; ++worker) {
      ++active_tasks_;
      asio::co_spawn(executor_, closed_loop_worker(launch_end), asio::detached);
    }
    // Workers check the clock before each request; this wait only lets stop() end the window.
    launch_timer_.expires_at(origin_ + launch_end);
    co_await launch_timer_.async_wait(kAsTuple);
  }

  RunResult result;
  result.window_start = options_.warmup;
  result.window_end = launch_end;
  if (stopping_) {
    result.stopped_early = true;
    result.window_end = std::clamp(now(), options_.warmup, launch_end);
  }
  stopping_ = true;  // ends the closed-loop workers and the progress loop
  progress_timer_.cancel();
  if (requests_in_flight_ > 0 && options_.progress_interval > Duration::zero()) {
    spdlog::info("bench: launch window over; waiting for {} requests in flight",
                 requests_in_flight_);
  }
  while (active_tasks_ > 0) {
    drained_timer_.expires_at(asio::steady_timer::time_point::max());
    co_await drained_timer_.async_wait(kAsTuple);
  }
  for (auto& connection : idle_connections_) connection.close();
  idle_connections_.clear();

  result.finished = now();
  result.connections_opened = connections_opened_;
  result.stale_connection_retries = stale_connection_retries_;
  result.records = std::move(records_);
  co_return result;
}

asio::awaitable<void> LoadGenerator::open_loop(TimePoint launch_end) {
  PoissonArrivals arrivals(options_.rate, derive_seed(options_.seed, kArrivalsDomain));
  while (!stopping_) {
    TimePoint scheduled{};
    if (workload_.has_fixed_arrivals()) {  // a trace: its own arrival times, until it ends
      const std::optional<Duration> fixed = workload_.fixed_arrival(records_.size());
      if (!fixed) break;
      scheduled = *fixed;
    } else {
      scheduled = arrivals.next();
    }
    if (scheduled >= launch_end) break;
    launch_timer_.expires_at(origin_ + scheduled);
    co_await launch_timer_.async_wait(kAsTuple);
    if (stopping_) break;
    RequestRecord& record = new_record(scheduled);
    ++active_tasks_;
    asio::co_spawn(
        executor_,
        [this, &record]() -> asio::awaitable<void> {
          co_await execute(record);
          task_done();
        },
        asio::detached);
  }
}

asio::awaitable<void> LoadGenerator::closed_loop_worker(TimePoint launch_end) {
  while (!stopping_) {
    const TimePoint scheduled = now();
    if (scheduled >= launch_end) break;
    co_await execute(new_record(scheduled));
  }
  task_done();
}

asio::awaitable<void> LoadGenerator::progress_loop() {
  while (!stopping_) {
    progress_timer_.expires_after(options_.progress_interval);
    co_await progress_timer_.async_wait(kAsTuple);
    if (stopping_) break;
    spdlog::info("bench: t={:.0f}s launched {} in flight {} failed {}", to_seconds(now()),
                 records_.size(), requests_in_flight_, requests_failed_);
  }
  task_done();
}

asio::awaitable<void> LoadGenerator::execute(RequestRecord& record) {
  ++requests_in_flight_;
  // The body is built before `start`, so its cost shows up as schedule lag, not as latency.
  const GeneratedRequest generated = workload_.request(record.index);
  record.start = now();
  const TimePoint deadline = record.start + options_.timeout;

  bool reused = !idle_connections_.empty();
  http::ClientConnection connection = [&] {
    if (!reused) return http::ClientConnection(executor_);
    http::ClientConnection idle = std::move(idle_connections_.back());
    idle_connections_.pop_back();
    return idle;
  }();
  while (true) {
    if (!reused) {
      record.new_connection = true;
      ++connections_opened_;
      const Status connected = co_await connection.connect(
          options_.target.host, options_.target.port, remaining(deadline, now()));
      if (!connected.is_ok()) {
        record.outcome = Outcome::kConnectError;
        record.error_message = connected.message();
        record.end = now();
        break;
      }
    }
    if (co_await exchange(connection, reused, generated.body, record, deadline)) break;
    ++stale_connection_retries_;
    reused = false;
  }
  if (connection.is_open()) idle_connections_.push_back(std::move(connection));
  if (!record.ok()) ++requests_failed_;
  --requests_in_flight_;
}

asio::awaitable<bool> LoadGenerator::exchange(http::ClientConnection& connection, bool reused,
                                              const std::string& body, RequestRecord& record,
                                              TimePoint deadline) {
  // A failed call has closed the connection; anything but a timeout counts as a protocol error.
  auto fail = [&](const Status& status) {
    record.end = now();
    if (record.outcome != Outcome::kPending) return;  // the stream had already failed
    record.outcome = status.http_status() == 504 ? Outcome::kTimeout : Outcome::kProtocolError;
    record.error_message = status.message();
  };

  http::Request request = http::make_request(boost::beast::http::verb::post, request_target_, body);
  request.set(boost::beast::http::field::accept, "text/event-stream");
  request.set(boost::beast::http::field::user_agent, "infergate-bench");
  const Status sent =
      co_await connection.send_request(std::move(request), remaining(deadline, now()));
  if (!sent.is_ok()) {
    if (reused && sent.http_status() == 502) co_return false;
    fail(sent);
    co_return true;
  }
  Result<http::ResponseHead> head =
      co_await connection.read_response_head(remaining(deadline, now()));
  if (!head.ok()) {
    if (reused && head.status().http_status() == 502) co_return false;
    fail(head.status());
    co_return true;
  }
  record.http_status = head->status;

  std::string received;
  if (head->status != 200) {
    // Read the error body to its end so that the connection stays reusable.
    while (true) {
      Result<std::size_t> appended =
          co_await connection.read_body_some(received, remaining(deadline, now()));
      if (!appended.ok() || *appended == 0) break;
    }
    record.outcome = Outcome::kHttpError;
    record.error_message = received.substr(0, kMaxErrorBodyBytes);
    record.end = now();
    co_return true;
  }

  StreamRecorder recorder(record);
  while (true) {
    Result<std::size_t> appended =
        co_await connection.read_body_some(received, remaining(deadline, now()));
    const TimePoint arrived = now();
    if (!appended.ok()) {
      fail(appended.status());
      co_return true;
    }
    if (*appended == 0) {
      recorder.on_body_end(arrived);
      co_return true;
    }
    recorder.on_body(received, arrived);
    received.clear();
  }
}

}  // namespace infergate::bench
