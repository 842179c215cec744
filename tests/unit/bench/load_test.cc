#include "bench/load.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "http/server.h"
#include "http/sse.h"
#include "unit/http/http_test_util.h"

namespace infergate::bench {
namespace {

using std::chrono::milliseconds;
using json = nlohmann::json;
namespace bhttp = boost::beast::http;

// --- URL ------------------------------------------------------------------------------------

TEST(ParseTargetUrlTest, AcceptsHttpHostPortAndBasePaths) {
  struct Case {
    std::string url, host;
    std::uint16_t port;
    std::string base_path, completions_target;
  };
  const std::vector<Case> cases = {
      {"http://127.0.0.1:8000", "127.0.0.1", 8000, "", "/v1/completions"},
      {"http://localhost:8000/", "localhost", 8000, "", "/v1/completions"},
      {"HTTP://vllm.example", "vllm.example", 80, "", "/v1/completions"},
      {"http://[::1]:9000", "::1", 9000, "", "/v1/completions"},
      {"http://gw:80/v1", "gw", 80, "/v1", "/v1/completions"},
      {"http://gw:80/pool-a/", "gw", 80, "/pool-a", "/pool-a/v1/completions"},
  };
  for (const auto& test_case : cases) {
    auto target = parse_target_url(test_case.url);
    ASSERT_TRUE(target.ok()) << test_case.url << ": " << target.status().message();
    EXPECT_EQ(target->host, test_case.host) << test_case.url;
    EXPECT_EQ(target->port, test_case.port) << test_case.url;
    EXPECT_EQ(target->base_path, test_case.base_path) << test_case.url;
    EXPECT_EQ(target->request_target("/v1/completions"), test_case.completions_target);
  }
  EXPECT_EQ(parse_target_url("http://[::1]:9000/x")->url(), "http://[::1]:9000/x");
}

TEST(ParseTargetUrlTest, RejectsWhatItCannotUseWithAReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"https://h:443", "https is not supported"},
      {"127.0.0.1:8000", "must start with http://"},
      {"http://:8000", "missing host"},
      {"http://h:", "empty port"},
      {"http://h:0", "bad port"},
      {"http://h:65536", "bad port"},
      {"http://h:80x", "bad port"},
      {"http://user@h:80", "user info"},
      {"http://h:80/?a=b", "query or fragment"},
      {"http://[::1:80", "unterminated IPv6"},
  };
  for (const auto& [url, reason] : cases) {
    auto target = parse_target_url(url);
    ASSERT_FALSE(target.ok()) << url;
    EXPECT_EQ(target.status().http_status(), 400);
    EXPECT_NE(target.status().message().find(reason), std::string::npos)
        << url << ": " << target.status().message();
  }
}

TEST(LoadOptionsTest, ValidateNamesTheFlag) {
  LoadOptions options;
  EXPECT_TRUE(validate(options).is_ok());
  options.rate = 0;
  EXPECT_NE(validate(options).message().find("--rate"), std::string::npos);
  options.rate = std::nan("");
  EXPECT_NE(validate(options).message().find("--rate"), std::string::npos);
  options = LoadOptions{};
  options.mode = LoadMode::kConcurrency;
  options.concurrency = 0;
  EXPECT_NE(validate(options).message().find("--concurrency"), std::string::npos);
  options = LoadOptions{};
  options.duration = Duration::zero();
  EXPECT_NE(validate(options).message().find("--duration"), std::string::npos);
  options = LoadOptions{};
  options.timeout = Duration::zero();
  EXPECT_NE(validate(options).message().find("--timeout"), std::string::npos);
}

// --- Poisson schedule -----------------------------------------------------------------------

TEST(PoissonArrivalsTest, SameSeedSameScheduleOtherSeedOtherSchedule) {
  PoissonArrivals first(50, 1), again(50, 1), other(50, 2);
  bool differs = false;
  for (int arrival = 0; arrival < 100; ++arrival) {
    const Duration time = first.next();
    EXPECT_EQ(time, again.next());
    differs = differs || time != other.next();
  }
  EXPECT_TRUE(differs);
}

