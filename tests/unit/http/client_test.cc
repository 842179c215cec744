#include "http/client.h"

#include <gtest/gtest.h>

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "http/server.h"
#include "http_test_util.h"

namespace infergate::http {
namespace {

using testing::kAsTuple;
using testing::kTimeout;
using testing::Signal;
using testing::tcp;
namespace bhttp = boost::beast::http;

const std::string kLoopback = "127.0.0.1";

// Reads from `socket` until a whole request head has arrived; false on a read error.
asio::awaitable<bool> read_request_head(tcp::socket& socket) {
  std::string received;
  char chunk[1024];
  while (received.find("\r\n\r\n") == std::string::npos) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), kAsTuple);
    if (ec) co_return false;
    received.append(chunk, n);
  }
  co_return true;
}

// A scripted server: accepts one connection, waits for a request head, writes `reply` verbatim,
// then closes (when `close_after`) or waits for the client to close.
class ScriptedServer {
 public:
  explicit ScriptedServer(asio::io_context& io)
      : acceptor_(io, {asio::ip::make_address(kLoopback), 0}) {}

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

  asio::awaitable<void> serve_once(std::string reply, bool close_after) {
    auto [accept_ec, socket] = co_await acceptor_.async_accept(kAsTuple);
    if (accept_ec) {
      co_return;
    }
    if (!co_await read_request_head(socket)) {
      co_return;
    }
    co_await asio::async_write(socket, asio::buffer(reply), kAsTuple);
    if (!close_after) {
      char chunk[1024];
      while (true) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), kAsTuple);
        if (ec) {
          break;
        }
      }
    }
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
  }

 private:
  tcp::acceptor acceptor_;
};

// Runs `server_side` and `client_side` concurrently on `io` until both are done.
void run_both(asio::io_context& io, asio::awaitable<void> server_side,
              std::function<asio::awaitable<void>()> client_side) {
  asio::co_spawn(io, std::move(server_side), [](std::exception_ptr error) {
    if (error) {
      std::rethrow_exception(error);
    }
  });
  testing::run_coroutine(io, std::move(client_side));
}

TEST(HttpClientTest, ConnectRefusedIs503NamingThePeer) {
  asio::io_context io;
  std::uint16_t closed_port = 0;
  {
    tcp::acceptor probe(io, {asio::ip::make_address(kLoopback), 0});
    closed_port = probe.local_endpoint().port();
  }
  testing::run_coroutine(io, [&]() -> asio::awaitable<void> {
    auto response = co_await fetch(io.get_executor(), kLoopback, closed_port,
                                   make_request(bhttp::verb::get, "/"), kTimeout);
    CO_ASSERT_TRUE(!response.ok());
    EXPECT_EQ(response.status().http_status(), 503);
    EXPECT_EQ(response.status().message(),
              "connect to 127.0.0.1:" + std::to_string(closed_port) + ": Connection refused");
  });
}

TEST(HttpClientTest, SlowResponseIs504AndClosesTheConnection) {
  asio::io_context io;
  Signal gone(io.get_executor());
  Server server(io, {}, [&](Request&, ResponseWriter& writer) -> asio::awaitable<void> {
    writer.on_client_gone([&] { gone.release(); });
    co_await gone.acquire();  // never answers
  });
  server.start();
  testing::run_coroutine(
      io,
      [&]() -> asio::awaitable<void> {
        ClientConnection connection(io.get_executor());
        CO_ASSERT_TRUE((co_await connection.connect(kLoopback, server.port(), kTimeout)).is_ok());
        auto response = co_await connection.request(make_request(bhttp::verb::get, "/slow"),
                                                    std::chrono::milliseconds(20));
        CO_ASSERT_TRUE(!response.ok());
        EXPECT_EQ(response.status().http_status(), 504);
        EXPECT_NE(response.status().message().find("timed out after"), std::string::npos)
            << response.status().message();
        EXPECT_FALSE(connection.is_open());
      },
      [&] { server.stop(); });
  EXPECT_EQ(server.stats().client_disconnects, 1u);
}

