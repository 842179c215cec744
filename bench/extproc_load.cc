// extproc_load: a closed-loop load generator for an Envoy ext_proc server (`infergate epp`, or any
// Endpoint Picker), playing Envoy's part on ExternalProcessor/Process in FULL_DUPLEX_STREAMED mode
// (epp-protocol facts §4, §6, §7). Each gRPC stream is one HTTP request:
//
//   → request_headers (end_of_stream=false, protocol_config on the first message)
//   → request_body chunks of --chunk-bytes, the last with end_of_stream
//   ← request_headers answer (must set x-gateway-destination-endpoint and the same value in
//     dynamic_metadata["envoy.lb"])
//   ← request_body streamed_response chunks until end_of_stream
//   → response_headers (metadata_context envoy.lb x-gateway-destination-endpoint-served)
//   → response_body (one chunk, end_of_stream)
//   ← response_headers answer, response_body answers until end_of_stream
//   → WritesDone; the server finishes the call.
//
// --concurrency streams are kept open at all times (a finished stream starts the next), over
// --connections HTTP/2 connections, on gRPC's callback API (a few client threads drive hundreds of
// streams). Reported over the measured window (after --warmup): completed streams per second,
// errors, and p50/p90/p99 of the whole stream and of the "added time" = from starting to write the
// last request-body chunk until the last request-body answer arrives (how long the EPP holds the
// request before Envoy could forward it). With --epp-pid, the EPP's CPU seconds in the window
// (utime + stime of /proc/PID/stat) and decisions per EPP CPU-second.
//
// --response-delay-ms holds each stream between the request body's last answer and the response
// headers, like a model server computing its answer, so that N streams offer about
// N / delay requests per second instead of saturating the EPP. --null-server serves a minimal
// ext_proc server instead (the gRPC floor under the EPP). Plaintext h2c by default; --tls speaks
// TLS without verifying the certificate (grpc++'s experimental TlsCredentials).
//
// Any ImmediateResponse, unexpected message, missing destination or non-OK gRPC status counts as
// an error; the first few are printed. Every stream has a deadline (--stream-timeout-ms).

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/stats.h"
#include "common/random.h"
#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "request/tokenizer.h"

namespace infergate::extproc_load {
namespace {

namespace pb = ::envoy::service::ext_proc::v3;
namespace core = ::envoy::config::core::v3;
using ProcessingMode = ::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;
using SteadyTime = std::chrono::steady_clock::time_point;

constexpr std::string_view kDestinationKey = "x-gateway-destination-endpoint";
constexpr std::string_view kServedKey = "x-gateway-destination-endpoint-served";
constexpr std::string_view kLbNamespace = "envoy.lb";
constexpr std::size_t kIdBytes = 16;  // hex digits making every prompt distinct
constexpr std::size_t kMaxPrintedErrors = 5;

struct Options {
  std::string target;
  int concurrency = 64;
  int connections = 2;
  std::size_t body_bytes = 2048;
  std::size_t chunk_bytes = 16384;
  std::size_t shared_prefix_bytes = 0;
  int prefix_groups = 8;
  double duration_s = 10;
  double warmup_s = 2;
  int stream_timeout_ms = 30000;
  std::string model = "meta-llama/Llama-3.1-8B-Instruct";
  std::uint64_t seed = 1;
  int epp_pid = 0;
  double epp_idle_sample_s = 0;
  int response_delay_ms = 0;
  bool tls = false;
  bool json = false;
};

std::int64_t nanos_since(SteadyTime origin) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              origin)
      .count();
}

void add_header(core::HeaderMap& map, std::string_view key, std::string_view value) {
  core::HeaderValue* header = map.add_headers();
  header->set_key(std::string(key));
  header->set_raw_value(std::string(value));  // Envoy sends values only in raw_value
}

// Filler text of exactly `bytes` bytes that needs no JSON escaping.
std::string filler_text(std::size_t bytes, std::uint64_t seed) {
  std::string text;
  std::size_t tokens = bytes / 4 + 8;
  while (text.size() < bytes) {
    text = request::make_text_with_tokens(tokens, seed);
    tokens *= 2;
  }
  text.resize(bytes);
  for (char& c : text) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = 'x';
  }
  return text;
}

// One OpenAI chat body of a group: optional shared system prompt, then a user message starting
// with kIdBytes placeholder characters (overwritten per stream) and filler up to the body size.
struct BodyTemplate {
  std::string body;
  std::size_t id_offset = 0;
  // Pre-built request_body messages, shared read-only by every stream of this group; a stream
  // rebuilds only the chunks that overlap its id.
  std::vector<pb::ProcessingRequest> chunks;
  std::vector<std::size_t> chunk_offsets;
};

