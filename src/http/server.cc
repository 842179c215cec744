#include "http/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/status.hpp>
#include <charconv>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "common/text.h"
#include "http/request_parser.h"
#include "http/wire.h"

namespace infergate::http {

namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

// Deferred operations are awaited in place (no coroutine frame per operation, as use_awaitable
// makes); as_tuple: errors are values.
constexpr auto kAsTuple = asio::as_tuple(asio::deferred);
// Size of each read of a request head (the first of which waits for the next request).
constexpr std::size_t kFirstReadBytes = 16 << 10;
// Largest read of a request body that did not come with its head (Beast's reads' limit).
constexpr std::size_t kBodyReadBytes = 64 << 10;
// While a handler runs, bytes of a pipelined next request are buffered up to this size so that a
// disconnect behind them is still noticed; beyond it, only failed writes reveal a gone client.
constexpr std::size_t kMaxWatchedPipelineBytes = 64 << 10;
// After an error response the server stops sending and discards what the client still sends for
// a while, so that closing with unread input (which makes the kernel send RST) does not destroy
// the response before the client has read it.
constexpr std::chrono::milliseconds kLingerTimeout{1000};
constexpr std::size_t kLingerMaxBytes = 16 << 20;
constexpr std::chrono::milliseconds kAcceptRetryDelay{50};
constexpr std::string_view kContinueResponse = "HTTP/1.1 100 Continue\r\n\r\n";

bool is_http_error(const error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category();
}

bool has_no_body(unsigned status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

// How a response head frames the body that follows.
enum class Framing { kContentLength, kChunked, kNone };

// The value of the Connection header for a response of HTTP `version` given the first Connection
// value a handler set (empty: none) and whether the connection stays open; Beast's keep-alive
// rules, so that "Connection: close" is added for HTTP/1.1 and "keep-alive" for HTTP/1.0.
std::string connection_value(std::string_view handler_value, unsigned version, bool keep_alive) {
  bhttp::response<bhttp::empty_body> response;
  response.version(version);
  if (!handler_value.empty()) {
    response.set(bhttp::field::connection, handler_value);
  }
  response.keep_alive(keep_alive);
  return std::string(response[bhttp::field::connection]);
}

// Appends "<hex size>\r\n" for a chunk of `size` bytes to `out` (chunked transfer coding).
std::size_t chunk_size_line(char (&out)[20], std::size_t size) {
  const auto result = std::to_chars(out, out + 16, size, 16);
  result.ptr[0] = '\r';
  result.ptr[1] = '\n';
  return static_cast<std::size_t>(result.ptr + 2 - out);
}

}  // namespace

namespace detail {

// What every connection shares, whichever io_context it runs on. It owns no I/O object, so that
// each io_context's leftover coroutine frames hold I/O objects of that io_context only, and the
// io_contexts may be destroyed in any order.
struct ServerState {
  ServerState(ServerOptions server_options, Handler request_handler)
      : options(std::move(server_options)), handler(std::move(request_handler)) {}

  const ServerOptions options;
  const Handler handler;
  ServerStats stats;
  std::uint16_t port = 0;
  std::atomic<bool> started{false};
  std::atomic<bool> stopping{false};

  std::mutex connections_mutex;
  std::unordered_map<std::uint64_t, std::weak_ptr<Connection>> connections;  // guarded
  std::uint64_t next_connection_id = 0;                                      // guarded
};

// One accepted connection. Everything below runs on the connection's strand.
// One acceptor and the io_context its connections run on; kept alive by the Server and by the
// accept loop (a coroutine on that io_context).
struct Listener {
  Listener(asio::io_context& io_context, std::shared_ptr<ServerState> server_state)
      : io(io_context), state(std::move(server_state)), acceptor(asio::make_strand(io_context)) {}