TEST(HttpClientTest, MalformedResponseIs502) {
  asio::io_context io;
  ScriptedServer scripted(io);
  run_both(io, scripted.serve_once("HTTP/1.1 abc nonsense\r\n\r\n", true),
           [&]() -> asio::awaitable<void> {
             auto response = co_await fetch(io.get_executor(), kLoopback, scripted.port(),
                                            make_request(bhttp::verb::get, "/"), kTimeout);
             CO_ASSERT_TRUE(!response.ok());
             EXPECT_EQ(response.status().http_status(), 502);
             EXPECT_NE(response.status().message().find("malformed response"), std::string::npos)
                 << response.status().message();
           });
}

TEST(HttpClientTest, PeerClosingBeforeResponseIs502) {
  asio::io_context io;
  ScriptedServer scripted(io);
  run_both(io, scripted.serve_once("", true), [&]() -> asio::awaitable<void> {
    auto response = co_await fetch(io.get_executor(), kLoopback, scripted.port(),
                                   make_request(bhttp::verb::get, "/"), kTimeout);
    CO_ASSERT_TRUE(!response.ok());
    EXPECT_EQ(response.status().http_status(), 502);
    EXPECT_NE(response.status().message().find("connection closed by peer"), std::string::npos)
        << response.status().message();
  });
}

TEST(HttpClientTest, SkipsInterimResponses) {
  asio::io_context io;
  ScriptedServer scripted(io);
  run_both(io,
           scripted.serve_once(
               "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
               false),
           [&]() -> asio::awaitable<void> {
             auto response = co_await fetch(io.get_executor(), kLoopback, scripted.port(),
                                            make_request(bhttp::verb::post, "/", "x"), kTimeout);
             CO_ASSERT_TRUE(response.ok());
             EXPECT_EQ(response->status, 201u);
             EXPECT_EQ(response->body, "ok");
           });
}