TEST(PoissonArrivalsTest, GapsAreExponentialWithMeanOneOverRate) {
  constexpr double kRate = 200;
  constexpr int kArrivals = 200'000;
  PoissonArrivals arrivals(kRate, 42);
  double previous = 0, sum = 0, sum_squares = 0;
  int shorter_than_mean = 0;
  Duration last{};
  for (int arrival = 0; arrival < kArrivals; ++arrival) {
    const Duration time = arrivals.next();
    ASSERT_GE(time, last);
    last = time;
    const double gap = to_seconds(time) - previous;
    previous = to_seconds(time);
    sum += gap;
    sum_squares += gap * gap;
    if (gap < 1 / kRate) ++shorter_than_mean;
  }
  const double mean = sum / kArrivals;
  const double stddev = std::sqrt(sum_squares / kArrivals - mean * mean);
  // Standard errors at n = 200k are ~0.2 % (mean) and ~0.5 % (CV): these bounds are > 4 sigma.
  EXPECT_NEAR(mean * kRate, 1.0, 0.01);
  EXPECT_NEAR(stddev / mean, 1.0, 0.02);  // exponential: coefficient of variation 1
  EXPECT_NEAR(static_cast<double>(shorter_than_mean) / kArrivals, 1 - std::exp(-1.0), 0.005);
  // Arrivals in one second windows: Poisson(200), so the total is ~ rate x time.
  EXPECT_NEAR(static_cast<double>(kArrivals) / to_seconds(last), kRate, kRate * 0.01);
}

// --- Loopback runs --------------------------------------------------------------------------

namespace asio = boost::asio;
using http::testing::run_coroutine;

constexpr milliseconds kFirstTokenDelay{20};
constexpr milliseconds kLastTokenDelay{20};

asio::awaitable<void> pause(milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(duration);
  co_await timer.async_wait(http::testing::kAsTuple);
}

std::string chat_chunk(std::string_view delta) {
  return http::sse_event(R"({"object":"chat.completion.chunk","choices":[{"index":0,"delta":)" +
                         std::string(delta) + "}]}");
}

// A vLLM-like chat stream: role chunk, then (after kFirstTokenDelay) two text events written
// together and one more, then (after kLastTokenDelay) the last text event carrying two tokens,
// the finish chunk, the usage chunk (5 completion tokens, 16 cached) and [DONE].
asio::awaitable<void> stream_chat(http::ResponseWriter& writer) {
  co_await writer.begin_stream(200, "text/event-stream");
  co_await writer.write_chunk(chat_chunk(R"({"role":"assistant","content":""})"));
  co_await pause(kFirstTokenDelay);
  co_await writer.write_chunk(chat_chunk(R"({"content":" a"})") +
                              chat_chunk(R"({"content":" b"})"));
  co_await writer.write_chunk(chat_chunk(R"({"content":" c"})"));
  co_await pause(kLastTokenDelay);
  co_await writer.write_chunk(chat_chunk(R"({"content":" d e"})"));
  co_await writer.write_chunk(
      http::sse_event(R"({"choices":[{"index":0,"delta":{},"finish_reason":"length"}]})"));
  co_await writer.write_chunk(http::sse_event(
      R"({"choices":[],"usage":{"prompt_tokens":42,"completion_tokens":5,"total_tokens":47,)"
      R"("prompt_tokens_details":{"cached_tokens":16}}})"));
  co_await writer.write_chunk(http::sse_event("[DONE]"));
  co_await writer.end_stream();
}

Workload chat_workload() {
  WorkloadOptions options;
  options.model = "test-model";
  options.api = Api::kChat;
  options.prompt_tokens = 12;
  options.output_tokens = 5;
  return std::move(*Workload::create(options));
}

LoadOptions loopback_options(std::uint16_t port) {
  LoadOptions options;
  options.target = Target{"127.0.0.1", port, ""};
  options.timeout = std::chrono::seconds(5);
  return options;
}

// Runs `generator` and `server` on `io` until the run is over, then stops the server.
RunResult run_against(asio::io_context& io, http::Server& server, LoadGenerator& generator) {
  std::optional<RunResult> result;
  server.start();
  run_coroutine(io, [&]() -> asio::awaitable<void> {
    result = co_await generator.run();
    server.stop();
  });
  EXPECT_TRUE(result.has_value());
  return result ? std::move(*result) : RunResult{};
}

