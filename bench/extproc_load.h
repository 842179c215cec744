#pragma once

// extproc_load's parts shared by its two client transports (extproc_load.cc explains the tool):
// the options, the body templates, the Exchange (what one stream sends and expects, whatever
// carries it) and the Driver (streams kept open, the measured window, the results).
//
// Transports: GrpcTransport (extproc_load_grpc.cc, grpc++'s callback API) and H2Transport
// (extproc_load_h2.cc, nghttp2 over Boost.Asio on one thread: far cheaper per stream, so that the
// load generator's core saturates after the EPP's).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/stats.h"
#include "envoy/service/ext_proc/v3/external_processor.pb.h"

namespace infergate::extproc_load {

namespace pb = ::envoy::service::ext_proc::v3;
using SteadyTime = std::chrono::steady_clock::time_point;

inline constexpr std::string_view kDestinationKey = "x-gateway-destination-endpoint";
inline constexpr std::string_view kServedKey = "x-gateway-destination-endpoint-served";
inline constexpr std::string_view kLbNamespace = "envoy.lb";

enum class ClientKind { kH2, kGrpc };

struct Options {
  std::string target;
  ClientKind client = ClientKind::kH2;
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

std::int64_t nanos_since(SteadyTime origin);

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

BodyTemplate make_template(const Options& options, int group);

// Runs callbacks at given times on one thread of its own (not a transport thread, so a callback
// may start stream operations and even end a call). Pending callbacks run before the destructor
// returns.
class Timer {
 public:
  Timer();
  ~Timer();
  void at(SteadyTime when, std::function<void()> callback);

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::multimap<SteadyTime, std::function<void()>> pending_;
  bool stopping_ = false;
  std::thread thread_;
};

class Driver;

// What one ext_proc stream (= one HTTP request) sends and which answers it expects, in Envoy's
// FULL_DUPLEX_STREAMED order:
//   → request_headers, request_body chunks (the last with end_of_stream)
//   ← request_headers answer (destination header + the same in dynamic_metadata["envoy.lb"])
//   ← request_body streamed_response chunks until end_of_stream
//   → response_headers (metadata_context envoy.lb served endpoint), response_body (one chunk)
//   ← response_headers answer, response_body answers until end_of_stream
// then the client half-closes. Not thread-safe: a transport calls on_answer one answer at a time.
class Exchange {
 public:
  enum class Step {
    kContinue,          // more answers expected in this phase
    kRequestAnswered,   // the request body's end_of_stream answer: the response half may start
    kResponseAnswered,  // the response body's end_of_stream answer: the client may half-close
    kError,             // error() says what; the transport cancels the stream
  };

  Exchange(const Driver& driver, std::uint64_t index);

  // Every message in sending order: request_headers, the body chunks, response_headers,
  // response_body. response_headers is filled in by prepare_response(): send it only after that.
  const std::vector<const pb::ProcessingRequest*>& messages() const { return messages_; }
  // Index in messages() of response_headers (= the number of request-half messages).
  std::size_t response_index() const { return response_index_; }
  // Puts the chosen destination into response_headers' metadata. After kRequestAnswered.
  void prepare_response();
  // How long to hold the stream before the response half (--response-delay-ms with a per-stream
  // jitter of 0.5-1.5x; zero without a delay).
  SteadyTime::duration response_delay() const;

  Step on_answer(const pb::ProcessingResponse& answer);
  const std::string& error() const { return error_; }
  // When the request body's end_of_stream answer arrived (ns since the driver's origin).
  std::int64_t added_end_ns() const { return added_end_ns_; }
  // The error to report for a call that ended, given the transport's own ("" when the call ended
  // cleanly): the first answer mismatch, else the transport's, else an early end.
  std::string final_error(std::string transport_error) const;

 private:
  enum class Phase { kRequestHeaders, kRequestBody, kResponseHeaders, kResponseBody, kDone };
  static std::string_view phase_name(Phase phase);
  Step fail(std::string message);

  const Driver& driver_;
  const std::uint64_t index_;
  pb::ProcessingRequest request_headers_;
  std::vector<pb::ProcessingRequest> own_chunks_;
  pb::ProcessingRequest response_headers_;
  pb::ProcessingRequest response_body_;
  std::vector<const pb::ProcessingRequest*> messages_;
  std::size_t response_index_ = 0;
  Phase phase_ = Phase::kRequestHeaders;
  std::string destination_;
  std::size_t echoed_bytes_ = 0;
  std::string error_;
  std::int64_t added_end_ns_ = 0;
};

// How streams are carried. open_stream and cancel_open_streams may be called from any thread;
// every stream ends with exactly one Driver::on_stream_done.
class Transport {
 public:
  virtual ~Transport() = default;
  // Connects every connection: "" when done, else why not (after at most 5 s).
  virtual std::string connect() = 0;
  virtual void open_stream(std::uint64_t index) = 0;
  // Cancels every open stream (each still ends with on_stream_done).
  virtual void cancel_open_streams() = 0;
};

std::unique_ptr<Transport> make_grpc_transport(Driver& driver);
// Null (with a message on stderr) when the options ask for what it cannot do (TLS).
std::unique_ptr<Transport> make_h2_transport(Driver& driver);

// --null-server: serves a minimal ext_proc server on `port` until killed (extproc_load_grpc.cc).
int run_null_server(int port);

// Owns the transport, the body templates, the count of open streams and the results.
class Driver {
 public:
  explicit Driver(Options options);
  ~Driver();

  // Creates the transport and connects it; false (with a message on stderr) on failure.
  bool connect();
  // Opens --concurrency streams; each finished stream opens the next until stop().
  void start();
  void begin_window();
  void end_window();
  // Stops opening streams and waits for the open ones (cancelling them after `grace`, then
  // waiting 5 s more). False if some are still open: the caller must then not destroy the Driver.
  bool stop(std::chrono::milliseconds grace);

  // Called once per stream when it ended (any thread). `error` is empty on success.
  void on_stream_done(std::int64_t start_ns, std::int64_t end_ns, std::int64_t added_ns,
                      const std::string& error);

  // For a stream that could not be opened because the transport is gone (every connection
  // lost): ends it with `error` and opens no more streams.
  void give_up(const std::string& error);

  const Options& options() const { return options_; }
  const BodyTemplate& body_template(std::uint64_t index) const {
    return templates_[index % templates_.size()];
  }
  SteadyTime origin() const { return origin_; }
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
  std::vector<BodyTemplate> templates_;
  std::atomic<std::uint64_t> next_index_{0};
  std::atomic<bool> stopping_{false};

  std::mutex mutex_;
  std::condition_variable drained_;
  std::int64_t open_streams_ = 0;
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
  std::unique_ptr<Transport> transport_;
  Timer timer_;  // destroyed (and drained) before the transport its callbacks use
};

}  // namespace infergate::extproc_load