TEST(HttpClientTest, HeadResponseHasNoBodyAndConnectionStaysUsable) {
  asio::io_context io;
  ScriptedServer scripted(io);
  run_both(
      io,
      scripted.serve_once("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
                          "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                          false),
      [&]() -> asio::awaitable<void> {
        ClientConnection connection(io.get_executor());
        CO_ASSERT_TRUE((co_await connection.connect(kLoopback, scripted.port(), kTimeout)).is_ok());
        auto head = co_await connection.request(make_request(bhttp::verb::head, "/"), kTimeout);
        CO_ASSERT_TRUE(head.ok());
        EXPECT_EQ(head->body, "");
        EXPECT_EQ(find_header(head->headers, "content-length"), "5");
        auto get = co_await connection.request(make_request(bhttp::verb::get, "/"), kTimeout);
        CO_ASSERT_TRUE(get.ok());
        EXPECT_EQ(get->body, "hello");
      });
}

TEST(HttpClientTest, CloseDelimitedBodyEndsAtEof) {
  asio::io_context io;
  ScriptedServer scripted(io);
  run_both(
      io, scripted.serve_once("HTTP/1.1 200 OK\r\n\r\nuntil the end", true),
      [&]() -> asio::awaitable<void> {
        ClientConnection connection(io.get_executor());
        CO_ASSERT_TRUE((co_await connection.connect(kLoopback, scripted.port(), kTimeout)).is_ok());
        auto response = co_await connection.request(make_request(bhttp::verb::get, "/"), kTimeout);
        CO_ASSERT_TRUE(response.ok());
        EXPECT_EQ(response->body, "until the end");
        EXPECT_FALSE(connection.is_open());
        // Reading past the end keeps reporting the end.
        std::string more;
        auto again = co_await connection.read_body_some(more, kTimeout);
        CO_ASSERT_TRUE(again.ok());
        EXPECT_EQ(*again, 0u);
      });
}

// The head as Beast's message held it: fields of one name together (after the first of that
// name), values trimmed, chunked from the first Transfer-Encoding, and keep-alive from the first
// Connection field when the body ends with the connection.
struct HeadCase {
  std::string description;
  std::string reply;
  Headers headers;
  bool chunked;
  bool keep_alive;
  std::optional<std::uint64_t> content_length;
  std::string body;
};

TEST(HttpClientTest, ResponseHeadKeepsBeastsFieldOrderAndFraming) {
  const std::vector<HeadCase> cases = {
      {"repeated fields grouped, values trimmed",
       "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-A:  1 \r\nset-cookie: b=2\r\nContent-Length: 2\r\n"
       "SET-COOKIE:\tc=3\r\nX-B: 2\r\n\r\nok",
       {{"Set-Cookie", "a=1"},
        {"set-cookie", "b=2"},
        {"SET-COOKIE", "c=3"},
        {"X-A", "1"},
        {"Content-Length", "2"},
        {"X-B", "2"}},
       false,
       true,
       2,
       "ok"},
      {"unknown names grouped among many known ones",
       "HTTP/1.1 200 OK\r\nX-Trace: 1\r\nDate: d\r\nServer: s\r\nVary: a\r\nETag: e\r\n"
       "x-trace: 2\r\nAge: 3\r\nVia: v\r\nvary: b\r\nX-Other: o\r\nContent-Length: 0\r\n"
       "X-TRACE: 3\r\n\r\n",
       {{"X-Trace", "1"},
        {"x-trace", "2"},
        {"X-TRACE", "3"},
        {"Date", "d"},
        {"Server", "s"},
        {"Vary", "a"},
        {"vary", "b"},
        {"ETag", "e"},
        {"Age", "3"},
        {"Via", "v"},
        {"X-Other", "o"},
        {"Content-Length", "0"}},
       false,
       true,
       0,
       ""},
      {"chunked body",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
       {{"Transfer-Encoding", "gzip, chunked"}},
       true,
       true,
       std::nullopt,
       "ok"},
      {"connection close",
       "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
       {{"Connection", "close"}, {"Content-Length", "2"}},
       false,
       false,
       2,
       "ok"},
      {"a body delimited by the close; the header says keep-alive",
       "HTTP/1.0 200 OK\r\nX-A: 1\r\nConnection: keep-alive\r\nconnection: close\r\n\r\nuntil eof",
       {{"X-A", "1"}, {"Connection", "keep-alive"}, {"connection", "close"}},
       false,
       true,
       std::nullopt,
       "until eof"},
      {"a body delimited by the close, HTTP/1.1 without Connection",
       "HTTP/1.1 200 OK\r\n\r\nuntil eof",
       {},
       false,
       true,
       std::nullopt,
       "until eof"},
  };
  for (const HeadCase& test_case : cases) {
    SCOPED_TRACE(test_case.description);
    asio::io_context io;
    ScriptedServer scripted(io);
    run_both(io, scripted.serve_once(test_case.reply, true), [&]() -> asio::awaitable<void> {
      ClientConnection connection(io.get_executor());
      CO_ASSERT_TRUE((co_await connection.connect(kLoopback, scripted.port(), kTimeout)).is_ok());
      CO_ASSERT_TRUE(
          (co_await connection.send_request(make_request(bhttp::verb::get, "/"), kTimeout))
              .is_ok());
      auto head = co_await connection.read_response_head(kTimeout);
      CO_ASSERT_TRUE(head.ok());
      EXPECT_EQ(head->status, 200u);
      EXPECT_EQ(head->headers, test_case.headers);
      EXPECT_EQ(head->chunked, test_case.chunked);
      EXPECT_EQ(head->keep_alive, test_case.keep_alive);
      EXPECT_EQ(head->content_length, test_case.content_length);
      std::string body;
      while (true) {
        auto read = co_await connection.read_body_some(body, kTimeout);
        CO_ASSERT_TRUE(read.ok());
        if (*read == 0) break;
      }
      EXPECT_EQ(body, test_case.body);
    });
  }
}

TEST(HttpClientTest, CallsOutOfOrderAre500) {
  asio::io_context io;
  testing::run_coroutine(io, [&]() -> asio::awaitable<void> {
    ClientConnection connection(io.get_executor());
    auto sent = co_await connection.send_request(make_request(bhttp::verb::get, "/"), kTimeout);
    EXPECT_EQ(sent.http_status(), 500);
    auto head = co_await connection.read_response_head(kTimeout);
    CO_ASSERT_TRUE(!head.ok());
    EXPECT_EQ(head.status().http_status(), 500);
    std::string body;
    auto read = co_await connection.read_body_some(body, kTimeout);
    CO_ASSERT_TRUE(!read.ok());
    EXPECT_EQ(read.status().http_status(), 500);
  });
}

TEST(HttpClientTest, FetchBlockingSetsHostAndContentLength) {
  asio::io_context server_io;
  Server server(server_io, {},
                [](Request& request, ResponseWriter& writer) -> asio::awaitable<void> {
                  co_await writer.send(200, "text/plain",
                                       std::string(request[bhttp::field::host]) + " " +
                                           std::string(request[bhttp::field::content_length]) +
                                           " " + std::string(request[bhttp::field::content_type]));
                });
  server.start();
  std::thread server_thread([&] { server_io.run(); });

  auto response = fetch_blocking(kLoopback, server.port(),
                                 make_request(bhttp::verb::post, "/", R"({"a":1})"), kTimeout);
  server.stop();
  server_thread.join();
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 200u);
  EXPECT_EQ(response->body, "127.0.0.1:" + std::to_string(server.port()) + " 7 application/json");
}

