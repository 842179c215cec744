// The picking core end to end on loopback: collectors scrape three simulated vLLM servers while
// picker threads schedule with GIE's default profile; load sent to one server steers picks away
// from it once its metrics arrive.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <thread>

#include "api/endpoint_picker_config.h"
#include "datastore/collector.h"
#include "http/client.h"
#include "request/tokenizer.h"
#include "scheduling/config_loader.h"
#include "sim/server.h"

namespace infergate {
namespace {

class PickingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      sim::SimOptions options;
      options.port = 0;
      options.time_scale = 1;  // real time: queued requests stay visible in the metrics
      options.engine.num_gpu_blocks = 4000;
      options.engine.max_num_seqs = 2;
      options.engine.max_model_len = 4096;
      sims_.push_back(std::make_unique<sim::SimServer>(sim_io_, options));
      sims_.back()->start();
    }
    std::vector<datastore::EndpointSpec> specs;
    for (int i = 0; i < 3; ++i) {
      specs.push_back({.pod_name = "sim-" + std::to_string(i),
                       .namespace_name = "default",
                       .address = "127.0.0.1",
                       .port = sims_[static_cast<std::size_t>(i)]->port()});
    }
    store_.set_endpoints(specs);
    collectors_ = std::make_unique<datastore::CollectorSet>(
        collector_io_, store_, datastore::EngineMappings(), clock_,
        datastore::CollectorOptions{.refresh_interval = std::chrono::milliseconds(5)});
    collectors_->sync();
    sim_thread_ = std::thread([this] { sim_io_.run(); });
    collector_thread_ = std::thread([this] { collector_io_.run(); });
  }

  void TearDown() override {
    collectors_->stop_all();
    boost::asio::post(sim_io_, [this] {
      for (auto& sim : sims_) sim->stop();
    });
    collector_io_.stop();
    sim_io_.stop();
    collector_thread_.join();
    sim_thread_.join();
    collectors_.reset();
    sims_.clear();
  }

  // Waits (bounded) until `condition` holds for the datastore's view.
  template <typename Condition>
  bool wait_for(Condition condition) {
    for (int attempt = 0; attempt < 3000; ++attempt) {
      if (condition()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }

  boost::asio::io_context sim_io_{1};
  boost::asio::io_context collector_io_{1};
  SteadyClock clock_;
  datastore::Datastore store_;
  std::vector<std::unique_ptr<sim::SimServer>> sims_;
  std::unique_ptr<datastore::CollectorSet> collectors_;
  std::thread sim_thread_;
  std::thread collector_thread_;
};

TEST_F(PickingTest, PicksFollowScrapedLoadWhileCollectorsPublish) {
  auto setup = scheduling::build_scheduler(api::default_endpoint_picker_config());
  ASSERT_TRUE(setup.ok()) << setup.status().message();
  ASSERT_TRUE(wait_for([&] {
    for (const auto& endpoint : store_.snapshot()->endpoints) {
      if (!endpoint.state->metrics()) return false;
    }
    return true;
  })) << "every endpoint scraped";

  // Queue work on sim-0 (max 2 running, so the rest waits), without reading the answers.
  boost::asio::io_context client_io;
  std::vector<std::unique_ptr<http::ClientConnection>> clients;
  const std::string body = R"({"model":"meta-llama/Llama-3.1-8B-Instruct","prompt":"hello",)"
                           R"("max_tokens":2000,"ignore_eos":true,"stream":true})";
  for (int i = 0; i < 8; ++i) {
    auto client = std::make_unique<http::ClientConnection>(client_io.get_executor());
    boost::asio::co_spawn(
        client_io,
        [&, raw = client.get()]() -> boost::asio::awaitable<void> {
          auto connected =
              co_await raw->connect("127.0.0.1", sims_[0]->port(), std::chrono::seconds(5));
          if (!connected.is_ok()) co_return;
          auto request =
              http::make_request(boost::beast::http::verb::post, "/v1/completions", body);
          co_await raw->send_request(std::move(request), std::chrono::seconds(5));
        },
        boost::asio::detached);
    clients.push_back(std::move(client));
  }
  client_io.run();
  const datastore::EndpointId busy = store_.snapshot()->find("sim-0-rank-0")->info->id;
  ASSERT_TRUE(wait_for([&] {
    auto metrics = store_.snapshot()->find(busy)->state->metrics();
    return metrics && metrics->waiting_requests >= 4;
  })) << "sim-0's queue shows in its scraped metrics";

  // Pickers on two threads, while the collectors keep publishing.
  std::atomic<int> picked_busy{0};
  std::atomic<int> decisions{0};
  std::vector<std::thread> pickers;
  for (int t = 0; t < 2; ++t) {
    pickers.emplace_back([&, t] {
      scheduling::CycleState state;
      for (int i = 0; i < 200; ++i) {
        state = scheduling::CycleState{.random_seed = static_cast<std::uint64_t>(t * 1000 + i)};
        const std::string prompt =
            request::make_text_with_tokens(100, static_cast<std::uint64_t>(i));
        scheduling::SchedulingRequest request{.target_model = "meta-llama/Llama-3.1-8B-Instruct",
                                              .prompt_bytes = prompt};
        auto snapshot = store_.snapshot();
        auto result = setup->scheduler->schedule(request, *snapshot, clock_.now(), state);
        ASSERT_TRUE(result.ok()) << result.status().message();
        if (result->primary_result().targets.front()->info->id == busy) ++picked_busy;
        ++decisions;
      }
    });
  }
  for (auto& picker : pickers) picker.join();
  EXPECT_EQ(decisions.load(), 400);
  EXPECT_EQ(picked_busy.load(), 0) << "the endpoint with a queue is never the best choice";
  EXPECT_EQ(collectors_->scrape_errors(), 0u);
}

}  // namespace
}  // namespace infergate