  asio::io_context& io;
  std::shared_ptr<ServerState> state;
  tcp::acceptor acceptor;  // used only on its own strand once start() has run
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, std::shared_ptr<ServerState> server)
      : server_(std::move(server)),
        options_(server_->options),
        socket_(std::move(socket)),
        // An expired deadline fails the operation in progress (a read, a write, the linger).
        deadline_(socket_.get_executor(),
                  [this] {
                    error_code ignored;
                    socket_.cancel(ignored);
                  }),
        watch_delay_(socket_.get_executor(), [this] { start_watch(); }) {
    std::lock_guard lock(server_->connections_mutex);
    id_ = server_->next_connection_id++;
  }

  ~Connection() {
    std::lock_guard lock(server_->connections_mutex);
    server_->connections.erase(id_);
  }

  // Separate from the constructor because weak_from_this() is empty until then.
  void register_with_server() {
    std::lock_guard lock(server_->connections_mutex);
    server_->connections.emplace(id_, weak_from_this());
  }

  asio::any_io_executor executor() { return socket_.get_executor(); }

  static asio::awaitable<void> run(std::shared_ptr<Connection> self) { co_await self->serve(); }

  // Posted by Server::stop().
  void close_if_idle() {
    if (phase_ == Phase::kWaiting) {
      error_code ec;
      socket_.cancel(ec);
    }
  }

  // ResponseWriter's implementation.
  asio::awaitable<bool> send(unsigned status, std::string_view content_type, std::string body,
                             Headers extra_headers);
  asio::awaitable<bool> begin_stream(unsigned status, std::string_view content_type,
                                     Headers extra_headers);
  asio::awaitable<bool> write_chunk(std::string_view data);
  asio::awaitable<bool> end_stream();
  bool client_gone() const { return gone_; }
  void on_client_gone(std::function<void()> callback);

 private:
  enum class Phase { kWaiting, kReading, kHandling };
  enum class ResponseState { kNone, kSent, kStreaming, kStreamEnded };
  enum class ReadOutcome { kRequest, kRespondAndClose, kClose };
  enum class CloseMode { kImmediate, kGraceful };

  asio::awaitable<void> serve();
  asio::awaitable<ReadOutcome> read_request(detail::RequestParser& parser);
  // `keep_alive`: the request lets the connection stay open (as the parser found).
  asio::awaitable<void> handle(Request& request, bool keep_alive);
  asio::awaitable<void> close(CloseMode mode);
  asio::awaitable<bool> write_whole_response(unsigned status, std::string_view content_type,
                                             std::string body, Headers extra_headers);
  // Starts watching the client of the handler running now (once its watch delay has passed).
  void start_watch();
  // While the handler of request `generation` runs: waits for the socket to become readable
  // (a plain completion handler, not a coroutine).
  void watch_client(std::uint64_t generation);
  void on_client_readable(const error_code& ec, std::uint64_t generation);
  bool watching(std::uint64_t generation) const {
    return handler_running_ && generation_ == generation && !gone_;
  }
  void mark_gone();
  void post_gone_callback();
  // Writes the status line and header of a response into head_: Server, Content-Type (when not
  // empty), the extra headers in order (minus Content-Length and Transfer-Encoding, which the
  // server sets), Connection as keep_alive_ requires, then the framing field. A Connection: close
  // among the extra headers clears keep_alive_.
  void write_head(unsigned status, std::string_view content_type, const Headers& extra_headers,
                  Framing framing, std::uint64_t content_length);
  // Writes `buffers` within the write timeout; false (and the client counts as gone) on failure.
  template <typename Buffers>
  asio::awaitable<bool> write_out(const Buffers& buffers);

  std::shared_ptr<ServerState> server_;
  const ServerOptions& options_;
  std::uint64_t id_ = 0;
  tcp::socket socket_;
  wire::Deadline deadline_;     // bounds the socket operation in progress
  wire::Deadline watch_delay_;  // starts the client watch of a handler that runs long
  beast::flat_buffer buffer_;
  std::string head_;  // the response head being written, reused
  Phase phase_ = Phase::kWaiting;

