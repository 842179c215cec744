#include "bench/server_metrics.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <optional>
#include <string>
#include <vector>

#include "http/server.h"
#include "unit/http/http_test_util.h"

namespace infergate::bench {
namespace {

TEST(ServerMetricsTest, ParsesPrefixCacheCountersGoldenTable) {
  struct Case {
    std::string description;
    std::string text;
    std::optional<PrefixCacheCounters> expected;
  };
  const std::vector<Case> cases = {
      {"vLLM v1 counters with labels",
       "# TYPE vllm:prefix_cache_queries counter\n"
       "vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"m\"} 1000\n"
       "vllm:prefix_cache_queries_created{engine=\"0\",model_name=\"m\"} 1.7e9\n"
       "# TYPE vllm:prefix_cache_hits counter\n"
       "vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"m\"} 250\n",
       PrefixCacheCounters{1000, 250}},
      {"several engines are summed",
       "vllm:prefix_cache_queries_total{engine=\"0\"} 100\n"
       "vllm:prefix_cache_queries_total{engine=\"1\"} 300\n"
       "vllm:prefix_cache_hits_total{engine=\"0\"} 10\n"
       "vllm:prefix_cache_hits_total{engine=\"1\"} 30\n",
       PrefixCacheCounters{400, 40}},
      {"older vLLM names",
       "vllm:gpu_prefix_cache_queries_total 80\nvllm:gpu_prefix_cache_hits_total 8\n",
       PrefixCacheCounters{80, 8}},
      {"current names win over older ones",
       "vllm:gpu_prefix_cache_queries_total 5\nvllm:prefix_cache_queries_total 7\n"
       "vllm:prefix_cache_hits_total 1\n",
       PrefixCacheCounters{7, 1}},
      {"untyped bare names", "vllm:prefix_cache_queries 9\nvllm:prefix_cache_hits 3\n",
       PrefixCacheCounters{9, 3}},
      {"no prefix-cache counters", "vllm:num_requests_running 2\n", std::nullopt},
      {"not Prometheus text", "<html>oops</html>", std::nullopt},
  };
  for (const Case& test : cases) {
    const auto counters = parse_prefix_cache_counters(test.text);
    ASSERT_EQ(counters.has_value(), test.expected.has_value()) << test.description;
    if (!counters) continue;
    EXPECT_DOUBLE_EQ(counters->queries, test.expected->queries) << test.description;
    EXPECT_DOUBLE_EQ(counters->hits, test.expected->hits) << test.description;
  }
}

TEST(ServerMetricsTest, UrlPathDefaultsToMetrics) {
  auto bare = parse_server_metrics_url("http://127.0.0.1:8001");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->base_path, "/metrics");
  auto custom = parse_server_metrics_url("http://127.0.0.1:8001/stats/prom");
  ASSERT_TRUE(custom.ok());
  EXPECT_EQ(custom->base_path, "/stats/prom");
  auto bad = parse_server_metrics_url("https://x");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--server-metrics"), std::string::npos);
}

TEST(ServerMetricsTest, HitRateIsTheSumOfHitDeltasOverTheSumOfQueryDeltas) {
  const std::vector<Target> servers = {
      {"a", 1, "/metrics"}, {"b", 2, "/metrics"}, {"c", 3, "/metrics"}, {"d", 4, "/metrics"}};
  const std::vector<Result<PrefixCacheCounters>> before = {
      PrefixCacheCounters{1000, 100}, PrefixCacheCounters{0, 0}, PrefixCacheCounters{50, 5},
      Status(503, "connect to d:4: refused")};
  const std::vector<Result<PrefixCacheCounters>> after = {
      PrefixCacheCounters{2000, 900},  // +1000 queries, +800 hits
      PrefixCacheCounters{3000, 600},  // +3000, +600
      PrefixCacheCounters{10, 1},      // went down: restarted
      PrefixCacheCounters{10, 1}};
  const PrefixCacheDelta delta = prefix_cache_delta(servers, before, after);
  EXPECT_EQ(delta.counted, 2u);
  EXPECT_DOUBLE_EQ(delta.query_tokens, 4000);
  EXPECT_DOUBLE_EQ(delta.hit_tokens, 1400);
  EXPECT_DOUBLE_EQ(delta.hit_rate, 0.35);
  ASSERT_EQ(delta.servers.size(), 4u);
  EXPECT_EQ(delta.servers[0].url, "http://a:1/metrics");
  EXPECT_TRUE(delta.servers[0].error.empty());
  EXPECT_NE(delta.servers[2].error.find("went down"), std::string::npos);
  EXPECT_NE(delta.servers[3].error.find("before: connect"), std::string::npos);
}

TEST(ServerMetricsTest, NoQueriesMeansHitRateZero) {
  const std::vector<Target> servers = {{"a", 1, "/metrics"}};
  const std::vector<Result<PrefixCacheCounters>> same = {PrefixCacheCounters{5, 5}};
  const PrefixCacheDelta delta = prefix_cache_delta(servers, same, same);
  EXPECT_EQ(delta.counted, 1u);
  EXPECT_DOUBLE_EQ(delta.hit_rate, 0);
}

TEST(ServerMetricsTest, ScrapesARealServerOnLoopback) {
  namespace asio = boost::asio;
  asio::io_context io;
  int scrapes = 0;
  http::Server server(
      io, {}, [&](http::Request& request, http::ResponseWriter& writer) -> asio::awaitable<void> {
        if (request.target() != "/metrics") {
          co_await writer.send(404, "text/plain", "no");
          co_return;
        }
        ++scrapes;
        co_await writer.send(200, "text/plain; version=0.0.4",
                             "vllm:prefix_cache_queries_total 640\n"
                             "vllm:prefix_cache_hits_total 512\n");
      });
  server.start();
  std::optional<Result<PrefixCacheCounters>> found, missing;
  http::testing::run_coroutine(io, [&]() -> asio::awaitable<void> {
    const std::chrono::milliseconds timeout(5000);
    auto target = parse_server_metrics_url("http://127.0.0.1:" + std::to_string(server.port()));
    found = co_await scrape_prefix_cache(io.get_executor(), *target, timeout);
    target->base_path = "/elsewhere";
    missing = co_await scrape_prefix_cache(io.get_executor(), *target, timeout);
    server.stop();
  });
  ASSERT_TRUE(found && found->ok()) << (found ? found->status().message() : "not run");
  EXPECT_DOUBLE_EQ((*found)->queries, 640);
  EXPECT_DOUBLE_EQ((*found)->hits, 512);
  EXPECT_EQ(scrapes, 1);
  ASSERT_TRUE(missing && !missing->ok());
  EXPECT_EQ(missing->status().http_status(), 502);
  EXPECT_NE(missing->status().message().find("HTTP 404"), std::string::npos);
}

}  // namespace
}  // namespace infergate::bench
