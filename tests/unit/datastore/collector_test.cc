// Metrics collectors over real loopback HTTP: scripted /metrics servers (and the simulator) are
// scraped every 5 ms, their figures appear in the Datastore, failures leave the last good metrics,
// and collectors follow pool membership. Waits are bounded polls, never fixed sleeps.
#include "datastore/collector.h"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "http/server.h"
#include "sim/server.h"

namespace infergate::datastore {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Polls `condition` every millisecond for up to five seconds.
bool wait_until(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return condition();
}

// An HTTP server on its own thread answering every request with the current scripted response.
class ScriptedServer {
 public:
  using BodyFn = std::function<std::string()>;

  ScriptedServer() {
    server_ = std::make_unique<http::Server>(
        io_, http::ServerOptions{},
        [this](http::Request&, http::ResponseWriter& writer) -> asio::awaitable<void> {
          unsigned status = 200;
          std::string body;
          {
            std::lock_guard lock(mutex_);
            status = status_;
            body = body_fn_ ? body_fn_() : body_;
          }
          std::string content_type = "text/plain; version=0.0.4; charset=utf-8";
          co_await writer.send(status, content_type, std::move(body));
        });
    server_->start();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~ScriptedServer() { stop(); }

  std::uint16_t port() const { return server_->port(); }
  void set(std::string body, unsigned status = 200) {
    std::lock_guard lock(mutex_);
    body_ = std::move(body);
    status_ = status;
    body_fn_ = nullptr;
  }
  void set_fn(BodyFn body_fn) {
    std::lock_guard lock(mutex_);
    body_fn_ = std::move(body_fn);
  }
  std::uint64_t requests() const { return server_->stats().requests.load(); }
  std::uint64_t connections() const { return server_->stats().connections_accepted.load(); }
  void stop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] { server_->stop(); });
    thread_.join();
  }

 private:
  asio::io_context io_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
  std::mutex mutex_;
  std::string body_;
  unsigned status_ = 200;
  BodyFn body_fn_;
};

std::string vllm_scrape(int waiting, int running, double kv) {
  return "# TYPE vllm:num_requests_waiting gauge\n"
         "vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} " +
         std::to_string(waiting) + "\nvllm:num_requests_running{engine=\"0\",model_name=\"m\"} " +
         std::to_string(running) + "\nvllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} " +
         std::to_string(kv) +
         "\nvllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"1000\"} 1\n"
         "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"a\","
         "waiting_lora_adapters=\"\"} 1730100000\n";
}

EndpointSpec spec_for(std::string pod, std::uint16_t port, std::string engine = {}) {
  EndpointSpec spec{.pod_name = std::move(pod),
                    .namespace_name = "default",
                    .address = "127.0.0.1",
                    .port = port,
                    .rank = 0};
  if (!engine.empty()) spec.labels[kEngineTypeLabel] = engine;
  return spec;
}

// The collectors' io_context, run by `threads` threads until the fixture ends.
class CollectorTest : public ::testing::Test {
 protected:
  void start_threads(int threads = 1) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  void TearDown() override {
    set_.reset();
    work_.reset();
    // Loops wake from their timers at once after stop(); a scrape in flight ends within 1 s.
    for (auto& thread : threads_) thread.join();
  }

  std::shared_ptr<const EndpointMetrics> metrics_of(std::string_view name) {
    const auto snapshot = store_.snapshot();
    const Endpoint* endpoint = snapshot->find(name);
    return endpoint ? endpoint->state->metrics() : nullptr;
  }

