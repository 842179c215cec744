#include "extproc/client.h"

#include <fmt/format.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <stdexcept>

#include "director/protocol.h"
#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "prom/registry.h"

namespace infergate::extproc {
namespace {

namespace asio = boost::asio;
namespace pb = ::envoy::service::ext_proc::v3;
namespace core = ::envoy::config::core::v3;
namespace protocol = director::protocol;
using ProcessingMode = ::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;
using SteadyTime = std::chrono::steady_clock::time_point;

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
  }
  return out;
}

// Envoy sends header values in raw_value only (facts §2.6).
void add_header(core::HeaderMap& map, const std::string& name, const std::string& value) {
  core::HeaderValue* header = map.add_headers();
  header->set_key(name);
  header->set_raw_value(value);
}

const std::string& header_value(const core::HeaderValue& header) {
  return header.raw_value().empty() ? header.value() : header.raw_value();
}

// Envoy's default mutation rules: no x-envoy-*, no routing pseudo-headers or host, no removal of
// pseudo-headers; :path and :status may be set.
bool mutation_allowed(std::string_view name, bool removal) {
  if (name.empty() || name.starts_with("x-envoy-") || name == "host") return false;
  if (name.front() != ':') return true;
  if (removal) return false;
  return name == ":path" || name == ":status";
}

bool value_allowed(std::string_view value) {
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

void erase_all(director::Headers& headers, std::string_view name) {
  std::erase_if(headers, [&](const auto& header) { return header.first == name; });
}

void set_header_value(director::Headers& headers, const std::string& name, std::string value) {
  auto first = std::find_if(headers.begin(), headers.end(),
                            [&](const auto& header) { return header.first == name; });
  if (first == headers.end()) {
    headers.emplace_back(name, std::move(value));
    return;
  }
  first->second = std::move(value);
  const auto offset = first - headers.begin() + 1;
  headers.erase(std::remove_if(headers.begin() + offset, headers.end(),
                               [&](const auto& header) { return header.first == name; }),
                headers.end());
}

bool has_header(const director::Headers& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const auto& header) { return header.first == name; });
}

ImmediateReply immediate_reply(const pb::ImmediateResponse& response) {
  ImmediateReply reply;
  reply.status = static_cast<int>(response.status().code());
  // An invalid status (0, the proto's default) becomes a 500, as Envoy's local reply would.
  if (reply.status < 100 || reply.status > 599) reply.status = 500;
  apply_header_mutation(response.headers(), reply.headers);
  reply.body = response.body();
  reply.details = response.details();
  return reply;
}

}  // namespace

