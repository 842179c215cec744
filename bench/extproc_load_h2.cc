// extproc_load's default client (--client h2): gRPC over plaintext HTTP/2 with nghttp2's framing
// and Boost.Asio's sockets, every connection and stream on one thread (extproc_load.cc explains
// the tool). It exists because grpc++'s client costs more per stream than the EPP it measures: on
// two cores the load generator's core saturated first and the EPP idled part of the time. This
// one costs a little less per stream than the EPP (~15 us per 2 KB stream on the development
// machine, the EPP ~17 us): the Exchange's protobuf messages are serialized into one send buffer
// per stream, answers are parsed as they arrive, and one write carries every stream's bytes.
//
// Per stream: HEADERS (POST /envoy.service.ext_proc.v3.ExternalProcessor/Process), then DATA with
// the length-prefixed messages in the Exchange's order, END_STREAM once the response body's last
// answer arrived (the data provider defers while there is nothing to send); the call is over when
// the server's trailers (grpc-status) or a reset close the stream. A stream over
// --stream-timeout-ms is reset (CANCEL) and counts as an error.

#include <fmt/format.h>
#include <nghttp2/nghttp2.h>

#include <array>
#include <boost/asio.hpp>
#include <cstring>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "extproc_load.h"

namespace infergate::extproc_load {
namespace {

namespace asio = boost::asio;
using Tcp = asio::ip::tcp;

constexpr std::string_view kProcessPath = "/envoy.service.ext_proc.v3.ExternalProcessor/Process";
constexpr std::size_t kFrameHeaderBytes = 5;  // gRPC message prefix: compressed flag, length
constexpr std::size_t kWriteBatchBytes = 256 * 1024;
constexpr std::int32_t kStreamWindowBytes = 1 << 20;
constexpr std::int32_t kConnectionWindowBytes = 16 << 20;
constexpr auto kDeadlineSweep = std::chrono::milliseconds(100);

nghttp2_nv header(std::string_view name, std::string_view value) {
  // nghttp2 copies names and values when a frame is submitted.
  return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

// Appends `message` as one gRPC length-prefixed message.
void append_message(std::string& out, const pb::ProcessingRequest& message) {
  const std::size_t size = message.ByteSizeLong();
  const std::size_t at = out.size();
  out.resize(at + kFrameHeaderBytes + size);
  auto* bytes = reinterpret_cast<std::uint8_t*>(out.data() + at);
  bytes[0] = 0;  // not compressed
  bytes[1] = static_cast<std::uint8_t>(size >> 24);
  bytes[2] = static_cast<std::uint8_t>(size >> 16);
  bytes[3] = static_cast<std::uint8_t>(size >> 8);
  bytes[4] = static_cast<std::uint8_t>(size);
  message.SerializeWithCachedSizesToArray(bytes + kFrameHeaderBytes);
}

class Connection;
class H2Transport;

// One ext_proc stream (one HTTP/2 stream). Lives in the transport's table from open to close;
// every member is touched on the I/O thread only.
struct H2Stream {
  H2Stream(const Driver& driver, std::uint64_t index, Connection& connection)
      : exchange(driver, index), connection(connection), index(index) {}

  Exchange exchange;
  Connection& connection;
  const std::uint64_t index;
  std::int32_t id = -1;
  std::string send;  // framed messages not yet handed to nghttp2 start at `sent`
  std::size_t sent = 0;
  std::size_t last_chunk_at = 0;  // offset in `send` of the last request-body message
  bool last_chunk_timed = false;
  bool half_close = false;  // END_STREAM once `send` is drained
  bool deferred = false;    // the data provider is waiting for bytes
  std::string received;     // a partial message
  int grpc_status = -1;
  std::string grpc_message;
  std::string transport_error;  // set by the client itself (deadline, cancel, undecodable)
  std::int64_t start_ns = 0;
  std::int64_t eos_sent_ns = 0;
};

// One HTTP/2 connection to the target.
class Connection {
 public:
  Connection(H2Transport& transport, asio::io_context& io) : transport_(transport), socket_(io) {}
  ~Connection() {
    if (session_ != nullptr) nghttp2_session_del(session_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Tcp::socket& socket() { return socket_; }
  bool alive() const { return session_ != nullptr && !closed_; }

  // After the socket connected: the session, the client preface and SETTINGS, the read loop.
  bool begin();
  // Submits the stream's request; false (nothing submitted) when the session refuses it.
  bool submit(H2Stream& stream);
  // After `stream.send` grew or half_close was set.
  void resume(H2Stream& stream) {
    if (!stream.deferred || stream.id < 0) return;
    stream.deferred = false;
    nghttp2_session_resume_data(session_, stream.id);
  }
  void reset(H2Stream& stream) {
    if (stream.id >= 0)
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream.id, NGHTTP2_CANCEL);
  }
  // Sends whatever nghttp2 has queued (one write at a time).
  void flush();
  void close(std::string_view why);

 private:
  static const nghttp2_session_callbacks* callbacks();
  static ssize_t read_data(nghttp2_session*, std::int32_t, std::uint8_t* buffer, std::size_t length,
                           std::uint32_t* flags, nghttp2_data_source* source, void*);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t name_length, const std::uint8_t* value, std::size_t value_length,
                       std::uint8_t, void* user_data);
  static int on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t length, void* user_data);
  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                             void* user_data);
  H2Stream* stream(std::int32_t id) const {
    return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session_, id));
  }
  void read();

  H2Transport& transport_;
  Tcp::socket socket_;
  nghttp2_session* session_ = nullptr;
  bool closed_ = false;
  bool writing_ = false;
  std::string write_buffer_;
  std::array<char, 64 * 1024> read_buffer_{};
};

