#include "http/server.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

#include "http/client.h"
#include "http/sse.h"
#include "http_test_util.h"

namespace infergate::http {
namespace {

using testing::kAsTuple;
using testing::kTimeout;
using testing::raw_exchange;
using testing::read_until_closed;
using testing::Signal;
using testing::tcp;
namespace bhttp = boost::beast::http;

constexpr std::string_view kLoopback = "127.0.0.1";

// Body of an OpenAI-style error response, or a failure naming the body.
int error_code_of(std::string_view body) {
  const auto json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object() || !json.contains("error")) {
    ADD_FAILURE() << "not an OpenAI error body: " << body;
    return 0;
  }
  return json["error"]["code"].get<int>();
}

// Answers "<method> <target> <body>".
asio::awaitable<void> echo(Request& request, ResponseWriter& writer) {
  co_await writer.send(200, "text/plain",
                       std::string(request.method_string()) + " " + std::string(request.target()) +
                           " " + request.body());
}

class HttpServerTest : public ::testing::Test {
 protected:
  void start(Handler handler, ServerOptions options = {}) {
    server_ = std::make_unique<Server>(io_, std::move(options), std::move(handler));
    server_->start();
  }

  // Runs the client side; the server is stopped when it ends.
  void run(std::function<asio::awaitable<void>()> client) {
    testing::run_coroutine(io_, std::move(client), [this] { server_->stop(); });
  }

  asio::awaitable<Result<ClientResponse>> fetch_here(Request request) {
    co_return co_await fetch(io_.get_executor(), std::string(kLoopback), server_->port(),
                             std::move(request), kTimeout);
  }

  std::uint16_t port() const { return server_->port(); }
  const ServerStats& stats() const { return server_->stats(); }

  asio::io_context io_;  // declared first: outlives the server
  std::unique_ptr<Server> server_;
};

TEST_F(HttpServerTest, PlainResponsesReuseOneKeepAliveConnection) {
  start(echo);
  run([&]() -> asio::awaitable<void> {
    ClientConnection connection(io_.get_executor());
    CO_ASSERT_TRUE((co_await connection.connect(std::string(kLoopback), port(), kTimeout)).is_ok());

    auto first =
        co_await connection.request(make_request(bhttp::verb::post, "/a", "one"), kTimeout);
    CO_ASSERT_TRUE(first.ok());
    EXPECT_EQ(first->status, 200u);
    EXPECT_EQ(first->body, "POST /a one");
    EXPECT_EQ(find_header(first->headers, "server"), "infergate");
    EXPECT_EQ(find_header(first->headers, "content-length"), "11");
    EXPECT_EQ(find_header(first->headers, "content-type"), "text/plain");
    EXPECT_TRUE(connection.is_open());

    auto second = co_await connection.request(make_request(bhttp::verb::get, "/b"), kTimeout);
    CO_ASSERT_TRUE(second.ok());
    EXPECT_EQ(second->body, "GET /b ");
  });
  EXPECT_EQ(stats().connections_accepted, 1u);
  EXPECT_EQ(stats().requests, 2u);
}

TEST_F(HttpServerTest, StreamingResponseArrivesChunkByChunk) {
  constexpr int kChunks = 4;
  Signal chunk_read(io_.get_executor());
  auto chunk_text = [](int index) {
    return sse_event(R"({"index":)" + std::to_string(index) + "}");
  };
  start([&](Request& request, ResponseWriter& writer) -> asio::awaitable<void> {
    if (request.target() == "/again") {
      co_await writer.send(200, "text/plain", "again");
      co_return;
    }
    Headers extra_headers;
    extra_headers.emplace_back("Cache-Control", "no-cache");
    co_await writer.begin_stream(200, "text/event-stream", std::move(extra_headers));
    for (int index = 0; index < kChunks; ++index) {
      co_await writer.write_chunk(chunk_text(index));
      co_await chunk_read.acquire();  // the client has seen this chunk before the next is written
    }
    co_await writer.write_chunk(sse_event("[DONE]"));
    co_await writer.end_stream();
  });
  run([&]() -> asio::awaitable<void> {
    ClientConnection connection(io_.get_executor());
    CO_ASSERT_TRUE((co_await connection.connect(std::string(kLoopback), port(), kTimeout)).is_ok());
    CO_ASSERT_TRUE((co_await connection.send_request(
                        make_request(bhttp::verb::post, "/v1/completions", "{}"), kTimeout))
                       .is_ok());
    auto head = co_await connection.read_response_head(kTimeout);
    CO_ASSERT_TRUE(head.ok());
    EXPECT_EQ(head->status, 200u);
    EXPECT_TRUE(head->chunked);
    EXPECT_TRUE(head->keep_alive);
    EXPECT_FALSE(head->content_length.has_value());
    EXPECT_EQ(find_header(head->headers, "Content-Type"), "text/event-stream");
    EXPECT_EQ(find_header(head->headers, "cache-control"), "no-cache");

    std::string body;
    for (int index = 0; index < kChunks; ++index) {
      std::string piece;
      auto read = co_await connection.read_body_some(piece, kTimeout);
      CO_ASSERT_TRUE(read.ok());
      EXPECT_EQ(*read, piece.size());
      EXPECT_EQ(piece, chunk_text(index)) << "piece " << index;
      body += piece;
      chunk_read.release();
    }
    while (true) {
      auto read = co_await connection.read_body_some(body, kTimeout);
      CO_ASSERT_TRUE(read.ok());
      if (*read == 0) {
        break;
      }
    }
    std::vector<std::string> events;
    SseParser parser;
    parser.feed(body, [&](std::string_view data) { events.emplace_back(data); });
    EXPECT_EQ(events.size(), kChunks + 1u);
    EXPECT_EQ(events.back(), "[DONE]");

    // The connection is still usable after a chunked response.
    auto again = co_await connection.request(make_request(bhttp::verb::get, "/again"), kTimeout);
    CO_ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->body, "again");
  });
  EXPECT_EQ(stats().connections_accepted, 1u);
}