  Status read_error_;  // the error response for ReadOutcome::kRespondAndClose

  // Per-request state, valid while a handler runs.
  std::uint64_t generation_ = 0;  // incremented for every request handed to the handler
  bool handler_running_ = false;
  bool keep_alive_ = true;
  bool http10_ = false;
  bool head_request_ = false;  // the response carries a header only
  ResponseState response_state_ = ResponseState::kNone;
  bool gone_ = false;
  bool watch_started_ = false;  // for the running handler
  std::function<void()> gone_callback_;
};

asio::awaitable<void> Connection::serve() {
  error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  // The client watcher reads synchronously after a readiness wait, and responses are written
  // synchronously as far as the socket takes them: neither may block.
  socket_.non_blocking(true, ignored);

  bool first_request = true;
  CloseMode close_mode = CloseMode::kImmediate;
  while (true) {
    if (buffer_.size() == 0) {
      if (server_->stopping) {
        break;
      }
      phase_ = Phase::kWaiting;
      deadline_.expires_after(first_request ? options_.read_timeout : options_.idle_timeout);
      auto [ec, bytes] =
          co_await socket_.async_read_some(buffer_.prepare(kFirstReadBytes), kAsTuple);
      deadline_.clear();
      if (ec) {
        break;  // the peer closed, the connection idled out, or stop() cancelled the read
      }
      buffer_.commit(bytes);
    }
    first_request = false;
    phase_ = Phase::kReading;

    detail::RequestParser parser;
    parser.body_limit(options_.body_limit_bytes);
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
        options_.header_limit_bytes, std::numeric_limits<std::uint32_t>::max())));
    const ReadOutcome outcome = co_await read_request(parser);
    if (outcome == ReadOutcome::kClose) {
      break;
    }
    if (outcome == ReadOutcome::kRespondAndClose) {
      keep_alive_ = false;
      http10_ = false;
      head_request_ = false;
      response_state_ = ResponseState::kNone;
      if (co_await write_whole_response(static_cast<unsigned>(read_error_.http_status()),
                                        "application/json", read_error_.to_openai_json(), {})) {
        close_mode = CloseMode::kGraceful;
      }
      break;
    }

    const bool keep_alive = parser.keep_alive();
    Request request = parser.release();
    phase_ = Phase::kHandling;
    co_await handle(request, keep_alive);
    if (gone_ || response_state_ == ResponseState::kStreaming) {
      break;
    }
    if (!keep_alive_ || server_->stopping) {
      close_mode = CloseMode::kGraceful;
      break;
    }
  }
  co_await close(close_mode);
}

