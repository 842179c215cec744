#pragma once

// Internal to the http module (server.cc, client.cc): parsing bytes already buffered without an
// asynchronous read, writing without an asynchronous write what the socket takes at once,
// writing HTTP/1.1 message heads straight into a reused buffer, and the per-connection deadline
// that bounds socket operations. Not part of the module's interface.

#include <algorithm>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/text.h"

namespace infergate::http::wire {

namespace asio = boost::asio;

// Feeds the bytes already in `buffer` to `parser` until `done(parser)`, without I/O: true once
// done; false when more bytes are needed or on a parse error (then `ec` is set, as an
// asynchronous read would set it). A read that needs no I/O thereby skips the asynchronous
// operation and its round trip through the scheduler.
template <typename Parser, typename Done>
bool parse_buffered(Parser& parser, boost::beast::flat_buffer& buffer, Done done,
                    boost::system::error_code& ec) {
  while (!done(parser)) {
    if (buffer.size() == 0) return false;
    const std::size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == boost::beast::http::error::need_more) {
      ec = {};
      return false;
    }
    if (ec || used == 0) return false;
  }
  return true;
}

// How far the reading of one message head has come (parse_head); a new one for every head.
struct HeadProgress {
  std::size_t parsed = 0;   // bytes of the head the parser has taken (its start line, whole fields)
  std::size_t scanned = 0;  // bytes after those already searched for the head's end
};

// Feeds `parser` the message head at the front of `buffer`, without I/O, and bounds the head as a
// whole by `header_limit` bytes: true once the parser has read the head; false when more bytes
// are needed (`ec` clear) or on an error (`ec` set, as an asynchronous read would set it). Works
// around two faults of Beast's parser (Boost 1.81):
// - Its header limit bounds the bytes it looks at in one call, not the head: the lines it takes
//   in its first call do not count towards the limit in later ones, so depending on how the
//   bytes arrive a head of up to about three times the limit passes. Here it is given no more
//   than what is left of the limit, and a head that does not end within it is rejected
//   (header_limit).
// - Given a head in pieces it can lose where the head ends: a start line whose version is shorter
//   than 8 bytes makes it ask for more bytes although the head's blank line is there, after which
//   it looks for the blank line only past the bytes it has seen, and asks for more forever. A
//   parser that asks for more while it was given a whole head has met a malformed head
//   (bad_version).
template <typename Parser>
bool parse_head(Parser& parser, boost::beast::flat_buffer& buffer, std::size_t header_limit,
                HeadProgress& progress, boost::system::error_code& ec) {
  namespace bhttp = boost::beast::http;
  const auto given = [&] {
    return std::string_view(static_cast<const char*>(buffer.data().data()),
                            std::min(buffer.size(), header_limit - progress.parsed));
  };
  while (!parser.is_header_done()) {
    const std::string_view bytes = given();
    if (bytes.empty()) break;
    const std::size_t used = parser.put(asio::buffer(bytes.data(), bytes.size()), ec);
    buffer.consume(used);
    progress.parsed += used;
    progress.scanned = progress.scanned > used ? progress.scanned - used : 0;
    if (ec == bhttp::error::need_more) {
      ec = {};
      break;
    }
    if (ec) return false;
    if (used == 0) break;
  }
  if (parser.is_header_done()) return true;
  // The parser keeps none of a head's bytes it has not taken: they are all in the buffer.
  constexpr std::string_view kHeadEnd = "\r\n\r\n";
  const std::string_view bytes = given();
  const std::size_t from =
      progress.scanned < kHeadEnd.size() ? 0 : progress.scanned - (kHeadEnd.size() - 1);
  if (bytes.find(kHeadEnd, from) != std::string_view::npos) {
    ec = bhttp::error::bad_version;
  } else if (bytes.size() == header_limit - progress.parsed) {
    ec = bhttp::error::header_limit;
  }
  progress.scanned = bytes.size();
  return false;
}