TEST_F(HttpServerTest, BodyOverLimitGets413AndServerKeepsServing) {
  ServerOptions options;
  options.body_limit_bytes = 1024;
  start(echo, options);
  run([&]() -> asio::awaitable<void> {
    auto too_large =
        co_await fetch_here(make_request(bhttp::verb::post, "/big", std::string(64 << 10, 'x')));
    CO_ASSERT_TRUE(too_large.ok());
    EXPECT_EQ(too_large->status, 413u);
    EXPECT_EQ(error_code_of(too_large->body), 413);
    EXPECT_EQ(find_header(too_large->headers, "connection"), "close");
    EXPECT_EQ(find_header(too_large->headers, "content-type"), "application/json");

    // A chunked body has no Content-Length to reject up front: the limit applies while reading.
    const std::string chunked_request =
        "POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        "7d0\r\n" +
        std::string(2000, 'y') + "\r\n0\r\n\r\n";
    const std::string chunked_reply = co_await raw_exchange(port(), chunked_request);
    EXPECT_TRUE(chunked_reply.starts_with("HTTP/1.1 413 ")) << chunked_reply;

    auto small = co_await fetch_here(make_request(bhttp::verb::post, "/small", "ok"));
    CO_ASSERT_TRUE(small.ok());
    EXPECT_EQ(small->status, 200u);
    EXPECT_EQ(small->body, "POST /small ok");
  });
  EXPECT_EQ(stats().body_too_large, 2u);
  EXPECT_EQ(stats().requests, 1u);
}

TEST_F(HttpServerTest, HeaderOverLimitGets431) {
  ServerOptions options;
  options.header_limit_bytes = 1024;
  start(echo, options);
  run([&]() -> asio::awaitable<void> {
    Request request = make_request(bhttp::verb::get, "/");
    request.set("X-Large", std::string(4096, 'h'));
    auto response = co_await fetch_here(std::move(request));
    CO_ASSERT_TRUE(response.ok());
    EXPECT_EQ(response->status, 431u);
    EXPECT_EQ(error_code_of(response->body), 431);
  });
  EXPECT_EQ(stats().headers_too_large, 1u);
}

TEST_F(HttpServerTest, MalformedRequestLineGets400AndClose) {
  start(echo);
  run([&]() -> asio::awaitable<void> {
    // raw_exchange returns only once the server has closed the connection.
    const std::string reply = co_await raw_exchange(port(), "NOT A REQUEST\r\n\r\n");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 400 Bad Request\r\n")) << reply;
    EXPECT_NE(reply.find("Connection: close\r\n"), std::string::npos) << reply;
    EXPECT_NE(reply.find("Server: infergate\r\n"), std::string::npos) << reply;
    const auto body_start = reply.find("\r\n\r\n");
    CO_ASSERT_TRUE(body_start != std::string::npos);
    EXPECT_EQ(error_code_of(std::string_view(reply).substr(body_start + 4)), 400);
  });
  EXPECT_EQ(stats().bad_requests, 1u);
  EXPECT_EQ(stats().requests, 0u);
}

TEST_F(HttpServerTest, HeadWithAVersionTooShortToReadGets400) {
  start(echo);
  run([&]() -> asio::awaitable<void> {
    // Beast's parser alone asks for more bytes after "1.1\r\n\r\n" (it reads a version as 8).
    const std::string reply = co_await raw_exchange(port(), "GET / 1.1\r\n\r\n");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 400 Bad Request\r\n")) << reply;
  });
  EXPECT_EQ(stats().bad_requests, 1u);
  EXPECT_EQ(stats().read_timeouts, 0u);
}

