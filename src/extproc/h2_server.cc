#include "extproc/h2_server.h"

#include <fmt/format.h>
#include <google/protobuf/message_lite.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace infergate::extproc::h2 {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

constexpr std::size_t kMessagePrefixBytes = 5;  // compressed flag + 32-bit big-endian length
constexpr std::size_t kReadBufferBytes = 32 * 1024;
// A write batch is cut here so one busy connection does not build an unbounded buffer.
constexpr std::size_t kWriteBatchBytes = 256 * 1024;
constexpr std::uint32_t kMaxFrameBytes = 1u << 20;  // SETTINGS_MAX_FRAME_SIZE we accept

// grpc-message is percent-encoded: bytes outside printable ASCII, and '%' itself.
std::string percent_encode(std::string_view text) {
  std::string encoded;
  encoded.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte > 0x7e || byte == '%') {
      fmt::format_to(std::back_inserter(encoded), "%{:02X}", byte);
    } else {
      encoded.push_back(c);
    }
  }
  return encoded;
}

nghttp2_nv header(std::string_view name, std::string_view value) {
  // nghttp2 copies names and values when a frame is submitted.
  return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

// What every connection of a server shares. Outlives the workers' io_contexts.
struct Shared {
  ServerOptions options;
  MethodTable methods;
  ServerStats stats;
  std::mutex mutex;  // with `drained`: connections_active reaching 0
  std::condition_variable drained;
};

class Session;

// One HTTP/2 stream: one call. Lives in its Session's stream table until nghttp2 closes the
// stream (or the connection goes).
class Stream final : public CallResponder {
 public:
  Stream(Session& session, std::int32_t id) : session_(session), id_(id) {}

  void send(const google::protobuf::MessageLite& message) override;
  void finish(GrpcCode code, std::string_view message) override;
  bool finished() const override { return finished_; }

  // Request headers complete: finds the method and creates the Call (or answers at once).
  void dispatch();
  void receive(const std::uint8_t* data, std::size_t size);
  void half_close();
  // Ends the call for the transport's own reason (bad frame, oversize, ...): trailers with
  // `code`, and the Call is told through on_cancel.
  void fail(GrpcCode code, std::string message);
  // The stream or connection is gone: tells the Call, unless it had finished.
  void cancel();
  // nghttp2's data source for the response body.
  ssize_t read_body(std::uint8_t* buffer, std::size_t length, std::uint32_t* flags);

  std::string path;
  std::string method;
  std::string content_type;
  bool remote_closed = false;

 private:
  // Submits the response headers with the body as a data source, or resumes a deferred one.
  void start_or_resume();
  void submit_trailers();
  void notify_cancel();
  // Hands one complete message to the Call.
  void deliver(const std::uint8_t* data, std::size_t size);
  // Reads one message prefix at `data`; false (and the call failed) when the message is refused.
  bool check_prefix(const std::uint8_t* data, std::uint32_t& length);

  Session& session_;
  const std::int32_t id_;
  std::unique_ptr<Call> call_;
  std::string inbound_;  // bytes of a message not complete yet
  std::string outbound_;
  std::size_t outbound_sent_ = 0;
  bool response_started_ = false;
  bool body_deferred_ = false;
  bool finished_ = false;
  bool call_cancelled_ = false;
  GrpcCode code_ = GrpcCode::kOk;
  std::string status_message_;
};

// One HTTP/2 connection's protocol state: the nghttp2 session and the streams. The socket side
// is the Connection template below.
class Session {
 public:
  Session(Shared& shared, std::unordered_set<Session*>& registry)
      : shared_(shared), registry_(registry) {
    shared_.stats.connections_total.fetch_add(1, std::memory_order_relaxed);
    shared_.stats.connections_active.fetch_add(1, std::memory_order_relaxed);
  }
  virtual ~Session() {
    destroying_ = true;
    registry_.erase(this);
    if (session_ != nullptr) nghttp2_session_del(session_);
    streams_.clear();
    {
      std::lock_guard lock(shared_.mutex);
      shared_.stats.connections_active.fetch_sub(1, std::memory_order_relaxed);
    }
    shared_.drained.notify_all();
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Sends GOAWAY: streams in flight finish, new ones are refused; the connection closes when
  // the last stream ends. Worker thread.
  virtual void go_away() = 0;
  // Closes the socket at once; calls in flight are cancelled. Worker thread.
  virtual void close() = 0;

  // A stream queued output: write it out now, or after the input being processed.
  void request_flush() {
    if (!receiving_) flush();  // otherwise the reader flushes once the input is processed
  }

  nghttp2_session* nghttp2() const { return session_; }
  Shared& shared() { return shared_; }

 protected:
  // Writes what nghttp2 has to send.
  virtual void flush() = 0;

  // Creates the nghttp2 session and queues the server's SETTINGS. False on failure.
  bool open_session();
  // Feeds received bytes; false when the connection must close (HTTP/2 error).
  bool receive(const std::uint8_t* data, std::size_t size) {
    receiving_ = true;
    const ssize_t consumed = nghttp2_session_mem_recv(session_, data, size);
    receiving_ = false;
    if (consumed < 0) {
      shared_.stats.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("gRPC connection: HTTP/2 error: {}", nghttp2_strerror(int(consumed)));
      return false;
    }
    return true;
  }
  // Tells every unfinished call that the connection is gone.
  void cancel_streams() {
    for (auto& [id, stream] : streams_) stream->cancel();
  }
  bool idle() const { return streams_.empty(); }

  nghttp2_session* session_ = nullptr;
  bool draining_ = false;

 private:
  static const nghttp2_session_callbacks* callbacks();
  static Session& of(void* user_data) { return *static_cast<Session*>(user_data); }
  Stream* stream(std::int32_t id) {
    return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session_, id));
  }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t name_length, const std::uint8_t* value, std::size_t value_length,
                       std::uint8_t flags, void* user_data);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int on_data_chunk(nghttp2_session*, std::uint8_t flags, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t length, void* user_data);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                             void* user_data);

  Shared& shared_;
  std::unordered_set<Session*>& registry_;  // the worker's live sessions
  std::unordered_map<std::int32_t, std::unique_ptr<Stream>> streams_;
  bool receiving_ = false;
  bool destroying_ = false;
};

