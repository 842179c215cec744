#include "prom/registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace infergate::prom {
namespace {

// A registry shaped like a vLLM server's, and the exact text prometheus_client would print for it.
TEST(RegistryTest, GoldenExposition) {
  Registry registry;
  auto& prompt_tokens = registry.counter(
      "vllm:prompt_tokens", "Number of prefill tokens processed.", {"model_name", "engine"});
  prompt_tokens.with({"m", "0"}).inc(5);
  auto& success =
      registry.counter("vllm:request_success_total", "Count of successfully processed requests.",
                       {"model_name", "engine", "finished_reason"});
  success.with({"m", "0", "stop"}).inc();
  success.with({"m", "0", "length"}).inc(2);
  registry.counter("infergate_errors", "Errors.\nA \\ backslash and \"quotes\".");
  auto& lora = registry.gauge("vllm:lora_requests_info", "Running stats on lora requests.",
                              {"max_lora", "waiting_lora_adapters", "running_lora_adapters"});
  lora.with({"1", "", "a,\"b\"\\c\nd"}).set(1.7e9);
  registry.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                 {"model_name", "engine"});
  registry.gauge("infergate_ratio", "A ratio.").with({}).set(0.25);
  auto& ttft = registry.histogram("vllm:time_to_first_token_seconds",
                                  "Histogram of time to first token in seconds.",
                                  {"model_name", "engine"}, {0.001, 0.5, 1, 2.5});
  Histogram& ttft_m = ttft.with({"m", "0"});
  // 2^-10 in the first bucket, 0.5 and 1.0 exactly on bounds, 3.0 above the last bound.
  for (double seconds : {0.0009765625, 0.125, 0.25, 0.5, 1.0, 3.0}) {
    ttft_m.observe(seconds);
  }
  ttft.with({"n", "1"}).observe(0.75);
  registry.histogram("infergate_scrape_seconds", "Scrape time.", {}, {0.1});

  const std::string expected =
      "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
      "# TYPE vllm:prompt_tokens_total counter\n"
      "vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} 5.0\n"
      "# HELP vllm:request_success_total Count of successfully processed requests.\n"
      "# TYPE vllm:request_success_total counter\n"
      "vllm:request_success_total{engine=\"0\",finished_reason=\"stop\",model_name=\"m\"} 1.0\n"
      "vllm:request_success_total{engine=\"0\",finished_reason=\"length\",model_name=\"m\"} 2.0\n"
      "# HELP infergate_errors_total Errors.\\nA \\\\ backslash and \"quotes\".\n"
      "# TYPE infergate_errors_total counter\n"
      "infergate_errors_total 0.0\n"
      "# HELP vllm:lora_requests_info Running stats on lora requests.\n"
      "# TYPE vllm:lora_requests_info gauge\n"
      "vllm:lora_requests_info{max_lora=\"1\",running_lora_adapters=\"a,\\\"b\\\"\\\\c\\nd\","
      "waiting_lora_adapters=\"\"} 1.7e+09\n"
      "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
      "# TYPE vllm:num_requests_waiting gauge\n"
      "# HELP infergate_ratio A ratio.\n"
      "# TYPE infergate_ratio gauge\n"
      "infergate_ratio 0.25\n"
      "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
      "# TYPE vllm:time_to_first_token_seconds histogram\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.001\",model_name=\"m\"} 1.0\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.5\",model_name=\"m\"} 4.0\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"1.0\",model_name=\"m\"} 5.0\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"2.5\",model_name=\"m\"} 5.0\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"m\"} 6.0\n"
      "vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"m\"} 6.0\n"
      "vllm:time_to_first_token_seconds_sum{engine=\"0\",model_name=\"m\"} 4.8759765625\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"1\",le=\"0.001\",model_name=\"n\"} 0.0\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"1\",le=\"0.5\",model_name=\"n\"} 0.0\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"1\",le=\"1.0\",model_name=\"n\"} 1.0\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"1\",le=\"2.5\",model_name=\"n\"} 1.0\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"1\",le=\"+Inf\",model_name=\"n\"} 1.0\n"
      "vllm:time_to_first_token_seconds_count{engine=\"1\",model_name=\"n\"} 1.0\n"
      "vllm:time_to_first_token_seconds_sum{engine=\"1\",model_name=\"n\"} 0.75\n"
      "# HELP infergate_scrape_seconds Scrape time.\n"
      "# TYPE infergate_scrape_seconds histogram\n"
      "infergate_scrape_seconds_bucket{le=\"0.1\"} 0.0\n"
      "infergate_scrape_seconds_bucket{le=\"+Inf\"} 0.0\n"
      "infergate_scrape_seconds_count 0.0\n"
      "infergate_scrape_seconds_sum 0.0\n";
  EXPECT_EQ(registry.expose(), expected);
}