TEST_F(HttpServerTest, ConnectionCloseIsHonoured) {
  start(echo);
  run([&]() -> asio::awaitable<void> {
    ClientConnection connection(io_.get_executor());
    CO_ASSERT_TRUE((co_await connection.connect(std::string(kLoopback), port(), kTimeout)).is_ok());
    Request request = make_request(bhttp::verb::get, "/close");
    request.keep_alive(false);
    auto response = co_await connection.request(std::move(request), kTimeout);
    CO_ASSERT_TRUE(response.ok());
    EXPECT_EQ(find_header(response->headers, "connection"), "close");
    EXPECT_FALSE(connection.is_open());

    // The server closes its side too: reading to EOF ends after exactly one response.
    const std::string reply =
        co_await raw_exchange(port(), "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 200 OK\r\n")) << reply;
    EXPECT_TRUE(reply.ends_with("GET /x ")) << reply;

    // HTTP/1.0 without keep-alive closes as well.
    const std::string reply10 = co_await raw_exchange(port(), "GET /y HTTP/1.0\r\n\r\n");
    EXPECT_TRUE(reply10.starts_with("HTTP/1.0 200 OK\r\n")) << reply10;
  });
  EXPECT_EQ(stats().requests, 3u);
}

// The echo handler's answers to GET /1, POST /2 (body "body") and GET /3, in that order.
void expect_answered_in_order(const std::string& reply) {
  const auto first = reply.find("GET /1 ");
  const auto second = reply.find("POST /2 body");
  const auto third = reply.find("GET /3 ");
  EXPECT_NE(first, std::string::npos) << reply;
  EXPECT_LT(first, second) << reply;
  EXPECT_LT(second, third) << reply;
  EXPECT_NE(third, std::string::npos) << reply;
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  start(echo);
  run([&]() -> asio::awaitable<void> {
    const std::string reply =
        co_await raw_exchange(port(),
                              "GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
                              "POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody"
                              "GET /3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    expect_answered_in_order(reply);
  });
  EXPECT_EQ(stats().requests, 3u);
  EXPECT_EQ(stats().connections_accepted, 1u);
}

// Bytes of the next requests that arrive while a handler runs are read by the client watch; they
// must be neither lost nor reordered, whether the watch has read them all, some of them (a partial
// request left for the next read) or none when the handler returns.
TEST_F(HttpServerTest, RequestsArrivingWhileHandlerRunsKeepTheirOrder) {
  Signal handler_started(io_.get_executor());
  Signal proceed(io_.get_executor());
  start([&](Request& request, ResponseWriter& writer) -> asio::awaitable<void> {
    if (request.target() == "/1") {
      handler_started.release();
      co_await proceed.acquire();
    }
    co_await echo(request, writer);
  });
  run([&]() -> asio::awaitable<void> {
    tcp::socket socket(io_.get_executor());
    co_await socket.async_connect({asio::ip::make_address(kLoopback), port()}, kAsTuple);
    co_await asio::async_write(
        socket, asio::buffer(std::string_view("GET /1 HTTP/1.1\r\nHost: t\r\n\r\n")), kAsTuple);
    co_await handler_started.acquire();
    co_await asio::async_write(
        socket,
        asio::buffer(std::string_view("POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody"
                                      "GET /3 HTTP/1.1\r\nHo")),
        kAsTuple);
    // Give the watch the chance to read them (either way the outcome must be the same).
    for (int i = 0; i < 20; ++i) {
      co_await asio::post(io_.get_executor(), kAsTuple);
    }
    proceed.release();
    co_await asio::async_write(
        socket, asio::buffer(std::string_view("st: t\r\nConnection: close\r\n\r\n")), kAsTuple);
    expect_answered_in_order(co_await read_until_closed(socket));
  });
  EXPECT_EQ(stats().requests, 3u);
  EXPECT_EQ(stats().client_disconnects, 0u);
}

// A client that pipelines part of a next request and then leaves is still noticed as gone.
TEST_F(HttpServerTest, DisconnectBehindPipelinedBytesIsNoticed) {
  Signal gone(io_.get_executor());
  Signal handler_started(io_.get_executor());
  bool handler_saw_gone = false;
  start([&](Request&, ResponseWriter& writer) -> asio::awaitable<void> {
    writer.on_client_gone([&] { gone.release(); });
    handler_started.release();
    co_await gone.acquire();
    handler_saw_gone = writer.client_gone();
  });
  run([&]() -> asio::awaitable<void> {
    tcp::socket socket(io_.get_executor());
    co_await socket.async_connect({asio::ip::make_address(kLoopback), port()}, kAsTuple);
    co_await asio::async_write(
        socket, asio::buffer(std::string_view("GET /1 HTTP/1.1\r\nHost: t\r\n\r\n")), kAsTuple);
    co_await handler_started.acquire();
    co_await asio::async_write(socket, asio::buffer(std::string_view("GET /2 HTTP/1.1\r\nHo")),
                               kAsTuple);
    for (int i = 0; i < 20; ++i) {
      co_await asio::post(io_.get_executor(), kAsTuple);
    }
    socket.shutdown(tcp::socket::shutdown_send);
    co_await read_until_closed(socket);
  });
  EXPECT_TRUE(handler_saw_gone);
  EXPECT_EQ(stats().requests, 1u);
  EXPECT_EQ(stats().client_disconnects, 1u);
}

TEST_F(HttpServerTest, ExpectContinueGetsInterimResponse) {
  start(echo);
  run([&]() -> asio::awaitable<void> {
    tcp::socket socket(io_.get_executor());
    co_await socket.async_connect({asio::ip::make_address(kLoopback), port()}, asio::use_awaitable);
    const std::string head =
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
        "Connection: close\r\n\r\n";
    co_await asio::async_write(socket, asio::buffer(head), asio::use_awaitable);
    std::string interim(25, '\0');
    co_await asio::async_read(socket, asio::buffer(interim), asio::use_awaitable);
    EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    co_await asio::async_write(socket, asio::buffer(std::string_view("hello")),
                               asio::use_awaitable);
    std::string reply;
    char chunk[1024];
    while (true) {
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), kAsTuple);
      reply.append(chunk, n);
      if (ec) {
        break;
      }
    }
    EXPECT_TRUE(reply.ends_with("POST /upload hello")) << reply;
  });
}