BodyTemplate make_template(const Options& options, int group) {
  const std::string head = fmt::format(R"({{"model":"{}","messages":[)", options.model);
  std::string system_part;
  if (options.shared_prefix_bytes > 0) {
    system_part = R"({"role":"system","content":")" +
                  filler_text(options.shared_prefix_bytes,
                              derive_seed(options.seed, 1, static_cast<std::uint64_t>(group))) +
                  R"("},)";
  }
  const std::string user_open = R"({"role":"user","content":")";
  const std::string tail = R"("}],"max_tokens":128,"stream":false})";
  const std::size_t fixed =
      head.size() + system_part.size() + user_open.size() + kIdBytes + 1 + tail.size();
  const std::size_t filler_bytes = options.body_bytes > fixed ? options.body_bytes - fixed : 0;
  BodyTemplate out;
  out.body = head + system_part + user_open;
  out.id_offset = out.body.size();
  out.body +=
      std::string(kIdBytes, '0') + " " +
      filler_text(filler_bytes, derive_seed(options.seed, 2, static_cast<std::uint64_t>(group))) +
      tail;
  for (std::size_t offset = 0; offset < out.body.size(); offset += options.chunk_bytes) {
    pb::ProcessingRequest& chunk = out.chunks.emplace_back();
    pb::HttpBody* body = chunk.mutable_request_body();
    body->set_body(out.body.substr(offset, options.chunk_bytes));
    body->set_end_of_stream(offset + options.chunk_bytes >= out.body.size());
    out.chunk_offsets.push_back(offset);
  }
  return out;
}