std::string_view error_kind_name(ExtProcErrorKind kind) {
  switch (kind) {
    case ExtProcErrorKind::kUnavailable:
      return "unavailable";
    case ExtProcErrorKind::kStreamBroken:
      return "stream_broken";
    case ExtProcErrorKind::kTimeout:
      return "timeout";
    case ExtProcErrorKind::kProtocol:
      return "protocol";
    case ExtProcErrorKind::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

// --- pure helpers ---

std::size_t strip_steering_headers(director::Headers& headers) {
  return std::erase_if(headers, [](const auto& header) {
    return header.first == protocol::kDestinationHeader || header.first == protocol::kServedKey ||
           header.first == protocol::kSubsetKey;
  });
}

std::size_t apply_header_mutation(const pb::HeaderMutation& mutation, director::Headers& headers) {
  std::size_t refused = 0;
  for (const std::string& raw_name : mutation.remove_headers()) {
    const std::string name = lower(raw_name);
    if (!mutation_allowed(name, /*removal=*/true)) {
      ++refused;
      continue;
    }
    erase_all(headers, name);
  }
  for (const core::HeaderValueOption& option : mutation.set_headers()) {
    const std::string name = lower(option.header().key());
    const std::string& value = header_value(option.header());
    if (!mutation_allowed(name, /*removal=*/false) || !value_allowed(value)) {
      ++refused;
      continue;
    }
    if (value.empty() && !option.keep_empty_value()) {
      erase_all(headers, name);
      continue;
    }
    bool append = false;
    if (option.has_append()) {
      append = option.append().value();
    } else {
      switch (option.append_action()) {
        case core::HeaderValueOption::ADD_IF_ABSENT:
          if (has_header(headers, name)) continue;
          break;
        case core::HeaderValueOption::OVERWRITE_IF_EXISTS:
          if (!has_header(headers, name)) continue;
          break;
        default:  // APPEND_IF_EXISTS_OR_ADD (the default) and OVERWRITE_IF_EXISTS_OR_ADD
          break;
      }
    }
    if (append) {
      headers.emplace_back(name, value);
    } else {
      set_header_value(headers, name, value);
    }
  }
  return refused;
}

std::vector<std::string> split_destinations(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view entry = list.substr(0, comma);
    while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
    while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
    if (!entry.empty()) out.emplace_back(entry);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  return out;
}

// --- metrics ---

struct ExtProcClient::Metrics {
  explicit Metrics(prom::Registry& registry)
      : streams(registry
                    .counter("infergate_extproc_client_streams",
                             "ext_proc streams opened to the endpoint picker.")
                    .with({})),
        active(registry
                   .gauge("infergate_extproc_client_active_streams",
                          "ext_proc streams to the endpoint picker open now.")
                   .with({})),
        errors(registry.counter("infergate_extproc_client_errors",
                                "Exchanges with the endpoint picker that failed, by kind.",
                                {"kind"})),
        immediate(registry.counter("infergate_extproc_client_immediate_responses",
                                   "Local replies (ImmediateResponse) received, by HTTP status.",
                                   {"code"})),
        protocol_errors(registry.counter(
            "infergate_extproc_client_protocol_errors",
            "Answers from the endpoint picker that broke the protocol or were tolerated, by "
            "reason.",
            {"reason"})),
        refused_mutations(registry
                              .counter("infergate_extproc_client_refused_header_mutations",
                                       "Header mutations refused by the mutation rules.")
                              .with({})),
        failures(registry.counter("infergate_extproc_client_failures",
                                  "Failed exchanges handled by the failure mode, by mode.",
                                  {"mode"})) {
    for (ExtProcErrorKind kind :
         {ExtProcErrorKind::kUnavailable, ExtProcErrorKind::kStreamBroken,
          ExtProcErrorKind::kTimeout, ExtProcErrorKind::kProtocol, ExtProcErrorKind::kCancelled}) {
      by_kind[static_cast<std::size_t>(kind)] = &errors.with({error_kind_name(kind)});
    }
  }

  prom::Counter& streams;
  prom::Gauge& active;
  prom::CounterFamily& errors;
  prom::CounterFamily& immediate;
  prom::CounterFamily& protocol_errors;
  prom::Counter& refused_mutations;
  prom::CounterFamily& failures;
  std::array<prom::Counter*, 5> by_kind{};
};

// --- the gRPC stream ---

// The channels and their stubs, and the calls in flight on them: gRPC's C++ channel must outlive
// its callback calls, so the client's destructor cancels those left and waits for them.
struct ExtProcClient::Channels {
  std::vector<std::shared_ptr<::grpc::Channel>> channels;
  std::vector<std::unique_ptr<pb::ExternalProcessor::Stub>> stubs;
  std::atomic<std::uint64_t> next{0};
  std::mutex mutex;
  std::condition_variable idle;
  std::set<ExtProcExchange::Call*> live;  // calls before OnDone (each alive: it holds itself)
  int finishing = 0;                      // calls past OnDone whose objects are being released

  pb::ExternalProcessor::Stub& next_stub() {
    return *stubs[next.fetch_add(1, std::memory_order_relaxed) % stubs.size()];
  }
  void add(ExtProcExchange::Call* call);
  // OnDone: the call leaves `live` (it may no longer be cancelled) but the client still waits
  // for it until finished().
  void retire(ExtProcExchange::Call* call);
  void finished();
  void cancel_all_and_wait();
};

// One Process call on gRPC's callback API. Owns itself (self_) from start() until OnDone; the
// exchange holds another reference. Writes go out one at a time from a queue; one read is always
// outstanding and its answers are queued. The waiting coroutine is resumed by posting its
// completion handler to its own executor; gRPC calls are never made while holding mutex_.
class ExtProcExchange::Call final
    : public ::grpc::ClientBidiReactor<pb::ProcessingRequest, pb::ProcessingResponse>,
      public std::enable_shared_from_this<ExtProcExchange::Call> {
 public:
  explicit Call(std::shared_ptr<ExtProcClient::Metrics> metrics) : metrics_(std::move(metrics)) {}

  // The call keeps its channel alive by itself (gRPC's core reference), so the Call holds no
  // C++ channel: it may be destroyed on a gRPC thread without tearing a channel down there.
  void start(ExtProcClient::Channels& channels, std::vector<pb::ProcessingRequest> first_writes) {
    metrics_->streams.inc();
    metrics_->active.inc();
    self_ = shared_from_this();
    channels_ = &channels;
    channels.add(this);
    channels.next_stub().async()->Process(&context_, this);
    // The exchange starts writes from its strand, outside gRPC's reactions; the hold keeps gRPC
    // from finishing the call (OnDone) under it until the last write is started.
    AddHold();
    {
      std::lock_guard lock(mutex_);
      for (auto& message : first_writes) writes_.push_back(std::move(message));
    }
    StartRead(&read_);
    pump_writes();
    StartCall();
  }

  void write(pb::ProcessingRequest message) {
    {
      std::lock_guard lock(mutex_);
      if (hold_released_ || half_close_requested_) return;  // over: nothing more to send
      writes_.push_back(std::move(message));
    }
    pump_writes();
  }

  // Half-closes once the queued writes are out.
  void writes_done() {
    {
      std::lock_guard lock(mutex_);
      half_close_requested_ = true;
    }
    pump_writes();
  }

  void cancel() {
    {
      std::lock_guard lock(mutex_);
      if (status_) return;
      cancelled_ = true;
    }
    context_.TryCancel();
  }

  // No write will be started any more: gRPC may end the call. Called once the half-close was
  // started, when the read side ends (the call is over), or by the exchange's destructor; when
  // a write is being started at that moment, the hold goes right after it. Idempotent.
  void release_hold() {
    {
      std::lock_guard lock(mutex_);
      if (hold_released_) return;
      if (starting_ops_ > 0) {
        release_pending_ = true;
        return;
      }
      hold_released_ = true;
    }
    RemoveHold();  // may run OnDone at once
  }

  // The next answer, or nullopt when none is queued.
  std::optional<pb::ProcessingResponse> take_answer() {
    std::lock_guard lock(mutex_);
    if (answers_.empty()) return std::nullopt;
    pb::ProcessingResponse answer = std::move(answers_.front());
    answers_.pop_front();
    return answer;
  }

  // The call's final status once it is over (and no answers are left to take).
  struct End {
    ::grpc::Status status;
    bool cancelled = false;
    bool answered = false;
  };
  std::optional<End> end() const {
    std::lock_guard lock(mutex_);
    if (!status_ || !answers_.empty()) return std::nullopt;
    return End{*status_, cancelled_, answered_};
  }

  // Waits on the caller's executor until an answer is queued or the call is over (true), or
  // until `deadline` (false).
  asio::awaitable<bool> wait(std::optional<SteadyTime> deadline) {
    auto executor = co_await asio::this_coro::executor;
    std::unique_ptr<asio::steady_timer> timer;
    const bool woken = co_await asio::async_initiate<decltype(asio::use_awaitable), void(bool)>(
        [this, &executor, &timer, deadline](auto handler) {
          std::unique_lock lock(mutex_);
          if (!answers_.empty() || status_) {
            lock.unlock();
            asio::post(executor,
                       [handler = std::move(handler)]() mutable { std::move(handler)(true); });
            return;
          }
          waiter_ = std::make_unique<WaiterOf<decltype(handler)>>(std::move(handler), executor);
          const std::uint64_t generation = ++waiter_generation_;
          lock.unlock();
          if (deadline) {
            timer = std::make_unique<asio::steady_timer>(executor, *deadline);
            timer->async_wait(
                [self = shared_from_this(), generation](boost::system::error_code ec) {
                  if (!ec) self->wake(false, generation);
                });
          }
        },
        asio::use_awaitable);
    if (timer) timer->cancel();
    co_return woken;
  }

  // --- reactions (gRPC threads) ---

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock(mutex_);
      writing_ = false;
      if (!ok) writes_.clear();  // the call is over; OnDone tells why
    }
    if (ok) pump_writes();
  }

  void OnWritesDoneDone(bool /*ok*/) override {}

  void OnReadDone(bool ok) override {
    if (!ok) {  // the stream ended: let OnDone come with its status
      release_hold();
      return;
    }
    {
      std::lock_guard lock(mutex_);
      answers_.push_back(std::move(read_));
      answered_ = true;
    }
    read_.Clear();
    wake(true, 0);
    StartRead(&read_);
  }

  void OnDone(const ::grpc::Status& status) override {
    std::shared_ptr<Call> keep;
    {
      std::lock_guard lock(mutex_);
      status_ = status;
      keep = std::move(self_);
    }
    metrics_->active.dec();
    wake(true, 0);
    // The call's ClientContext holds a reference to its channel. If that were the channel's last
    // one, the channel would be destroyed here, on a gRPC callback thread, and with grpc++ 1.51
    // that tears down the callback completion queue under the thread that runs this very
    // callback (a self-join that fails silently, then a double free). So this object (and its
    // context) goes first, while the client still waits for it (`finishing`); only then may the
    // client, and with it the channels' last references, go, on the thread destroying it.
    ExtProcClient::Channels* channels = channels_;
    channels->retire(this);
    keep.reset();          // `this` may be gone from here on
    channels->finished();  // the client may be gone right after this
  }

 private:
  // Resumes the waiting coroutine, if any: `generation` 0 wakes whichever waits, another only
  // the wait it belongs to (a timer of an older wait must not end a newer one).
  void wake(bool woken, std::uint64_t generation) {
    std::unique_ptr<Waiter> waiter;
    {
      std::lock_guard lock(mutex_);
      if (!waiter_ || (generation != 0 && generation != waiter_generation_)) return;
      waiter = std::move(waiter_);
    }
    waiter->complete(woken);
  }

  // The suspended coroutine's completion handler and its executor (its strand).
  struct Waiter {
    virtual ~Waiter() = default;
    // Posts the completion to the executor: the coroutine never resumes on a gRPC thread.
    virtual void complete(bool woken) = 0;
  };
  template <typename Handler>
  struct WaiterOf final : Waiter {
    WaiterOf(Handler handler, asio::any_io_executor executor)
        : handler(std::move(handler)), executor(std::move(executor)) {}
    void complete(bool woken) override {
      asio::post(executor,
                 [handler = std::move(handler), woken]() mutable { std::move(handler)(woken); });
    }
    Handler handler;
    asio::any_io_executor executor;
  };

  void pump_writes() {
    const pb::ProcessingRequest* next = nullptr;
    bool half_close = false;
    {
      std::lock_guard lock(mutex_);
      if (writing_ || half_closed_ || hold_released_) return;
      if (!writes_.empty()) {
        current_write_ = std::move(writes_.front());
        writes_.pop_front();
        writing_ = true;
        next = &current_write_;
      } else if (half_close_requested_) {
        half_closed_ = true;
        half_close = true;
      } else {
        return;
      }
      ++starting_ops_;  // the hold stays until this op is started
    }
    if (next != nullptr) {
      StartWrite(next);
    } else {
      StartWritesDone();
    }
    bool release = half_close;
    {
      std::lock_guard lock(mutex_);
      --starting_ops_;
      if (release_pending_ && starting_ops_ == 0) release = true;
    }
    if (release) release_hold();
  }

  std::shared_ptr<ExtProcClient::Metrics> metrics_;
  ExtProcClient::Channels* channels_ = nullptr;  // outlives the call (see Channels)
  ::grpc::ClientContext context_;
  std::shared_ptr<Call> self_;

  mutable std::mutex mutex_;
  std::deque<pb::ProcessingRequest> writes_;
  pb::ProcessingRequest current_write_;  // alive while its write is in flight
  bool writing_ = false;
  bool half_close_requested_ = false;
  bool half_closed_ = false;
  bool hold_released_ = false;
  bool release_pending_ = false;
  int starting_ops_ = 0;         // ops being started outside the lock
  pb::ProcessingResponse read_;  // touched only by the read chain
  std::deque<pb::ProcessingResponse> answers_;
  bool answered_ = false;
  bool cancelled_ = false;
  std::optional<::grpc::Status> status_;
  std::unique_ptr<Waiter> waiter_;
  std::uint64_t waiter_generation_ = 0;
};