ssize_t read_body_callback(nghttp2_session*, std::int32_t, std::uint8_t* buffer, std::size_t length,
                           std::uint32_t* flags, nghttp2_data_source* source, void*) {
  return static_cast<Stream*>(source->ptr)->read_body(buffer, length, flags);
}

void Stream::dispatch() {
  Shared& shared = session_.shared();
  if (method != "POST") {
    fail(GrpcCode::kUnimplemented, fmt::format("gRPC requires POST, not {}", method));
    return;
  }
  if (!content_type.starts_with("application/grpc")) {
    // The gRPC protocol answers a non-gRPC request with HTTP 415 and no gRPC status.
    const std::string content_type_text = "text/plain";
    const nghttp2_nv fields[] = {header(":status", "415"),
                                 header("content-type", content_type_text)};
    finished_ = true;
    response_started_ = true;
    nghttp2_submit_response(session_.nghttp2(), id_, fields, std::size(fields), nullptr);
    session_.request_flush();
    return;
  }
  const auto found = shared.methods.find(path);
  if (found == shared.methods.end()) {
    shared.stats.unknown_methods.fetch_add(1, std::memory_order_relaxed);
    finish(GrpcCode::kUnimplemented, fmt::format("unknown method {}", path));
    return;
  }
  shared.stats.calls_total.fetch_add(1, std::memory_order_relaxed);
  call_ = found->second(*this);
}

