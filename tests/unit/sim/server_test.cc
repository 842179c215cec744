// The simulator over real loopback HTTP: API shapes, streaming format, usage, errors, LoRA
// management and client disconnects. The engine runs 1000x faster than real time.
#include "sim/server.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "http/client.h"
#include "http/sse.h"
#include "request/chat_template.h"
#include "request/tokenizer.h"

namespace infergate::sim {
namespace {

using nlohmann::json;
namespace beast_http = boost::beast::http;
constexpr auto kTimeout = std::chrono::seconds(10);
using http::ClientResponse;
constexpr const char* kModel = "meta-llama/Llama-3.1-8B-Instruct";

class SimServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SimOptions options;
    options.port = 0;
    options.time_scale = 1000;
    options.engine.num_gpu_blocks = 2000;
    options.engine.max_model_len = 4096;
    options.max_request_body_bytes = 64 * 1024;
    options.lora_modules = {{"sql-lora", "/adapters/sql"}};
    options.seed = 42;
    server_ = std::make_unique<SimServer>(io_, options);
    server_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    boost::asio::post(io_, [this] { server_->stop(); });
    io_.stop();
    thread_.join();
    server_.reset();
  }

  // Runs `f` on the server's thread and returns its result.
  template <typename F>
  auto on_server(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return result.get();
  }

  ClientResponse post(std::string_view path, std::string body,
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
    auto request = http::make_request(beast_http::verb::post, path, std::move(body));
    for (const auto& [name, value] : headers) request.set(name, value);
    auto response =
        http::fetch_blocking("127.0.0.1", server_->port(), std::move(request), kTimeout);
    EXPECT_TRUE(response.ok()) << (response.ok() ? "" : response.status().message());
    return response.ok() ? *response : ClientResponse{};
  }

  ClientResponse get(std::string_view path) {
    auto response = http::fetch_blocking("127.0.0.1", server_->port(),
                                         http::make_request(beast_http::verb::get, path), kTimeout);
    EXPECT_TRUE(response.ok());
    return response.ok() ? *response : ClientResponse{};
  }

