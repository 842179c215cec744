// The upstream pool over loopback, against a scripted raw-TCP server whose misbehaviour is exact:
// keep-alive reuse, the one retry after a pooled connection the server closed, connect refusal,
// first-byte timeout (not retried), cancellation, and the idle bound.
#include "gateway/upstream_pool.h"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/verb.hpp>

namespace infergate::gateway {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
constexpr ExchangeTimeouts kTimeouts{.connect = std::chrono::milliseconds(2000),
                                     .first_byte = std::chrono::milliseconds(2000)};

// What the scripted server does with each request it reads.
enum class Behaviour {
  kAnswerKeepAlive,  // answer, keep the connection
  kAnswerThenClose,  // answer without announcing it, then close (a server's idle close)
  kSilent,           // read the request and never answer
};

class ScriptedServer {
 public:
  ScriptedServer(asio::io_context& io, Behaviour behaviour)
      : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        behaviour_(behaviour) {
    asio::co_spawn(io, accept_loop(), asio::detached);
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int accepted() const { return accepted_; }
  int requests() const { return requests_; }
  void close() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    for (auto& socket : sockets_) socket->close(ignored);
  }

 private:
  asio::awaitable<void> accept_loop() {
    while (true) {
      auto [ec, socket] = co_await acceptor_.async_accept(kAsTuple);
      if (ec) co_return;
      ++accepted_;
      auto shared = std::make_shared<tcp::socket>(std::move(socket));
      sockets_.push_back(shared);
      asio::co_spawn(acceptor_.get_executor(), serve(shared), asio::detached);
    }
  }

  asio::awaitable<void> serve(std::shared_ptr<tcp::socket> socket) {
    asio::streambuf buffer;
    while (true) {
      // Requests here carry no body (GET): the header's end is the request's end.
      auto [ec, bytes] = co_await asio::async_read_until(*socket, buffer, "\r\n\r\n", kAsTuple);
      if (ec) co_return;
      buffer.consume(bytes);
      ++requests_;
      if (behaviour_ == Behaviour::kSilent) continue;
      const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
      auto [write_ec, written] =
          co_await asio::async_write(*socket, asio::buffer(response), kAsTuple);
      if (write_ec) co_return;
      if (behaviour_ == Behaviour::kAnswerThenClose) {
        boost::system::error_code ignored;
        socket->close(ignored);
        co_return;
      }
    }
  }

  tcp::acceptor acceptor_;
  Behaviour behaviour_;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  int accepted_ = 0;
  int requests_ = 0;
};

class UpstreamPoolTest : public ::testing::Test {
 protected:
  // Runs `body` as a coroutine on io_ until it finishes.
  template <typename Body>
  void run(Body body) {
    bool done = false;
    asio::co_spawn(
        io_,
        [&]() -> asio::awaitable<void> {
          co_await body();
          done = true;
        },
        asio::detached);
    while (!done && io_.run_one_for(std::chrono::seconds(10)) > 0) {
    }
    ASSERT_TRUE(done) << "the test coroutine did not finish";
  }

  // One exchange, its body read to the end, its connection released; the body, or the failure.
  asio::awaitable<std::variant<std::string, ExchangeFailure>> exchange_once(
      const UpstreamEndpoint& endpoint, ExchangeTimeouts timeouts = kTimeouts) {
    UpstreamCancel cancel;
    auto outcome = co_await pool_.start_exchange(0, endpoint, request_, timeouts, cancel);
    if (auto* failure = std::get_if<ExchangeFailure>(&outcome)) co_return std::move(*failure);
    UpstreamExchange& exchange = std::get<UpstreamExchange>(outcome);
    std::string body;
    while (true) {
      auto read = co_await exchange.connection->read_body_some(body, std::chrono::seconds(2));
      if (!read.ok()) co_return ExchangeFailure{AttemptFailure::kReset, read.status()};
      if (*read == 0) break;
    }
    pool_.release(0, endpoint.host_port, std::move(exchange.connection));
    co_return body;
  }

  static UpstreamEndpoint endpoint_at(std::uint16_t port) {
    return *parse_upstream_endpoint("127.0.0.1:" + std::to_string(port));
  }