// --- client ---

void ExtProcClient::Channels::add(ExtProcExchange::Call* call) {
  std::lock_guard lock(mutex);
  live.insert(call);
}

void ExtProcClient::Channels::retire(ExtProcExchange::Call* call) {
  std::lock_guard lock(mutex);
  live.erase(call);
  ++finishing;
}

void ExtProcClient::Channels::finished() {
  // Notified under the lock: the destructor waiting on `idle` may free this object as soon as
  // the lock is released, and nothing here is touched after that.
  std::lock_guard lock(mutex);
  --finishing;
  if (live.empty() && finishing == 0) idle.notify_all();
}

void ExtProcClient::Channels::cancel_all_and_wait() {
  std::vector<std::shared_ptr<ExtProcExchange::Call>> calls;
  {
    std::lock_guard lock(mutex);
    // A registered call has not finished OnDone, so its self-reference still holds it.
    for (ExtProcExchange::Call* call : live) calls.push_back(call->shared_from_this());
  }
  for (auto& call : calls) call->cancel();  // may run OnDone inline: no lock held
  calls.clear();
  std::unique_lock lock(mutex);
  idle.wait(lock, [this] { return live.empty() && finishing == 0; });
}

ExtProcClient::ExtProcClient(ExtProcClientOptions options, prom::Registry& registry)
    : options_(std::move(options)),
      channels_(std::make_unique<Channels>()),
      metrics_(std::make_shared<Metrics>(registry)) {
  if (options_.target.empty()) throw std::invalid_argument("ext_proc client: empty target");
  std::shared_ptr<::grpc::ChannelCredentials> credentials;
  ::grpc::ChannelArguments base_arguments;
  if (!options_.tls) {
    credentials = ::grpc::InsecureChannelCredentials();
  } else if (!options_.tls_verify) {
    // GIE's Envoy config: TLS to the EPP with certificate validation disabled.
    ::grpc::experimental::TlsChannelCredentialsOptions tls;
    tls.set_verify_server_certs(false);
    tls.set_check_call_host(false);
    tls.set_certificate_verifier(std::make_shared<::grpc::experimental::NoOpCertificateVerifier>());
    credentials = ::grpc::experimental::TlsCredentials(tls);
  } else {
    ::grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options_.tls_root_certs_pem;
    credentials = ::grpc::SslCredentials(ssl);
    if (!options_.tls_server_name.empty()) {
      base_arguments.SetSslTargetNameOverride(options_.tls_server_name);
    }
  }
  const int channels = std::max(1, options_.channels);
  for (int index = 0; index < channels; ++index) {
    ::grpc::ChannelArguments arguments = base_arguments;
    // A distinct argument per channel keeps gRPC from sharing one connection between them.
    arguments.SetInt("infergate.extproc_client.connection", index);
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels_->channels.push_back(
        ::grpc::CreateCustomChannel(options_.target, credentials, arguments));
    channels_->stubs.push_back(pb::ExternalProcessor::NewStub(channels_->channels.back()));
  }
}