bool Stream::check_prefix(const std::uint8_t* data, std::uint32_t& length) {
  length = (std::uint32_t{data[1]} << 24) | (std::uint32_t{data[2]} << 16) |
           (std::uint32_t{data[3]} << 8) | std::uint32_t{data[4]};
  const std::size_t limit = session_.shared().options.max_receive_message_bytes;
  if (data[0] != 0) {
    fail(data[0] == 1 ? GrpcCode::kUnimplemented : GrpcCode::kInternal,
         data[0] == 1 ? "compressed messages are not supported (grpc-accept-encoding: identity)"
                      : fmt::format("invalid message flag {}", data[0]));
    return false;
  }
  if (limit > 0 && length > limit) {
    fail(GrpcCode::kResourceExhausted,
         fmt::format("received message larger than max ({} vs. {})", length, limit));
    return false;
  }
  return true;
}

void Stream::receive(const std::uint8_t* data, std::size_t size) {
  if (finished_ || call_ == nullptr) return;
  // Fast path: whole messages straight from nghttp2's buffer.
  while (inbound_.empty() && size >= kMessagePrefixBytes) {
    std::uint32_t length = 0;
    if (!check_prefix(data, length)) return;
    if (size - kMessagePrefixBytes < length) {
      inbound_.reserve(kMessagePrefixBytes + length);
      break;
    }
    deliver(data + kMessagePrefixBytes, length);
    if (finished_) return;
    data += kMessagePrefixBytes + length;
    size -= kMessagePrefixBytes + length;
  }
  if (size == 0) return;
  inbound_.append(reinterpret_cast<const char*>(data), size);
  std::size_t offset = 0;
  while (inbound_.size() - offset >= kMessagePrefixBytes) {
    const auto* prefix = reinterpret_cast<const std::uint8_t*>(inbound_.data() + offset);
    std::uint32_t length = 0;
    if (!check_prefix(prefix, length)) return;
    if (inbound_.size() - offset - kMessagePrefixBytes < length) {
      break;
    }
    deliver(prefix + kMessagePrefixBytes, length);
    if (finished_) return;
    offset += kMessagePrefixBytes + length;
  }
  inbound_.erase(0, offset);
}

void Stream::deliver(const std::uint8_t* data, std::size_t size) {
  call_->on_message(std::string_view(reinterpret_cast<const char*>(data), size));
}

void Stream::half_close() {
  remote_closed = true;
  if (finished_ || call_ == nullptr) return;
  if (!inbound_.empty()) {
    fail(GrpcCode::kInternal, "the request ended inside a message");
    return;
  }
  call_->on_half_close();
}

void Stream::fail(GrpcCode code, std::string message) {
  session_.shared().stats.bad_messages.fetch_add(1, std::memory_order_relaxed);
  finish(code, message);
  notify_cancel();
}

void Stream::cancel() {
  const bool finished_by_call = finished_;
  finished_ = true;  // the responder is inert from here on
  if (!finished_by_call) notify_cancel();
}

void Stream::notify_cancel() {
  if (call_ != nullptr && !call_cancelled_) {
    call_cancelled_ = true;
    call_->on_cancel();
  }
}

void Stream::send(const google::protobuf::MessageLite& message) {
  if (finished_) return;
  const std::size_t size = message.ByteSizeLong();
  if (outbound_sent_ > 0) {
    outbound_.erase(0, outbound_sent_);
    outbound_sent_ = 0;
  }
  const std::size_t offset = outbound_.size();
  outbound_.resize(offset + kMessagePrefixBytes + size);
  auto* out = reinterpret_cast<std::uint8_t*>(outbound_.data() + offset);
  out[0] = 0;
  out[1] = static_cast<std::uint8_t>(size >> 24);
  out[2] = static_cast<std::uint8_t>(size >> 16);
  out[3] = static_cast<std::uint8_t>(size >> 8);
  out[4] = static_cast<std::uint8_t>(size);
  message.SerializeWithCachedSizesToArray(out + kMessagePrefixBytes);
  start_or_resume();
}