asio::awaitable<Connection::ReadOutcome> Connection::read_request(detail::RequestParser& parser) {
  // The deadline cancels a read that takes too long, and a slow client still gets its 408. It is
  // set (a clock read) only before the first socket operation: usually the whole request is in
  // the buffer already, read by the wait for its first byte (which arrived just now, so the
  // timeout still runs from about then).
  bool deadline_set = false;
  const auto before_io = [&] {
    if (!deadline_set) {
      deadline_.expires_after(options_.read_timeout);
      deadline_set = true;
    }
  };
  error_code ec;
  wire::HeadProgress head_progress;
  while (!wire::parse_head(parser, buffer_, options_.header_limit_bytes, head_progress, ec) &&
         !ec) {
    before_io();
    auto [read_ec, bytes] =
        co_await socket_.async_read_some(buffer_.prepare(kFirstReadBytes), kAsTuple);
    if (read_ec) {
      // Beast's read rule: the end of the stream inside a message cuts the message short.
      ec = read_ec == asio::error::eof ? bhttp::error::partial_message : read_ec;
      break;
    }
    buffer_.commit(bytes);
  }
  if (!ec && options_.max_header_fields != 0 &&
      static_cast<std::size_t>(std::distance(parser.get().begin(), parser.get().end())) >
          options_.max_header_fields) {
    deadline_.clear();
    ++server_->stats.headers_too_large;
    read_error_ = Status(
        431, fmt::format("request has more than {} header fields", options_.max_header_fields));
    co_return ReadOutcome::kRespondAndClose;
  }
  if (!ec && !parser.is_done()) {
    const auto expect = parser.get()[bhttp::field::expect];
    if (beast::iequals(expect, "100-continue")) {
      before_io();
      auto [write_ec, written] =
          co_await asio::async_write(socket_, asio::buffer(kContinueResponse), kAsTuple);
      ec = write_ec;
    }
    while (!ec &&
           !wire::parse_buffered(
               parser, buffer_, [](const auto& p) { return p.is_done(); }, ec) &&
           !ec) {
      before_io();
      auto [read_ec, bytes] = co_await socket_.async_read_some(
          buffer_.prepare(beast::read_size(buffer_, kBodyReadBytes)), kAsTuple);
      if (read_ec) {
        ec = read_ec == asio::error::eof ? bhttp::error::partial_message : read_ec;
        break;
      }
      buffer_.commit(bytes);
    }
  }
  const bool timed_out = deadline_.expired();
  deadline_.clear();
  if (!ec) {
    co_return ReadOutcome::kRequest;
  }

  ServerStats& stats = server_->stats;
  if (timed_out) {
    ++stats.read_timeouts;
    read_error_ = Status(
        408, fmt::format("request not received within {} ms", options_.read_timeout.count()));
    co_return ReadOutcome::kRespondAndClose;
  }
  if (ec == bhttp::error::body_limit) {
    ++stats.body_too_large;
    read_error_ = Status(
        413, fmt::format("request body exceeds the limit of {} bytes", options_.body_limit_bytes));
    co_return ReadOutcome::kRespondAndClose;
  }
  if (ec == bhttp::error::header_limit) {
    ++stats.headers_too_large;
    read_error_ = Status(431, fmt::format("request header exceeds the limit of {} bytes",
                                          options_.header_limit_bytes));
    co_return ReadOutcome::kRespondAndClose;
  }
  if (is_http_error(ec) && ec != bhttp::error::end_of_stream &&
      ec != bhttp::error::partial_message) {
    ++stats.bad_requests;
    read_error_ = Status::bad_request(fmt::format("malformed HTTP request: {}", ec.message()));
    co_return ReadOutcome::kRespondAndClose;
  }
  spdlog::debug("http: connection {} closed while reading a request: {}", id_, ec.message());
  co_return ReadOutcome::kClose;
}