ExtProcClient::~ExtProcClient() { channels_->cancel_all_and_wait(); }

void ExtProcClient::cancel_all() { channels_->cancel_all_and_wait(); }

std::unique_ptr<ExtProcExchange> ExtProcClient::start_exchange() {
  return std::unique_ptr<ExtProcExchange>(new ExtProcExchange(*this));
}

std::optional<Status> ExtProcClient::on_failure(const ExtProcError& error) {
  if (options_.failure_mode == FailureMode::kFailOpen) {
    metrics_->failures.with({"fail_open"}).inc();
    return std::nullopt;
  }
  metrics_->failures.with({"fail_close"}).inc();
  return Status::unavailable(fmt::format("endpoint picker unavailable: {}", error.message));
}

// --- exchange ---

ExtProcExchange::ExtProcExchange(ExtProcClient& client) : client_(client) {}

ExtProcExchange::~ExtProcExchange() {
  std::shared_ptr<Call> call;
  {
    std::lock_guard lock(call_mutex_);
    call = std::move(call_);
  }
  if (call) {
    call->cancel();  // no-op when the call is over
    call->release_hold();
  }
}

void ExtProcExchange::cancel() {
  std::lock_guard lock(call_mutex_);
  cancel_requested_ = true;
  if (call_) call_->cancel();
}