void Stream::finish(GrpcCode code, std::string_view message) {
  if (finished_) return;
  finished_ = true;
  code_ = code;
  status_message_ = percent_encode(message);
  if (!response_started_) {
    // Trailers-only: one HEADERS frame with the status, ending the stream.
    response_started_ = true;
    const std::string status = std::to_string(static_cast<int>(code));
    nghttp2_nv fields[] = {header(":status", "200"), header("content-type", "application/grpc"),
                           header("grpc-status", status), header("grpc-message", status_message_)};
    const std::size_t count = status_message_.empty() ? 3 : 4;
    nghttp2_submit_response(session_.nghttp2(), id_, fields, count, nullptr);
    session_.request_flush();
    return;
  }
  start_or_resume();
}

void Stream::start_or_resume() {
  if (!response_started_) {
    response_started_ = true;
    const nghttp2_nv fields[] = {header(":status", "200"),
                                 header("content-type", "application/grpc"),
                                 header("grpc-accept-encoding", "identity")};
    nghttp2_data_provider body;
    body.source.ptr = this;
    body.read_callback = read_body_callback;
    nghttp2_submit_response(session_.nghttp2(), id_, fields, std::size(fields), &body);
  } else if (body_deferred_) {
    body_deferred_ = false;
    nghttp2_session_resume_data(session_.nghttp2(), id_);
  }
  session_.request_flush();
}

ssize_t Stream::read_body(std::uint8_t* buffer, std::size_t length, std::uint32_t* flags) {
  const std::size_t available = outbound_.size() - outbound_sent_;
  std::size_t copied = 0;
  if (available > 0) {
    copied = std::min(length, available);
    std::memcpy(buffer, outbound_.data() + outbound_sent_, copied);
    outbound_sent_ += copied;
    if (outbound_sent_ == outbound_.size()) {
      outbound_.clear();
      outbound_sent_ = 0;
    }
  }
  if (outbound_.empty() && finished_) {
    // The body ends here; the stream ends with the trailers.
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    submit_trailers();
    return static_cast<ssize_t>(copied);
  }
  if (copied == 0) {
    body_deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(copied);
}

void Stream::submit_trailers() {
  const std::string status = std::to_string(static_cast<int>(code_));
  const nghttp2_nv fields[] = {header("grpc-status", status),
                               header("grpc-message", status_message_)};
  nghttp2_submit_trailer(session_.nghttp2(), id_, fields, status_message_.empty() ? 1 : 2);
}

const nghttp2_session_callbacks* Session::callbacks() {
  static const nghttp2_session_callbacks* const kCallbacks = [] {
    nghttp2_session_callbacks* callbacks = nullptr;
    if (nghttp2_session_callbacks_new(&callbacks) != 0) throw std::bad_alloc();
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &Session::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, &Session::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &Session::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &Session::on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, &Session::on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &Session::on_stream_close);
    return callbacks;  // copied into each session; kept for the process's life
  }();
  return kCallbacks;
}

bool Session::open_session() {
  if (nghttp2_session_server_new(&session_, callbacks(), this) != 0) return false;
  const ServerOptions& options = shared_.options;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options.stream_window_bytes},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, kMaxFrameBytes},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0) {
    return false;
  }
  // The connection window only moves by WINDOW_UPDATE (it is not a setting).
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<std::int32_t>(options.connection_window_bytes));
  return true;
}

int Session::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  Session& self = of(user_data);
  if (self.destroying_ || frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST || self.draining_) {
    return 0;
  }
  const std::int32_t id = frame->hd.stream_id;
  auto stream = std::make_unique<Stream>(self, id);
  nghttp2_session_set_stream_user_data(self.session_, id, stream.get());
  self.streams_.emplace(id, std::move(stream));
  return 0;
}