class H2Transport final : public Transport {
 public:
  explicit H2Transport(Driver& driver) : driver_(driver), sweep_(io_) {
    for (int index = 0; index < driver.options().connections; ++index) {
      connections_.push_back(std::make_unique<Connection>(*this, io_));
    }
  }

  ~H2Transport() override {
    if (thread_.joinable()) {
      asio::post(io_, [this] {
        sweep_.cancel();
        for (auto& connection : connections_) connection->close("shutting down");
        work_.reset();
      });
      thread_.join();
    }
    for (auto& [index, stream] : live_) delete stream;  // only after a failed drain
  }

  std::string connect() override;

  void open_stream(std::uint64_t index) override {
    asio::post(io_, [this, index] { start_stream(index); });
  }

  void cancel_open_streams() override {
    asio::post(io_, [this] {
      for (auto& [index, stream] : live_) {
        if (stream->transport_error.empty())
          stream->transport_error = "cancelled: still open at stop";
        stream->connection.reset(*stream);
      }
      flush_all();
    });
  }

  // Called by a Connection (I/O thread).
  void on_answers(H2Stream& stream);
  void on_closed(H2Stream& stream, std::uint32_t error_code);
  void on_connection_lost(Connection& connection, std::string_view why);

 private:
  void start_stream(std::uint64_t index);
  void send_response(H2Stream& stream);
  void finish(H2Stream* stream, std::string transport_error);
  void sweep_deadlines();
  void flush_all() {
    for (auto& connection : connections_) connection->flush();
  }

  Driver& driver_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  asio::steady_timer sweep_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::unordered_map<std::uint64_t, H2Stream*> live_;  // I/O thread only
  pb::ProcessingResponse answer_;                      // reused for every answer parsed
  std::thread thread_;
  friend class Connection;
};

bool Connection::begin() {
  if (nghttp2_session_client_new(&session_, callbacks(), this) != 0) return false;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(kStreamWindowBytes)},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0) {
    return false;
  }
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindowBytes);
  socket_.set_option(Tcp::no_delay(true));
  flush();
  read();
  return true;
}

bool Connection::submit(H2Stream& stream) {
  const Options& options = transport_.driver_.options();
  const std::string timeout = fmt::format("{}m", options.stream_timeout_ms);
  const nghttp2_nv fields[] = {
      header(":method", "POST"),
      header(":scheme", "http"),
      header(":path", kProcessPath),
      header(":authority", options.target),
      header("content-type", "application/grpc"),
      header("te", "trailers"),
      header("grpc-timeout", timeout),
  };
  nghttp2_data_provider body;
  body.source.ptr = &stream;
  body.read_callback = &Connection::read_data;
  const std::int32_t id =
      nghttp2_submit_request(session_, nullptr, fields, std::size(fields), &body, &stream);
  if (id < 0) return false;
  stream.id = id;
  return true;
}