bool ExtProcExchange::done() const { return state_ == State::kDone || state_ == State::kFailed; }

ExtProcError ExtProcExchange::fail(ExtProcError error) {
  if (!error_) {
    error_ = error;
    client_.metrics_->by_kind[static_cast<std::size_t>(error.kind)]->inc();
  }
  state_ = State::kFailed;
  std::lock_guard lock(call_mutex_);
  if (call_) call_->cancel();
  return *error_;
}

ImmediateReply ExtProcExchange::end_with_immediate(const pb::ImmediateResponse& reply) {
  ImmediateReply local = immediate_reply(reply);
  client_.metrics_->immediate.with({std::to_string(local.status)}).inc();
  state_ = State::kDone;
  call_->writes_done();
  return local;
}

ExtProcError ExtProcExchange::protocol_error(std::string_view reason, std::string message) {
  client_.metrics_->protocol_errors.with({reason}).inc();
  return fail({ExtProcErrorKind::kProtocol, std::move(message)});
}

asio::awaitable<ExtProcResult<pb::ProcessingResponse>> ExtProcExchange::next_answer(bool timed) {
  const auto timeout = client_.options_.message_timeout;
  std::optional<SteadyTime> deadline;
  if (timed && timeout.count() > 0) deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (error_) co_return *error_;
    if (auto answer = call_->take_answer()) co_return std::move(*answer);
    if (auto end = call_->end()) {
      const ::grpc::Status& status = end->status;
      if (end->cancelled || status.error_code() == ::grpc::StatusCode::CANCELLED) {
        co_return fail({ExtProcErrorKind::kCancelled, "the exchange was cancelled"});
      }
      if (status.ok()) {
        co_return fail({ExtProcErrorKind::kStreamBroken,
                        "the endpoint picker ended the stream before answering"});
      }
      const std::string message = fmt::format(
          "gRPC status {}: {}", static_cast<int>(status.error_code()), status.error_message());
      if (status.error_code() == ::grpc::StatusCode::UNAVAILABLE && !end->answered) {
        co_return fail({ExtProcErrorKind::kUnavailable, message});
      }
      if (status.error_code() == ::grpc::StatusCode::DEADLINE_EXCEEDED) {
        co_return fail({ExtProcErrorKind::kTimeout, message});
      }
      co_return fail({ExtProcErrorKind::kStreamBroken, message});
    }
    if (!co_await call_->wait(deadline)) {
      co_return fail({ExtProcErrorKind::kTimeout,
                      fmt::format("no answer from the endpoint picker within {} ms",
                                  client_.options_.message_timeout.count())});
    }
  }
}

