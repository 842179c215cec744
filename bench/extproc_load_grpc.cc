// extproc_load's grpc++ client (--client grpc) and the --null-server (extproc_load.cc explains
// the tool).

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <set>

#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "extproc_load.h"

namespace infergate::extproc_load {
namespace {

namespace core = ::envoy::config::core::v3;

class GrpcTransport;

// One ext_proc stream on grpc++'s callback API. Writes go out one at a time in the Exchange's
// order; the response half starts once both the request writes are done and the request body's
// end_of_stream answer has arrived; WritesDone follows once those writes are done and the response
// body's end_of_stream answer has arrived. The two gates are atomic counters, so OnReadDone and
// OnWriteDone (which may run concurrently) need no lock.
class Stream final : public grpc::ClientBidiReactor<pb::ProcessingRequest, pb::ProcessingResponse> {
 public:
  Stream(GrpcTransport& transport, Driver& driver, pb::ExternalProcessor::Stub& stub,
         std::uint64_t index)
      : transport_(transport), driver_(driver), exchange_(driver, index) {
    context_.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(driver.options().stream_timeout_ms));
    stub.async()->Process(&context_, this);
  }

  void start() {
    start_ns_ = nanos_since(driver_.origin());
    StartRead(&answer_);
    write_next();
    StartCall();
  }