int Session::on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t name_length, const std::uint8_t* value, std::size_t value_length,
                       std::uint8_t, void* user_data) {
  Session& self = of(user_data);
  if (self.destroying_ || frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  Stream* stream = self.stream(frame->hd.stream_id);
  if (stream == nullptr) return 0;
  const std::string_view key(reinterpret_cast<const char*>(name), name_length);
  const std::string_view text(reinterpret_cast<const char*>(value), value_length);
  if (key == ":path") {
    stream->path.assign(text);
  } else if (key == ":method") {
    stream->method.assign(text);
  } else if (key == "content-type") {
    stream->content_type.assign(text);
  }
  return 0;
}

int Session::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  Session& self = of(user_data);
  if (self.destroying_) return 0;
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  Stream* stream = self.stream(frame->hd.stream_id);
  if (stream == nullptr) return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    stream->dispatch();
  }
  if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) stream->half_close();
  return 0;
}

int Session::on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t length, void* user_data) {
  Session& self = of(user_data);
  if (self.destroying_) return 0;
  if (Stream* stream = self.stream(stream_id)) stream->receive(data, length);
  return 0;
}

int Session::on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  Session& self = of(user_data);
  if (self.destroying_) return 0;
  if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
    // Our side is complete. A client still sending gets RST_STREAM(NO_ERROR): the answer is
    // final and its remaining request bytes are not needed.
    Stream* stream = self.stream(frame->hd.stream_id);
    if (stream != nullptr && !stream->remote_closed) {
      nghttp2_submit_rst_stream(self.session_, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                NGHTTP2_NO_ERROR);
    }
  }
  return 0;
}

int Session::on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t,
                             void* user_data) {
  Session& self = of(user_data);
  if (self.destroying_) return 0;
  const auto found = self.streams_.find(stream_id);
  if (found == self.streams_.end()) return 0;
  std::unique_ptr<Stream> stream = std::move(found->second);
  self.streams_.erase(found);
  stream->cancel();  // a no-op for a call that finished
  return 0;
}

// The socket side of a Session: plaintext TCP or TLS.
template <typename Socket>
class Connection final : public Session, public std::enable_shared_from_this<Connection<Socket>> {
 public:
  template <typename... SocketArgs>
  Connection(Shared& shared, std::unordered_set<Session*>& registry, SocketArgs&&... socket_args)
      : Session(shared, registry), socket_(std::forward<SocketArgs>(socket_args)...) {
    registry.insert(this);
  }

  void start() {
    if constexpr (std::is_same_v<Socket, tcp::socket>) {
      begin();
    } else {
      socket_.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](
                                                            boost::system::error_code ec) {
        if (ec) {
          self->shared().stats.handshake_failures.fetch_add(1, std::memory_order_relaxed);
          spdlog::debug("gRPC connection: TLS handshake failed: {}", ec.message());
          self->close();
          return;
        }
        self->begin();
      });
    }
  }

  void go_away() override {
    if (closed_ || draining_) return;
    if (session_ == nullptr) {
      close();  // still in its TLS handshake: no HTTP/2 session to say GOAWAY on
      return;
    }
    draining_ = true;
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
    flush();
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    socket_.lowest_layer().close(ignored);
    cancel_streams();
  }

 protected:
  void flush() override {
    if (closed_ || writing_ || session_ == nullptr) return;
    write_buffer_.clear();
    while (write_buffer_.size() < kWriteBatchBytes) {
      const std::uint8_t* data = nullptr;
      const ssize_t size = nghttp2_session_mem_send(session_, &data);
      if (size < 0) {
        spdlog::debug("gRPC connection: HTTP/2 send error: {}", nghttp2_strerror(int(size)));
        close();
        return;
      }
      if (size == 0) break;
      write_buffer_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(size));
    }
    if (write_buffer_.empty()) {
      if (finished()) close();
      return;
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(write_buffer_),
                      [self = this->shared_from_this()](boost::system::error_code ec, std::size_t) {
                        self->writing_ = false;
                        if (ec) {
                          self->close();
                          return;
                        }
                        self->flush();
                      });
  }

 private:
  void begin() {
    if (!open_session()) {
      close();
      return;
    }
    flush();
    read();
  }

  // Nothing more to read or write (the peer went away, or GOAWAY and no streams left).
  bool finished() const {
    return (nghttp2_session_want_read(session_) == 0 &&
            nghttp2_session_want_write(session_) == 0) ||
           (draining_ && idle());
  }

  void read() {
    socket_.async_read_some(
        asio::buffer(read_buffer_),
        [self = this->shared_from_this()](boost::system::error_code ec, std::size_t size) {
          if (self->closed_) return;
          if (ec) {
            self->close();  // EOF, reset or shutdown: unfinished calls are cancelled
            return;
          }
          if (!self->receive(self->read_buffer_.data(), size)) {
            self->flush();  // the GOAWAY nghttp2 queued, if it can still go out
            self->close();
            return;
          }
          self->flush();
          if (self->closed_) return;
          self->read();
        });
  }

  Socket socket_;
  std::array<std::uint8_t, kReadBufferBytes> read_buffer_;
  std::string write_buffer_;
  bool writing_ = false;
  bool closed_ = false;
};