asio::awaitable<void> Connection::handle(Request& request, bool keep_alive) {
  ServerStats& stats = server_->stats;
  ++stats.requests;
  keep_alive_ = keep_alive && !server_->stopping;
  http10_ = request.version() < 11;
  head_request_ = request.method() == bhttp::verb::head;
  response_state_ = ResponseState::kNone;
  ++generation_;
  handler_running_ = true;
  watch_started_ = false;
  if (options_.client_watch_delay.count() <= 0) {
    start_watch();
  } else {
    // The watch timer's expiry moves with every request, but its wait is re-armed only when it
    // fires: with back-to-back short requests, about once per delay, not once per request.
    watch_delay_.expires_at(coarse_steady_now() + options_.client_watch_delay);
  }

  ResponseWriter writer(this);
  std::string failure;
  try {
    co_await server_->handler(request, writer);
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  handler_running_ = false;
  gone_callback_ = nullptr;
  watch_delay_.clear();
  if (watch_started_) {
    error_code ignored;
    socket_.cancel(ignored);  // ends the client watcher's wait
  }

  if (!failure.empty()) {
    ++stats.handler_errors;
    spdlog::error("http: handler for {} {} threw: {}", request.method_string(), request.target(),
                  failure);
    keep_alive_ = false;
  } else if (response_state_ == ResponseState::kNone && !gone_) {
    ++stats.handler_errors;
    spdlog::error("http: handler for {} {} returned without a response", request.method_string(),
                  request.target());
  }
  if (response_state_ == ResponseState::kNone && !gone_) {
    co_await write_whole_response(
        500, "application/json",
        Status::internal(failure.empty() ? "the request handler produced no response"
                                         : "internal error while handling the request")
            .to_openai_json(),
        {});
  }
}

asio::awaitable<void> Connection::close(CloseMode mode) {
  error_code ignored;
  if (mode == CloseMode::kGraceful) {
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    deadline_.expires_after(std::min(kLingerTimeout, options_.read_timeout));
    std::array<char, 4096> discard;
    std::size_t discarded = 0;
    while (discarded < kLingerMaxBytes) {
      auto [ec, bytes] = co_await socket_.async_read_some(asio::buffer(discard), kAsTuple);
      if (ec) {
        break;
      }
      discarded += bytes;
    }
  }
  socket_.close(ignored);
  deadline_.cancel();
  watch_delay_.cancel();
}

void Connection::start_watch() {
  if (!handler_running_ || watch_started_ || gone_) {
    return;
  }
  watch_started_ = true;
  watch_client(generation_);
}

void Connection::watch_client(std::uint64_t generation) {
  socket_.async_wait(tcp::socket::wait_read,
                     [self = shared_from_this(), generation](const error_code& ec) {
                       self->on_client_readable(ec, generation);
                     });
}

void Connection::on_client_readable(const error_code& ec, std::uint64_t generation) {
  if (ec || !watching(generation) || buffer_.size() >= kMaxWatchedPipelineBytes) {
    return;
  }
  // Readable while the request is being handled: EOF, a reset, or the next pipelined request.
  // Reading (rather than peeking) keeps a pipelined request from waking the watch forever; the
  // bytes stay in the buffer the next request is parsed from.
  error_code read_ec;
  const std::size_t bytes =
      socket_.read_some(buffer_.prepare(kMaxWatchedPipelineBytes - buffer_.size()), read_ec);
  if (read_ec && read_ec != asio::error::would_block && read_ec != asio::error::try_again) {
    spdlog::debug("http: connection {} client gone: {}", id_, read_ec.message());
    mark_gone();
    return;
  }
  if (!read_ec) {
    buffer_.commit(bytes);
  }
  if (watching(generation)) {
    watch_client(generation);
  }
}

void Connection::mark_gone() {
  if (gone_) {
    return;
  }
  gone_ = true;
  if (!handler_running_) {
    return;
  }
  ++server_->stats.client_disconnects;
  post_gone_callback();
}

void Connection::post_gone_callback() {
  if (!gone_callback_) {
    return;
  }
  // Posted, not called, so that the callback never runs inside the handler's own write call.
  asio::post(executor(), [self = shared_from_this(), generation = generation_] {
    if (!self->handler_running_ || self->generation_ != generation || !self->gone_callback_) {
      return;
    }
    auto callback = std::exchange(self->gone_callback_, nullptr);
    try {
      callback();
    } catch (const std::exception& e) {
      spdlog::error("http: on_client_gone callback threw: {}", e.what());
    }
  });
}

void Connection::on_client_gone(std::function<void()> callback) {
  gone_callback_ = std::move(callback);
  if (gone_) {
    post_gone_callback();
  }
}

void Connection::write_head(unsigned status, std::string_view content_type,
                            const Headers& extra_headers, Framing framing,
                            std::uint64_t content_length) {
  const unsigned version = http10_ ? 10 : 11;
  // A handler may end the connection by sending Connection: close itself.
  std::string_view handler_connection;
  for (const auto& [name, value] : extra_headers) {
    if (beast::iequals(name, "connection")) {
      handler_connection = trim_blanks(value);
      if (bhttp::token_list(handler_connection).exists("close")) {
        keep_alive_ = false;
      }
      break;
    }
  }

  wire::HeadWriter out(head_);
  out.version(version) << ' ';
  out.decimal(status) << ' ' << bhttp::obsolete_reason(bhttp::int_to_status(status)) << "\r\n";
  out.field("Server", options_.server_name);
  if (!content_type.empty()) {
    out.field("Content-Type", content_type);
  }
  for (const auto& [name, value] : extra_headers) {
    if (beast::iequals(name, "connection") || beast::iequals(name, "content-length") ||
        beast::iequals(name, "transfer-encoding")) {
      continue;
    }
    out.field(name, value);
  }
  if (handler_connection.empty()) {
    if (version >= 11 && !keep_alive_) {
      out << "Connection: close\r\n";
    } else if (version < 11 && keep_alive_) {
      out << "Connection: keep-alive\r\n";
    }
  } else {
    const std::string connection = connection_value(handler_connection, version, keep_alive_);
    if (!connection.empty()) {
      out.field("Connection", connection);
    }
  }
  switch (framing) {
    case Framing::kContentLength:
      out << "Content-Length: ";
      out.decimal(content_length) << "\r\n";
      break;
    case Framing::kChunked:
      out << "Transfer-Encoding: chunked\r\n";
      break;
    case Framing::kNone:
      break;
  }
  out << "\r\n";
  out.finish();
}

template <typename Buffers>
asio::awaitable<bool> Connection::write_out(const Buffers& buffers) {
  error_code ec;
  const std::size_t written = wire::write_now(socket_, buffers, ec);
  if (!ec && written < asio::buffer_size(buffers)) {
    // The client reads slower than we write: the rest waits, bounded by the write timeout.
    beast::buffers_suffix<Buffers> rest(buffers);
    rest.consume(written);
    deadline_.expires_after(options_.write_timeout);
    auto [write_ec, bytes] = co_await asio::async_write(socket_, rest, kAsTuple);
    deadline_.clear();
    ec = write_ec;
  } else if (!ec) {
    co_await wire::yield(executor());
  }
  if (ec) {
    mark_gone();
    co_return false;
  }
  co_return true;
}

asio::awaitable<bool> Connection::write_whole_response(unsigned status,
                                                       std::string_view content_type,
                                                       std::string body, Headers extra_headers) {
  if (response_state_ != ResponseState::kNone || gone_) {
    co_return false;  // a response went already, or nobody is left to read this one
  }
  if (status < 100 || status > 999) {
    spdlog::error("http: invalid response status {}; sending 500", status);
    status = 500;
  }
  // Content-Length for HEAD too: it tells what GET would send.
  const bool no_body = has_no_body(status);
  write_head(status, content_type, extra_headers,
             no_body ? Framing::kNone : Framing::kContentLength, body.size());
  response_state_ = ResponseState::kSent;
  if (head_request_ || no_body || body.empty()) {
    co_return co_await write_out(asio::buffer(head_));
  }
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::buffer(body)};
  co_return co_await write_out(buffers);
}

