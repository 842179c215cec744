#include "sim/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_map>

#include "http/server.h"
#include "request/openai_request.h"
#include "request/prompt.h"
#include "request/tokenizer.h"

namespace infergate::sim {

namespace asio = boost::asio;
namespace http_proto = boost::beast::http;
using json = nlohmann::ordered_json;

namespace {

constexpr auto kWaitForever = std::chrono::steady_clock::time_point::max();

// Message of an injected failure, by status (the reference simulator's failure types).
std::string injected_failure_message(unsigned status) {
  switch (status) {
    case 400:
      return "injected failure: invalid request";
    case 401:
      return "injected failure: invalid API key";
    case 404:
      return "injected failure: model not found";
    case 429:
      return "injected failure: rate limit reached";
    case 503:
      return "injected failure: the server is overloaded";
    default:
      return "injected failure";
  }
}

json usage_json(const FinishedRequest& record) {
  return {{"prompt_tokens", record.prompt_tokens},
          {"total_tokens", record.prompt_tokens + record.output_tokens},
          {"completion_tokens", record.output_tokens},
          {"prompt_tokens_details", {{"cached_tokens", record.cached_tokens}}}};
}

}  // namespace

struct SimServer::Impl : std::enable_shared_from_this<Impl> {
  // A request being answered by a handler coroutine. The engine's driver hands it tokens and
  // the final record, and wakes the handler.
  struct Stream {
    explicit Stream(asio::io_context& io) : wake(io) {}
    std::vector<TokenEvent> pending;
    std::optional<FinishedRequest> finished;
    asio::steady_timer wake;
  };
  // What the driver keeps for every request in the engine.
  struct Tracked {
    TimePoint arrival;
    std::optional<TimePoint> last_token;
    Stream* stream = nullptr;  // null once the handler has gone
  };
  struct Adapter {
    int lora_id;
    std::string path;
  };

  Impl(asio::io_context& io_context, SimOptions opts)
      : io(io_context),
        options(std::move(opts)),
        clock(options.time_scale),
        engine(engine_config(options)),
        metrics(registry, options.metrics_style, served_names().front(), engine.config()),
        engine_wake(io),
        step_timer(io),
        rng(options.seed) {
    for (const auto& module : options.lora_modules) {
      adapters.emplace(module.name, Adapter{next_lora_id++, module.path});
    }
    errors =
        &registry.counter("infergate_sim_errors", "Requests the simulator answered with an error.",
                          {"status", "reason"});
    if (const char* pod = std::getenv("POD_NAME")) {
      attribution_headers.emplace_back("x-inference-pod", pod);
      if (const char* ns = std::getenv("POD_NAMESPACE")) {
        attribution_headers.emplace_back("x-inference-namespace", ns);
      }
    }
  }

  static EngineConfig engine_config(const SimOptions& options) {
    EngineConfig config = options.engine;
    config.output_token_ids = request::output_vocabulary_ids();
    return config;
  }

  std::vector<std::string> served_names() const {
    if (options.served_model_names.empty()) return {options.model};
    return options.served_model_names;
  }

  void start_http() {
    http::ServerOptions http_options;
    http_options.address = options.host;
    http_options.port = options.port;
    http_options.body_limit_bytes = options.max_request_body_bytes;
    http_options.server_name = "infergate-sim";
    std::weak_ptr<Impl> weak = weak_from_this();
    server = std::make_unique<http::Server>(
        io, http_options,
        [weak](http::Request& request, http::ResponseWriter& writer) -> asio::awaitable<void> {
          if (auto self = weak.lock()) co_await self->handle(request, writer);
        });
    if (!attribution_headers.empty()) {
      attribution_headers.emplace_back("x-inference-port", std::to_string(server->port()));
    }
    registry.add_collect_hook([this] { refresh_metrics(); });
  }

  void start() {
    server->start();
    asio::co_spawn(io, run_engine(shared_from_this()), asio::detached);
  }