void Connection::flush() {
  if (!alive() || writing_) return;
  write_buffer_.clear();
  while (write_buffer_.size() < kWriteBatchBytes) {
    const std::uint8_t* data = nullptr;
    const ssize_t size = nghttp2_session_mem_send(session_, &data);
    if (size < 0) {
      close(fmt::format("HTTP/2 send error: {}", nghttp2_strerror(static_cast<int>(size))));
      return;
    }
    if (size == 0) break;
    write_buffer_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(size));
  }
  if (write_buffer_.empty()) return;
  writing_ = true;
  asio::async_write(socket_, asio::buffer(write_buffer_),
                    [this](boost::system::error_code ec, std::size_t) {
                      writing_ = false;
                      if (ec) {
                        if (ec != asio::error::operation_aborted) close(ec.message());
                        return;
                      }
                      flush();
                    });
}

void Connection::read() {
  socket_.async_read_some(
      asio::buffer(read_buffer_), [this](boost::system::error_code ec, std::size_t size) {
        if (closed_) return;
        if (ec) {
          close(ec == asio::error::eof ? "the server closed the connection" : ec.message());
          return;
        }
        const ssize_t consumed = nghttp2_session_mem_recv(
            session_, reinterpret_cast<const std::uint8_t*>(read_buffer_.data()), size);
        if (consumed < 0) {
          close(fmt::format("HTTP/2 error: {}", nghttp2_strerror(static_cast<int>(consumed))));
          return;
        }
        transport_.flush_all();  // answers may have released data on any connection's streams
        read();
      });
}

void Connection::close(std::string_view why) {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
  transport_.on_connection_lost(*this, why);
}

const nghttp2_session_callbacks* Connection::callbacks() {
  static const nghttp2_session_callbacks* const kCallbacks = [] {
    nghttp2_session_callbacks* callbacks = nullptr;
    if (nghttp2_session_callbacks_new(&callbacks) != 0) throw std::bad_alloc();
    nghttp2_session_callbacks_set_on_header_callback(callbacks, &Connection::on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks,
                                                              &Connection::on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &Connection::on_stream_close);
    return callbacks;
  }();
  return kCallbacks;
}

ssize_t Connection::read_data(nghttp2_session*, std::int32_t, std::uint8_t* buffer,
                              std::size_t length, std::uint32_t* flags, nghttp2_data_source* source,
                              void* user_data) {
  auto& stream = *static_cast<H2Stream*>(source->ptr);
  const std::size_t available = stream.send.size() - stream.sent;
  if (available == 0) {
    if (stream.half_close) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    stream.deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  const std::size_t count = std::min(length, available);
  if (!stream.last_chunk_timed && stream.sent + count > stream.last_chunk_at) {
    // The first byte of the last request-body message goes out now.
    stream.last_chunk_timed = true;
    stream.eos_sent_ns =
        nanos_since(static_cast<Connection*>(user_data)->transport_.driver_.origin());
  }
  std::memcpy(buffer, stream.send.data() + stream.sent, count);
  stream.sent += count;
  if (stream.sent == stream.send.size()) {
    stream.send.clear();
    stream.sent = 0;
    if (stream.half_close) *flags |= NGHTTP2_DATA_FLAG_EOF;
  }
  return static_cast<ssize_t>(count);
}

int Connection::on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                          std::size_t name_length, const std::uint8_t* value,
                          std::size_t value_length, std::uint8_t, void* user_data) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  H2Stream* stream = static_cast<Connection*>(user_data)->stream(frame->hd.stream_id);
  if (stream == nullptr) return 0;
  const std::string_view key(reinterpret_cast<const char*>(name), name_length);
  const std::string_view text(reinterpret_cast<const char*>(value), value_length);
  if (key == "grpc-status") {
    stream->grpc_status = 0;
    for (const char c : text) {
      if (c < '0' || c > '9') {
        stream->grpc_status = 2;  // UNKNOWN: not a number
        break;
      }
      stream->grpc_status = stream->grpc_status * 10 + (c - '0');
    }
  } else if (key == "grpc-message") {
    stream->grpc_message = text;
  } else if (key == ":status" && text != "200") {
    stream->transport_error = fmt::format("http status {}", text);
  }
  return 0;
}