TEST(RegistryTest, LabelsSortAroundLeOnBothSides) {
  Registry registry;
  auto& histogram = registry.histogram("h", "", {"zone", "a", "lz"}, {1});
  histogram.with({"z", "x", "y"}).observe(2);
  EXPECT_EQ(registry.expose(),
            "# HELP h \n"
            "# TYPE h histogram\n"
            "h_bucket{a=\"x\",le=\"1.0\",lz=\"y\",zone=\"z\"} 0.0\n"
            "h_bucket{a=\"x\",le=\"+Inf\",lz=\"y\",zone=\"z\"} 1.0\n"
            "h_count{a=\"x\",lz=\"y\",zone=\"z\"} 1.0\n"
            "h_sum{a=\"x\",lz=\"y\",zone=\"z\"} 2.0\n");
}

TEST(RegistryTest, NegativeBucketsHaveNoSum) {
  Registry registry;
  registry.histogram("delta", "Delta.", {}, {-1, 1});
  EXPECT_EQ(registry.expose(),
            "# HELP delta Delta.\n"
            "# TYPE delta histogram\n"
            "delta_bucket{le=\"-1.0\"} 0.0\n"
            "delta_bucket{le=\"1.0\"} 0.0\n"
            "delta_bucket{le=\"+Inf\"} 0.0\n"
            "delta_count 0.0\n");
}

TEST(RegistryTest, WithReturnsTheSameSeriesForTheSameLabels) {
  Registry registry;
  auto& family = registry.counter("c", "C.", {"a", "b"});
  Counter& first = family.with({"x", "y"});
  Counter& again = family.with(std::vector<std::string>{"x", "y"});
  EXPECT_EQ(&first, &again);
  // Value boundaries are part of the key: ("x,y", "") is not ("x", ",y").
  EXPECT_NE(&family.with({"xy", ""}), &family.with({"x", "y"}));
  EXPECT_NE(&family.with({"1:", ""}), &family.with({"", "1:"}));
  EXPECT_EQ(family.size(), 4u);
}

TEST(RegistryTest, WrongLabelCountIsCountedAndNotExposed) {
  Registry registry;
  auto& family = registry.gauge("g", "G.", {"a"});
  family.with({"x", "y"}).set(7);
  family.with({}).set(8);
  family.remove({"x", "y"});
  EXPECT_EQ(family.label_count_errors(), 3u);
  EXPECT_EQ(family.size(), 0u);
  EXPECT_EQ(registry.expose(), "# HELP g G.\n# TYPE g gauge\n");
}

TEST(RegistryTest, RemoveAndClearDropSeries) {
  Registry registry;
  auto& family = registry.gauge("g", "G.", {"a"});
  family.with({"1"}).set(1);
  family.with({"2"}).set(2);
  family.with({"3"}).set(3);
  family.remove({"2"});
  family.remove(std::vector<std::string>{"missing"});
  EXPECT_EQ(registry.expose(), "# HELP g G.\n# TYPE g gauge\ng{a=\"1\"} 1.0\ng{a=\"3\"} 3.0\n");
  // A removed series starts again from zero, at the end of the creation order.
  family.with({"2"}).inc();
  EXPECT_EQ(registry.expose(),
            "# HELP g G.\n# TYPE g gauge\ng{a=\"1\"} 1.0\ng{a=\"3\"} 3.0\ng{a=\"2\"} 1.0\n");
  family.clear();
  EXPECT_EQ(family.size(), 0u);
  EXPECT_EQ(registry.expose(), "# HELP g G.\n# TYPE g gauge\n");
}

TEST(RegistryTest, CollectHooksRunInOrderBeforeExposition) {
  Registry registry;
  auto& gauge = registry.gauge("queue", "Queue.", {"model_name"});
  std::vector<std::string> calls;
  int refreshes = 0;
  registry.add_collect_hook([&] {
    calls.push_back("first");
    gauge.clear();
    gauge.with({"m" + std::to_string(refreshes)}).set(++refreshes);
  });
  registry.add_collect_hook([&] { calls.push_back("second"); });
  EXPECT_EQ(registry.expose(),
            "# HELP queue Queue.\n# TYPE queue gauge\nqueue{model_name=\"m0\"} 1.0\n");
  EXPECT_EQ(registry.expose(),
            "# HELP queue Queue.\n# TYPE queue gauge\nqueue{model_name=\"m1\"} 2.0\n");
  EXPECT_EQ(calls, (std::vector<std::string>{"first", "second", "first", "second"}));
}

TEST(RegistryTest, HookMayRegisterFamilies) {
  Registry registry;
  registry.add_collect_hook([&] { registry.gauge("late", "Late.").with({}).set(1); });
  EXPECT_EQ(registry.expose(), "# HELP late Late.\n# TYPE late gauge\nlate 1.0\n");
}