  // Waits (bounded) until the engine holds no request and every block is free again.
  bool engine_drains() {
    for (int attempt = 0; attempt < 2000; ++attempt) {
      const bool idle = on_server([this] {
        const Engine& engine = server_->engine();
        return !engine.has_unfinished_requests() &&
               engine.kv_cache().free_blocks() == engine.kv_cache().usable_blocks();
      });
      if (idle) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }

  boost::asio::io_context io_{1};
  std::unique_ptr<SimServer> server_;
  std::thread thread_;
};

std::vector<json> sse_events(const std::string& body) {
  std::vector<json> events;
  http::SseParser parser;
  parser.feed(body, [&](std::string_view data) {
    events.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
  });
  return events;
}

TEST_F(SimServerTest, StreamsChatOneChunkPerTokenWithUsageAndDone) {
  const std::vector<request::ChatMessage> messages = {{"user", "Tell me about prefix caching."}};
  const json body = {{"model", kModel},
                     {"messages", {{{"role", "user"}, {"content", messages[0].content}}}},
                     {"max_tokens", 6},
                     {"stream", true},
                     {"stream_options", {{"include_usage", true}}}};
  auto response = post("/v1/chat/completions", body.dump());
  ASSERT_EQ(response.status, 200u);
  EXPECT_EQ(http::find_header(response.headers, "content-type"), "text/event-stream");
  auto events = sse_events(response.body);
  ASSERT_EQ(events.size(), 1u + 6 + 1 + 1 + 1) << response.body;
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  for (int i = 1; i <= 6; ++i) {
    EXPECT_EQ(events[i]["object"], "chat.completion.chunk");
    EXPECT_EQ(events[i]["model"], kModel);
    EXPECT_TRUE(events[i]["choices"][0]["finish_reason"].is_null());
    EXPECT_FALSE(events[i]["choices"][0]["delta"]["content"].get<std::string>().empty());
    EXPECT_EQ(events[i]["id"], events[0]["id"]);
  }
  EXPECT_EQ(events[7]["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(events[8]["choices"].empty());
  const auto& usage = events[8]["usage"];
  EXPECT_EQ(usage["completion_tokens"], 6);
  EXPECT_EQ(usage["prompt_tokens"], request::count_tokens(request::render_chat_prompt(messages)));
  EXPECT_EQ(usage["total_tokens"], usage["prompt_tokens"].get<int>() + 6);
  EXPECT_EQ(events[9], "[DONE]");
}

TEST_F(SimServerTest, CompletionWithoutStreamReturnsTextAndCachedTokensOnRepeat) {
  const std::string prompt = request::make_text_with_tokens(100, 7);
  const json body = {
      {"model", kModel}, {"prompt", prompt}, {"max_tokens", 5}, {"ignore_eos", true}};
  auto first = json::parse(post("/v1/completions", body.dump()).body);
  EXPECT_EQ(first["object"], "text_completion");
  EXPECT_EQ(first["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(request::count_tokens(first["choices"][0]["text"].get<std::string>()), 5u);
  EXPECT_EQ(first["usage"]["prompt_tokens"], 100);
  EXPECT_EQ(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  auto second = json::parse(post("/v1/completions", body.dump()).body);
  EXPECT_EQ(second["usage"]["prompt_tokens_details"]["cached_tokens"], 96) << "6 full blocks";
}

TEST_F(SimServerTest, ResetPrefixCacheForgetsIdleCachedPrompts) {
  const std::string prompt = request::make_text_with_tokens(100, 11);
  const json body = {
      {"model", kModel}, {"prompt", prompt}, {"max_tokens", 3}, {"ignore_eos", true}};
  ASSERT_EQ(post("/v1/completions", body.dump()).status, 200u);
  ASSERT_TRUE(engine_drains());
  EXPECT_GT(on_server([this] { return server_->engine().kv_cache().cached_block_count(); }), 0u);

  EXPECT_EQ(post("/reset_prefix_cache", "").status, 200u);
  EXPECT_EQ(on_server([this] { return server_->engine().kv_cache().cached_block_count(); }), 0u);
  auto again = json::parse(post("/v1/completions", body.dump()).body);
  EXPECT_EQ(again["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  const http::ClientResponse wrong_method = get("/reset_prefix_cache");
  EXPECT_EQ(wrong_method.status, 405u) << "POST only, as in vLLM";
  EXPECT_EQ(http::find_header(wrong_method.headers, "allow"), "POST");
}

TEST_F(SimServerTest, WithoutIgnoreEosOutputLengthIsDeterministicFromTheSeed) {
  const json body = {
      {"model", kModel}, {"prompt", "Once upon a time"}, {"max_tokens", 1000}, {"seed", 7}};
  auto first = json::parse(post("/v1/completions", body.dump()).body);
  auto second = json::parse(post("/v1/completions", body.dump()).body);
  EXPECT_EQ(first["choices"][0]["text"], second["choices"][0]["text"]);
  EXPECT_EQ(first["choices"][0]["finish_reason"], "stop");
  EXPECT_LE(first["usage"]["completion_tokens"].get<int>(), 256);
}

TEST_F(SimServerTest, BadInputGetsOpenAiErrors) {
  struct Case {
    const char* description;
    const char* path;
    std::string body;
    unsigned status;
    const char* message_part;
  };
  const std::vector<Case> cases = {
      {"malformed JSON", "/v1/completions", "{\"model\":", 400, "not valid JSON"},
      {"missing model", "/v1/completions", R"({"prompt":"hi"})", 400, "'model' is required"},
      {"missing prompt", "/v1/completions", R"({"model":"m"})", 400, "'prompt'"},
      {"missing messages", "/v1/chat/completions", json{{"model", kModel}}.dump(), 400,
       "'messages'"},
      {"wrong type", "/v1/completions",
       json{{"model", kModel}, {"prompt", "x"}, {"stream", 1}}.dump(), 400,
       "'stream' must be a boolean"},
      {"unknown model", "/v1/completions", R"({"model":"gpt-9","prompt":"hi"})", 404,
       "The model `gpt-9` does not exist."},
      {"context too long", "/v1/completions",
       json{{"model", kModel}, {"prompt", "hi"}, {"max_tokens", 5000}}.dump(), 400,
       "maximum context length is 4096"},
      {"body over the limit", "/v1/completions",
       json{{"model", kModel}, {"prompt", std::string(70000, 'a')}}.dump(), 413, ""},
  };
  for (const auto& test : cases) {
    auto response = post(test.path, test.body);
    EXPECT_EQ(response.status, test.status) << test.description;
    auto error = json::parse(response.body, nullptr, false);
    ASSERT_TRUE(error.contains("error")) << test.description << ": " << response.body;
    EXPECT_EQ(error["error"]["code"], test.status) << test.description;
    EXPECT_NE(error["error"]["message"].get<std::string>().find(test.message_part),
              std::string::npos)
        << test.description << ": " << error["error"]["message"];
  }
  // The server is unharmed, and counted every error.
  EXPECT_EQ(get("/health").status, 200u);
  const std::string metrics = get("/metrics").body;
  for (const char* expected :
       {"infergate_sim_errors_total{reason=\"invalid_request\",status=\"400\"} 6.0",
        "infergate_sim_errors_total{reason=\"unknown_model\",status=\"404\"} 1.0",
        "infergate_sim_errors_total{reason=\"body_too_large\",status=\"413\"} 1.0"}) {
    EXPECT_NE(metrics.find(expected), std::string::npos) << expected;
  }
}

TEST_F(SimServerTest, AKnownPathAnswersOneMethodAndOthersGet405WithAllow) {
  struct Case {
    beast_http::verb method;
    std::string path;
    unsigned status;
    std::string allow;  // empty: no Allow field
  };
  const std::vector<Case> cases = {
      {beast_http::verb::get, "/v1/models", 200, ""},
      {beast_http::verb::head, "/v1/models", 405, "GET"},
      {beast_http::verb::delete_, "/v1/models", 405, "GET"},
      {beast_http::verb::get, "/v1/chat/completions", 405, "POST"},
      {beast_http::verb::post, "/metrics", 405, "GET"},
      {beast_http::verb::get, "/v2/models", 404, ""},
      {beast_http::verb::unknown, "/v2/models", 404, ""},
  };
  for (const auto& test : cases) {
    http::Request request = http::make_request(test.method, test.path);
    if (test.method == beast_http::verb::unknown) request.method_string("PURGE");
    auto response =
        http::fetch_blocking("127.0.0.1", server_->port(), std::move(request), kTimeout);
    ASSERT_TRUE(response.ok()) << test.path << ": " << response.status().message();
    EXPECT_EQ(response->status, test.status) << test.method << " " << test.path;
    const auto allow = http::find_header(response->headers, "allow");
    if (test.allow.empty()) {
      EXPECT_FALSE(allow.has_value()) << test.method << " " << test.path;
    } else {
      EXPECT_EQ(allow, test.allow) << test.method << " " << test.path;
    }
  }
  EXPECT_NE(
      get("/metrics").body.find("infergate_sim_errors_total{reason=\"method\",status=\"405\"} 4.0"),
      std::string::npos);
}

TEST_F(SimServerTest, ReturnErrorHeaderForcesAnInjectedFailure) {
  const json body = {{"model", kModel}, {"prompt", "hi"}, {"max_tokens", 2}};
  auto response = post("/v1/completions", body.dump(), {{"x-return-error", "429"}});
  EXPECT_EQ(response.status, 429u);
  EXPECT_EQ(json::parse(response.body)["error"]["type"], "RateLimitError");
  EXPECT_NE(get("/metrics")
                .body.find("infergate_sim_errors_total{reason=\"injected\",status=\"429\"} 1.0"),
            std::string::npos);
}

TEST_F(SimServerTest, LoraAdaptersCanBeListedUsedLoadedAndUnloaded) {
  auto models = json::parse(get("/v1/models").body);
  ASSERT_EQ(models["data"].size(), 2u);
  EXPECT_EQ(models["data"][1]["id"], "sql-lora");
  EXPECT_EQ(models["data"][1]["parent"], kModel);

  const json use_sql = {{"model", "sql-lora"}, {"prompt", "select"}, {"max_tokens", 2}};
  EXPECT_EQ(post("/v1/completions", use_sql.dump()).status, 200u);

  EXPECT_EQ(post("/v1/load_lora_adapter", R"({"lora_name":"chat-lora","lora_path":"/a/b"})").status,
            200u);
  EXPECT_EQ(post("/v1/load_lora_adapter", R"({"lora_name":"chat-lora","lora_path":"/a/b"})").status,
            400u);
  EXPECT_EQ(json::parse(get("/v1/models").body)["data"].size(), 3u);
  EXPECT_EQ(post("/v1/unload_lora_adapter", R"({"lora_name":"sql-lora"})").status, 200u);
  EXPECT_EQ(post("/v1/completions", use_sql.dump()).status, 404u);
  EXPECT_EQ(post("/v1/unload_lora_adapter", R"({"lora_name":"sql-lora"})").status, 404u);
  EXPECT_EQ(post("/v1/load_lora_adapter", R"({"lora_name":""})").status, 400u);
}

TEST_F(SimServerTest, ClientThatDisconnectsMidStreamHasItsRequestAbortedAndBlocksFreed) {
  namespace ip = boost::asio::ip;
  boost::asio::io_context client_io;
  ip::tcp::socket socket(client_io);
  socket.connect({ip::make_address("127.0.0.1"), server_->port()});
  const json body = {{"model", kModel},
                     {"prompt", request::make_text_with_tokens(64, 3)},
                     {"max_tokens", 3000},
                     {"ignore_eos", true},
                     {"stream", true}};
  const std::string payload = body.dump();
  const std::string request =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
      std::to_string(payload.size()) + "\r\n\r\n" + payload;
  boost::asio::write(socket, boost::asio::buffer(request));
  std::string received;
  char buffer[4096];
  while (received.find("\"text\"") == std::string::npos) {  // at least one token arrived
    received.append(buffer, socket.read_some(boost::asio::buffer(buffer)));
  }
  EXPECT_TRUE(on_server([this] { return server_->engine().has_unfinished_requests(); }));
  socket.close();
  EXPECT_TRUE(engine_drains());
  EXPECT_NE(get("/metrics").body.find("finished_reason=\"abort\""), std::string::npos);
}

TEST_F(SimServerTest, ClientThatDisconnectsWhileQueuedIsAbortedToo) {
  namespace ip = boost::asio::ip;
  boost::asio::io_context client_io;
  ip::tcp::socket socket(client_io);
  socket.connect({ip::make_address("127.0.0.1"), server_->port()});
  const std::string payload = json{
      {"model", kModel},
      {"prompt", "hello"},
      {"max_tokens", 3000},
      {"ignore_eos", true}}.dump();
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                              std::to_string(payload.size()) + "\r\n\r\n" + payload;
  boost::asio::write(socket, boost::asio::buffer(request));
  for (int attempt = 0; attempt < 2000; ++attempt) {
    if (on_server([this] { return server_->engine().has_unfinished_requests(); })) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  socket.close();
  EXPECT_TRUE(engine_drains());
}

TEST_F(SimServerTest, MetricsUseVllmNamesAndCountTraffic) {
  const json body = {{"model", kModel},
                     {"prompt", request::make_text_with_tokens(40, 1)},
                     {"max_tokens", 3},
                     {"ignore_eos", true}};
  ASSERT_EQ(post("/v1/completions", body.dump()).status, 200u);
  const std::string text = get("/metrics").body;
  for (const char* expected : {
           "# TYPE vllm:num_requests_running gauge",
           "# TYPE vllm:kv_cache_usage_perc gauge",
           "vllm:prompt_tokens_total{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} "
           "40.0",
           "vllm:generation_tokens_total{engine=\"0\",model_name=\"meta-llama/"
           "Llama-3.1-8B-Instruct\"} 3.0",
           "vllm:request_success_total{engine=\"0\",finished_reason=\"length\",model_name=\"meta-"
           "llama/Llama-3.1-8B-Instruct\"} 1.0",
           "vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"meta-llama/"
           "Llama-3.1-8B-Instruct\"} 1.0",
           "vllm:inter_token_latency_seconds_count{engine=\"0\",model_name=\"meta-llama/"
           "Llama-3.1-8B-Instruct\"} 2.0",
           "num_gpu_blocks=\"2000\"",
           "vllm:lora_requests_info{max_lora=\"1\"",
       }) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected;
  }
}

}  // namespace
}  // namespace infergate::sim