TEST_F(HttpServerTest, SlowRequestGets408) {
  ServerOptions options;
  options.read_timeout = std::chrono::milliseconds(30);
  start(echo, options);
  run([&]() -> asio::awaitable<void> {
    const std::string reply = co_await raw_exchange(
        port(), "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");  // 7 bytes short
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 408 Request Timeout\r\n")) << reply;
  });
  EXPECT_EQ(stats().read_timeouts, 1u);
  EXPECT_EQ(stats().requests, 0u);
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosed) {
  ServerOptions options;
  options.idle_timeout = std::chrono::milliseconds(30);
  start(echo, options);
  run([&]() -> asio::awaitable<void> {
    // Keep-alive request: raw_exchange returns only when the server closes the idle connection.
    const std::string reply =
        co_await raw_exchange(port(), "GET /idle HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 200 OK\r\n")) << reply;
    EXPECT_TRUE(reply.ends_with("GET /idle ")) << reply;
  });
}

TEST_F(HttpServerTest, ClientDisconnectMidStreamFailsWritesAndFiresCallback) {
  Signal gone(io_.get_executor());
  int callbacks = 0;
  bool write_after_gone = true;
  bool client_gone_flag = false;
  start([&](Request&, ResponseWriter& writer) -> asio::awaitable<void> {
    writer.on_client_gone([&] {
      ++callbacks;
      gone.release();
    });
    co_await writer.begin_stream(200, "text/event-stream");
    co_await writer.write_chunk(sse_event("first"));
    co_await gone.acquire();
    write_after_gone = co_await writer.write_chunk(sse_event("second"));
    client_gone_flag = writer.client_gone();
    const bool ended = co_await writer.end_stream();
    EXPECT_FALSE(ended);
  });
  run([&]() -> asio::awaitable<void> {
    ClientConnection connection(io_.get_executor());
    CO_ASSERT_TRUE((co_await connection.connect(std::string(kLoopback), port(), kTimeout)).is_ok());
    CO_ASSERT_TRUE(
        (co_await connection.send_request(make_request(bhttp::verb::get, "/stream"), kTimeout))
            .is_ok());
    CO_ASSERT_TRUE((co_await connection.read_response_head(kTimeout)).ok());
    std::string piece;
    CO_ASSERT_TRUE((co_await connection.read_body_some(piece, kTimeout)).ok());
    EXPECT_EQ(piece, sse_event("first"));
    connection.close();
  });
  EXPECT_EQ(callbacks, 1);
  EXPECT_FALSE(write_after_gone);
  EXPECT_TRUE(client_gone_flag);
  EXPECT_EQ(stats().client_disconnects, 1u);
}