asio::awaitable<bool> Connection::send(unsigned status, std::string_view content_type,
                                       std::string body, Headers extra_headers) {
  // Not a coroutine itself: write_whole_response's frame is the only one.
  return write_whole_response(status, content_type, std::move(body), std::move(extra_headers));
}

asio::awaitable<bool> Connection::begin_stream(unsigned status, std::string_view content_type,
                                               Headers extra_headers) {
  if (response_state_ != ResponseState::kNone || gone_) {
    co_return false;
  }
  if (status < 200 || status > 999 || has_no_body(status)) {
    spdlog::error("http: status {} cannot carry a streamed body; sending 500", status);
    status = 500;
  }
  if (http10_) {
    keep_alive_ = false;  // HTTP/1.0 has no chunked coding: the close ends the body
  }
  write_head(status, content_type, extra_headers, http10_ ? Framing::kNone : Framing::kChunked, 0);
  response_state_ = ResponseState::kStreaming;
  co_return co_await write_out(asio::buffer(head_));
}

asio::awaitable<bool> Connection::write_chunk(std::string_view data) {
  if (response_state_ != ResponseState::kStreaming || gone_) {
    co_return false;
  }
  if (data.empty() || head_request_) {
    co_return true;  // an empty chunk would end the body
  }
  if (http10_) {
    co_return co_await write_out(asio::buffer(data));
  }
  char size_line[20];
  const std::size_t size_line_length = chunk_size_line(size_line, data.size());
  const std::array<asio::const_buffer, 3> buffers{asio::buffer(size_line, size_line_length),
                                                  asio::buffer(data), asio::buffer("\r\n", 2)};
  co_return co_await write_out(buffers);
}