  asio::io_context io_;
  UpstreamPool pool_{io_.get_executor(), 1, {.max_idle_per_endpoint = 2}};
  http::Request request_ = http::make_request(boost::beast::http::verb::get, "/v1/models");
};

TEST_F(UpstreamPoolTest, SequentialExchangesReuseOneConnection) {
  ScriptedServer server(io_, Behaviour::kAnswerKeepAlive);
  const UpstreamEndpoint endpoint = endpoint_at(server.port());
  run([&]() -> asio::awaitable<void> {
    for (int round = 0; round < 3; ++round) {
      auto result = co_await exchange_once(endpoint);
      EXPECT_EQ(std::get<std::string>(result), "ok");
    }
  });
  EXPECT_EQ(server.accepted(), 1);
  EXPECT_EQ(server.requests(), 3);
  EXPECT_EQ(pool_.stats().opened.load(), 1u);
  EXPECT_EQ(pool_.stats().reused.load(), 2u);
  EXPECT_EQ(pool_.idle(0), 1u);
}

TEST_F(UpstreamPoolTest, PooledConnectionClosedByTheServerIsRetriedOnceOnAFreshOne) {
  ScriptedServer server(io_, Behaviour::kAnswerThenClose);
  const UpstreamEndpoint endpoint = endpoint_at(server.port());
  run([&]() -> asio::awaitable<void> {
    auto first = co_await exchange_once(endpoint);
    EXPECT_EQ(std::get<std::string>(first), "ok");
    // The pool kept the connection (the server did not announce its close)...
    EXPECT_EQ(pool_.idle(0), 1u);
    // ...so the next exchange finds it dead and starts over on a fresh one, transparently.
    auto second = co_await exchange_once(endpoint);
    EXPECT_EQ(std::get<std::string>(second), "ok");
  });
  EXPECT_EQ(pool_.stats().stale_retries.load(), 1u);
  EXPECT_EQ(pool_.stats().opened.load(), 2u);
  EXPECT_EQ(server.accepted(), 2);
  EXPECT_EQ(server.requests(), 2);  // the dead connection never delivered the second request
}

TEST_F(UpstreamPoolTest, RefusedConnectIsAConnectFailure) {
  std::uint16_t port = 0;
  {
    tcp::acceptor probe(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = probe.local_endpoint().port();
  }  // closed: connecting is refused
  run([&]() -> asio::awaitable<void> {
    auto result = co_await exchange_once(endpoint_at(port));
    const auto& failure = std::get<ExchangeFailure>(result);
    EXPECT_EQ(failure.kind, AttemptFailure::kConnectRefused);
    EXPECT_EQ(failure.status.http_status(), 503);
  });
}

TEST_F(UpstreamPoolTest, NoHeadWithinTheFirstByteTimeoutIsNotRetried) {
  ScriptedServer server(io_, Behaviour::kSilent);
  run([&]() -> asio::awaitable<void> {
    auto result = co_await exchange_once(
        endpoint_at(server.port()),
        {.connect = std::chrono::milliseconds(2000), .first_byte = std::chrono::milliseconds(100)});
    const auto& failure = std::get<ExchangeFailure>(result);
    EXPECT_EQ(failure.kind, AttemptFailure::kFirstByteTimeout);
    EXPECT_EQ(failure.status.http_status(), 504);
  });
  EXPECT_EQ(server.accepted(), 1);  // one connection, no second try
  EXPECT_EQ(server.requests(), 1);
}

TEST_F(UpstreamPoolTest, CancelEndsAPendingExchangeAtOnce) {
  ScriptedServer server(io_, Behaviour::kSilent);
  const UpstreamEndpoint endpoint = endpoint_at(server.port());
  UpstreamCancel cancel;
  const auto started = std::chrono::steady_clock::now();
  run([&]() -> asio::awaitable<void> {
    // Cancel once the server has the request (the exchange then waits for the head).
    asio::co_spawn(
        io_,
        [&]() -> asio::awaitable<void> {
          asio::steady_timer poll(io_);
          while (server.requests() == 0) {
            poll.expires_after(std::chrono::milliseconds(1));
            co_await poll.async_wait(kAsTuple);
          }
          cancel.cancel();
        },
        asio::detached);
    auto outcome = co_await pool_.start_exchange(
        0, endpoint, request_,
        {.connect = std::chrono::milliseconds(2000), .first_byte = std::chrono::seconds(30)},
        cancel);
    EXPECT_TRUE(std::holds_alternative<ExchangeFailure>(outcome));
  });
  EXPECT_TRUE(cancel.cancelled());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
}

TEST_F(UpstreamPoolTest, IdleConnectionsAreBoundedPerEndpoint) {
  ScriptedServer server(io_, Behaviour::kAnswerKeepAlive);
  const UpstreamEndpoint endpoint = endpoint_at(server.port());
  run([&]() -> asio::awaitable<void> {
    // Three exchanges at once need three connections; only two stay idle afterwards.
    std::vector<std::unique_ptr<http::ClientConnection>> held;
    for (int round = 0; round < 3; ++round) {
      UpstreamCancel cancel;
      auto outcome = co_await pool_.start_exchange(0, endpoint, request_, kTimeouts, cancel);
      auto& exchange = std::get<UpstreamExchange>(outcome);
      std::string body;
      while (true) {
        auto read = co_await exchange.connection->read_body_some(body, std::chrono::seconds(2));
        if (!read.ok() || *read == 0) break;
      }
      held.push_back(std::move(exchange.connection));
    }
    for (auto& connection : held) pool_.release(0, endpoint.host_port, std::move(connection));
  });
  EXPECT_EQ(pool_.stats().opened.load(), 3u);
  EXPECT_EQ(pool_.idle(0), 2u);
  EXPECT_EQ(pool_.stats().discarded.load(), 1u);
  pool_.shutdown();
  EXPECT_EQ(pool_.idle(0), 0u);
}

}  // namespace
}  // namespace infergate::gateway