int select_h2(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
              unsigned int in_length, void*) {
  for (unsigned int offset = 0; offset < in_length;) {
    const unsigned int length = in[offset];
    if (length == 2 && offset + 1 + length <= in_length &&
        std::memcmp(in + offset + 1, "h2", 2) == 0) {
      *out = in + offset + 1;
      *out_length = 2;
      return SSL_TLSEXT_ERR_OK;
    }
    offset += 1 + length;
  }
  return SSL_TLSEXT_ERR_NOACK;  // no ALPN: HTTP/2 with prior knowledge over TLS
}

}  // namespace

struct Server::Impl {
  // Members are destroyed in reverse: the io_contexts (and the connections their handlers hold)
  // before the registries and the shared state they point to.
  Shared shared;
  std::optional<ssl::context> tls;
  struct Worker {
    std::unordered_set<Session*> sessions;  // touched on the worker's thread only
    asio::io_context io{1};
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
    std::thread thread;
  };
  std::vector<std::unique_ptr<Worker>> workers;
  std::optional<tcp::acceptor> acceptor;  // on workers[0]
  std::size_t next_worker = 0;
  std::uint16_t port = 0;
  bool shut_down = false;

  void accept() {
    Worker& worker = *workers[next_worker];
    next_worker = (next_worker + 1) % workers.size();
    acceptor->async_accept(
        worker.io, [this, &worker](boost::system::error_code ec, tcp::socket socket) {
          if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
          if (ec) {
            spdlog::warn("gRPC server: accept failed: {}", ec.message());
            // Back off briefly (e.g. out of file descriptors) instead of spinning.
            auto timer = std::make_shared<asio::steady_timer>(acceptor->get_executor(),
                                                              std::chrono::milliseconds(50));
            timer->async_wait([this, timer](boost::system::error_code) {
              if (acceptor->is_open()) accept();
            });
            return;
          }
          boost::system::error_code ignored;
          socket.set_option(tcp::no_delay(true), ignored);
          asio::post(worker.io, [this, &worker, socket = std::move(socket)]() mutable {
            if (tls) {
              auto connection = std::make_shared<Connection<ssl::stream<tcp::socket>>>(
                  shared, worker.sessions, std::move(socket), *tls);
              connection->start();
            } else {
              auto connection = std::make_shared<Connection<tcp::socket>>(shared, worker.sessions,
                                                                          std::move(socket));
              connection->start();
            }
          });
          accept();
        });
  }