TEST(LoadGeneratorTest, StreamsChatRequestsAndMeasuresEachOne) {
  asio::io_context io;
  int bad_bodies = 0;
  http::Server server(
      io, {}, [&](http::Request& request, http::ResponseWriter& writer) -> asio::awaitable<void> {
        const json body = json::parse(request.body(), nullptr, false);
        if (request.target() != "/v1/chat/completions" || body.is_discarded() ||
            body["model"] != "test-model" || body["stream"] != true ||
            body["stream_options"]["include_usage"] != true || body["ignore_eos"] != true ||
            body["max_tokens"] != 5) {
          ++bad_bodies;
        }
        co_await stream_chat(writer);
      });
  const Workload workload = chat_workload();
  LoadOptions options = loopback_options(server.port());
  options.mode = LoadMode::kConcurrency;
  options.concurrency = 2;
  options.duration = milliseconds(100);
  LoadGenerator generator(io.get_executor(), options, workload);

  const RunResult result = run_against(io, server, generator);

  EXPECT_EQ(bad_bodies, 0);
  ASSERT_GE(result.records.size(), 2u);
  EXPECT_EQ(server.stats().requests.load(), result.records.size());
  // Closed loop with 2 workers: 2 keep-alive connections carry every request.
  EXPECT_EQ(result.connections_opened, 2u);
  EXPECT_EQ(server.stats().connections_accepted.load(), 2u);
  for (const RequestRecord& record : result.records) {
    ASSERT_EQ(record.outcome, Outcome::kSuccess) << record.error_message;
    EXPECT_TRUE(record.measured);
    EXPECT_EQ(record.http_status, 200u);
    EXPECT_GE(record.ttft(), kFirstTokenDelay) << "the role chunk is not the first token";
    EXPECT_GE(record.e2e(), record.ttft() + kLastTokenDelay);
    EXPECT_EQ(record.output_tokens(), 5);  // from usage, not the 4 text events
    EXPECT_EQ(record.text_events, 4u);
    EXPECT_EQ(record.text_event_gaps.size(), 3u);
    // Between the first text event and the last the server paused kLastTokenDelay; which gap
    // shows it depends on when the client read " c" (late on a busy machine), so sum them.
    Duration text_span{};
    for (Duration gap : record.text_event_gaps) text_span += gap;
    EXPECT_GE(text_span, kLastTokenDelay);
    EXPECT_EQ(record.tpot(), (record.e2e() - record.ttft()) / 4);
    EXPECT_EQ(record.prompt_tokens, 42);
    EXPECT_EQ(record.cached_tokens, 16);
    EXPECT_LE(record.scheduled, record.start);
    EXPECT_LT(record.scheduled, options.duration);
  }
  EXPECT_FALSE(result.stopped_early);
  EXPECT_EQ(result.window_start, Duration::zero());
  EXPECT_EQ(result.window_end, options.duration);
}

TEST(LoadGeneratorTest, OpenLoopFollowsTheScheduleAndSplitsWarmupFromMeasured) {
  asio::io_context io;
  http::Server server(
      io, {}, [](http::Request&, http::ResponseWriter& writer) -> asio::awaitable<void> {
        co_await writer.send(200, "text/event-stream",
                             http::sse_event(R"({"choices":[{"text":" x"}]})") +
                                 http::sse_event(R"({"choices":[],"usage":{"prompt_tokens":3,)"
                                                 R"("completion_tokens":1}})") +
                                 http::sse_event("[DONE]"));
      });
  WorkloadOptions workload_options;
  workload_options.model = "m";
  const Workload workload = std::move(*Workload::create(workload_options));
  LoadOptions options = loopback_options(server.port());
  options.rate = 400;
  options.warmup = milliseconds(50);
  options.duration = milliseconds(100);
  options.seed = 3;
  LoadGenerator generator(io.get_executor(), options, workload);

  const RunResult result = run_against(io, server, generator);

  // ~60 arrivals expected in 150 ms at 400/s; Poisson spread keeps it well inside these bounds.
  ASSERT_GE(result.records.size(), 25u);
  ASSERT_LE(result.records.size(), 110u);
  std::size_t measured = 0;
  TimePoint previous{};
  for (const RequestRecord& record : result.records) {
    EXPECT_EQ(record.outcome, Outcome::kSuccess) << record.error_message;
    EXPECT_GE(record.scheduled, previous);
    previous = record.scheduled;
    EXPECT_LT(record.scheduled, options.warmup + options.duration);
    EXPECT_GE(record.schedule_lag(), Duration::zero());
    EXPECT_EQ(record.measured, record.scheduled >= options.warmup);
    if (record.measured) ++measured;
  }
  EXPECT_GT(measured, 0u);
  EXPECT_LT(measured, result.records.size());
  EXPECT_EQ(result.window_start, options.warmup);
  EXPECT_LE(result.connections_opened, result.records.size());
}

