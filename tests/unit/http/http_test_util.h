#pragma once

// Helpers for HTTP tests that run servers and clients as coroutines on one io_context.

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <string>

// gtest's ASSERT_* macros `return`, which a coroutine cannot; this one `co_return`s.
#define CO_ASSERT_TRUE(condition)                                \
  if (!(condition)) {                                            \
    ADD_FAILURE() << "Expected true, was false: " << #condition; \
    co_return;                                                   \
  }

namespace infergate::http::testing {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

inline constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
inline constexpr std::chrono::milliseconds kTimeout{5000};

// A counting semaphore for coroutines on one thread: release() never gets lost, even when nobody
// waits yet. Lets a test and a handler move in lockstep without sleeping.
class Signal {
 public:
  explicit Signal(asio::any_io_executor executor) : timer_(std::move(executor)) {}

  void release() {
    ++permits_;
    timer_.cancel();
  }

  asio::awaitable<void> acquire() {
    while (permits_ == 0) {
      timer_.expires_at(asio::steady_timer::time_point::max());
      co_await timer_.async_wait(kAsTuple);
    }
    --permits_;
  }

  int permits() const { return permits_; }

 private:
  asio::steady_timer timer_;
  int permits_ = 0;
};

// Runs `body` on `io` until `io` runs out of work (the test must leave none: servers stopped,
// connections closed) or a generous deadline passes, then reports a body that did not finish and
// rethrows its exception. `after_body` runs when the body ends, however it ends.
inline void run_coroutine(asio::io_context& io, std::function<asio::awaitable<void>()> body,
                          std::function<void()> after_body = {}) {
  bool finished = false;
  std::exception_ptr error;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await body();
        finished = true;
      },
      [&](std::exception_ptr exception) {
        error = exception;
        if (after_body) after_body();
      });
  io.run_for(std::chrono::seconds(10));
  EXPECT_TRUE(io.stopped()) << "work left on the io_context (a connection or timer leaked)";
  if (error) std::rethrow_exception(error);
  EXPECT_TRUE(finished);
}

// Reads from `socket` until the server closes it (or an error).
inline asio::awaitable<std::string> read_until_closed(tcp::socket& socket) {
  std::string received;
  char chunk[4096];
  while (true) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), kAsTuple);
    received.append(chunk, n);
    if (ec) break;
  }
  co_return received;
}

// Writes `bytes` on a fresh connection and reads until the server closes it.
inline asio::awaitable<std::string> raw_exchange(std::uint16_t port, std::string bytes) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
  co_await asio::async_write(socket, asio::buffer(bytes), asio::use_awaitable);
  co_return co_await read_until_closed(socket);
}

}  // namespace infergate::http::testing