asio::awaitable<ExtProcResult<RequestDecision>> ExtProcExchange::process_request(
    director::Headers headers, std::string body, std::optional<std::vector<std::string>> subset) {
  if (state_ != State::kIdle) {
    if (error_) co_return *error_;
    co_return protocol_error("misuse", "process_request called twice");
  }
  strip_steering_headers(headers);
  const std::size_t chunk_bytes = std::max<std::size_t>(1, client_.options_.body_chunk_bytes);

  std::vector<pb::ProcessingRequest> messages;
  {
    pb::ProcessingRequest& first = messages.emplace_back();
    pb::HttpHeaders* http_headers = first.mutable_request_headers();
    core::HeaderMap* map = http_headers->mutable_headers();
    for (const auto& [name, value] : headers) add_header(*map, name, value);
    http_headers->set_end_of_stream(body.empty());
    pb::ProtocolConfiguration* config = first.mutable_protocol_config();
    config->set_request_body_mode(ProcessingMode::FULL_DUPLEX_STREAMED);
    config->set_response_body_mode(ProcessingMode::FULL_DUPLEX_STREAMED);
    if (subset) {
      auto& hint = (*first.mutable_metadata_context()
                         ->mutable_filter_metadata())[std::string(protocol::kSubsetNamespace)];
      auto* list = (*hint.mutable_fields())[std::string(protocol::kSubsetKey)].mutable_list_value();
      for (const std::string& entry : *subset) list->add_values()->set_string_value(entry);
    }
  }
  std::vector<std::pair<std::size_t, std::size_t>> chunks;  // offset, size of each body message
  for (std::size_t offset = 0; offset < body.size(); offset += chunk_bytes) {
    const std::size_t size = std::min(chunk_bytes, body.size() - offset);
    pb::ProcessingRequest& message = messages.emplace_back();
    message.mutable_request_body()->set_body(body.data() + offset, size);
    message.mutable_request_body()->set_end_of_stream(offset + size == body.size());
    chunks.emplace_back(offset, size);
  }

  {
    std::lock_guard lock(call_mutex_);
    if (cancel_requested_) {
      state_ = State::kFailed;
      error_ = ExtProcError{ExtProcErrorKind::kCancelled, "the exchange was cancelled"};
      client_.metrics_->by_kind[static_cast<std::size_t>(ExtProcErrorKind::kCancelled)]->inc();
      co_return *error_;
    }
    call_ = std::make_shared<Call>(client_.metrics_);
  }
  call_->start(*client_.channels_, std::move(messages));
  state_ = State::kRequestSent;

  RequestDecision decision;
  // 1. The request-headers answer (or a local reply).
  ExtProcResult<pb::ProcessingResponse> answer = co_await next_answer(/*timed=*/true);
  if (!answer) co_return answer.error();
  if (answer->has_immediate_response()) {
    decision.immediate = end_with_immediate(answer->immediate_response());
    co_return decision;
  }
  if (!answer->has_request_headers()) {
    co_return protocol_error("unexpected_answer",
                             fmt::format("expected the request_headers answer, got answer case {}",
                                         static_cast<int>(answer->response_case())));
  }
  const pb::CommonResponse& common = answer->request_headers().response();
  decision.clear_route_cache = common.clear_route_cache();
  decision.headers = std::move(headers);
  const std::size_t refused = apply_header_mutation(common.header_mutation(), decision.headers);
  if (refused > 0) client_.metrics_->refused_mutations.inc(static_cast<double>(refused));

  std::string header_destination;
  if (auto value = director::find_header(decision.headers, protocol::kDestinationHeader)) {
    header_destination = std::string(*value);
  }
  std::string metadata_destination;
  const auto& namespaces = answer->dynamic_metadata().fields();
  if (auto lb = namespaces.find(std::string(protocol::kDestinationNamespace));
      lb != namespaces.end() && lb->second.has_struct_value()) {
    for (const auto& [key, value] : lb->second.struct_value().fields()) {
      if (!value.has_string_value()) continue;
      decision.lb_metadata.emplace_back(key, value.string_value());
      if (key == protocol::kDestinationHeader) metadata_destination = value.string_value();
    }
    std::sort(decision.lb_metadata.begin(), decision.lb_metadata.end());
  }
  if (!metadata_destination.empty() && !header_destination.empty() &&
      metadata_destination != header_destination) {
    client_.metrics_->protocol_errors.with({"destination_mismatch"}).inc();
  }
  decision.destination =
      !metadata_destination.empty() ? metadata_destination : std::move(header_destination);
  decision.destinations = split_destinations(decision.destination);
  if (decision.destinations.empty())
    client_.metrics_->protocol_errors.with({"no_destination"}).inc();

  // 2. The body: streamed back in chunks until end_of_stream.
  if (common.status() == pb::CommonResponse::CONTINUE_AND_REPLACE) {
    // A header answer replacing the body ends this direction (no body answers follow).
    decision.body = common.body_mutation().body();
  } else if (!body.empty()) {
    std::size_t passed_through = 0;  // chunks answered without a body mutation
    for (bool end = false; !end;) {
      answer = co_await next_answer(/*timed=*/true);
      if (!answer) co_return answer.error();
      if (answer->has_immediate_response()) {
        decision = RequestDecision{};
        decision.immediate = end_with_immediate(answer->immediate_response());
        co_return decision;
      }
      if (!answer->has_request_body()) {
        co_return protocol_error("unexpected_answer",
                                 fmt::format("expected a request_body answer, got answer case {}",
                                             static_cast<int>(answer->response_case())));
      }
      const pb::BodyMutation& mutation = answer->request_body().response().body_mutation();
      if (mutation.has_streamed_response()) {
        decision.body += mutation.streamed_response().body();
        end = mutation.streamed_response().end_of_stream();
      } else if (mutation.mutation_case() == pb::BodyMutation::MUTATION_NOT_SET &&
                 passed_through < chunks.size()) {
        // Tolerated (GIE's lightweight EPP): an empty answer passes its chunk on unchanged.
        client_.metrics_->protocol_errors.with({"body_answer_without_mutation"}).inc();
        const auto [offset, size] = chunks[passed_through++];
        decision.body.append(body, offset, size);
        end = passed_through == chunks.size();
      } else {
        co_return protocol_error("bad_body_answer",
                                 "a request_body answer must carry a streamed_response in "
                                 "FULL_DUPLEX_STREAMED mode");
      }
    }
  }
  if (!body.empty() || !decision.body.empty()) {
    set_header_value(decision.headers, "content-length", std::to_string(decision.body.size()));
  }
  state_ = State::kRouted;
  co_return decision;
}