// Writes what a socket in non-blocking mode takes at once: the bytes written (all of them when
// the socket's send buffer has room, as it usually has for a message head and a small body).
// Then the asynchronous write is needed only for the rest, if any: no wait, no timer and no round
// trip through the scheduler otherwise. `ec` is set on an error, not when the socket is full.
template <typename Socket, typename Buffers>
std::size_t write_now(Socket& socket, const Buffers& buffers, boost::system::error_code& ec) {
  const std::size_t written = socket.write_some(buffers, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
  return written;
}

// Lets the other work queued on the executor run before the caller goes on. After a write that
// went out at once the peer has not answered yet: reading at once would find nothing (a system
// call for nothing, then the wait); reading after the others' turn often finds the answer.
inline auto yield(const asio::any_io_executor& executor) {
  return asio::post(executor, asio::deferred);
}

// Writes a message head into a reused string: each piece is a plain copy into room made ahead
// (the string keeps its capacity from one message to the next), and finish() cuts the string to
// what was written. Nothing may be written after finish().
class HeadWriter {
 public:
  explicit HeadWriter(std::string& out) : out_(out) {
    out_.resize(std::max(out_.capacity(), kInitialBytes));
  }
  HeadWriter(const HeadWriter&) = delete;
  HeadWriter& operator=(const HeadWriter&) = delete;

  // Inlined, so that copies of literals become a few moves.
  [[gnu::always_inline]] HeadWriter& operator<<(std::string_view text) {
    if (text.size() > out_.size() - size_) {
      out_.resize(std::max(2 * out_.size(), size_ + text.size()));
    }
    std::memcpy(out_.data() + size_, text.data(), text.size());
    size_ += text.size();
    return *this;
  }
  [[gnu::always_inline]] HeadWriter& operator<<(char c) { return *this << std::string_view(&c, 1); }
  HeadWriter& decimal(std::uint64_t value) {
    char digits[20];
    const auto result = std::to_chars(digits, digits + sizeof(digits), value);
    return *this << std::string_view(digits, static_cast<std::size_t>(result.ptr - digits));
  }
  // "HTTP/1.1" for version 11.
  HeadWriter& version(unsigned version) {
    if (version == 11) return *this << "HTTP/1.1";
    *this << "HTTP/";
    decimal(version / 10) << '.';
    return decimal(version % 10);
  }
  // "name: value\r\n", the value without surrounding blanks (as Beast stores header values).
  [[gnu::always_inline]] HeadWriter& field(std::string_view name, std::string_view value) {
    return *this << name << ": " << trim_blanks(value) << "\r\n";
  }
  void finish() { out_.resize(size_); }

 private:
  static constexpr std::size_t kInitialBytes = 512;
  std::string& out_;
  std::size_t size_ = 0;
};

// The deadline of one connection's I/O. Setting a deadline costs a clock read: the one timer is
// re-armed only when the new deadline is earlier than the expiry it already waits for (by more
// than kSlack: a timeout may fire up to kSlack late); when it fires early (the deadline moved
// later, or was cleared), it waits again or stops. When a deadline passes, `on_expiry` runs once
// on the executor (it typically cancels or closes the socket, failing the operation in progress).
// A cleared deadline may leave the timer waiting (work on the io_context) until its expiry or
// cancel(): owners cancel once the connection is idle or closed. Not thread-safe: every call, and
// `on_expiry`, on the connection's executor (strand). `on_expiry` may refer to the owner: it never
// runs once the Deadline is destroyed.
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kSlack{2};

  Deadline(asio::any_io_executor executor, std::function<void()> on_expiry)
      : state_(std::make_shared<State>(std::move(executor), std::move(on_expiry))) {}
  ~Deadline() { cancel(); }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  void expires_at(Clock::time_point at) {
    State& state = *state_;
    state.expired = false;
    state.deadline = at;
    if (at != Clock::time_point::max() && (!state.waiting || at + kSlack < state.timer_expiry)) {
      arm(state_);
    }
  }
  void expires_after(std::chrono::milliseconds timeout) { expires_at(Clock::now() + timeout); }
  // No deadline (an expiry already under way is dropped).
  void clear() {
    state_->deadline = Clock::time_point::max();
    state_->expired = false;
  }
  // Whether the last deadline set has passed (and on_expiry ran).
  bool expired() const { return state_->expired; }
  // No deadline, and the timer stops waiting (no work left on the io_context).
  void cancel() {
    State& state = *state_;
    state.deadline = Clock::time_point::max();
    if (state.waiting) {
      ++state.generation;
      state.waiting = false;
      state.timer.cancel();
    }
  }

 private:
  struct State {
    State(asio::any_io_executor executor, std::function<void()> callback)
        : timer(std::move(executor)), on_expiry(std::move(callback)) {}
    asio::steady_timer timer;
    std::function<void()> on_expiry;
    Clock::time_point deadline = Clock::time_point::max();
    Clock::time_point timer_expiry{};
    std::uint64_t generation = 0;  // of the wait in progress; older completions are ignored
    bool waiting = false;
    bool expired = false;
  };

  static void arm(const std::shared_ptr<State>& shared) {
    State& state = *shared;
    state.waiting = true;
    state.timer_expiry = state.deadline;
    const std::uint64_t generation = ++state.generation;
    state.timer.expires_at(state.deadline);  // a wait in progress completes, ignored
    state.timer.async_wait([weak = std::weak_ptr<State>(shared), generation](auto) {
      const std::shared_ptr<State> locked = weak.lock();
      if (!locked || locked->generation != generation) return;
      State& current = *locked;
      current.waiting = false;
      if (current.deadline == Clock::time_point::max()) return;
      if (Clock::now() < current.deadline) {
        arm(locked);
        return;
      }
      current.deadline = Clock::time_point::max();
      current.expired = true;
      if (current.on_expiry) current.on_expiry();
    });
  }

  std::shared_ptr<State> state_;
};

}  // namespace infergate::http::wire
