#include "extproc/server.h"

#include <absl/synchronization/mutex.h>
#include <fmt/format.h>
#include <google/protobuf/arena.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <spdlog/spdlog.h>

#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>

namespace infergate::extproc {

// One ext_proc stream. Created by ExtProcService::Process, deleted in OnDone.
class StreamReactor final
    : public ::grpc::ServerBidiReactor<pb::ProcessingRequest, pb::ProcessingResponse> {
 public:
  explicit StreamReactor(ExtProcService& service)
      : service_(service), processor_(service.director_, service.options_, service.metrics_) {
    service_.stats_.active_streams.fetch_add(1, std::memory_order_relaxed);
    service_.stats_.streams_total.fetch_add(1, std::memory_order_relaxed);
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // Half-close, cancellation or a transport error: nothing more will arrive.
      processor_.on_stream_end();
      Step step;
      {
        std::lock_guard lock(mutex_);
        if (state_ == State::kOpen) state_ = State::kDraining;
        step = next_step();
      }
      run(step);
      return;
    }

    {
      std::lock_guard lock(mutex_);
      if (state_ == State::kFinishing) {
        // A write failed meanwhile: the client is gone, its message needs no answer.
        return;
      }
    }
    answers_.clear();
    const StreamAction action = processor_.on_message(request_, answers_);
    Step step;
    bool read_again = false;
    {
      std::lock_guard lock(mutex_);
      if (state_ != State::kFinishing) {
        for (auto& answer : answers_) queue_.push_back(std::move(answer));
      }
      if (action == StreamAction::kContinue) {
        read_again = state_ == State::kOpen;
      } else if (state_ == State::kOpen) {
        state_ = State::kDraining;
        if (action == StreamAction::kFinishError) {
          finish_status_ =
              ::grpc::Status(::grpc::StatusCode::INVALID_ARGUMENT, processor_.error_message());
        }
      }
      step = next_step();
    }
    answers_.clear();
    if (action == StreamAction::kFinishError) {
      // Counted by the processor (infergate_extproc_protocol_errors_total); logged loudly once.
      const bool first =
          service_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed) == 0;
      spdlog::log(first ? spdlog::level::warn : spdlog::level::debug,
                  "ext_proc stream ended with INVALID_ARGUMENT: {}{}", processor_.error_message(),
                  first ? " (further protocol errors are logged at debug level)" : "");
    }
    run(step);
    if (read_again) StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    Step step;
    {
      std::lock_guard lock(mutex_);
      write_in_flight_ = false;
      if (ok) {
        queue_.pop_front();
      } else {
        // The client is gone (cancelled or reset): nothing queued can be delivered.
        queue_.clear();
        if (state_ != State::kFinishing) {
          state_ = State::kDraining;
          finish_status_ = ::grpc::Status(::grpc::StatusCode::CANCELLED, "write failed");
        }
      }
      step = next_step();
    }
    if (!ok) service_.stats_.write_failures.fetch_add(1, std::memory_order_relaxed);
    run(step);
  }

  void OnDone() override {
    processor_.on_stream_end();
    service_.stats_.active_streams.fetch_sub(1, std::memory_order_relaxed);
    delete this;
  }

 private:
  // kOpen: reading and answering. kDraining: no more reads; finish once the queue is written.
  // kFinishing: Finish has been called (exactly once); nothing more is written.
  enum class State { kOpen, kDraining, kFinishing };

  // What to do once the mutex is released: start one write, or finish.
  struct Step {
    const pb::ProcessingResponse* write = nullptr;
    std::optional<::grpc::Status> finish;
  };

  // Requires mutex_.
  Step next_step() {
    Step step;
    if (state_ == State::kFinishing || write_in_flight_) return step;
    if (!queue_.empty()) {
      write_in_flight_ = true;
      step.write = &queue_.front();  // deque elements stay put while others are pushed
    } else if (state_ == State::kDraining) {
      state_ = State::kFinishing;
      step.finish = std::move(finish_status_);
    }
    return step;
  }

  void run(Step& step) {
    if (step.write != nullptr) StartWrite(step.write);
    if (step.finish) Finish(std::move(*step.finish));
  }

  ExtProcService& service_;
  StreamProcessor processor_;      // used by one reaction at a time (one read outstanding)
  pb::ProcessingRequest request_;  // reused across reads
  Answers answers_;  // scratch for on_message, on the heap: moved into queue_ without copies

  std::mutex mutex_;
  State state_ = State::kOpen;                         // guarded
  std::deque<pb::ProcessingResponse> queue_;           // guarded; front = the write in flight
  bool write_in_flight_ = false;                       // guarded
  ::grpc::Status finish_status_ = ::grpc::Status::OK;  // guarded
};

namespace {

// A worker thread's arena for parsed ProcessingRequest messages, starting in a block of its own
// so that a reset arena allocates nothing for typical messages.
struct RequestArena {
  static constexpr std::size_t kInitialBlockBytes = 32 * 1024;
  static google::protobuf::ArenaOptions options(char* block) {
    google::protobuf::ArenaOptions options;
    options.initial_block = block;
    options.initial_block_size = kInitialBlockBytes;
    return options;
  }
  RequestArena() : arena(options(initial_block.get())) {}
  std::unique_ptr<char[]> initial_block = std::make_unique<char[]>(kInitialBlockBytes);
  google::protobuf::Arena arena;
};

RequestArena& request_arena() {
  thread_local RequestArena arena;
  return arena;
}

// Resets the arena when the message's handling ends, however it ends.
struct ArenaReset {
  google::protobuf::Arena& arena;
  ~ArenaReset() { arena.Reset(); }
};

}  // namespace