asio::awaitable<bool> Connection::end_stream() {
  if (response_state_ != ResponseState::kStreaming || gone_) {
    co_return false;
  }
  response_state_ = ResponseState::kStreamEnded;
  if (http10_ || head_request_) {
    co_return true;
  }
  static constexpr std::string_view kLastChunk = "0\r\n\r\n";
  co_return co_await write_out(asio::buffer(kLastChunk));
}

}  // namespace detail

// ResponseWriter forwards to its connection.

asio::awaitable<bool> ResponseWriter::send(unsigned status, std::string_view content_type,
                                           std::string body, Headers extra_headers) {
  return connection_->send(status, content_type, std::move(body), std::move(extra_headers));
}

asio::awaitable<bool> ResponseWriter::begin_stream(unsigned status, std::string_view content_type,
                                                   Headers extra_headers) {
  return connection_->begin_stream(status, content_type, std::move(extra_headers));
}

asio::awaitable<bool> ResponseWriter::write_chunk(std::string_view data) {
  return connection_->write_chunk(data);
}

asio::awaitable<bool> ResponseWriter::end_stream() { return connection_->end_stream(); }

bool ResponseWriter::client_gone() const { return connection_->client_gone(); }

void ResponseWriter::on_client_gone(std::function<void()> callback) {
  connection_->on_client_gone(std::move(callback));
}

namespace {

tcp::endpoint resolve_listen_endpoint(const ServerOptions& options) {
  error_code ec;
  const auto address = asio::ip::make_address(options.address, ec);
  if (!ec) {
    return {address, options.port};
  }
  asio::io_context resolver_context;
  tcp::resolver resolver(resolver_context);
  auto results =
      resolver.resolve(options.address, std::to_string(options.port), tcp::resolver::passive, ec);
  if (ec || results.empty()) {
    throw std::runtime_error(fmt::format("cannot listen on {}:{}: cannot resolve address: {}",
                                         options.address, options.port, ec.message()));
  }
  return results.begin()->endpoint();
}

asio::awaitable<void> accept_loop(std::shared_ptr<detail::Listener> listener) {
  const std::shared_ptr<detail::ServerState>& state = listener->state;
  tcp::acceptor& acceptor = listener->acceptor;
  while (true) {
    const asio::any_io_executor connection_executor =
        state->options.strand_per_connection
            ? asio::any_io_executor(asio::make_strand(listener->io))
            : asio::any_io_executor(listener->io.get_executor());
    auto [ec, socket] = co_await acceptor.async_accept(connection_executor, kAsTuple);
    if (state->stopping) {
      co_return;
    }
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
        co_return;
      }
      // Typically out of file descriptors: back off instead of spinning.
      spdlog::warn("http: accept on port {} failed: {}", state->port, ec.message());
      asio::steady_timer backoff(acceptor.get_executor(), kAcceptRetryDelay);
      co_await backoff.async_wait(kAsTuple);
      continue;
    }
    ++state->stats.connections_accepted;
    auto connection = std::make_shared<detail::Connection>(std::move(socket), state);
    connection->register_with_server();
    asio::co_spawn(connection->executor(), detail::Connection::run(connection),
                   [](const std::exception_ptr& error) {
                     if (!error) {
                       return;
                     }
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       spdlog::error("http: connection failed: {}", e.what());
                     }
                   });
  }
}

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