TEST(HttpClientTest, SendsTheRequestAsIsWithHostAndContentLength) {
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::make_address(kLoopback), 0});
  const std::uint16_t port = acceptor.local_endpoint().port();
  std::string received;
  auto server_side = [&]() -> asio::awaitable<void> {
    auto [accept_ec, socket] = co_await acceptor.async_accept(kAsTuple);
    if (accept_ec) co_return;
    char chunk[1024];
    while (!received.ends_with("abc")) {
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), kAsTuple);
      if (ec) co_return;
      received.append(chunk, n);
    }
    const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    co_await asio::async_write(socket, asio::buffer(reply), kAsTuple);
  };
  Request request = make_request(bhttp::verb::post, "/x?y=1", "abc");
  request.insert("X-Keep", "a");
  request.set(bhttp::field::content_length, "99");  // stale: the body's size is sent instead
  run_both(io, server_side(), [&]() -> asio::awaitable<void> {
    ClientConnection connection(io.get_executor());
    CO_ASSERT_TRUE((co_await connection.connect(kLoopback, port, kTimeout)).is_ok());
    CO_ASSERT_TRUE((co_await connection.send_request(request, kTimeout)).is_ok());
    auto head = co_await connection.read_response_head(kTimeout);
    CO_ASSERT_TRUE(head.ok());
    EXPECT_EQ(head->status, 200u);
  });
  EXPECT_EQ(received,
            "POST /x?y=1 HTTP/1.1\r\nContent-Type: application/json\r\nX-Keep: a\r\n"
            "Host: 127.0.0.1:" +
                std::to_string(port) + "\r\nContent-Length: 3\r\n\r\nabc");
  // The caller's request is left as it was.
  EXPECT_EQ(request[bhttp::field::content_length], "99");
  EXPECT_EQ(request.find(bhttp::field::host), request.end());
}

TEST(HttpClientTest, MakeRequestAndFindHeader) {
  const Request get = make_request(bhttp::verb::get, "/v1/models");
  EXPECT_EQ(get.target(), "/v1/models");
  EXPECT_EQ(get.version(), 11u);
  EXPECT_EQ(get.find(bhttp::field::content_type), get.end());

  const Headers headers{{"Content-Type", "a"}, {"X-Thing", "b"}, {"x-thing", "c"}};
  EXPECT_EQ(find_header(headers, "x-THING"), "b");
  EXPECT_EQ(find_header(headers, "content-type"), "a");
  EXPECT_EQ(find_header(headers, "missing"), std::nullopt);
}

// Connects `connection` to `acceptor`; the server's side of the connection, or nullopt.
asio::awaitable<std::optional<tcp::socket>> connect_to(tcp::acceptor& acceptor,
                                                       ClientConnection& connection) {
  if (!(co_await connection.connect(kLoopback, acceptor.local_endpoint().port(), kTimeout))
           .is_ok()) {
    co_return std::nullopt;
  }
  auto [ec, socket] = co_await acceptor.async_accept(kAsTuple);
  if (ec) co_return std::nullopt;
  co_return std::move(socket);
}