int Connection::on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                              const std::uint8_t* data, std::size_t length, void* user_data) {
  auto& self = *static_cast<Connection*>(user_data);
  H2Stream* stream = self.stream(stream_id);
  if (stream == nullptr) return 0;
  stream->received.append(reinterpret_cast<const char*>(data), length);
  self.transport_.on_answers(*stream);
  return 0;
}

int Connection::on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                                void* user_data) {
  auto& self = *static_cast<Connection*>(user_data);
  H2Stream* stream = self.stream(stream_id);
  if (stream != nullptr) self.transport_.on_closed(*stream, error_code);
  return 0;
}

std::string H2Transport::connect() {
  const Options& options = driver_.options();
  const std::size_t colon = options.target.rfind(':');
  if (colon == std::string::npos) return "--target is not host:port";
  std::string host = options.target.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  boost::system::error_code ec;
  Tcp::resolver resolver(io_);
  const auto endpoints = resolver.resolve(host, options.target.substr(colon + 1), ec);
  if (ec) return ec.message();
  std::size_t completed = 0;
  std::string error = "no connection within 5 s";
  for (auto& connection : connections_) {
    asio::async_connect(connection->socket(), endpoints,
                        [&](boost::system::error_code failure, const Tcp::endpoint&) {
                          if (failure) {
                            error = failure.message();
                          } else if (!connection->begin()) {
                            error = "cannot start an HTTP/2 session";
                          }
                          if (++completed == connections_.size()) io_.stop();
                        });
  }
  io_.run_for(std::chrono::seconds(5));  // until every connect completed, or 5 s
  for (auto& connection : connections_) {
    if (!connection->alive()) return error;
  }
  io_.restart();  // the connections' reads and writes stay queued
  work_.emplace(io_.get_executor());
  sweep_deadlines();
  thread_ = std::thread([this] { io_.run(); });
  return {};
}

void H2Transport::start_stream(std::uint64_t index) {
  Connection* connection = nullptr;
  for (std::size_t attempt = 0; attempt < connections_.size(); ++attempt) {
    Connection& candidate = *connections_[(index + attempt) % connections_.size()];
    if (candidate.alive()) {
      connection = &candidate;
      break;
    }
  }
  if (connection == nullptr) {
    driver_.give_up("connection: every connection to the server was lost");
    return;
  }
  auto* stream = new H2Stream(driver_, index, *connection);
  const auto& messages = stream->exchange.messages();
  const std::size_t request_messages = stream->exchange.response_index();
  for (std::size_t at = 0; at < request_messages; ++at) {
    if (at + 1 == request_messages) stream->last_chunk_at = stream->send.size();
    append_message(stream->send, *messages[at]);
  }
  stream->start_ns = nanos_since(driver_.origin());
  live_.emplace(index, stream);
  if (!connection->submit(*stream)) {
    finish(stream, "h2: the session refused a new stream");
    return;
  }
  connection->flush();
}

void H2Transport::on_answers(H2Stream& stream) {
  std::size_t at = 0;
  const std::string& bytes = stream.received;
  while (bytes.size() - at >= kFrameHeaderBytes) {
    const auto* head = reinterpret_cast<const std::uint8_t*>(bytes.data() + at);
    const std::size_t size = (std::size_t{head[1]} << 24) | (std::size_t{head[2]} << 16) |
                             (std::size_t{head[3]} << 8) | std::size_t{head[4]};
    if (bytes.size() - at - kFrameHeaderBytes < size) break;
    Exchange::Step step = Exchange::Step::kError;
    if (head[0] != 0) {
      stream.transport_error = "protocol: a compressed answer";
    } else if (!answer_.ParseFromArray(head + kFrameHeaderBytes, static_cast<int>(size))) {
      stream.transport_error = "protocol: an answer that does not decode";
    } else {
      step = stream.exchange.on_answer(answer_);
    }
    at += kFrameHeaderBytes + size;
    switch (step) {
      case Exchange::Step::kContinue:
        break;
      case Exchange::Step::kRequestAnswered:
        send_response(stream);
        break;
      case Exchange::Step::kResponseAnswered:
        stream.half_close = true;
        stream.connection.resume(stream);
        break;
      case Exchange::Step::kError:
        stream.received.clear();
        stream.connection.reset(stream);  // like Envoy after a local reply or a spurious message
        return;
    }
  }
  stream.received.erase(0, at);
}