asio::awaitable<ExtProcResult<ResponseHeadersDecision>> ExtProcExchange::process_response_headers(
    director::Headers headers, std::string served_endpoint, bool end_of_stream) {
  if (state_ != State::kRouted) {
    if (error_) co_return *error_;
    co_return protocol_error("misuse", "process_response_headers called out of order");
  }
  pb::ProcessingRequest message;
  pb::HttpHeaders* http_headers = message.mutable_response_headers();
  for (const auto& [name, value] : headers) {
    add_header(*http_headers->mutable_headers(), name, value);
  }
  http_headers->set_end_of_stream(end_of_stream);
  auto& lb = (*message.mutable_metadata_context()
                   ->mutable_filter_metadata())[std::string(protocol::kDestinationNamespace)];
  (*lb.mutable_fields())[std::string(protocol::kServedKey)].set_string_value(
      std::move(served_endpoint));
  call_->write(std::move(message));

  ExtProcResult<pb::ProcessingResponse> answer = co_await next_answer(/*timed=*/true);
  if (!answer) co_return answer.error();
  ResponseHeadersDecision decision;
  if (answer->has_immediate_response()) {
    decision.immediate = end_with_immediate(answer->immediate_response());
    co_return decision;
  }
  if (!answer->has_response_headers()) {
    co_return protocol_error("unexpected_answer",
                             fmt::format("expected the response_headers answer, got answer case {}",
                                         static_cast<int>(answer->response_case())));
  }
  decision.headers = std::move(headers);
  const std::size_t refused = apply_header_mutation(
      answer->response_headers().response().header_mutation(), decision.headers);
  if (refused > 0) client_.metrics_->refused_mutations.inc(static_cast<double>(refused));
  if (end_of_stream) {
    state_ = State::kDone;
    call_->writes_done();
  } else {
    state_ = State::kResponseBody;
  }
  co_return decision;
}