  void cancel() { context_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    if (!ok) return;  // the call is over; OnDone reports why
    ++next_write_;
    if (next_write_ == exchange_.response_index()) {
      pass_response_gate();
    } else if (next_write_ == exchange_.messages().size()) {
      pass_close_gate();
    } else {
      write_next();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    switch (exchange_.on_answer(answer_)) {
      case Exchange::Step::kContinue:
        break;
      case Exchange::Step::kRequestAnswered:
        pass_response_gate();
        break;
      case Exchange::Step::kResponseAnswered:
        pass_close_gate();
        break;
      case Exchange::Step::kError:
        context_.TryCancel();  // like Envoy after a local reply or a spurious message
        return;
    }
    StartRead(&answer_);
  }

  void OnDone(const grpc::Status& status) override;

 private:
  void write_next() {
    if (next_write_ + 1 == exchange_.response_index()) {
      eos_sent_ns_ = nanos_since(driver_.origin());
    }
    StartWrite(exchange_.messages()[next_write_]);
  }

  // Response headers need the destination the EPP chose, read before the request body's EoS.
  void pass_response_gate() {
    if (response_gate_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    exchange_.prepare_response();
    const SteadyTime::duration delay = exchange_.response_delay();
    if (delay == SteadyTime::duration::zero()) {
      write_next();
      return;
    }
    // The upstream's time to first byte. The hold keeps the call (and this reactor) alive until
    // the timer has started the write from outside a reaction.
    AddHold();
    driver_.timer().at(std::chrono::steady_clock::now() + delay, [this] {
      write_next();
      RemoveHold();  // may run OnDone (and delete this): touch nothing after
    });
  }

  void pass_close_gate() {
    if (close_gate_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    StartWritesDone();
  }

  GrpcTransport& transport_;
  Driver& driver_;
  Exchange exchange_;
  grpc::ClientContext context_;
  std::size_t next_write_ = 0;  // only touched by the write chain
  std::atomic<int> response_gate_{2};
  std::atomic<int> close_gate_{2};
  pb::ProcessingResponse answer_;  // one read at a time
  std::int64_t start_ns_ = 0;
  std::atomic<std::int64_t> eos_sent_ns_{0};
};

class GrpcTransport final : public Transport {
 public:
  explicit GrpcTransport(Driver& driver) : driver_(driver) {
    const Options& options = driver.options();
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    if (options.tls) {
      // TLS without certificate checks, like the reference Envoy config's ext_proc cluster
      // (validation disabled) talking to the EPP's self-signed certificate.
      grpc::experimental::TlsChannelCredentialsOptions tls;
      tls.set_verify_server_certs(false);
      tls.set_check_call_host(false);
      tls.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
      credentials = grpc::experimental::TlsCredentials(tls);
    } else {
      credentials = grpc::InsecureChannelCredentials();
    }
    for (int index = 0; index < options.connections; ++index) {
      grpc::ChannelArguments arguments;
      // A distinct argument per channel keeps gRPC from sharing one connection between them.
      arguments.SetInt("infergate.extproc_load.connection", index);
      arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      channels_.push_back(grpc::CreateCustomChannel(options.target, credentials, arguments));
      stubs_.push_back(pb::ExternalProcessor::NewStub(channels_.back()));
    }
  }

  std::string connect() override {
    const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(5);
    for (auto& channel : channels_) {
      if (!channel->WaitForConnected(deadline)) return "no connection within 5 s";
    }
    return {};
  }

  void open_stream(std::uint64_t index) override {
    auto* stream = new Stream(*this, driver_, *stubs_[index % stubs_.size()], index);
    {
      std::lock_guard lock(mutex_);
      live_.insert(stream);
    }
    stream->start();
  }

  void cancel_open_streams() override {
    std::lock_guard lock(mutex_);
    const std::vector<Stream*> open(live_.begin(), live_.end());
    for (Stream* stream : open) {
      if (live_.contains(stream)) stream->cancel();  // not yet finished by an earlier cancel
    }
  }

  void forget(Stream* stream) {
    std::lock_guard lock(mutex_);
    live_.erase(stream);
  }

 private:
  Driver& driver_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<pb::ExternalProcessor::Stub>> stubs_;
  // Recursive: TryCancel may run a stream's OnDone (and so forget) inline.
  std::recursive_mutex mutex_;
  std::set<Stream*> live_;
};

void Stream::OnDone(const grpc::Status& status) {
  const std::int64_t end_ns = nanos_since(driver_.origin());
  std::string transport_error;
  if (!status.ok()) {
    transport_error = fmt::format("grpc status {}: {}", static_cast<int>(status.error_code()),
                                  status.error_message());
  }
  const std::string error = exchange_.final_error(std::move(transport_error));
  const std::int64_t added_ns = exchange_.added_end_ns() - eos_sent_ns_.load();
  const std::int64_t start_ns = start_ns_;
  Driver& driver = driver_;
  transport_.forget(this);
  delete this;
  driver.on_stream_done(start_ns, end_ns, added_ns, error);
}

// --null-server: a minimal ext_proc server with the EPP's message flow and no work of its own
// (no parsing, no scheduling, no metrics; a fixed destination), on the same gRPC callback API as
// `infergate epp`. Measuring it like the EPP gives the gRPC floor: what one stream costs before
// any Endpoint Picker logic. Not an EPP: for calibration only.
class NullReactor final
    : public grpc::ServerBidiReactor<pb::ProcessingRequest, pb::ProcessingResponse> {
 public:
  NullReactor() { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    std::vector<pb::ProcessingResponse> answers;
    if (ok) answer(answers);
    const pb::ProcessingResponse* write = nullptr;
    bool finish = false;
    {
      std::lock_guard lock(mutex_);
      for (auto& message : answers) queue_.push_back(std::move(message));
      if (!ok) reading_ = false;
      if (!write_in_flight_ && !queue_.empty()) {
        write_in_flight_ = true;
        write = &queue_.front();
      } else if (!reading_ && !write_in_flight_ && !finished_) {
        finished_ = finish = true;
      }
    }
    if (write != nullptr) StartWrite(write);
    if (finish) Finish(grpc::Status::OK);
    if (ok) StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    const pb::ProcessingResponse* write = nullptr;
    bool finish = false;
    {
      std::lock_guard lock(mutex_);
      write_in_flight_ = false;
      queue_.pop_front();
      if (!ok) queue_.clear();
      if (!queue_.empty()) {
        write_in_flight_ = true;
        write = &queue_.front();
      } else if ((!reading_ || !ok) && !finished_) {
        finished_ = finish = true;
      }
    }
    if (write != nullptr) StartWrite(write);
    if (finish) Finish(grpc::Status::OK);
  }

  void OnDone() override { delete this; }

 private:
  static constexpr std::string_view kDestination = "127.0.0.1:8000";

  static pb::StreamedBodyResponse* streamed(pb::BodyResponse* response) {
    return response->mutable_response()->mutable_body_mutation()->mutable_streamed_response();
  }

  void answer(std::vector<pb::ProcessingResponse>& out) {
    if (request_.has_request_body()) {
      body_.append(request_.request_body().body());
      if (!request_.request_body().end_of_stream()) return;
      pb::ProcessingResponse& headers = out.emplace_back();
      pb::CommonResponse* common = headers.mutable_request_headers()->mutable_response();
      common->set_clear_route_cache(true);
      core::HeaderValue* header =
          common->mutable_header_mutation()->add_set_headers()->mutable_header();
      header->set_key(std::string(kDestinationKey));
      header->set_raw_value(std::string(kDestination));
      auto& lb = (*headers.mutable_dynamic_metadata()->mutable_fields())[std::string(kLbNamespace)];
      (*lb.mutable_struct_value()->mutable_fields())[std::string(kDestinationKey)].set_string_value(
          std::string(kDestination));
      constexpr std::size_t kChunk = 62000;
      for (std::size_t offset = 0; offset == 0 || offset < body_.size(); offset += kChunk) {
        pb::StreamedBodyResponse* chunk = streamed(out.emplace_back().mutable_request_body());
        chunk->set_body(body_.substr(offset, kChunk));
        chunk->set_end_of_stream(offset + kChunk >= body_.size());
      }
    } else if (request_.has_response_headers()) {
      out.emplace_back().mutable_response_headers();
    } else if (request_.has_response_body()) {
      pb::StreamedBodyResponse* chunk = streamed(out.emplace_back().mutable_response_body());
      chunk->set_body(request_.response_body().body());
      chunk->set_end_of_stream(request_.response_body().end_of_stream());
    }
  }

  pb::ProcessingRequest request_;
  std::string body_;
  std::mutex mutex_;
  std::deque<pb::ProcessingResponse> queue_;
  bool write_in_flight_ = false;
  bool reading_ = true;
  bool finished_ = false;
};

class NullService final : public pb::ExternalProcessor::CallbackService {
  grpc::ServerBidiReactor<pb::ProcessingRequest, pb::ProcessingResponse>* Process(
      grpc::CallbackServerContext* /*context*/) override {
    return new NullReactor();
  }
};

}  // namespace

std::unique_ptr<Transport> make_grpc_transport(Driver& driver) {
  return std::make_unique<GrpcTransport>(driver);
}

int run_null_server(int port) {
  NullService service;
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(fmt::format("127.0.0.1:{}", port), grpc::InsecureServerCredentials(),
                           &bound_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    fmt::print(stderr, "extproc_load: cannot listen on 127.0.0.1:{}\n", port);
    return 1;
  }
  fmt::print("null ext_proc server on 127.0.0.1:{}\n", bound_port);
  std::fflush(stdout);
  server->Wait();  // until killed
  return 0;
}

}  // namespace infergate::extproc_load