// One ext_proc stream on the native transport. Every callback runs on the connection's thread,
// one at a time, and answers go straight to the transport's ordered send buffer.
class NativeProcessCall final : public h2::Call {
 public:
  NativeProcessCall(ExtProcService& service, h2::CallResponder& responder)
      : service_(service),
        responder_(responder),
        processor_(service.director_, service.options_, service.metrics_) {
    service_.stats_.active_streams.fetch_add(1, std::memory_order_relaxed);
    service_.stats_.streams_total.fetch_add(1, std::memory_order_relaxed);
  }
  ~NativeProcessCall() override {
    processor_.on_stream_end();
    service_.stats_.active_streams.fetch_sub(1, std::memory_order_relaxed);
  }

  void on_message(std::string_view bytes) override {
    // Decoded in place (request_view.h): the headers and the body are read where they lie in
    // `bytes`; the other fields go into a message on a per-thread arena that is reset after the
    // message is handled (its sub-messages cost a pointer bump each and nothing to free one by
    // one). The processor keeps no reference to either.
    RequestArena& arena = request_arena();
    pb::ProcessingRequest& rest =
        *google::protobuf::Arena::CreateMessage<pb::ProcessingRequest>(&arena.arena);
    const ArenaReset reset{arena.arena};
    thread_local ViewStorage storage;
    RequestView request;
    if (!decode_request(bytes, rest, storage, request)) {
      service_.metrics_.protocol_error("unparsable_message");
      processor_.on_stream_end();
      responder_.finish(h2::GrpcCode::kInternal, "cannot parse the ProcessingRequest message");
      return;
    }
    answers_.clear();
    const StreamAction action = processor_.on_message(request, answers_);
    for (const pb::ProcessingResponse& answer : answers_) responder_.send(answer);
    answers_.clear();
    switch (action) {
      case StreamAction::kContinue:
        break;
      case StreamAction::kFinishOk:
        responder_.finish(h2::GrpcCode::kOk);
        break;
      case StreamAction::kFinishError: {
        const bool first =
            service_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed) == 0;
        spdlog::log(first ? spdlog::level::warn : spdlog::level::debug,
                    "ext_proc stream ended with INVALID_ARGUMENT: {}{}", processor_.error_message(),
                    first ? " (further protocol errors are logged at debug level)" : "");
        processor_.on_stream_end();
        responder_.finish(h2::GrpcCode::kInvalidArgument, processor_.error_message());
        break;
      }
    }
  }

  void on_half_close() override {
    processor_.on_stream_end();
    responder_.finish(h2::GrpcCode::kOk);
  }

  void on_cancel() override {
    service_.stats_.write_failures.fetch_add(1, std::memory_order_relaxed);
    processor_.on_stream_end();
  }

 private:
  ExtProcService& service_;
  h2::CallResponder& responder_;
  StreamProcessor processor_;
  // Scratch for on_message, on the thread's arena (calls run on the thread that created them):
  // serialised into the send buffer before the arena is reset.
  Answers answers_{&request_arena().arena};
};

void ExtProcService::add_native_methods(h2::MethodTable& methods) {
  methods.emplace(std::string(kProcessPath), [this](h2::CallResponder& responder) {
    return std::make_unique<NativeProcessCall>(*this, responder);
  });
}

ExtProcService::ExtProcService(director::Director& director, ProcessorOptions options,
                               ProcessorMetrics& metrics)
    : director_(director), options_(std::move(options)), metrics_(metrics) {}

ExtProcService::~ExtProcService() = default;

::grpc::ServerBidiReactor<pb::ProcessingRequest, pb::ProcessingResponse>* ExtProcService::Process(
    ::grpc::CallbackServerContext* /*context*/) {
  return new StreamReactor(*this);
}

GrpcServer::GrpcServer(const GrpcServerOptions& options,
                       const std::vector<::grpc::Service*>& services) {
  // gRPC's locks are absl Mutexes, and the distribution's absl checks every acquisition against
  // a global lock graph (a debugging aid): 1.8% of the EPP's instructions at 2 KB. Process-wide.
  static std::once_flag deadlock_detection_off;
  std::call_once(deadlock_detection_off,
                 [] { absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore); });
  ::grpc::ServerBuilder builder;
  const std::string address = options.address.find(':') != std::string::npos
                                  ? fmt::format("[{}]:{}", options.address, options.port)
                                  : fmt::format("{}:{}", options.address, options.port);
  int bound_port = 0;
  builder.AddListeningPort(
      address, options.credentials ? options.credentials : ::grpc::InsecureServerCredentials(),
      &bound_port);
  // gRPC sets SO_REUSEPORT by default, so a second EPP on the same port would silently share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (options.max_receive_message_bytes > 0) {
    builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  }
  for (::grpc::Service* service : services) builder.RegisterService(service);
  server_ = builder.BuildAndStart();
  if (!server_ || bound_port == 0) {
    if (server_) server_->Shutdown();
    throw std::runtime_error(
        fmt::format("cannot listen for gRPC on {} (port in use, or not a local address)", address));
  }
  port_ = static_cast<std::uint16_t>(bound_port);
}

GrpcServer::~GrpcServer() { shutdown(std::chrono::milliseconds(0)); }

void GrpcServer::shutdown(std::chrono::milliseconds grace) {
  if (!server_ || shut_down_.exchange(true)) return;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
}

}  // namespace infergate::extproc