// utime + stime of a process in seconds, or nullopt when /proc/PID/stat cannot be read.
std::optional<double> process_cpu_seconds(int pid) {
  std::ifstream file(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!file || !std::getline(file, line)) return std::nullopt;
  // The command name may hold spaces: count from the last ')', after which comes field 3 (state);
  // utime and stime are fields 14 and 15 (proc(5)).
  const std::size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 2));
  std::string field;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoull(field);
    if (index == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double own_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

class Stream;

// Runs callbacks at given times on one thread of its own (not a gRPC thread, so a callback may
// start gRPC operations and even end a call). Pending callbacks run before the destructor returns.
class Timer {
 public:
  Timer() : thread_([this] { loop(); }) {}
  ~Timer() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  void at(SteadyTime when, std::function<void()> callback) {
    {
      std::lock_guard lock(mutex_);
      pending_.emplace(when, std::move(callback));
    }
    wake_.notify_one();
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (!stopping_ || !pending_.empty()) {
      if (pending_.empty()) {
        wake_.wait(lock);
        continue;
      }
      auto next = pending_.begin();
      if (!stopping_ && next->first > std::chrono::steady_clock::now()) {
        wake_.wait_until(lock, next->first);
        continue;
      }
      std::function<void()> callback = std::move(next->second);
      pending_.erase(next);
      lock.unlock();
      callback();
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::multimap<SteadyTime, std::function<void()>> pending_;
  bool stopping_ = false;
  std::thread thread_;
};

// Owns the channels, the body templates, the set of live streams and the results.
class Driver {
 public:
  explicit Driver(Options options);

  // Connects every channel (false after 5 s without a connection).
  bool connect();
  // Opens --concurrency streams; each finished stream opens the next until stop().
  void start();
  void begin_window();
  void end_window();
  // Stops opening streams and waits for the open ones (cancelling them after `grace`, then
  // waiting 5 s more). False if some are still open: the caller must then not destroy the Driver.
  bool stop(std::chrono::milliseconds grace);

  // Called by a stream in OnDone (any gRPC thread). `error` is empty on success.
  void on_stream_done(Stream* stream, std::int64_t start_ns, std::int64_t end_ns,
                      std::int64_t added_ns, const std::string& error);

  const Options& options() const { return options_; }
  const BodyTemplate& body_template(std::uint64_t index) const {
    return templates_[index % templates_.size()];
  }
  SteadyTime origin() const { return origin_; }
  std::uint64_t stream_seed() const { return options_.seed; }
  Timer& timer() { return timer_; }

  struct Report {
    double window_s = 0;
    std::uint64_t completed = 0;
    std::uint64_t errors = 0;
    std::map<std::string, std::uint64_t> error_kinds;
    std::vector<std::string> first_errors;
    bench::Distribution stream_ms;
    bench::Distribution added_ms;
    std::optional<double> epp_cpu_s;
    std::optional<double> epp_idle_cpu_ratio;  // CPU-seconds per second before the load
    double client_cpu_s = 0;
    std::uint64_t unfinished = 0;
  };
  Report report();
  // Measures the EPP's CPU use before any load (metrics scraping and timers), over `seconds`.
  void sample_idle_epp(double seconds);

 private:
  void launch();

  const Options options_;
  const SteadyTime origin_ = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<pb::ExternalProcessor::Stub>> stubs_;
  std::vector<BodyTemplate> templates_;
  std::atomic<std::uint64_t> next_index_{0};
  std::atomic<bool> stopping_{false};

  // Recursive: TryCancel may run a stream's OnDone (and so on_stream_done) inline.
  std::recursive_mutex mutex_;
  std::condition_variable_any drained_;
  std::set<Stream*> live_;
  std::int64_t window_start_ns_ = -1;
  std::int64_t window_end_ns_ = -1;
  std::vector<double> stream_ms_;
  std::vector<double> added_ms_;
  std::uint64_t errors_ = 0;
  std::map<std::string, std::uint64_t> error_kinds_;
  std::vector<std::string> first_errors_;
  std::optional<double> epp_cpu_start_;
  std::optional<double> epp_cpu_end_;
  double client_cpu_start_ = 0;
  double client_cpu_end_ = 0;
  std::uint64_t unfinished_ = 0;
  std::optional<double> epp_idle_cpu_ratio_;
  Timer timer_;  // last: destroyed (and drained) first
};

// One ext_proc stream = one HTTP request. Writes go out one at a time in a fixed order; the
// response half (response_headers, response_body) starts once both the request writes are done
// and the request body's end_of_stream answer has arrived; WritesDone follows once those writes
// are done and the response body's end_of_stream answer has arrived. The two gates are atomic
// counters, so OnReadDone and OnWriteDone (which may run concurrently) need no lock.
class Stream final : public grpc::ClientBidiReactor<pb::ProcessingRequest, pb::ProcessingResponse> {
 public:
  Stream(Driver& driver, pb::ExternalProcessor::Stub& stub, std::uint64_t index)
      : driver_(driver), index_(index), template_(driver.body_template(index)) {
    const Options& options = driver.options();
    context_.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(options.stream_timeout_ms));
    build_request();
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
    if (next_write_ == response_write_) {
      pass_response_gate();
    } else if (next_write_ == writes_.size()) {
      pass_close_gate();
    } else {
      write_next();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (!check_answer()) {
      context_.TryCancel();  // like Envoy after a local reply or a spurious message
      return;
    }
    StartRead(&answer_);
  }

  void OnDone(const grpc::Status& status) override {
    const std::int64_t end_ns = nanos_since(driver_.origin());
    std::string error = error_;
    if (error.empty() && !status.ok()) {
      error = fmt::format("grpc status {}: {}", static_cast<int>(status.error_code()),
                          status.error_message());
    }
    if (error.empty() && phase_ != Phase::kDone) {
      error = "protocol: the call ended before the response body's end_of_stream";
    }
    driver_.on_stream_done(this, start_ns_, end_ns, added_end_ns_ - eos_sent_ns_.load(), error);
    delete this;
  }

 private:
  enum class Phase { kRequestHeaders, kRequestBody, kResponseHeaders, kResponseBody, kDone };

  static std::string_view phase_name(Phase phase) {
    switch (phase) {
      case Phase::kRequestHeaders:
        return "awaiting the request_headers answer";
      case Phase::kRequestBody:
        return "awaiting request_body answers";
      case Phase::kResponseHeaders:
        return "awaiting the response_headers answer";
      case Phase::kResponseBody:
        return "awaiting response_body answers";
      case Phase::kDone:
        return "done";
    }
    return "?";
  }

  void build_request() {
    const Options& options = driver_.options();
    const std::string id = fmt::format(
        "{:016x}", derive_seed(driver_.stream_seed(), 3, index_));  // distinct prompt per stream
    const std::string request_id = fmt::format("bench-{}", index_);

    pb::HttpHeaders* headers = request_headers_.mutable_request_headers();
    core::HeaderMap* map = headers->mutable_headers();
    add_header(*map, ":method", "POST");
    add_header(*map, ":path", "/v1/chat/completions");
    add_header(*map, ":authority", "bench.example.com");
    add_header(*map, ":scheme", "http");
    add_header(*map, "content-type", "application/json");
    add_header(*map, "content-length", std::to_string(template_.body.size()));
    add_header(*map, "x-request-id", request_id);
    headers->set_end_of_stream(false);
    pb::ProtocolConfiguration* config = request_headers_.mutable_protocol_config();
    config->set_request_body_mode(ProcessingMode::FULL_DUPLEX_STREAMED);
    config->set_response_body_mode(ProcessingMode::FULL_DUPLEX_STREAMED);
    writes_.push_back(&request_headers_);

    // Copy only the chunks overlapping the id; point at the shared template for the rest.
    own_chunks_.reserve(2);
    for (std::size_t chunk = 0; chunk < template_.chunks.size(); ++chunk) {
      const std::size_t begin = template_.chunk_offsets[chunk];
      const std::size_t end = begin + template_.chunks[chunk].request_body().body().size();
      if (end <= template_.id_offset || begin >= template_.id_offset + kIdBytes) {
        writes_.push_back(&template_.chunks[chunk]);
        continue;
      }
      pb::ProcessingRequest& own = own_chunks_.emplace_back(template_.chunks[chunk]);
      std::string* bytes = own.mutable_request_body()->mutable_body();
      for (std::size_t pos = std::max(begin, template_.id_offset);
           pos < std::min(end, template_.id_offset + kIdBytes); ++pos) {
        (*bytes)[pos - begin] = id[pos - template_.id_offset];
      }
      writes_.push_back(&own);
    }
    response_write_ = writes_.size();
    writes_.push_back(&response_headers_);
    writes_.push_back(&response_body_);

    response_body_.mutable_response_body()->set_body(
        R"({"id":"chatcmpl-bench","object":)"
        R"("chat.completion","model":")" +
        options.model +
        R"(","choices":[{"index":0,"message":)"
        R"({"role":"assistant","content":"ok"},)"
        R"("finish_reason":"stop"}],"usage":)"
        R"({"prompt_tokens":512,)"
        R"("completion_tokens":1,"total_tokens":513}})");
    response_body_.mutable_response_body()->set_end_of_stream(true);
  }

  void write_next() {
    if (next_write_ + 1 == response_write_) eos_sent_ns_ = nanos_since(driver_.origin());
    StartWrite(writes_[next_write_]);
  }

  // Response headers need the destination the EPP chose, read before the request body's EoS.
  void pass_response_gate() {
    if (response_gate_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    pb::HttpHeaders* headers = response_headers_.mutable_response_headers();
    add_header(*headers->mutable_headers(), ":status", "200");
    add_header(*headers->mutable_headers(), "content-type", "application/json");
    add_header(*headers->mutable_headers(), "x-request-id", fmt::format("bench-{}", index_));
    headers->set_end_of_stream(false);
    auto& fields = (*response_headers_.mutable_metadata_context()
                         ->mutable_filter_metadata())[std::string(kLbNamespace)];
    (*fields.mutable_fields())[std::string(kServedKey)].set_string_value(
        destination_.substr(0, destination_.find(',')));
    const int delay_ms = driver_.options().response_delay_ms;
    if (delay_ms <= 0) {
      write_next();
      return;
    }
    // Uniform in [0.5, 1.5) x the delay, so that streams do not move in lock step.
    SplitMix64 jitter(derive_seed(driver_.stream_seed(), 4, index_));
    const auto delay = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double, std::milli>(delay_ms * (0.5 + jitter.next_unit())));
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

  // Checks one answer against the expected sequence; false (with error_ set) on a mismatch.
  bool check_answer() {
    auto fail = [this](std::string message) {
      error_ = std::move(message);
      return false;
    };
    if (answer_.has_immediate_response()) {
      return fail(fmt::format("immediate_response {} ({}): {}",
                              static_cast<int>(answer_.immediate_response().status().code()),
                              phase_name(phase_),
                              answer_.immediate_response().body().substr(0, 200)));
    }
    switch (phase_) {
      case Phase::kRequestHeaders: {
        if (!answer_.has_request_headers()) {
          return fail(fmt::format("protocol: expected the request_headers answer, got case {}",
                                  static_cast<int>(answer_.response_case())));
        }
        for (const auto& option :
             answer_.request_headers().response().header_mutation().set_headers()) {
          if (option.header().key() == kDestinationKey) destination_ = option.header().raw_value();
        }
        if (destination_.empty()) return fail("protocol: no x-gateway-destination-endpoint header");
        const auto& namespaces = answer_.dynamic_metadata().fields();
        auto lb = namespaces.find(std::string(kLbNamespace));
        if (lb == namespaces.end() || !lb->second.has_struct_value()) {
          return fail("protocol: no envoy.lb dynamic_metadata");
        }
        const auto& keys = lb->second.struct_value().fields();
        auto value = keys.find(std::string(kDestinationKey));
        if (value == keys.end() || value->second.string_value() != destination_) {
          return fail(fmt::format("protocol: envoy.lb metadata destination differs from header {}",
                                  destination_));
        }
        phase_ = Phase::kRequestBody;
        return true;
      }
      case Phase::kRequestBody: {
        if (!answer_.has_request_body() ||
            !answer_.request_body().response().body_mutation().has_streamed_response()) {
          return fail(
              fmt::format("protocol: expected a request_body streamed_response, got case {}",
                          static_cast<int>(answer_.response_case())));
        }
        const auto& streamed =
            answer_.request_body().response().body_mutation().streamed_response();
        echoed_bytes_ += streamed.body().size();
        if (!streamed.end_of_stream()) return true;
        added_end_ns_ = nanos_since(driver_.origin());
        if (echoed_bytes_ == 0) return fail("protocol: the request body was not echoed");
        phase_ = Phase::kResponseHeaders;
        pass_response_gate();
        return true;
      }
      case Phase::kResponseHeaders:
        if (!answer_.has_response_headers()) {
          return fail(fmt::format("protocol: expected the response_headers answer, got case {}",
                                  static_cast<int>(answer_.response_case())));
        }
        phase_ = Phase::kResponseBody;
        return true;
      case Phase::kResponseBody: {
        if (!answer_.has_response_body() ||
            !answer_.response_body().response().body_mutation().has_streamed_response()) {
          return fail(
              fmt::format("protocol: expected a response_body streamed_response, got case {}",
                          static_cast<int>(answer_.response_case())));
        }
        if (!answer_.response_body()
                 .response()
                 .body_mutation()
                 .streamed_response()
                 .end_of_stream()) {
          return true;
        }
        phase_ = Phase::kDone;
        pass_close_gate();
        return true;
      }
      case Phase::kDone:
        return fail(fmt::format("protocol: answer case {} after the response body's end",
                                static_cast<int>(answer_.response_case())));
    }
    return fail("unreachable");
  }

  Driver& driver_;
  const std::uint64_t index_;
  const BodyTemplate& template_;
  grpc::ClientContext context_;
  pb::ProcessingRequest request_headers_;
  std::vector<pb::ProcessingRequest> own_chunks_;
  pb::ProcessingRequest response_headers_;
  pb::ProcessingRequest response_body_;
  std::vector<const pb::ProcessingRequest*> writes_;
  std::size_t next_write_ = 0;      // only touched by the write chain
  std::size_t response_write_ = 0;  // index of response_headers_ in writes_
  std::atomic<int> response_gate_{2};
  std::atomic<int> close_gate_{2};
  // Read side (one read at a time).
  pb::ProcessingResponse answer_;
  Phase phase_ = Phase::kRequestHeaders;
  std::string destination_;
  std::size_t echoed_bytes_ = 0;
  std::string error_;
  std::int64_t start_ns_ = 0;
  std::atomic<std::int64_t> eos_sent_ns_{0};
  std::int64_t added_end_ns_ = 0;
};

Driver::Driver(Options options) : options_(std::move(options)) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options_.tls) {
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
  for (int index = 0; index < options_.connections; ++index) {
    grpc::ChannelArguments arguments;
    // A distinct argument per channel keeps gRPC from sharing one connection between them.
    arguments.SetInt("infergate.extproc_load.connection", index);
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels_.push_back(grpc::CreateCustomChannel(options_.target, credentials, arguments));
    stubs_.push_back(pb::ExternalProcessor::NewStub(channels_.back()));
  }
  for (int group = 0; group < std::max(1, options_.prefix_groups); ++group) {
    templates_.push_back(make_template(options_, group));
  }
}

bool Driver::connect() {
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(5);
  for (auto& channel : channels_) {
    if (!channel->WaitForConnected(deadline)) return false;
  }
  return true;
}

void Driver::start() {
  if (options_.response_delay_ms <= 0) {
    for (int stream = 0; stream < options_.concurrency; ++stream) launch();
    return;
  }
  // Spread the first streams over one response delay instead of opening them in one burst.
  const SteadyTime now = std::chrono::steady_clock::now();
  for (int stream = 0; stream < options_.concurrency; ++stream) {
    const auto offset = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double, std::milli>(static_cast<double>(options_.response_delay_ms) *
                                                  stream / options_.concurrency));
    timer_.at(now + offset, [this] { launch(); });
  }
}

void Driver::launch() {
  if (stopping_.load()) return;
  const std::uint64_t index = next_index_.fetch_add(1);
  auto* stream = new Stream(*this, *stubs_[index % stubs_.size()], index);
  {
    std::lock_guard lock(mutex_);
    live_.insert(stream);
  }
  stream->start();
}

void Driver::begin_window() {
  const std::optional<double> epp_cpu =
      options_.epp_pid > 0 ? process_cpu_seconds(options_.epp_pid) : std::nullopt;
  std::lock_guard lock(mutex_);
  window_start_ns_ = nanos_since(origin_);
  epp_cpu_start_ = epp_cpu;
  client_cpu_start_ = own_cpu_seconds();
}

void Driver::end_window() {
  const std::optional<double> epp_cpu =
      options_.epp_pid > 0 ? process_cpu_seconds(options_.epp_pid) : std::nullopt;
  std::lock_guard lock(mutex_);
  window_end_ns_ = nanos_since(origin_);
  epp_cpu_end_ = epp_cpu;
  client_cpu_end_ = own_cpu_seconds();
}

bool Driver::stop(std::chrono::milliseconds grace) {
  stopping_ = true;
  std::unique_lock lock(mutex_);
  if (!drained_.wait_for(lock, grace, [this] { return live_.empty(); })) {
    unfinished_ = live_.size();
    const std::vector<Stream*> open(live_.begin(), live_.end());
    for (Stream* stream : open) {
      if (live_.contains(stream)) stream->cancel();  // not yet finished by an earlier cancel
    }
    return drained_.wait_for(lock, std::chrono::seconds(5), [this] { return live_.empty(); });
  }
  return true;
}

void Driver::on_stream_done(Stream* stream, std::int64_t start_ns, std::int64_t end_ns,
                            std::int64_t added_ns, const std::string& error) {
  {
    std::lock_guard lock(mutex_);
    live_.erase(stream);
    const bool in_window = window_start_ns_ >= 0 && end_ns >= window_start_ns_ &&
                           (window_end_ns_ < 0 || end_ns <= window_end_ns_);
    if (in_window) {
      if (error.empty()) {
        stream_ms_.push_back(static_cast<double>(end_ns - start_ns) / 1e6);
        added_ms_.push_back(static_cast<double>(added_ns) / 1e6);
      } else {
        ++errors_;
        ++error_kinds_[error.substr(0, error.find(':'))];
        if (first_errors_.size() < kMaxPrintedErrors) first_errors_.push_back(error);
      }
    }
    if (live_.empty()) drained_.notify_all();
  }
  launch();
}

void Driver::sample_idle_epp(double seconds) {
  const std::optional<double> before = process_cpu_seconds(options_.epp_pid);
  const SteadyTime start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const std::optional<double> after = process_cpu_seconds(options_.epp_pid);
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (before && after) {
    std::lock_guard lock(mutex_);
    epp_idle_cpu_ratio_ = (*after - *before) / elapsed_s;
  }
}

Driver::Report Driver::report() {
  std::lock_guard lock(mutex_);
  Report report;
  report.window_s = static_cast<double>(window_end_ns_ - window_start_ns_) / 1e9;
  report.completed = stream_ms_.size();
  report.errors = errors_;
  report.error_kinds = error_kinds_;
  report.first_errors = first_errors_;
  report.stream_ms = bench::summarize(stream_ms_);
  report.added_ms = bench::summarize(added_ms_);
  if (epp_cpu_start_ && epp_cpu_end_) report.epp_cpu_s = *epp_cpu_end_ - *epp_cpu_start_;
  report.epp_idle_cpu_ratio = epp_idle_cpu_ratio_;
  report.client_cpu_s = client_cpu_end_ - client_cpu_start_;
  report.unfinished = unfinished_;
  return report;
}

std::string distribution_json(const bench::Distribution& d) {
  return fmt::format(
      R"({{"count":{},"mean":{:.4f},"min":{:.4f},"p50":{:.4f},"p90":{:.4f},"p99":{:.4f},"max":{:.4f}}})",
      d.count, d.mean, d.min, d.p50, d.p90, d.p99, d.max);
}

void print_report(const Options& options, const Driver::Report& report, std::size_t body_bytes) {
  const double rate =
      report.window_s > 0 ? static_cast<double>(report.completed) / report.window_s : 0;
  std::optional<double> per_cpu_s;
  if (report.epp_cpu_s && *report.epp_cpu_s > 0) {
    per_cpu_s = static_cast<double>(report.completed) / *report.epp_cpu_s;
  }
  // Net of the EPP's idle CPU use (metrics scraping), i.e. per CPU-second spent on requests.
  std::optional<double> per_request_cpu_s;
  if (report.epp_cpu_s && report.epp_idle_cpu_ratio) {
    const double busy_s = *report.epp_cpu_s - *report.epp_idle_cpu_ratio * report.window_s;
    if (busy_s > 0) per_request_cpu_s = static_cast<double>(report.completed) / busy_s;
  }
  auto optional_number = [](const std::optional<double>& value, int decimals) {
    return value ? fmt::format("{:.{}f}", *value, decimals) : std::string("null");
  };
  if (options.json) {
    std::string kinds;
    for (const auto& [kind, count] : report.error_kinds) {
      kinds += fmt::format("{}\"{}\":{}", kinds.empty() ? "" : ",", kind, count);
    }
    fmt::print(
        R"({{"target":"{}","concurrency":{},"connections":{},"body_bytes":{},"chunk_bytes":{},)"
        R"("response_delay_ms":{},"window_s":{:.3f},"completed":{},"errors":{},)"
        R"("error_kinds":{{{}}},"streams_per_s":{:.1f},"stream_ms":{},"added_ms":{},)"
        R"("epp_cpu_s":{},"epp_idle_cpu_ratio":{},"decisions_per_epp_cpu_s":{},)"
        R"("decisions_per_epp_cpu_s_net_of_idle":{},"client_cpu_s":{:.3f},)"
        R"("unfinished_at_stop":{}}})"
        "\n",
        options.target, options.concurrency, options.connections, body_bytes, options.chunk_bytes,
        options.response_delay_ms, report.window_s, report.completed, report.errors, kinds, rate,
        distribution_json(report.stream_ms), distribution_json(report.added_ms),
        optional_number(report.epp_cpu_s, 3), optional_number(report.epp_idle_cpu_ratio, 4),
        optional_number(per_cpu_s, 1), optional_number(per_request_cpu_s, 1), report.client_cpu_s,
        report.unfinished);
    return;
  }
  fmt::print(
      "target {}  concurrency {}  connections {}  body {} B  chunks {} B  response delay {} ms\n",
      options.target, options.concurrency, options.connections, body_bytes, options.chunk_bytes,
      options.response_delay_ms);
  fmt::print("window {:.2f} s: {} streams completed, {} errors  ->  {:.1f} streams/s\n",
             report.window_s, report.completed, report.errors, rate);
  auto line = [](std::string_view name, const bench::Distribution& d) {
    fmt::print("{:<22} p50 {:8.3f}  p90 {:8.3f}  p99 {:8.3f}  max {:8.3f}  (mean {:.3f})\n", name,
               d.p50, d.p90, d.p99, d.max, d.mean);
  };
  line("stream latency (ms)", report.stream_ms);
  line("added time (ms)", report.added_ms);
  if (report.epp_cpu_s) {
    fmt::print(
        "EPP CPU {:.2f} s in the window ({:.0f}% of one core)  ->  {} decisions per EPP "
        "CPU-second\n",
        *report.epp_cpu_s, 100.0 * *report.epp_cpu_s / report.window_s,
        optional_number(per_cpu_s, 0));
  }
  if (report.epp_idle_cpu_ratio) {
    fmt::print(
        "EPP idle CPU {:.1f}% of one core  ->  {} decisions per EPP CPU-second net of idle\n",
        100.0 * *report.epp_idle_cpu_ratio, optional_number(per_request_cpu_s, 0));
  }
  fmt::print("load generator CPU {:.2f} s in the window ({:.0f}% of one core)\n",
             report.client_cpu_s, 100.0 * report.client_cpu_s / report.window_s);
  for (const auto& [kind, count] : report.error_kinds) {
    fmt::print("errors[{}] = {}\n", kind, count);
  }
  if (report.unfinished > 0) {
    fmt::print("{} streams were still open at the end and were cancelled\n", report.unfinished);
  }
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

int run(const Options& options) {
  Driver driver(options);
  if (!driver.connect()) {
    fmt::print(stderr, "extproc_load: cannot connect to {} within 5 s\n", options.target);
    return 1;
  }
  if (options.epp_pid > 0 && !process_cpu_seconds(options.epp_pid)) {
    fmt::print(stderr, "extproc_load: cannot read /proc/{}/stat\n", options.epp_pid);
    return 1;
  }
  if (options.epp_pid > 0 && options.epp_idle_sample_s > 0) {
    driver.sample_idle_epp(options.epp_idle_sample_s);
  }
  driver.start();
  std::this_thread::sleep_for(std::chrono::duration<double>(options.warmup_s));
  driver.begin_window();
  std::this_thread::sleep_for(std::chrono::duration<double>(options.duration_s));
  driver.end_window();
  const bool drained = driver.stop(std::chrono::milliseconds(options.stream_timeout_ms + 1000));
  const Driver::Report report = driver.report();
  print_report(options, report, driver.body_template(0).body.size());
  for (const std::string& error : report.first_errors) {
    fmt::print(stderr, "error: {}\n", error);
  }
  const int status = report.completed > 0 && report.errors == 0 ? 0 : 3;
  if (!drained) {
    // Streams that ignore cancellation still point at the Driver: leave without destroying it.
    fmt::print(stderr, "extproc_load: streams still open after cancellation; exiting\n");
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(status);
  }
  return status;
}

}  // namespace
}  // namespace infergate::extproc_load

int main(int argc, char** argv) {
  using infergate::extproc_load::Options;
  Options options;
  CLI::App app{
      "Closed-loop load generator for an Envoy ext_proc Endpoint Picker (infergate epp): plays "
      "Envoy's part, one FULL_DUPLEX_STREAMED stream per HTTP request (OpenAI chat body, "
      "response headers and a small JSON completion), and reports streams/s, stream latency and "
      "the EPP's added time (last request-body chunk sent → last request-body answer). Exit "
      "status: 0 ok, 1 setup failure, 3 errors or nothing completed."};
  app.add_option("--target", options.target, "ext_proc server, host:port (required)");
  app.add_option("--concurrency", options.concurrency, "Streams kept open at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--connections", options.connections,
                 "HTTP/2 connections the streams are spread over (Envoy: about one per worker)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--body-bytes", options.body_bytes, "Request body size in bytes")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{64} << 20));
  app.add_option("--chunk-bytes", options.chunk_bytes,
                 "Request body chunk size (Envoy forwards what one read gave it)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{4} << 20));
  app.add_option("--shared-prefix-bytes", options.shared_prefix_bytes,
                 "Bytes of a system prompt shared by all requests of a group (0: none; every "
                 "prompt is distinct either way)")
      ->capture_default_str();
  app.add_option("--prefix-groups", options.prefix_groups,
                 "Number of body templates (system prompts), used round-robin")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--duration", options.duration_s, "Measured seconds")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
  app.add_option("--warmup", options.warmup_s, "Seconds of load before measuring")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--stream-timeout-ms", options.stream_timeout_ms,
                 "Deadline of every stream; a stream over it counts as an error")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600000));
  app.add_option("--model", options.model, "Model in the request body")->capture_default_str();
  app.add_option("--seed", options.seed, "Seed of the prompt texts and ids")->capture_default_str();
  app.add_option("--epp-pid", options.epp_pid,
                 "PID of the EPP: report its CPU seconds (utime+stime) in the window and "
                 "decisions per EPP CPU-second")
      ->capture_default_str();
  app.add_option("--epp-idle-sample", options.epp_idle_sample_s,
                 "With --epp-pid: seconds to sample the EPP's CPU use before the load starts "
                 "(metrics scraping), to also report decisions per CPU-second net of it (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--response-delay-ms", options.response_delay_ms,
                 "Upstream time to first byte: wait this long (x a uniform 0.5-1.5 jitter) after "
                 "the request body's last answer before sending response_headers, holding the "
                 "stream like a model server would (0: at once, a closed loop that saturates the "
                 "EPP)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600000));
  app.add_flag("--tls", options.tls,
               "TLS without certificate verification (the EPP's default self-signed "
               "--secure-serving=true); default plaintext h2c");
  app.add_flag("--json", options.json, "One JSON object on stdout instead of the table");
  int null_server_port = -1;
  app.add_option("--null-server", null_server_port,
                 "Instead of generating load, serve a minimal ext_proc server on this port (the "
                 "EPP's message flow with no parsing or scheduling: the gRPC floor) until killed")
      ->check(CLI::Range(0, 65535));
  CLI11_PARSE(app, argc, argv);
  if (null_server_port >= 0) return infergate::extproc_load::run_null_server(null_server_port);
  if (options.target.empty()) {
    fmt::print(stderr, "--target is required\n");
    return 2;
  }
  return infergate::extproc_load::run(options);
}