[[noreturn]] void throw_listen_error(const ServerOptions& options, const error_code& ec) {
  throw std::runtime_error(fmt::format(
      "cannot listen on {}:{}: {}{}", options.address, options.port, ec.message(),
      ec == asio::error::address_in_use ? " (another process is listening on the port)" : ""));
}

// Binds `endpoint` with a plain socket (SO_REUSEADDR as the acceptors use, no SO_REUSEPORT) and
// returns the port bound. This fails while any other socket listens on the port, including one
// with SO_REUSEPORT that the acceptors would otherwise silently share the port with.
std::uint16_t claim_port(asio::io_context& io, const tcp::endpoint& endpoint,
                         const ServerOptions& options) {
  tcp::acceptor probe(io);
  error_code ec;
  probe.open(endpoint.protocol(), ec);
  if (!ec) probe.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) probe.bind(endpoint, ec);
  if (ec) throw_listen_error(options, ec);
  const std::uint16_t port = probe.local_endpoint(ec).port();
  if (ec) throw_listen_error(options, ec);
  return port;  // the probe closes here, before the acceptors bind the port
}

}  // namespace

Server::Server(asio::io_context& io, ServerOptions options, Handler handler)
    : Server(std::vector<asio::io_context*>{&io}, std::move(options), std::move(handler)) {}

Server::Server(const std::vector<asio::io_context*>& io_contexts, ServerOptions options,
               Handler handler)
    : state_(std::make_shared<detail::ServerState>(std::move(options), std::move(handler))) {
  const ServerOptions& opts = state_->options;
  auto& listeners = listeners_;
  for (asio::io_context* io_context : io_contexts) {
    listeners.push_back(std::make_shared<detail::Listener>(*io_context, state_));
  }
  if (listeners.empty()) {
    throw std::runtime_error(
        fmt::format("cannot listen on {}:{}: no io_context given", opts.address, opts.port));
  }
  tcp::endpoint endpoint = resolve_listen_endpoint(opts);
  const bool shared_port = listeners.size() > 1;
  if (shared_port) {
    endpoint.port(claim_port(listeners.front()->io, endpoint, opts));
  }
  for (auto& listener : listeners) {
    tcp::acceptor& acceptor = listener->acceptor;
    error_code ec;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) {
      acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    }
    if (!ec && shared_port) {
      acceptor.set_option(ReusePort(true), ec);
    }
    if (!ec) {
      acceptor.bind(endpoint, ec);
    }
    if (!ec) {
      acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      throw_listen_error(opts, ec);
    }
  }
  state_->port = listeners.front()->acceptor.local_endpoint().port();
}

Server::~Server() { stop(); }

std::uint16_t Server::port() const { return state_->port; }

void Server::start() {
  if (state_->started.exchange(true)) {
    return;
  }
  for (const auto& listener : listeners_) {
    asio::co_spawn(listener->acceptor.get_executor(), accept_loop(listener), asio::detached);
  }
}

void Server::stop() {
  if (state_->stopping.exchange(true)) {
    return;
  }
  for (const auto& listener : listeners_) {
    asio::post(listener->acceptor.get_executor(), [listener] {
      error_code ignored;
      listener->acceptor.close(ignored);
    });
  }
  std::vector<std::shared_ptr<detail::Connection>> live;
  {
    std::lock_guard lock(state_->connections_mutex);
    for (const auto& [id, weak] : state_->connections) {
      if (auto connection = weak.lock()) {
        live.push_back(std::move(connection));
      }
    }
  }
  for (auto& connection : live) {
    asio::post(connection->executor(), [connection] { connection->close_if_idle(); });
  }
}

const ServerStats& Server::stats() const { return state_->stats; }

}  // namespace infergate::http