TEST(RegistryTest, RegisteringTheSameMetricAgainReturnsTheFamily) {
  Registry registry;
  auto& counter = registry.counter("requests", "Requests.", {"code"});
  EXPECT_EQ(&registry.counter("requests_total", "Other help.", {"code"}), &counter);
  auto& histogram = registry.histogram("latency", "L.", {}, {1, 2});
  EXPECT_EQ(&registry.histogram("latency", "L.", {}, {1, 2}), &histogram);
}

TEST(RegistryTest, RejectsBadRegistrations) {
  Registry registry;
  registry.counter("requests", "Requests.", {"code"});
  registry.histogram("latency", "L.", {}, {1, 2});
  // Conflicts with an existing family.
  EXPECT_THROW(registry.gauge("requests_total", "G."), std::invalid_argument);
  EXPECT_THROW(registry.counter("requests", "R.", {"other"}), std::invalid_argument);
  EXPECT_THROW(registry.histogram("latency", "L.", {}, {1, 3}), std::invalid_argument);
  // Names.
  EXPECT_THROW(registry.gauge("", "G."), std::invalid_argument);
  EXPECT_THROW(registry.gauge("1abc", "G."), std::invalid_argument);
  EXPECT_THROW(registry.gauge("a-b", "G."), std::invalid_argument);
  EXPECT_THROW(registry.counter("_total", "C."), std::invalid_argument);
  EXPECT_THROW(registry.gauge("g", "G.", {"a:b"}), std::invalid_argument);
  EXPECT_THROW(registry.gauge("g", "G.", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(registry.gauge("g", "G.", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(registry.histogram("h", "H.", {"le"}, {1}), std::invalid_argument);
  // Buckets.
  EXPECT_THROW(registry.histogram("h", "H.", {}, {}), std::invalid_argument);
  EXPECT_THROW(registry.histogram("h", "H.", {}, {2, 1}), std::invalid_argument);
  EXPECT_THROW(registry.histogram("h", "H.", {}, {1, 1}), std::invalid_argument);
  EXPECT_NO_THROW(registry.gauge("vllm:ok_name", "G.", {"_a1"}));
}

TEST(RegistryTest, ConcurrentUpdatesWhileExposingAreExact) {
  constexpr std::uint64_t kWriters = 3;
  constexpr std::uint64_t kIncrementsPerWriter = 20000;
  Registry registry;
  auto& counter = registry.counter("ops", "Ops.", {"worker"});
  Gauge& shared_gauge = registry.gauge("in_flight", "In flight.").with({});
  auto& histogram = registry.histogram("sizes", "Sizes.", {}, {1, 10});
  Counter& shared_counter = registry.counter("all_ops", "All ops.").with({});
  Histogram& shared_histogram = histogram.with({});

  std::atomic<std::uint64_t> writers_done{0};
  std::thread exposer([&] {
    std::size_t expositions = 0;
    while (writers_done.load() < kWriters || expositions == 0) {
      std::string text = registry.expose();
      ASSERT_EQ(text.rfind("# HELP ops_total Ops.\n", 0), 0u);
      ++expositions;
    }
  });
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (std::uint64_t writer_idx = 0; writer_idx < kWriters; ++writer_idx) {
    writers.emplace_back([&, writer_idx] {
      // Each writer creates its own series while the exposer walks the family.
      Counter& mine = counter.with({std::to_string(writer_idx)});
      for (std::uint64_t op_idx = 0; op_idx < kIncrementsPerWriter; ++op_idx) {
        mine.inc();
        shared_counter.inc();
        shared_gauge.inc();
        shared_histogram.observe(static_cast<double>(op_idx % 20));
        shared_gauge.dec();
      }
      writers_done.fetch_add(1);
    });
  }
  for (std::thread& writer : writers) {
    writer.join();
  }
  exposer.join();

  for (std::uint64_t writer_idx = 0; writer_idx < kWriters; ++writer_idx) {
    EXPECT_EQ(counter.with({std::to_string(writer_idx)}).value(),
              static_cast<double>(kIncrementsPerWriter));
  }
  EXPECT_EQ(shared_counter.value(), static_cast<double>(kWriters * kIncrementsPerWriter));
  EXPECT_EQ(shared_gauge.value(), 0);
  EXPECT_EQ(shared_histogram.count(), kWriters * kIncrementsPerWriter);
  // Per writer: values 0..19 repeated 1000 times; 0 and 1 are <= 1, 0..10 are <= 10.
  EXPECT_EQ(shared_histogram.cumulative_counts(),
            (std::vector<std::uint64_t>{kWriters * 2000, kWriters * 11000,
                                        kWriters * kIncrementsPerWriter}));
  EXPECT_EQ(shared_histogram.sum(), static_cast<double>(kWriters * 1000 * 190));
  EXPECT_NE(registry.expose().find("all_ops_total 60000.0\n"), std::string::npos);
}

}  // namespace
}  // namespace infergate::prom