void H2Transport::send_response(H2Stream& stream) {
  stream.exchange.prepare_response();
  const SteadyTime::duration delay = stream.exchange.response_delay();
  auto send = [this](H2Stream& open) {
    const auto& messages = open.exchange.messages();
    for (std::size_t at = open.exchange.response_index(); at < messages.size(); ++at) {
      append_message(open.send, *messages[at]);
    }
    open.connection.resume(open);
  };
  if (delay == SteadyTime::duration::zero()) {
    send(stream);
    return;
  }
  // The upstream's time to first byte. The stream may be gone (reset, deadline) when it is over.
  driver_.timer().at(std::chrono::steady_clock::now() + delay, [this, send, index = stream.index] {
    asio::post(io_, [this, send, index] {
      auto found = live_.find(index);
      if (found == live_.end()) return;
      send(*found->second);
      found->second->connection.flush();
    });
  });
}

void H2Transport::on_closed(H2Stream& stream, std::uint32_t error_code) {
  std::string error = stream.transport_error;
  if (error.empty() && error_code != NGHTTP2_NO_ERROR) {
    error = fmt::format("h2: stream reset ({})", nghttp2_http2_strerror(error_code));
  }
  if (error.empty() && stream.grpc_status < 0) error = "grpc: the call ended without grpc-status";
  if (error.empty() && stream.grpc_status != 0) {
    error = fmt::format("grpc status {}: {}", stream.grpc_status, stream.grpc_message);
  }
  finish(&stream, std::move(error));
}

void H2Transport::finish(H2Stream* stream, std::string transport_error) {
  const std::int64_t end_ns = nanos_since(driver_.origin());
  const std::string error = stream->exchange.final_error(std::move(transport_error));
  const std::int64_t added_ns = stream->exchange.added_end_ns() - stream->eos_sent_ns;
  const std::int64_t start_ns = stream->start_ns;
  live_.erase(stream->index);
  delete stream;
  driver_.on_stream_done(start_ns, end_ns, added_ns, error);
}

void H2Transport::on_connection_lost(Connection& connection, std::string_view why) {
  // nghttp2 does not close the streams of a session that is abandoned: end them here.
  std::vector<H2Stream*> lost;
  for (auto& [index, stream] : live_) {
    if (&stream->connection == &connection) lost.push_back(stream);
  }
  for (H2Stream* stream : lost) {
    std::string error = stream->transport_error;
    if (error.empty()) error = fmt::format("connection: {}", why);
    finish(stream, std::move(error));
  }
}

void H2Transport::sweep_deadlines() {
  sweep_.expires_after(kDeadlineSweep);
  sweep_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    const std::int64_t now = nanos_since(driver_.origin());
    const std::int64_t timeout_ns = std::int64_t{driver_.options().stream_timeout_ms} * 1'000'000;
    for (auto& [index, stream] : live_) {
      if (stream->transport_error.empty() && now - stream->start_ns > timeout_ns) {
        stream->transport_error = "deadline: the stream ran over --stream-timeout-ms";
        stream->connection.reset(*stream);
      }
    }
    flush_all();
    sweep_deadlines();
  });
}

}  // namespace

std::unique_ptr<Transport> make_h2_transport(Driver& driver) {
  if (driver.options().tls) {
    fmt::print(stderr, "extproc_load: --tls needs --client grpc\n");
    return nullptr;
  }
  return std::make_unique<H2Transport>(driver);
}

}  // namespace infergate::extproc_load