TEST(LoadGeneratorTest, OpenLoopReplaysATraceAtItsTimestampsAndStopsWhereItEnds) {
  asio::io_context io;
  std::vector<int> max_tokens_seen;
  http::Server server(
      io, {}, [&](http::Request& request, http::ResponseWriter& writer) -> asio::awaitable<void> {
        max_tokens_seen.push_back(json::parse(request.body())["max_tokens"].get<int>());
        co_await writer.send(
            200, "text/event-stream",
            http::sse_event(R"({"choices":[{"text":" x"}]})") + http::sse_event("[DONE]"));
      });
  const std::string path = ::testing::TempDir() + "infergate_load_trace.jsonl";
  std::ofstream(path) << R"({"timestamp": 0.03, "prompt_tokens": 8, "output_tokens": 2})"
                      << "\n"
                      << R"({"timestamp": 0.01, "prompt_tokens": 8, "output_tokens": 1})"
                      << "\n"
                      << R"({"timestamp": 0.05, "prompt_tokens": 8, "output_tokens": 3})"
                      << "\n"
                      << R"({"timestamp": 9, "prompt_tokens": 8, "output_tokens": 4})"
                      << "\n";
  WorkloadOptions workload_options;
  workload_options.model = "m";
  workload_options.kind = WorkloadKind::kTrace;
  workload_options.trace_path = path;
  auto workload = Workload::create(workload_options);
  ASSERT_TRUE(workload.ok()) << workload.status().message();
  LoadOptions options = loopback_options(server.port());
  options.rate = 0.001;  // unused: the trace sets the arrivals
  options.warmup = milliseconds(20);
  options.duration = milliseconds(80);
  LoadGenerator generator(io.get_executor(), options, *workload);

  const RunResult result = run_against(io, server, generator);

  // The entry at 9 s lies past the window's end and is not sent.
  ASSERT_EQ(result.records.size(), 3u);
  const std::vector<Duration> expected = {from_seconds(0.01), from_seconds(0.03),
                                          from_seconds(0.05)};
  for (std::size_t index = 0; index < 3; ++index) {
    const RequestRecord& record = result.records[index];
    EXPECT_EQ(record.outcome, Outcome::kSuccess) << record.error_message;
    EXPECT_EQ(record.scheduled, expected[index]);
    EXPECT_GE(record.start, record.scheduled);
    EXPECT_EQ(record.measured, index > 0) << "the first arrival falls in the warm-up";
  }
  EXPECT_EQ(max_tokens_seen, (std::vector<int>{1, 2, 3}));
}