// Body reads hand over the bytes that came with the head, and go on where a chunk's framing was
// cut between two reads; the end of the body is reported once it is here.
TEST(HttpClientTest, BodyReadsFollowChunkFramingCutBetweenReads) {
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::make_address(kLoopback), 0});
  testing::run_coroutine(io, [&]() -> asio::awaitable<void> {
    ClientConnection connection(io.get_executor());
    std::optional<tcp::socket> accepted = co_await connect_to(acceptor, connection);
    CO_ASSERT_TRUE(accepted.has_value());
    tcp::socket& server_side = *accepted;
    // Sends a request, answers it with `reply` from the server side and reads the head.
    auto exchange = [&](std::string reply) -> asio::awaitable<bool> {
      if (!(co_await connection.send_request(make_request(bhttp::verb::get, "/"), kTimeout))
               .is_ok()) {
        co_return false;
      }
      if (!co_await read_request_head(server_side)) co_return false;
      co_await asio::async_write(server_side, asio::buffer(reply), asio::use_awaitable);
      co_return (co_await connection.read_response_head(kTimeout)).ok();
    };
    std::string body;

    CO_ASSERT_TRUE(co_await exchange("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    auto whole = co_await connection.read_body_some(body, kTimeout);
    CO_ASSERT_TRUE(whole.ok());
    EXPECT_EQ(*whole, 2u);
    EXPECT_EQ(body, "ok");
    auto end = co_await connection.read_body_some(body, kTimeout);
    CO_ASSERT_TRUE(end.ok());
    EXPECT_EQ(*end, 0u);

    CO_ASSERT_TRUE(
        co_await exchange("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n"));
    body.clear();
    auto first = co_await connection.read_body_some(body, kTimeout);
    CO_ASSERT_TRUE(first.ok());
    EXPECT_EQ(*first, 2u);
    EXPECT_EQ(body, "ok");
    // The next chunk's size line is here, its data not yet: the read waits for the server.
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await asio::post(io, asio::use_awaitable);  // the read is waiting
          co_await asio::async_write(server_side, asio::buffer(std::string("abc\r\n0\r\n\r\n")),
                                     asio::use_awaitable);
        },
        asio::detached);
    body.clear();
    auto waited = co_await connection.read_body_some(body, kTimeout);
    CO_ASSERT_TRUE(waited.ok());
    EXPECT_EQ(*waited, 3u);
    EXPECT_EQ(body, "abc");
    auto last = co_await connection.read_body_some(body, kTimeout);
    CO_ASSERT_TRUE(last.ok());
    EXPECT_EQ(*last, 0u);
    EXPECT_TRUE(connection.is_open());
  });
}

// close() from another coroutine aborts a pending read, even when the read's data has already
// arrived and its completion is queued behind the closer's: that completion must still find the
// connection's parser and buffer intact. The closer is woken through a second socket written just
// before the body, so that one reactor pass queues the closer first and the read second.
TEST(HttpClientTest, CloseWhileAReadCompletionIsQueuedLeavesItsStateIntact) {
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::make_address(kLoopback), 0});
  testing::run_coroutine(io, [&]() -> asio::awaitable<void> {
    ClientConnection connection(io.get_executor());
    std::optional<tcp::socket> accepted = co_await connect_to(acceptor, connection);
    CO_ASSERT_TRUE(accepted.has_value());
    tcp::socket& server_side = *accepted;
    tcp::socket trigger(io);
    co_await trigger.async_connect(acceptor.local_endpoint(), asio::use_awaitable);
    auto [trigger_ec, trigger_server] = co_await acceptor.async_accept(kAsTuple);
    CO_ASSERT_TRUE(!trigger_ec);

    CO_ASSERT_TRUE(
        (co_await connection.send_request(make_request(bhttp::verb::get, "/"), kTimeout)).is_ok());
    CO_ASSERT_TRUE(co_await read_request_head(server_side));
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    co_await asio::async_write(server_side, asio::buffer(head), asio::use_awaitable);
    auto response_head = co_await connection.read_response_head(kTimeout);
    CO_ASSERT_TRUE(response_head.ok());

    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          char byte;
          co_await trigger.async_read_some(asio::buffer(&byte, 1), kAsTuple);
          connection.close();
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await asio::post(io, asio::use_awaitable);  // the closer and the read are waiting
          boost::system::error_code ignored;
          asio::write(trigger_server, asio::buffer("x", 1), ignored);
          asio::write(server_side, asio::buffer("0123456789", 10), ignored);
        },
        asio::detached);
    std::string body;
    auto read = co_await connection.read_body_some(body, kTimeout);
    if (read.ok()) {
      EXPECT_EQ(body, std::string("0123456789").substr(0, *read));
    }
    EXPECT_FALSE(connection.is_open());
    auto after = co_await connection.read_body_some(body, kTimeout);
    EXPECT_TRUE(!after.ok() || *after == 0);
  });
}

}  // namespace
}  // namespace infergate::http