TEST_F(HttpServerTest, WriteErrorAloneRevealsGoneClient) {
  // No callback registered and no waiting: the handler just keeps writing until a write fails
  // (or the watcher has already seen the close). Either way it must stop within a few writes.
  Signal client_closed(io_.get_executor());
  int writes_until_failure = 0;
  start([&](Request&, ResponseWriter& writer) -> asio::awaitable<void> {
    co_await writer.begin_stream(200, "text/plain");
    co_await writer.write_chunk("hello");
    co_await client_closed.acquire();
    const std::string payload(16 << 10, 'z');
    while (writes_until_failure < 10000 && co_await writer.write_chunk(payload)) {
      ++writes_until_failure;
    }
  });
  run([&]() -> asio::awaitable<void> {
    ClientConnection connection(io_.get_executor());
    CO_ASSERT_TRUE((co_await connection.connect(std::string(kLoopback), port(), kTimeout)).is_ok());
    CO_ASSERT_TRUE(
        (co_await connection.send_request(make_request(bhttp::verb::get, "/"), kTimeout)).is_ok());
    CO_ASSERT_TRUE((co_await connection.read_response_head(kTimeout)).ok());
    connection.close();
    client_closed.release();
  });
  EXPECT_LT(writes_until_failure, 10000);
  EXPECT_EQ(stats().client_disconnects, 1u);
}

// A client that leaves while its handler waits (nothing written meanwhile) is noticed, whether
// the watch starts after the default delay or at once.
class ClientWatchTest : public HttpServerTest,
                        public ::testing::WithParamInterface<std::chrono::milliseconds> {};

TEST_P(ClientWatchTest, ClientDisconnectWhileHandlerWaitsFiresCallback) {
  Signal gone(io_.get_executor());
  Signal handler_started(io_.get_executor());
  bool handler_saw_gone = false;
  ServerOptions options;
  options.client_watch_delay = GetParam();
  start(
      [&](Request&, ResponseWriter& writer) -> asio::awaitable<void> {
        writer.on_client_gone([&] { gone.release(); });
        handler_started.release();
        co_await gone.acquire();  // e.g. queued behind other requests; nothing is written
        handler_saw_gone = writer.client_gone();
      },
      options);
  run([&]() -> asio::awaitable<void> {
    ClientConnection connection(io_.get_executor());
    CO_ASSERT_TRUE((co_await connection.connect(std::string(kLoopback), port(), kTimeout)).is_ok());
    CO_ASSERT_TRUE((co_await connection.send_request(
                        make_request(bhttp::verb::post, "/queued", "{}"), kTimeout))
                       .is_ok());
    // Let the server read the request and start the handler before leaving.
    co_await handler_started.acquire();
    connection.close();
  });
  EXPECT_TRUE(handler_saw_gone);
  EXPECT_EQ(stats().client_disconnects, 1u);
  EXPECT_EQ(stats().handler_errors, 0u);  // returning without a response to a gone client is fine
}

INSTANTIATE_TEST_SUITE_P(WatchDelays, ClientWatchTest,
                         ::testing::Values(ServerOptions{}.client_watch_delay,
                                           std::chrono::milliseconds(0)));

TEST_F(HttpServerTest, HandlerFailuresGet500AndServerSurvives) {
  start([](Request& request, ResponseWriter& writer) -> asio::awaitable<void> {
    if (request.target() == "/throw") {
      throw std::runtime_error("boom");
    }
    if (request.target() == "/silent") {
      co_return;
    }
    co_await writer.send(200, "text/plain", "fine");
  });
  run([&]() -> asio::awaitable<void> {
    auto thrown = co_await fetch_here(make_request(bhttp::verb::get, "/throw"));
    CO_ASSERT_TRUE(thrown.ok());
    EXPECT_EQ(thrown->status, 500u);
    EXPECT_EQ(error_code_of(thrown->body), 500);
    EXPECT_EQ(find_header(thrown->headers, "connection"), "close");

    // A handler that forgets to answer: 500, and the connection stays usable.
    ClientConnection connection(io_.get_executor());
    CO_ASSERT_TRUE((co_await connection.connect(std::string(kLoopback), port(), kTimeout)).is_ok());
    auto silent = co_await connection.request(make_request(bhttp::verb::get, "/silent"), kTimeout);
    CO_ASSERT_TRUE(silent.ok());
    EXPECT_EQ(silent->status, 500u);
    auto fine = co_await connection.request(make_request(bhttp::verb::get, "/ok"), kTimeout);
    CO_ASSERT_TRUE(fine.ok());
    EXPECT_EQ(fine->body, "fine");
  });
  EXPECT_EQ(stats().handler_errors, 2u);
  EXPECT_EQ(stats().requests, 3u);
}