  void stop() {
    stopping = true;
    if (server) server->stop();
    engine_wake.cancel();
    step_timer.cancel();
    for (auto& [id, request] : tracked) {
      if (request.stream) request.stream->wake.cancel();  // handlers see `stopping` and leave
    }
  }

  // ---- the engine's driver -------------------------------------------------------------------

  static asio::awaitable<void> run_engine(std::shared_ptr<Impl> self) {
    while (!self->stopping) {
      std::optional<Duration> duration;
      if (self->engine.has_unfinished_requests()) {
        duration = self->engine.begin_step(self->clock.now());
      }
      if (!duration) {
        self->engine_wake.expires_at(kWaitForever);
        co_await self->engine_wake.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      self->step_timer.expires_after(self->clock.to_real(*duration));
      co_await self->step_timer.async_wait(asio::as_tuple(asio::use_awaitable));
      self->dispatch(self->engine.finish_step(self->clock.now()));
    }
  }

  void kick_engine() { engine_wake.cancel(); }

  void dispatch(const StepOutput& step) {
    metrics.observe_step(step);
    for (const TokenEvent& token : step.tokens) {
      auto it = tracked.find(token.request_id);
      if (it == tracked.end()) continue;
      Tracked& request = it->second;
      if (request.last_token) {
        metrics.observe_inter_token(step.end - *request.last_token);
      } else {
        metrics.observe_first_token(step.end - request.arrival);
      }
      request.last_token = step.end;
      if (request.stream) {
        request.stream->pending.push_back(token);
        request.stream->wake.cancel();
      }
    }
    for (const FinishedRequest& record : step.finished) finish(record);
  }

  void finish(const FinishedRequest& record) {
    auto it = tracked.find(record.request_id);
    if (it == tracked.end()) return;
    metrics.observe_finished(record, it->second.arrival);
    if (Stream* stream = it->second.stream) {
      stream->finished = record;
      stream->wake.cancel();
    }
    tracked.erase(it);
  }

  void abort(std::uint64_t id) {
    if (auto record = engine.abort_request(id, clock.now())) finish(*record);
    // Otherwise the request is in the running step and comes back in its output.
  }

  void refresh_metrics() {
    // Requests the HTTP layer rejected before any handler saw them count as errors too.
    const http::ServerStats& http_stats = server->stats();
    auto sync = [this](const char* status, const char* reason, std::uint64_t total) {
      prom::Counter& counter = errors->with({status, reason});
      if (static_cast<double>(total) > counter.value()) {
        counter.inc(static_cast<double>(total) - counter.value());
      }
    };
    sync("400", "malformed_http", http_stats.bad_requests.load());
    sync("408", "read_timeout", http_stats.read_timeouts.load());
    sync("413", "body_too_large", http_stats.body_too_large.load());
    sync("431", "headers_too_large", http_stats.headers_too_large.load());
    SimMetrics::LoraState loras{.max_loras = engine.config().max_loras};
    auto names = [this](const std::vector<int>& ids) {
      std::vector<std::string> out;
      for (int id : ids) {
        for (const auto& [name, adapter] : adapters) {
          if (adapter.lora_id == id) out.push_back(name);
        }
      }
      return out;
    };
    loras.running = names(engine.running_lora_ids());
    loras.waiting = names(engine.waiting_lora_ids());
    metrics.refresh(engine, loras, unix_time_seconds_fractional());
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  asio::awaitable<void> handle(http::Request& request, http::ResponseWriter& writer) {
    const std::string_view target = request.target();
    const std::string_view path = target.substr(0, target.find('?'));
    const http_proto::verb allowed = allowed_method(path);
    if (allowed == http_proto::verb::unknown || request.method() != allowed) {
      co_return co_await reject(request, path, allowed, writer);
    }
    if (path == "/v1/completions" || path == "/v1/chat/completions") {
      co_await generate(request, writer,
                        path == "/v1/completions" ? request::ApiKind::kCompletions
                                                  : request::ApiKind::kChatCompletions);
    } else if (path == "/health" || path == "/health/ready") {
      co_await writer.send(200, "application/json", "");
    } else if (path == "/metrics") {
      co_await writer.send(200, "text/plain; version=0.0.4; charset=utf-8", registry.expose());
    } else if (path == "/v1/models") {
      co_await writer.send(200, "application/json", models_json().dump());
    } else if (path == "/v1/load_lora_adapter") {
      co_await load_lora(request.body(), writer);
    } else if (path == "/v1/unload_lora_adapter") {
      co_await unload_lora(request.body(), writer);
    } else {  // /reset_prefix_cache
      const int dropped = engine.reset_prefix_cache();
      spdlog::info("sim: prefix cache reset, {} cached free blocks dropped", dropped);
      co_await writer.send(200, "application/json", "");
    }
  }

  // The one method a path answers to (each route has one, as in vLLM's API server, which does
  // not answer HEAD either), or unknown for a path the server does not have.
  static http_proto::verb allowed_method(std::string_view path) {
    if (path == "/health" || path == "/health/ready" || path == "/metrics" ||
        path == "/v1/models") {
      return http_proto::verb::get;
    }
    if (path == "/v1/completions" || path == "/v1/chat/completions" ||
        path == "/v1/load_lora_adapter" || path == "/v1/unload_lora_adapter" ||
        path == "/reset_prefix_cache") {
      return http_proto::verb::post;
    }
    return http_proto::verb::unknown;
  }

  // 404 for an unknown path, 405 (with Allow) for a known path and another method; `allowed` is
  // the path's allowed_method.
  asio::awaitable<void> reject(const http::Request& request, std::string_view path,
                               http_proto::verb allowed, http::ResponseWriter& writer) {
    const std::string method(request.method_string());
    if (allowed == http_proto::verb::unknown) {
      co_return co_await send_error(
          writer, Status::not_found(fmt::format("no route for {} {}", method, path)), "route");
    }
    http::Headers allow;
    allow.emplace_back("Allow", std::string(http_proto::to_string(allowed)));
    co_await send_error(writer,
                        Status(405, fmt::format("method {} is not allowed for {}", method, path)),
                        "method", std::move(allow));
  }

  asio::awaitable<void> send_error(http::ResponseWriter& writer, const Status& status,
                                   std::string_view reason, http::Headers extra = {}) {
    errors->with({std::to_string(status.http_status()), reason}).inc();
    co_await writer.send(static_cast<unsigned>(status.http_status()), "application/json",
                         status.to_openai_json(), std::move(extra));
  }

  std::optional<unsigned> injected_failure(const http::Request& request) {
    if (auto header = request.find("x-return-error"); header != request.end()) {
      const unsigned status =
          static_cast<unsigned>(std::atoi(std::string(header->value()).c_str()));
      if (status >= 400 && status <= 599) return status;
    }
    if (options.failure_rate_percent > 0 && !options.failure_codes.empty() &&
        std::uniform_real_distribution<double>(0, 100)(rng) < options.failure_rate_percent) {
      return options.failure_codes[rng() % options.failure_codes.size()];
    }
    return std::nullopt;
  }

  // The lora id (0: base model) and the prefix-cache namespace for a requested model name.
  std::optional<std::pair<int, std::string>> resolve_model(const std::string& name) const {
    for (const auto& served : served_names()) {
      if (served == name) return std::pair{0, options.model};
    }
    if (auto it = adapters.find(name); it != adapters.end()) {
      return std::pair{it->second.lora_id, name};
    }
    return std::nullopt;
  }

  asio::awaitable<void> generate(http::Request& http_request, http::ResponseWriter& writer,
                                 request::ApiKind kind) {
    const TimePoint arrival = clock.now();
    if (auto failure = injected_failure(http_request)) {
      co_return co_await send_error(
          writer, Status(static_cast<int>(*failure), injected_failure_message(*failure)),
          "injected");
    }
    auto parsed = request::parse_openai_request(kind, http_request.body());
    if (!parsed) co_return co_await send_error(writer, parsed.status(), "invalid_request");
    const request::OpenAiRequest& body = *parsed;
    auto model = resolve_model(body.model);
    if (!model) {
      co_return co_await send_error(
          writer, Status::not_found(fmt::format("The model `{}` does not exist.", body.model)),
          "unknown_model");
    }

    EngineRequest engine_request;
    engine_request.prompt_tokens = request::prompt_token_ids(body);
    const auto prompt_len = static_cast<std::int64_t>(engine_request.prompt_tokens.size());
    const std::int64_t max_model_len = engine.config().max_model_len;
    const std::int64_t max_tokens =
        body.max_tokens.value_or(std::max<std::int64_t>(1, max_model_len - prompt_len));
    engine_request.max_output_tokens =
        static_cast<int>(std::min<std::int64_t>(max_tokens, max_model_len + 1));
    const std::uint64_t request_id = next_request_id++;
    const std::uint64_t prompt_hash =
        XXH64(engine_request.prompt_tokens.data(), engine_request.prompt_tokens.size() * 4, 0);
    const std::uint64_t seed =
        (body.seed ? *body.seed : options.seed ^ (request_id * 0x9E3779B97F4A7C15ULL)) ^
        prompt_hash;
    engine_request.id = request_id;
    engine_request.lora_id = model->first;
    engine_request.prefix_root_hash = root_block_hash(model->second, body.cache_salt);
    engine_request.sampling_seed = seed;
    engine_request.stop_after_tokens = engine_request.max_output_tokens;
    if (!body.ignore_eos) {
      const auto natural = static_cast<std::int64_t>(
          1 + XXH64(&seed, sizeof seed, 1) %
                  static_cast<std::uint64_t>(2 * std::max(1, options.mean_output_tokens)));
      engine_request.stop_after_tokens = static_cast<int>(std::clamp<std::int64_t>(
          std::max(natural, body.min_tokens.value_or(0)), 1, engine_request.max_output_tokens));
    }

    // Time spent in front of the engine (HTTP, tokenisation, hand-off), then into the queue.
    asio::steady_timer frontend(io);
    frontend.expires_after(clock.to_real(from_milliseconds(engine.config().step_time.frontend_ms)));
    co_await frontend.async_wait(asio::as_tuple(asio::use_awaitable));
    if (writer.client_gone() || stopping) co_return;
    if (Status added = engine.add_request(std::move(engine_request), clock.now()); !added.is_ok()) {
      co_return co_await send_error(writer, added, "invalid_request");
    }

    Stream stream(io);
    tracked.emplace(request_id, Tracked{.arrival = arrival, .stream = &stream});
    kick_engine();
    // Whatever way the handler leaves, the driver must not touch `stream` afterwards, and a
    // request still in the engine is aborted.
    struct Detach {
      Impl* self;
      std::uint64_t id;
      ~Detach() {
        auto it = self->tracked.find(id);
        if (it == self->tracked.end()) return;
        it->second.stream = nullptr;
        self->abort(id);
      }
    } detach{this, request_id};
    writer.on_client_gone([this, request_id] { abort(request_id); });

    const bool chat = kind == request::ApiKind::kChatCompletions;
    Response response{
        .id = fmt::format("{}-{:016x}{:08x}", chat ? "chatcmpl" : "cmpl", rng(), request_id),
        .object = chat ? "chat.completion.chunk" : "text_completion",
        .model = body.model,
        .created = unix_time_seconds(),
        .chat = chat};
    if (body.stream) {
      co_await stream_response(writer, stream, response, body.include_usage);
    } else {
      co_await whole_response(writer, stream, response);
    }
  }

  struct Response {
    std::string id;
    std::string object;
    std::string model;
    std::int64_t created;
    bool chat;

    json chunk(json choices) const {
      return {{"id", id},
              {"object", object},
              {"created", created},
              {"model", model},
              {"choices", std::move(choices)}};
    }
    json token_choice(std::string_view text, const char* finish_reason) const {
      json choice = {{"index", 0}};
      if (chat) {
        choice["delta"] = text.empty() && finish_reason ? json::object() : json{{"content", text}};
      } else {
        choice["text"] = text;
      }
      choice["logprobs"] = nullptr;
      choice["finish_reason"] = finish_reason ? json(finish_reason) : json(nullptr);
      if (!chat) choice["stop_reason"] = nullptr;
      return choice;
    }
  };

  // Waits until the driver has something for this request (tokens or the end).
  asio::awaitable<void> wait(Stream& stream) {
    if (!stream.pending.empty() || stream.finished) co_return;
    stream.wake.expires_at(kWaitForever);
    co_await stream.wake.async_wait(asio::as_tuple(asio::use_awaitable));
  }

  // SSE event of one chunk object. Chunks are built in plain statements before each co_await:
  // GCC 12 miscompiles initializer-list temporaries that live across a suspension point.
  static std::string sse_chunk(const json& data) {
    return fmt::format("data: {}\n\n", data.dump());
  }

  std::string role_event(const Response& response) const {
    json role = {{"index", 0},
                 {"delta", {{"role", "assistant"}, {"content", ""}}},
                 {"logprobs", nullptr},
                 {"finish_reason", nullptr}};
    json choices = json::array();
    choices.push_back(std::move(role));
    return sse_chunk(response.chunk(std::move(choices)));
  }

  static std::string token_event(const Response& response, std::string_view text,
                                 const char* finish_reason) {
    json choices = json::array();
    choices.push_back(response.token_choice(text, finish_reason));
    return sse_chunk(response.chunk(std::move(choices)));
  }

  static std::string usage_event(const Response& response, const FinishedRequest& record) {
    json usage = response.chunk(json::array());
    usage["usage"] = usage_json(record);
    return sse_chunk(usage);
  }

  asio::awaitable<void> stream_response(http::ResponseWriter& writer, Stream& stream,
                                        const Response& response, bool include_usage) {
    if (!co_await writer.begin_stream(200, "text/event-stream", headers())) co_return;
    if (response.chat) {
      const std::string role = role_event(response);
      if (!co_await writer.write_chunk(role)) co_return;
    }
    const auto& vocabulary = request::output_vocabulary();
    while (true) {
      co_await wait(stream);
      std::vector<TokenEvent> tokens;
      tokens.swap(stream.pending);
      for (const TokenEvent& token : tokens) {
        const std::string event = token_event(response, vocabulary[token.vocab_index], nullptr);
        if (!co_await writer.write_chunk(event)) co_return;  // client gone: Detach aborts it
      }
      // Tokens may have arrived while the writes above were suspended: send them first.
      if ((stream.finished || stopping) && stream.pending.empty()) break;
    }
    if (!stream.finished || stream.finished->reason == FinishReason::kAbort) co_return;
    const FinishedRequest record = *stream.finished;
    const std::string last = token_event(response, "", finish_reason_name(record.reason));
    if (!co_await writer.write_chunk(last)) co_return;
    if (include_usage) {
      const std::string usage = usage_event(response, record);
      if (!co_await writer.write_chunk(usage)) co_return;
    }
    const std::string_view done = "data: [DONE]\n\n";
    if (co_await writer.write_chunk(done)) co_await writer.end_stream();
  }

  asio::awaitable<void> whole_response(http::ResponseWriter& writer, Stream& stream,
                                       const Response& response) {
    const auto& vocabulary = request::output_vocabulary();
    std::string text;
    while (true) {
      co_await wait(stream);
      for (const TokenEvent& token : stream.pending) text += vocabulary[token.vocab_index];
      stream.pending.clear();
      if (stream.finished || stopping || writer.client_gone()) break;
    }
    if (!stream.finished || stream.finished->reason == FinishReason::kAbort) co_return;
    const FinishedRequest& record = *stream.finished;
    json choice = {{"index", 0}};
    if (response.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", text}};
    } else {
      choice["text"] = text;
    }
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = finish_reason_name(record.reason);
    if (!response.chat) choice["stop_reason"] = nullptr;
    json body = response.chunk(json::array({choice}));
    body["object"] = response.chat ? "chat.completion" : "text_completion";
    body["usage"] = usage_json(record);
    co_await writer.send(200, "application/json", body.dump(), headers());
  }

  http::Headers headers() const { return attribution_headers; }

  json models_json() const {
    json data = json::array();
    const std::int64_t created = unix_time_seconds();
    for (const auto& name : served_names()) {
      data.push_back({{"id", name},
                      {"object", "model"},
                      {"created", created},
                      {"owned_by", "vllm"},
                      {"root", options.model},
                      {"parent", nullptr},
                      {"max_model_len", engine.config().max_model_len}});
    }
    for (const auto& [name, adapter] : adapters) {
      data.push_back({{"id", name},
                      {"object", "model"},
                      {"created", created},
                      {"owned_by", "vllm"},
                      {"root", adapter.path},
                      {"parent", options.model}});
    }
    return {{"object", "list"}, {"data", std::move(data)}};
  }

  // Reads a required string field of a small JSON body (LoRA management, not the hot path).
  static Result<std::string> string_field(std::string_view body, const char* field) {
    json parsed = json::parse(body, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) {
      return Status::bad_request("request body must be a JSON object");
    }
    auto it = parsed.find(field);
    if (it == parsed.end() || !it->is_string() || it->get<std::string>().empty()) {
      return Status::bad_request(
          fmt::format("'{}' is required and must be a non-empty string", field));
    }
    return it->get<std::string>();
  }

  asio::awaitable<void> load_lora(std::string_view body, http::ResponseWriter& writer) {
    auto name = string_field(body, "lora_name");
    if (!name) co_return co_await send_error(writer, name.status(), "invalid_request");
    auto path = string_field(body, "lora_path");
    if (!path) co_return co_await send_error(writer, path.status(), "invalid_request");
    if (adapters.contains(*name) || resolve_model(*name)) {
      co_return co_await send_error(
          writer,
          Status::bad_request(fmt::format("The lora adapter '{}' has already been loaded.", *name)),
          "invalid_request");
    }
    adapters.emplace(*name, Adapter{next_lora_id++, *path});
    co_await writer.send(200, "text/plain; charset=utf-8",
                         fmt::format("Success: LoRA adapter '{}' added successfully.", *name));
  }

  asio::awaitable<void> unload_lora(std::string_view body, http::ResponseWriter& writer) {
    auto name = string_field(body, "lora_name");
    if (!name) co_return co_await send_error(writer, name.status(), "invalid_request");
    if (adapters.erase(*name) == 0) {
      co_return co_await send_error(
          writer, Status::not_found(fmt::format("The lora adapter '{}' cannot be found.", *name)),
          "unknown_model");
    }
    co_await writer.send(200, "text/plain; charset=utf-8",
                         fmt::format("Success: LoRA adapter '{}' removed successfully.", *name));
  }

  asio::io_context& io;
  SimOptions options;
  ScaledClock clock;
  Engine engine;
  prom::Registry registry;
  SimMetrics metrics;
  prom::CounterFamily* errors = nullptr;
  std::unique_ptr<http::Server> server;
  asio::steady_timer engine_wake;
  asio::steady_timer step_timer;
  std::mt19937_64 rng;
  std::uint64_t next_request_id = 1;
  int next_lora_id = 1;
  std::map<std::string, Adapter> adapters;
  std::unordered_map<std::uint64_t, Tracked> tracked;
  http::Headers attribution_headers;
  bool stopping = false;
};

SimServer::SimServer(boost::asio::io_context& io, SimOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(options))) {
  impl_->start_http();
}

SimServer::~SimServer() { impl_->stop(); }

std::uint16_t SimServer::port() const { return impl_->server->port(); }
void SimServer::start() { impl_->start(); }
void SimServer::stop() { impl_->stop(); }
const Engine& SimServer::engine() const { return impl_->engine; }
std::string SimServer::metrics_text() { return impl_->registry.expose(); }

}  // namespace infergate::sim