ExtProcResult<std::monostate> ExtProcExchange::send_response_body(std::string_view chunk,
                                                                  bool end_of_stream) {
  if (error_) return *error_;
  if (state_ != State::kResponseBody || response_eos_sent_) {
    return protocol_error("misuse", "send_response_body called out of order");
  }
  if (chunk.empty() && !end_of_stream) return std::monostate{};  // nothing to say yet
  const std::size_t chunk_bytes = std::max<std::size_t>(1, client_.options_.body_chunk_bytes);
  std::size_t offset = 0;
  do {
    const std::size_t size = std::min(chunk_bytes, chunk.size() - offset);
    const bool last = offset + size == chunk.size();
    pb::ProcessingRequest message;
    message.mutable_response_body()->set_body(chunk.data() + offset, size);
    message.mutable_response_body()->set_end_of_stream(last && end_of_stream);
    if (!streamed_answer_seen_) {
      unanswered_chunks_.emplace_back(std::string(chunk.substr(offset, size)),
                                      last && end_of_stream);
    }
    call_->write(std::move(message));
    offset += size;
  } while (offset < chunk.size());
  if (end_of_stream) response_eos_sent_ = true;
  return std::monostate{};
}

asio::awaitable<ExtProcResult<BodyPiece>> ExtProcExchange::next_response_body() {
  if (error_) co_return *error_;
  if (state_ == State::kDone) co_return BodyPiece{{}, true};
  if (state_ != State::kResponseBody) {
    co_return protocol_error("misuse", "next_response_body called out of order");
  }
  ExtProcResult<pb::ProcessingResponse> answer = co_await next_answer(response_eos_sent_);
  if (!answer) co_return answer.error();
  if (!answer->has_response_body()) {
    // Includes an ImmediateResponse: too late once the response has started (Envoy resets).
    co_return protocol_error("unexpected_answer",
                             fmt::format("expected a response_body answer, got answer case {}",
                                         static_cast<int>(answer->response_case())));
  }
  const pb::BodyMutation& mutation = answer->response_body().response().body_mutation();
  BodyPiece piece;
  if (mutation.has_streamed_response()) {
    streamed_answer_seen_ = true;
    unanswered_chunks_.clear();
    piece.bytes = std::move(*answer->mutable_response_body()
                                 ->mutable_response()
                                 ->mutable_body_mutation()
                                 ->mutable_streamed_response()
                                 ->mutable_body());
    piece.end_of_stream = mutation.streamed_response().end_of_stream();
  } else if (mutation.mutation_case() == pb::BodyMutation::MUTATION_NOT_SET &&
             !streamed_answer_seen_ && !unanswered_chunks_.empty()) {
    // Tolerated (GIE's lightweight EPP): an empty answer passes its chunk on unchanged.
    client_.metrics_->protocol_errors.with({"body_answer_without_mutation"}).inc();
    piece.bytes = std::move(unanswered_chunks_.front().first);
    piece.end_of_stream = unanswered_chunks_.front().second;
    unanswered_chunks_.pop_front();
  } else {
    co_return protocol_error("bad_body_answer",
                             "a response_body answer must carry a streamed_response in "
                             "FULL_DUPLEX_STREAMED mode");
  }
  if (piece.end_of_stream) {
    if (!response_eos_sent_) {
      co_return protocol_error("early_end_of_stream",
                               "the response body's end_of_stream came before it was sent");
    }
    state_ = State::kDone;
    call_->writes_done();
  }
  co_return piece;
}

}  // namespace infergate::extproc