  void make_set(CollectorOptions options = fast_options()) {
    set_ = std::make_unique<CollectorSet>(io_, store_, EngineMappings(), clock_, options);
  }
  static CollectorOptions fast_options() {
    CollectorOptions options;
    options.refresh_interval = 5ms;
    options.scrape_timeout = 500ms;
    return options;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::vector<std::thread> threads_;
  Datastore store_;
  ManualClock clock_{std::chrono::seconds(100)};
  std::unique_ptr<CollectorSet> set_;
};

TEST_F(CollectorTest, ScrapedValuesAppearInTheDatastoreOverOneKeepAliveConnection) {
  ScriptedServer vllm_server;
  vllm_server.set(vllm_scrape(3, 7, 0.25));
  ScriptedServer sglang_server;
  sglang_server.set(
      "sglang:num_queue_reqs{model_name=\"q\"} 4\nsglang:num_running_reqs{model_name=\"q\"} 9\n"
      "sglang:token_usage{model_name=\"q\"} 0.5\n"
      "sglang:cache_config_info{num_pages=\"2048\",page_size=\"1\"} 1\n");
  store_.set_endpoints(
      {spec_for("vllm-0", vllm_server.port()), spec_for("sgl-0", sglang_server.port(), "sglang")});
  make_set();
  set_->sync();
  start_threads();
  EXPECT_EQ(set_->size(), 2u);

  ASSERT_TRUE(wait_until([&] { return metrics_of("vllm-0-rank-0") != nullptr; }));
  auto metrics = metrics_of("vllm-0-rank-0");
  EXPECT_EQ(metrics->waiting_requests, 3);
  EXPECT_EQ(metrics->running_requests, 7);
  EXPECT_DOUBLE_EQ(metrics->kv_cache_usage, 0.25);
  EXPECT_EQ(metrics->running_adapters, std::vector<std::string>{"a"});
  EXPECT_EQ(metrics->max_active_adapters, 2);
  EXPECT_EQ(metrics->cache_block_size, 16);
  EXPECT_EQ(metrics->cache_num_blocks, 1000);
  EXPECT_EQ(metrics->updated_at, std::chrono::seconds(100));  // stamped by the injected clock

  ASSERT_TRUE(wait_until([&] { return metrics_of("sgl-0-rank-0") != nullptr; }));
  auto sglang = metrics_of("sgl-0-rank-0");
  EXPECT_EQ(sglang->waiting_requests, 4);
  EXPECT_EQ(sglang->running_requests, 9);
  EXPECT_EQ(sglang->cache_num_blocks, 2048);

  // New figures are picked up on the next scrapes, stamped with the clock's new time.
  clock_.set(std::chrono::seconds(101));
  vllm_server.set(vllm_scrape(5, 1, 0.75));
  ASSERT_TRUE(wait_until([&] { return metrics_of("vllm-0-rank-0")->waiting_requests == 5; }));
  EXPECT_EQ(metrics_of("vllm-0-rank-0")->updated_at, std::chrono::seconds(101));

  auto collector = set_->find("vllm-0-rank-0");
  ASSERT_NE(collector, nullptr);
  // The server counts a request before the collector has published what it answered: wait for
  // the collector's side.
  ASSERT_TRUE(wait_until([&] { return collector->stats().published.load() >= 10u; }));
  EXPECT_GE(vllm_server.requests(), 10u);
  EXPECT_EQ(vllm_server.connections(), 1u);
  EXPECT_EQ(collector->stats().scrape_errors.load(), 0u);
  EXPECT_EQ(collector->stats().missing.load(), 0u);
}

// Stale-metrics correction: a scrape records the director's in-flight counters as it began, so a
// request dispatched while the scrape is under way counts as dispatched since the scrape. The
// server reports, as its waiting queue, the in-flight count it saw before one more request was
// dispatched during its answer: the recorded baseline must equal that figure.
TEST_F(CollectorTest, ScrapesRecordTheInFlightCountersAsTheScrapeBegan) {
  ScriptedServer server;
  const auto snapshot = store_.set_endpoints({spec_for("vllm-0", server.port())});
  std::shared_ptr<EndpointState> state = snapshot->endpoints[0].state;
  server.set_fn([state] {
    const auto before = state->inflight_requests.fetch_add(1);
    state->inflight_tokens.fetch_add(100);
    return vllm_scrape(static_cast<int>(before), 0, 0.1);
  });
  make_set();
  set_->sync();
  start_threads();
  auto collector = set_->find("vllm-0-rank-0");
  ASSERT_NE(collector, nullptr);
  ASSERT_TRUE(wait_until([&] { return collector->stats().published.load() >= 3u; }));
  auto metrics = metrics_of("vllm-0-rank-0");
  ASSERT_NE(metrics, nullptr);
  EXPECT_EQ(metrics->inflight_requests_at_scrape, metrics->waiting_requests);
  EXPECT_EQ(metrics->inflight_tokens_at_scrape, 100 * metrics->waiting_requests);
}

TEST_F(CollectorTest, WithoutCorrectionScrapesRecordNoBaseline) {
  ScriptedServer server;
  server.set(vllm_scrape(1, 2, 0.5));
  store_.set_correct_stale_metrics(false);
  store_.set_endpoints({spec_for("vllm-0", server.port())});
  make_set();
  set_->sync();
  start_threads();
  ASSERT_TRUE(wait_until([&] { return metrics_of("vllm-0-rank-0") != nullptr; }));
  EXPECT_EQ(metrics_of("vllm-0-rank-0")->inflight_requests_at_scrape, -1);
  EXPECT_EQ(metrics_of("vllm-0-rank-0")->inflight_tokens_at_scrape, -1);
}

TEST_F(CollectorTest, GarbageErrorsAndADownServerKeepTheLastGoodMetricsWhichGoStale) {
  ScriptedServer server;
  server.set(vllm_scrape(2, 3, 0.5));
  store_.set_endpoints({spec_for("vllm-0", server.port())});
  make_set();
  set_->sync();
  start_threads();
  ASSERT_TRUE(wait_until([&] { return metrics_of("vllm-0-rank-0") != nullptr; }));
  auto collector = set_->find("vllm-0-rank-0");
  ASSERT_NE(collector, nullptr);

  std::shared_ptr<const EndpointMetrics> good;
  const std::string bad_bodies[] = {"<html><body>oops</body></html>\n", "", "other_metric 1\n"};
  for (const auto& body : bad_bodies) {
    server.set(body);
    const auto errors = collector->stats().scrape_errors.load();
    // Scrapes follow one another: once one has failed on the new body, none still in flight can
    // publish the old figures, so the last good ones are known and the clock may move.
    ASSERT_TRUE(wait_until([&] { return collector->stats().scrape_errors.load() >= errors + 1; }))
        << body;
    if (!good) good = metrics_of("vllm-0-rank-0");
    clock_.advance(1s);
    ASSERT_TRUE(wait_until([&] { return collector->stats().scrape_errors.load() >= errors + 3; }))
        << body;
  }
  server.set(vllm_scrape(9, 9, 0.9), 503);
  const auto errors = collector->stats().scrape_errors.load();
  ASSERT_TRUE(wait_until([&] { return collector->stats().scrape_errors.load() >= errors + 3; }));

  // Still the last good figures and their time: the picker sees them go stale.
  const auto kept = metrics_of("vllm-0-rank-0");
  EXPECT_EQ(kept, good);
  EXPECT_EQ(kept->waiting_requests, 2);
  EXPECT_EQ(kept->updated_at, std::chrono::seconds(100));
  const Endpoint* endpoint = store_.snapshot()->find("vllm-0-rank-0");
  EXPECT_EQ(endpoint->fresh_metrics(clock_.now(), 2s), nullptr);

  // Recovery, then the server goes away altogether.
  server.set(vllm_scrape(1, 1, 0.1));
  ASSERT_TRUE(wait_until([&] { return metrics_of("vllm-0-rank-0")->waiting_requests == 1; }));
  EXPECT_NE(endpoint->fresh_metrics(clock_.now(), 2s), nullptr);
  server.stop();
  const auto errors_before_down = collector->stats().scrape_errors.load();
  ASSERT_TRUE(wait_until(
      [&] { return collector->stats().scrape_errors.load() >= errors_before_down + 3; }));
  EXPECT_EQ(metrics_of("vllm-0-rank-0")->waiting_requests, 1);
  EXPECT_FALSE(collector->finished());
  EXPECT_GE(set_->scrape_errors(), collector->stats().scrape_errors.load());
}

TEST_F(CollectorTest, RemovingAnEndpointStopsItsCollector) {
  ScriptedServer server_a;
  server_a.set(vllm_scrape(1, 1, 0.1));
  ScriptedServer server_b;
  server_b.set(vllm_scrape(2, 2, 0.2));
  store_.set_endpoints({spec_for("a", server_a.port()), spec_for("b", server_b.port())});
  make_set();
  set_->sync();
  start_threads();
  ASSERT_TRUE(wait_until([&] { return metrics_of("b-rank-0") != nullptr; }));
  auto collector_b = set_->find("b-rank-0");
  ASSERT_NE(collector_b, nullptr);

  // Through sync(): the set drops the collector at once and its loop ends.
  store_.set_endpoints({spec_for("a", server_a.port())});
  set_->sync();
  EXPECT_EQ(set_->size(), 1u);
  EXPECT_EQ(set_->find("b-rank-0"), nullptr);
  ASSERT_TRUE(wait_until([&] { return collector_b->finished(); }));
  const auto requests_b = server_b.requests();

  // Without sync(): the collector notices on its next publish that its endpoint left.
  auto collector_a = set_->find("a-rank-0");
  ASSERT_NE(collector_a, nullptr);
  store_.remove_endpoint("a-rank-0");
  ASSERT_TRUE(wait_until([&] { return collector_a->finished(); }));
  set_->sync();
  EXPECT_EQ(set_->size(), 0u);
  EXPECT_EQ(server_b.requests(), requests_b);

  // An endpoint that comes back gets a fresh collector.
  store_.set_endpoints({spec_for("b", server_b.port())});
  set_->sync();
  ASSERT_TRUE(wait_until([&] { return metrics_of("b-rank-0") != nullptr; }));
  EXPECT_NE(set_->find("b-rank-0"), collector_b);
}

TEST_F(CollectorTest, ScrapesTheSimulator) {
  asio::io_context sim_io;
  sim::SimOptions options;
  options.port = 0;
  options.time_scale = 1000;
  options.engine.block_size = 16;
  options.engine.num_gpu_blocks = 2000;
  auto sim = std::make_unique<sim::SimServer>(sim_io, options);
  sim->start();
  std::thread sim_thread([&] { sim_io.run(); });

  store_.set_endpoints({spec_for("sim-0", sim->port())});
  make_set();
  set_->sync();
  start_threads();
  ASSERT_TRUE(wait_until([&] { return metrics_of("sim-0-rank-0") != nullptr; }));
  const auto metrics = metrics_of("sim-0-rank-0");
  EXPECT_EQ(metrics->waiting_requests, 0);
  EXPECT_EQ(metrics->running_requests, 0);
  EXPECT_DOUBLE_EQ(metrics->kv_cache_usage, 0);
  EXPECT_EQ(metrics->cache_block_size, 16);
  EXPECT_EQ(metrics->cache_num_blocks, 2000);
  auto collector = set_->find("sim-0-rank-0");
  ASSERT_TRUE(wait_until([&] { return collector->stats().published.load() >= 3; }));
  EXPECT_EQ(collector->stats().scrape_errors.load(), 0u);

  set_->stop_all();
  ASSERT_TRUE(wait_until([&] { return collector->finished(); }));
  asio::post(sim_io, [&] { sim->stop(); });
  sim_io.stop();
  sim_thread.join();
}

// Collectors on two threads publish while readers take snapshots and membership churns. Every
// server answers with waiting == running == kv * 1000 == its request count, so a reader can tell
// a torn or mixed-up EndpointMetrics, and per endpoint the figures must never go backwards.
TEST_F(CollectorTest, PublishingWhileReadersTakeSnapshots) {
  constexpr int kServers = 4;
  std::vector<std::unique_ptr<ScriptedServer>> servers;
  std::vector<EndpointSpec> specs;
  for (int index = 0; index < kServers; ++index) {
    servers.push_back(std::make_unique<ScriptedServer>());
    auto counter = std::make_shared<std::atomic<int>>(0);
    servers.back()->set_fn([counter] {
      const int n = ++*counter;
      return "vllm:num_requests_waiting " + std::to_string(n) + "\nvllm:num_requests_running " +
             std::to_string(n) + "\nvllm:kv_cache_usage_perc " + std::to_string(n / 1000.0) + "\n";
    });
    specs.push_back(spec_for("pod-" + std::to_string(index), servers.back()->port()));
  }
  store_.set_endpoints(specs);
  make_set();
  set_->sync();
  start_threads(2);

  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> reads{0};
  std::atomic<int> inconsistencies{0};
  std::vector<std::thread> readers;
  for (int reader = 0; reader < 3; ++reader) {
    readers.emplace_back([&] {
      std::map<std::string, int> last_seen;
      while (!done.load()) {
        const auto snapshot = store_.snapshot();
        for (const auto& endpoint : snapshot->endpoints) {
          const auto metrics = endpoint.state->metrics();
          if (!metrics) continue;
          reads.fetch_add(1);
          const int n = metrics->waiting_requests;
          if (metrics->running_requests != n ||
              std::abs(metrics->kv_cache_usage - n / 1000.0) > 1e-9) {
            inconsistencies.fetch_add(1);
          }
          int& last = last_seen[endpoint.info->name];
          if (n < last && endpoint.info->name != "pod-0-rank-0") inconsistencies.fetch_add(1);
          last = n;
        }
      }
    });
  }
  // Membership churn: pod-0 leaves and comes back (a new endpoint: its figures may restart).
  for (int round = 0; round < 20; ++round) {
    std::vector<EndpointSpec> subset(specs.begin() + (round % 2), specs.end());
    store_.set_endpoints(subset);
    set_->sync();
    EXPECT_EQ(set_->size(), subset.size());
    std::this_thread::sleep_for(5ms);
  }
  store_.set_endpoints(specs);
  set_->sync();
  ASSERT_TRUE(wait_until([&] {
    const auto snapshot = store_.snapshot();
    for (const auto& endpoint : snapshot->endpoints) {
      const auto metrics = endpoint.state->metrics();
      if (!metrics || metrics->waiting_requests < 5) return false;
    }
    return reads.load() > 1000;
  }));
  done = true;
  for (auto& reader : readers) reader.join();
  EXPECT_EQ(inconsistencies.load(), 0);
  EXPECT_EQ(set_->scrape_errors(), 0u);
}

}  // namespace
}  // namespace infergate::datastore