TEST(LoadGeneratorTest, CountsErrorsByCategoryAndKeepsConnectionsAfterErrorResponses) {
  asio::io_context io;
  int requests = 0;
  http::Server server(
      io, {}, [&](http::Request&, http::ResponseWriter& writer) -> asio::awaitable<void> {
        switch (requests++ % 3) {
          case 0:
            co_await writer.send(503, "application/json", R"({"error":{"message":"busy"}})");
            break;
          case 1:
            co_await writer.begin_stream(200, "text/event-stream");
            co_await writer.write_chunk(http::sse_event(R"({"error":{"message":"engine died"}})"));
            co_await writer.write_chunk(http::sse_event("[DONE]"));
            co_await writer.end_stream();
            break;
          default:
            co_await stream_chat(writer);
        }
      });
  const Workload workload = chat_workload();
  LoadOptions options = loopback_options(server.port());
  options.mode = LoadMode::kConcurrency;
  options.concurrency = 1;
  options.duration = milliseconds(60);
  LoadGenerator generator(io.get_executor(), options, workload);

  const RunResult result = run_against(io, server, generator);

  ASSERT_GE(result.records.size(), 3u);
  for (const RequestRecord& record : result.records) {
    const std::string expected[] = {"http_503", "stream_error", ""};
    EXPECT_EQ(error_label(record), expected[record.index % 3]) << record.error_message;
  }
  EXPECT_EQ(result.records[0].error_message, R"({"error":{"message":"busy"}})");
  EXPECT_EQ(result.records[1].error_message, "engine died");
  EXPECT_EQ(result.connections_opened, 1u);  // error responses leave the connection reusable
}

TEST(LoadGeneratorTest, ConnectFailuresAreTheirOwnCategory) {
  asio::io_context io;
  std::uint16_t closed_port = 0;
  {
    asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
    closed_port = probe.local_endpoint().port();
  }
  const Workload workload = chat_workload();
  LoadOptions options = loopback_options(closed_port);
  options.rate = 200;
  options.duration = milliseconds(50);
  LoadGenerator generator(io.get_executor(), options, workload);
  std::optional<RunResult> result;
  run_coroutine(io, [&]() -> asio::awaitable<void> { result = co_await generator.run(); });

  ASSERT_TRUE(result.has_value());
  ASSERT_FALSE(result->records.empty());
  for (const RequestRecord& record : result->records) {
    EXPECT_EQ(error_label(record), "connect");
    EXPECT_EQ(record.http_status, 0u);
    EXPECT_NE(record.error_message.find("Connection refused"), std::string::npos);
  }
}

TEST(LoadGeneratorTest, RequestsPastTheTimeoutAreTimeouts) {
  asio::io_context io;
  http::Server server(io, {},
                      [](http::Request&, http::ResponseWriter& writer) -> asio::awaitable<void> {
                        // Starts the stream, then stalls until the client gives up.
                        co_await writer.begin_stream(200, "text/event-stream");
                        asio::steady_timer stall(co_await asio::this_coro::executor);
                        stall.expires_after(std::chrono::seconds(5));
                        writer.on_client_gone([&stall] { stall.cancel(); });
                        co_await stall.async_wait(http::testing::kAsTuple);
                      });
  const Workload workload = chat_workload();
  LoadOptions options = loopback_options(server.port());
  options.mode = LoadMode::kConcurrency;
  options.duration = milliseconds(1);
  options.timeout = milliseconds(50);
  LoadGenerator generator(io.get_executor(), options, workload);

  const RunResult result = run_against(io, server, generator);

  ASSERT_EQ(result.records.size(), 1u);
  EXPECT_EQ(error_label(result.records[0]), "timeout") << result.records[0].error_message;
  EXPECT_GE(result.records[0].e2e(), milliseconds(50));
}

TEST(LoadGeneratorTest, StopEndsTheRunEarly) {
  asio::io_context io;
  LoadGenerator* generator_to_stop = nullptr;
  int requests = 0;
  http::Server server(io, {},
                      [&](http::Request&, http::ResponseWriter& writer) -> asio::awaitable<void> {
                        if (++requests == 3) generator_to_stop->stop();
                        co_await stream_chat(writer);
                      });
  const Workload workload = chat_workload();
  LoadOptions options = loopback_options(server.port());
  options.mode = LoadMode::kConcurrency;
  options.duration = std::chrono::seconds(60);
  LoadGenerator generator(io.get_executor(), options, workload);
  generator_to_stop = &generator;

  const RunResult result = run_against(io, server, generator);

  EXPECT_TRUE(result.stopped_early);
  EXPECT_EQ(result.records.size(), 3u);
  EXPECT_LT(result.window_end, std::chrono::seconds(5));
  for (const RequestRecord& record : result.records) EXPECT_TRUE(record.ok());
}

}  // namespace
}  // namespace infergate::bench