  // Runs `action` on every live session, each on its worker's thread.
  template <typename Action>
  void for_each_session(Action action) {
    for (auto& worker : workers) {
      asio::post(worker->io, [&worker = *worker, action] {
        // Copied: an action may end a session, which erases it from the set.
        const std::vector<Session*> sessions(worker.sessions.begin(), worker.sessions.end());
        for (Session* session : sessions) {
          if (worker.sessions.contains(session)) action(*session);
        }
      });
    }
  }

  bool wait_for_no_connections(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(shared.mutex);
    return shared.drained.wait_until(lock, deadline, [this] {
      return shared.stats.connections_active.load(std::memory_order_relaxed) == 0;
    });
  }
};

Server::Server(ServerOptions options, MethodTable methods) : impl_(std::make_unique<Impl>()) {
  Impl& impl = *impl_;
  if (methods.empty()) throw std::invalid_argument("h2::Server needs at least one method");
  impl.shared.options = std::move(options);
  impl.shared.methods = std::move(methods);
  const ServerOptions& opts = impl.shared.options;
  const unsigned workers =
      opts.workers > 0 ? opts.workers : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned index = 0; index < workers; ++index) {
    impl.workers.push_back(std::make_unique<Impl::Worker>());
  }

  if (opts.tls != nullptr) {
    impl.tls.emplace(ssl::context::tls_server);
    ssl::context& context = *impl.tls;
    context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    context.use_certificate_chain(asio::buffer(opts.tls->certificate_pem), ec);
    if (!ec)
      context.use_private_key(asio::buffer(opts.tls->private_key_pem), ssl::context::pem, ec);
    if (ec) throw std::runtime_error("gRPC server: cannot use the TLS material: " + ec.message());
    SSL_CTX_set_alpn_select_cb(context.native_handle(), &select_h2, nullptr);
  }

  boost::system::error_code ec;
  const auto address = asio::ip::make_address(opts.address, ec);
  if (ec) {
    throw std::runtime_error(
        fmt::format("cannot listen for gRPC on {}: not an IP address", opts.address));
  }
  const tcp::endpoint endpoint(address, opts.port);
  const std::string where = address.is_v6() ? fmt::format("[{}]:{}", opts.address, opts.port)
                                            : fmt::format("{}:{}", opts.address, opts.port);
  tcp::acceptor& acceptor = impl.acceptor.emplace(impl.workers.front()->io);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error(fmt::format("cannot listen for gRPC on {}: {}", where, ec.message()));
  impl.port = acceptor.local_endpoint().port();

  impl.accept();
  for (auto& worker : impl.workers) {
    worker->work.emplace(worker->io.get_executor());
    worker->thread = std::thread([&io = worker->io] { io.run(); });
  }
}

Server::~Server() { shutdown(std::chrono::milliseconds(0)); }

std::uint16_t Server::port() const { return impl_->port; }
const ServerStats& Server::stats() const { return impl_->shared.stats; }

void Server::shutdown(std::chrono::milliseconds grace) {
  Impl& impl = *impl_;
  if (impl.shut_down) return;
  impl.shut_down = true;
  asio::post(impl.workers.front()->io, [&impl] {
    boost::system::error_code ignored;
    impl.acceptor->close(ignored);
  });
  const auto now = std::chrono::steady_clock::now();
  if (grace.count() > 0) {
    impl.for_each_session([](Session& session) { session.go_away(); });
    impl.wait_for_no_connections(now + grace);
  }
  impl.for_each_session([](Session& session) { session.close(); });
  // Closed sockets end their handlers promptly; bounded anyway so shutdown never hangs.
  impl.wait_for_no_connections(std::chrono::steady_clock::now() + std::chrono::seconds(2));
  for (auto& worker : impl.workers) worker->work.reset();
  for (auto& worker : impl.workers) worker->io.stop();
  for (auto& worker : impl.workers) {
    if (worker->thread.joinable()) worker->thread.join();
  }
}

}  // namespace infergate::extproc::h2