TEST_F(HttpServerTest, WriterRejectsCallsOutOfOrder) {
  std::vector<bool> results;
  start([&](Request&, ResponseWriter& writer) -> asio::awaitable<void> {
    results.push_back(co_await writer.write_chunk("too early"));
    results.push_back(co_await writer.end_stream());
    results.push_back(co_await writer.send(204, "", "dropped body"));
    results.push_back(co_await writer.send(200, "text/plain", "second answer"));
    results.push_back(co_await writer.begin_stream(200, "text/plain"));
  });
  run([&]() -> asio::awaitable<void> {
    auto response = co_await fetch_here(make_request(bhttp::verb::get, "/"));
    CO_ASSERT_TRUE(response.ok());
    EXPECT_EQ(response->status, 204u);
    EXPECT_EQ(response->body, "");
  });
  EXPECT_EQ(results, (std::vector<bool>{false, false, true, false, false}));
}

TEST_F(HttpServerTest, HeadGetsHeaderOnlyAndHandlerMayCloseTheConnection) {
  start([](Request& request, ResponseWriter& writer) -> asio::awaitable<void> {
    Headers extra_headers;
    if (request.target() == "/last") {
      extra_headers.emplace_back("Connection", "close");
    }
    co_await writer.send(200, "text/plain", "hello", std::move(extra_headers));
  });
  run([&]() -> asio::awaitable<void> {
    ClientConnection connection(io_.get_executor());
    CO_ASSERT_TRUE((co_await connection.connect(std::string(kLoopback), port(), kTimeout)).is_ok());
    auto head = co_await connection.request(make_request(bhttp::verb::head, "/"), kTimeout);
    CO_ASSERT_TRUE(head.ok());
    EXPECT_EQ(head->body, "");
    EXPECT_EQ(find_header(head->headers, "content-length"), "5");
    auto get = co_await connection.request(make_request(bhttp::verb::get, "/"), kTimeout);
    CO_ASSERT_TRUE(get.ok());
    EXPECT_EQ(get->body, "hello");
    auto last = co_await connection.request(make_request(bhttp::verb::get, "/last"), kTimeout);
    CO_ASSERT_TRUE(last.ok());
    EXPECT_EQ(find_header(last->headers, "connection"), "close");
    EXPECT_FALSE(connection.is_open());
    // The server closes too: a raw read to EOF ends.
    const std::string reply =
        co_await raw_exchange(port(), "GET /last HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_TRUE(reply.ends_with("\r\n\r\nhello")) << reply;
  });
}

TEST_F(HttpServerTest, ResponseHeadsAreWrittenByteForByte) {
  start([](Request& request, ResponseWriter& writer) -> asio::awaitable<void> {
    Headers extra_headers;
    extra_headers.emplace_back("X-Padded", " \tvalue\t ");
    // The server frames the body itself: a handler's own framing fields are left out.
    extra_headers.emplace_back("Content-Length", "999");
    extra_headers.emplace_back("transfer-encoding", "gzip");
    if (request.target() == "/stream") {
      co_await writer.begin_stream(201, "text/event-stream", extra_headers);
      co_await writer.write_chunk("data: 1\n\n");
      co_await writer.write_chunk(std::string(300, 'x'));
      co_await writer.end_stream();
    } else if (request.target() == "/empty") {
      co_await writer.send(204, "", "ignored", extra_headers);
    } else {
      co_await writer.send(200, "text/plain", "hello", extra_headers);
    }
  });
  run([&]() -> asio::awaitable<void> {
    EXPECT_EQ(
        co_await raw_exchange(port(), "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        "HTTP/1.1 200 OK\r\nServer: infergate\r\nContent-Type: text/plain\r\n"
        "X-Padded: value\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello");
    EXPECT_EQ(co_await raw_exchange(port(),
                                    "GET /empty HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
              "HTTP/1.1 204 No Content\r\nServer: infergate\r\nX-Padded: value\r\n"
              "Connection: close\r\n\r\n");
    EXPECT_EQ(co_await raw_exchange(port(),
                                    "GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
              "HTTP/1.1 201 Created\r\nServer: infergate\r\nContent-Type: text/event-stream\r\n"
              "X-Padded: value\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
              "9\r\ndata: 1\n\n\r\n12c\r\n" +
                  std::string(300, 'x') + "\r\n0\r\n\r\n");
  });
}

TEST_F(HttpServerTest, ConnectionHeaderFollowsTheKeepAliveRulesOfEachVersion) {
  ServerOptions options;
  options.idle_timeout = std::chrono::milliseconds(1);  // ends the kept-alive connections
  start(
      [](Request& request, ResponseWriter& writer) -> asio::awaitable<void> {
        Headers extra_headers;
        if (request.target() == "/close") extra_headers.emplace_back("connection", "close, X-A");
        co_await writer.send(200, "text/plain", "ok", extra_headers);
      },
      options);
  run([&]() -> asio::awaitable<void> {
    const std::string kept =
        co_await raw_exchange(port(), "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_TRUE(kept.starts_with("HTTP/1.0 200 OK\r\n")) << kept;
    EXPECT_NE(kept.find("\r\nConnection: keep-alive\r\n"), std::string::npos) << kept;
    const std::string plain = co_await raw_exchange(port(), "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_EQ(plain.find("Connection"), std::string::npos) << plain;
    const std::string closed =
        co_await raw_exchange(port(), "GET /close HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_NE(closed.find("\r\nConnection: close, X-A\r\nContent-Length: 2\r\n\r\nok"),
              std::string::npos)
        << closed;
  });
}

TEST_F(HttpServerTest, Http10StreamIsDelimitedByClose) {
  start([](Request&, ResponseWriter& writer) -> asio::awaitable<void> {
    co_await writer.begin_stream(200, "text/plain");
    co_await writer.write_chunk("one,");
    co_await writer.write_chunk("two");
    co_await writer.end_stream();
  });
  run([&]() -> asio::awaitable<void> {
    const std::string reply = co_await raw_exchange(port(), "GET / HTTP/1.0\r\n\r\n");
    EXPECT_TRUE(reply.starts_with("HTTP/1.0 200 OK\r\n")) << reply;
    EXPECT_EQ(reply.find("chunked"), std::string::npos) << reply;
    EXPECT_TRUE(reply.ends_with("\r\n\r\none,two")) << reply;
  });
}

TEST_F(HttpServerTest, StopLetsInFlightStreamFinishAndClosesIdleConnections) {
  Signal resume(io_.get_executor());
  start([&](Request& request, ResponseWriter& writer) -> asio::awaitable<void> {
    if (request.target() != "/stream") {
      co_await writer.send(200, "text/plain", "idle soon");
      co_return;
    }
    co_await writer.begin_stream(200, "text/plain");
    co_await writer.write_chunk("before stop;");
    co_await resume.acquire();
    co_await writer.write_chunk("after stop");
    co_await writer.end_stream();
  });
  run([&]() -> asio::awaitable<void> {
    const std::string host(kLoopback);
    ClientConnection idle(io_.get_executor());
    CO_ASSERT_TRUE((co_await idle.connect(host, port(), kTimeout)).is_ok());
    CO_ASSERT_TRUE((co_await idle.request(make_request(bhttp::verb::get, "/"), kTimeout)).ok());

    ClientConnection streaming(io_.get_executor());
    CO_ASSERT_TRUE((co_await streaming.connect(host, port(), kTimeout)).is_ok());
    CO_ASSERT_TRUE(
        (co_await streaming.send_request(make_request(bhttp::verb::get, "/stream"), kTimeout))
            .is_ok());
    CO_ASSERT_TRUE((co_await streaming.read_response_head(kTimeout)).ok());
    std::string body;
    CO_ASSERT_TRUE((co_await streaming.read_body_some(body, kTimeout)).ok());

    server_->stop();
    co_await asio::post(io_, asio::use_awaitable);  // let the posted closes run

    auto refused = co_await fetch_here(make_request(bhttp::verb::get, "/"));
    CO_ASSERT_TRUE(!refused.ok());
    EXPECT_EQ(refused.status().http_status(), 503) << refused.status().message();

    auto on_idle = co_await idle.request(make_request(bhttp::verb::get, "/"), kTimeout);
    EXPECT_FALSE(on_idle.ok());

    resume.release();
    while (true) {
      auto read = co_await streaming.read_body_some(body, kTimeout);
      CO_ASSERT_TRUE(read.ok());
      if (*read == 0) {
        break;
      }
    }
    EXPECT_EQ(body, "before stop;after stop");
  });
  EXPECT_EQ(stats().requests, 2u);
}

TEST_F(HttpServerTest, ServesCorrectlyWithSeveralThreadsOnOneIoContext) {
  constexpr int kClients = 4;
  constexpr int kRequestsPerClient = 25;
  start([](Request& request, ResponseWriter& writer) -> asio::awaitable<void> {
    if (request.target() == "/stream") {
      co_await writer.begin_stream(200, "text/plain");
      for (int index = 0; index < 5; ++index) co_await writer.write_chunk(std::to_string(index));
      co_await writer.end_stream();
      co_return;
    }
    co_await writer.send(200, "text/plain", request.body());
  });
  std::atomic<int> successes{0};
  std::atomic<int> clients_left{kClients};
  for (int client = 0; client < kClients; ++client) {
    asio::co_spawn(
        asio::make_strand(io_),
        [&, client]() -> asio::awaitable<void> {
          ClientConnection connection(co_await asio::this_coro::executor);
          if ((co_await connection.connect(std::string(kLoopback), port(), kTimeout)).is_ok()) {
            for (int index = 0; index < kRequestsPerClient; ++index) {
              const std::string body = std::to_string(client) + ":" + std::to_string(index);
              const bool stream = index % 5 == 0;
              auto response = co_await connection.request(
                  make_request(bhttp::verb::post, stream ? "/stream" : "/", body), kTimeout);
              if (response.ok() && response->body == (stream ? "01234" : body)) {
                ++successes;
              }
            }
          }
          connection.close();
          if (--clients_left == 0) {
            server_->stop();
          }
        },
        asio::detached);
  }
  std::thread second_thread([&] { io_.run_for(std::chrono::seconds(10)); });
  io_.run_for(std::chrono::seconds(10));
  second_thread.join();
  EXPECT_TRUE(io_.stopped());
  EXPECT_EQ(successes, kClients * kRequestsPerClient);
  EXPECT_EQ(stats().connections_accepted, static_cast<std::uint64_t>(kClients));
}

TEST(HttpServerStartupTest, BindFailureThrowsWithAddress) {
  asio::io_context io;
  Server first(io, {}, echo);
  ServerOptions options;
  options.port = first.port();
  try {
    Server second(io, options, echo);
    FAIL() << "second bind to the same port succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(first.port())),
              std::string::npos)
        << e.what();
  }
}

// One io_context per core: acceptors on the same port from two io_contexts, each run by its own
// thread. The kernel spreads the connections over both, and every request of a connection is
// handled on the io_context that accepted it.
TEST(HttpServerSharedPortTest, SpreadsConnectionsAndKeepsEachOnItsIoContext) {
  constexpr int kConnections = 32;  // all on one acceptor by chance: 2^-31
  asio::io_context first_io(1);
  asio::io_context second_io(1);
  auto first_work = asio::make_work_guard(first_io);
  auto second_work = asio::make_work_guard(second_io);
  Server server({&first_io, &second_io}, {},
                [&](Request&, ResponseWriter& writer) -> asio::awaitable<void> {
                  const bool on_first = first_io.get_executor().running_in_this_thread();
                  const bool on_second = second_io.get_executor().running_in_this_thread();
                  co_await writer.send(
                      200, "text/plain",
                      on_first != on_second ? (on_first ? "first" : "second") : "neither or both");
                });
  server.start();
  std::thread first_thread([&] { first_io.run(); });
  std::thread second_thread([&] { second_io.run(); });

  std::vector<std::string> served_by;
  asio::io_context client_io;
  testing::run_coroutine(client_io, [&]() -> asio::awaitable<void> {
    for (int index = 0; index < kConnections; ++index) {
      ClientConnection connection(client_io.get_executor());
      CO_ASSERT_TRUE(
          (co_await connection.connect(std::string(kLoopback), server.port(), kTimeout)).is_ok());
      std::string first_answer;
      for (int request = 0; request < 3; ++request) {
        auto response = co_await connection.request(make_request(bhttp::verb::get, "/"), kTimeout);
        CO_ASSERT_TRUE(response.ok());
        if (request == 0) first_answer = response->body;
        EXPECT_EQ(response->body, first_answer) << "connection " << index << " changed threads";
      }
      served_by.push_back(first_answer);
    }
  });
  server.stop();
  first_work.reset();
  second_work.reset();
  first_thread.join();
  second_thread.join();

  ASSERT_EQ(served_by.size(), static_cast<std::size_t>(kConnections));
  const auto on_first = std::count(served_by.begin(), served_by.end(), "first");
  const auto on_second = std::count(served_by.begin(), served_by.end(), "second");
  EXPECT_EQ(on_first + on_second, kConnections);
  EXPECT_GT(on_first, 0);
  EXPECT_GT(on_second, 0);
  EXPECT_EQ(server.stats().connections_accepted, static_cast<std::uint64_t>(kConnections));
  EXPECT_EQ(server.stats().requests, static_cast<std::uint64_t>(3 * kConnections));
}

// SO_REUSEPORT would let the acceptors share a port with another process's; the port is checked
// first, so a port in use fails to start with a message saying so.
TEST(HttpServerSharedPortTest, PortInUseElsewhereFailsClearly) {
  asio::io_context io;
  asio::io_context other_io;
  auto expect_port_in_use = [&](std::uint16_t port) {
    ServerOptions options;
    options.port = port;
    try {
      Server second({&io, &other_io}, options, echo);
      ADD_FAILURE() << "listening on port " << port << " again succeeded";
    } catch (const std::runtime_error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("cannot listen on 127.0.0.1:" + std::to_string(port)),
                std::string::npos)
          << message;
      EXPECT_NE(message.find("another process is listening on the port"), std::string::npos)
          << message;
    }
  };
  Server plain(io, {}, echo);  // a single acceptor, without SO_REUSEPORT
  expect_port_in_use(plain.port());
  Server shared({&io, &other_io}, {}, echo);  // acceptors with SO_REUSEPORT
  expect_port_in_use(shared.port());
}

}  // namespace
}  // namespace infergate::http
