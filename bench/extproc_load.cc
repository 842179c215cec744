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
// --connections HTTP/2 connections. --client h2 (the default) speaks gRPC over HTTP/2 with
// nghttp2 on one thread, a little cheaper per stream than the EPP (~15 us per 2 KB stream on the
// development machine), so the generator is not what saturates first; --client grpc uses grpc++'s
// callback API (several threads; it costs more per stream than the EPP does, and supports --tls).
// Reported over the measured window (after --warmup): completed streams per second, errors, and
// p50/p90/p99 of the whole stream and of the "added time" = from starting to write the last
// request-body chunk until the last request-body answer arrives (how long the EPP holds the request
// before Envoy could forward it). With --epp-pid, the EPP's CPU seconds in the window (utime +
// stime of /proc/PID/stat) and decisions per EPP CPU-second.
//
// --response-delay-ms holds each stream between the request body's last answer and the response
// headers, like a model server computing its answer, so that N streams offer about
// N / delay requests per second instead of saturating the EPP. --null-server serves a minimal
// ext_proc server instead (the gRPC floor under the EPP). Plaintext h2c by default; --tls (with
// --client grpc) speaks TLS without verifying the certificate (grpc++'s experimental
// TlsCredentials).
//
// Any ImmediateResponse, unexpected message, missing destination or non-OK gRPC status counts as
// an error; the first few are printed. Every stream has a deadline (--stream-timeout-ms).
//
// Parts: extproc_load.h (options, Exchange, Driver), extproc_load_grpc.cc (grpc++ client and the
// null server), extproc_load_h2.cc (nghttp2 client).

#include "extproc_load.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string_view>

#include "common/random.h"
#include "request/tokenizer.h"

namespace infergate::extproc_load {

namespace core = ::envoy::config::core::v3;
using ProcessingMode = ::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;

namespace {

constexpr std::size_t kIdBytes = 16;  // hex digits making every prompt distinct
constexpr std::size_t kMaxPrintedErrors = 5;

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

}  // namespace

std::int64_t nanos_since(SteadyTime origin) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              origin)
      .count();
}

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

Timer::Timer() : thread_([this] { loop(); }) {}

Timer::~Timer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void Timer::at(SteadyTime when, std::function<void()> callback) {
  {
    std::lock_guard lock(mutex_);
    pending_.emplace(when, std::move(callback));
  }
  wake_.notify_one();
}

void Timer::loop() {
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

std::string_view Exchange::phase_name(Phase phase) {
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

Exchange::Exchange(const Driver& driver, std::uint64_t index) : driver_(driver), index_(index) {
  const Options& options = driver.options();
  const BodyTemplate& body = driver.body_template(index);
  const std::string id =
      fmt::format("{:016x}", derive_seed(options.seed, 3, index_));  // distinct prompt per stream
  const std::string request_id = fmt::format("bench-{}", index_);

  pb::HttpHeaders* headers = request_headers_.mutable_request_headers();
  core::HeaderMap* map = headers->mutable_headers();
  add_header(*map, ":method", "POST");
  add_header(*map, ":path", "/v1/chat/completions");
  add_header(*map, ":authority", "bench.example.com");
  add_header(*map, ":scheme", "http");
  add_header(*map, "content-type", "application/json");
  add_header(*map, "content-length", std::to_string(body.body.size()));
  add_header(*map, "x-request-id", request_id);
  headers->set_end_of_stream(false);
  pb::ProtocolConfiguration* config = request_headers_.mutable_protocol_config();
  config->set_request_body_mode(ProcessingMode::FULL_DUPLEX_STREAMED);
  config->set_response_body_mode(ProcessingMode::FULL_DUPLEX_STREAMED);
  messages_.push_back(&request_headers_);

  // Copy only the chunks overlapping the id; point at the shared template for the rest.
  own_chunks_.reserve(2);
  for (std::size_t chunk = 0; chunk < body.chunks.size(); ++chunk) {
    const std::size_t begin = body.chunk_offsets[chunk];
    const std::size_t end = begin + body.chunks[chunk].request_body().body().size();
    if (end <= body.id_offset || begin >= body.id_offset + kIdBytes) {
      messages_.push_back(&body.chunks[chunk]);
      continue;
    }
    pb::ProcessingRequest& own = own_chunks_.emplace_back(body.chunks[chunk]);
    std::string* bytes = own.mutable_request_body()->mutable_body();
    for (std::size_t pos = std::max(begin, body.id_offset);
         pos < std::min(end, body.id_offset + kIdBytes); ++pos) {
      (*bytes)[pos - begin] = id[pos - body.id_offset];
    }
    messages_.push_back(&own);
  }
  response_index_ = messages_.size();
  messages_.push_back(&response_headers_);
  messages_.push_back(&response_body_);

  pb::HttpHeaders* response = response_headers_.mutable_response_headers();
  add_header(*response->mutable_headers(), ":status", "200");
  add_header(*response->mutable_headers(), "content-type", "application/json");
  add_header(*response->mutable_headers(), "x-request-id", request_id);
  response->set_end_of_stream(false);
  response_body_.mutable_response_body()->set_body(R"({"id":"chatcmpl-bench","object":)"
                                                   R"("chat.completion","model":")" +
                                                   options.model +
                                                   R"(","choices":[{"index":0,"message":)"
                                                   R"({"role":"assistant","content":"ok"},)"
                                                   R"("finish_reason":"stop"}],"usage":)"
                                                   R"({"prompt_tokens":512,)"
                                                   R"("completion_tokens":1,"total_tokens":513}})");
  response_body_.mutable_response_body()->set_end_of_stream(true);
}

void Exchange::prepare_response() {
  auto& fields = (*response_headers_.mutable_metadata_context()
                       ->mutable_filter_metadata())[std::string(kLbNamespace)];
  (*fields.mutable_fields())[std::string(kServedKey)].set_string_value(
      destination_.substr(0, destination_.find(',')));
}

SteadyTime::duration Exchange::response_delay() const {
  const int delay_ms = driver_.options().response_delay_ms;
  if (delay_ms <= 0) return SteadyTime::duration::zero();
  // Uniform in [0.5, 1.5) x the delay, so that streams do not move in lock step.
  SplitMix64 jitter(derive_seed(driver_.options().seed, 4, index_));
  return std::chrono::duration_cast<SteadyTime::duration>(
      std::chrono::duration<double, std::milli>(delay_ms * (0.5 + jitter.next_unit())));
}

Exchange::Step Exchange::fail(std::string message) {
  if (error_.empty()) error_ = std::move(message);
  return Step::kError;
}

std::string Exchange::final_error(std::string transport_error) const {
  if (!error_.empty()) return error_;
  if (!transport_error.empty()) return transport_error;
  if (phase_ != Phase::kDone) {
    return "protocol: the call ended before the response body's end_of_stream";
  }
  return {};
}

Exchange::Step Exchange::on_answer(const pb::ProcessingResponse& answer) {
  if (answer.has_immediate_response()) {
    return fail(fmt::format("immediate_response {} ({}): {}",
                            static_cast<int>(answer.immediate_response().status().code()),
                            phase_name(phase_), answer.immediate_response().body().substr(0, 200)));
  }
  switch (phase_) {
    case Phase::kRequestHeaders: {
      if (!answer.has_request_headers()) {
        return fail(fmt::format("protocol: expected the request_headers answer, got case {}",
                                static_cast<int>(answer.response_case())));
      }
      for (const auto& option :
           answer.request_headers().response().header_mutation().set_headers()) {
        if (option.header().key() == kDestinationKey) destination_ = option.header().raw_value();
      }
      if (destination_.empty()) return fail("protocol: no x-gateway-destination-endpoint header");
      const auto& namespaces = answer.dynamic_metadata().fields();
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
      return Step::kContinue;
    }
    case Phase::kRequestBody: {
      if (!answer.has_request_body() ||
          !answer.request_body().response().body_mutation().has_streamed_response()) {
        return fail(fmt::format("protocol: expected a request_body streamed_response, got case {}",
                                static_cast<int>(answer.response_case())));
      }
      const auto& streamed = answer.request_body().response().body_mutation().streamed_response();
      echoed_bytes_ += streamed.body().size();
      if (!streamed.end_of_stream()) return Step::kContinue;
      added_end_ns_ = nanos_since(driver_.origin());
      if (echoed_bytes_ == 0) return fail("protocol: the request body was not echoed");
      phase_ = Phase::kResponseHeaders;
      return Step::kRequestAnswered;
    }
    case Phase::kResponseHeaders:
      if (!answer.has_response_headers()) {
        return fail(fmt::format("protocol: expected the response_headers answer, got case {}",
                                static_cast<int>(answer.response_case())));
      }
      phase_ = Phase::kResponseBody;
      return Step::kContinue;
    case Phase::kResponseBody: {
      if (!answer.has_response_body() ||
          !answer.response_body().response().body_mutation().has_streamed_response()) {
        return fail(fmt::format("protocol: expected a response_body streamed_response, got case {}",
                                static_cast<int>(answer.response_case())));
      }
      if (!answer.response_body().response().body_mutation().streamed_response().end_of_stream()) {
        return Step::kContinue;
      }
      phase_ = Phase::kDone;
      return Step::kResponseAnswered;
    }
    case Phase::kDone:
      return fail(fmt::format("protocol: answer case {} after the response body's end",
                              static_cast<int>(answer.response_case())));
  }
  return fail("unreachable");
}

Driver::Driver(Options options) : options_(std::move(options)) {
  for (int group = 0; group < std::max(1, options_.prefix_groups); ++group) {
    templates_.push_back(make_template(options_, group));
  }
}

Driver::~Driver() = default;

bool Driver::connect() {
  transport_ =
      options_.client == ClientKind::kH2 ? make_h2_transport(*this) : make_grpc_transport(*this);
  if (!transport_) return false;
  if (const std::string error = transport_->connect(); !error.empty()) {
    fmt::print(stderr, "extproc_load: cannot connect to {}: {}\n", options_.target, error);
    return false;
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
  {
    std::lock_guard lock(mutex_);
    ++open_streams_;
  }
  transport_->open_stream(next_index_.fetch_add(1));
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
  if (drained_.wait_for(lock, grace, [this] { return open_streams_ == 0; })) return true;
  unfinished_ = static_cast<std::uint64_t>(open_streams_);
  lock.unlock();
  transport_->cancel_open_streams();  // may end streams inline (on_stream_done takes mutex_)
  lock.lock();
  return drained_.wait_for(lock, std::chrono::seconds(5), [this] { return open_streams_ == 0; });
}

void Driver::on_stream_done(std::int64_t start_ns, std::int64_t end_ns, std::int64_t added_ns,
                            const std::string& error) {
  {
    std::lock_guard lock(mutex_);
    --open_streams_;
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
    if (open_streams_ == 0) drained_.notify_all();
  }
  launch();
}

void Driver::give_up(const std::string& error) {
  stopping_ = true;
  const std::int64_t now = nanos_since(origin_);
  on_stream_done(now, now, 0, error);
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

namespace {

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

int run(const Options& options) {
  Driver driver(options);
  if (!driver.connect()) return 1;
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
  std::string client = "h2";
  app.add_option("--client", client,
                 "Client transport: h2 (nghttp2 on one thread, a little cheaper per stream than "
                 "the EPP, so the EPP saturates first) or grpc (grpc++'s callback API; needed for "
                 "--tls)")
      ->check(CLI::IsMember({"h2", "grpc"}))
      ->capture_default_str();
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
               "--secure-serving=true; needs --client grpc); default plaintext h2c");
  app.add_flag("--json", options.json, "One JSON object on stdout instead of the table");
  int null_server_port = -1;
  app.add_option("--null-server", null_server_port,
                 "Instead of generating load, serve a minimal ext_proc server on this port (the "
                 "EPP's message flow with no parsing or scheduling: the gRPC floor) until killed")
      ->check(CLI::Range(0, 65535));
  CLI11_PARSE(app, argc, argv);
  options.client = client == "grpc" ? infergate::extproc_load::ClientKind::kGrpc
                                    : infergate::extproc_load::ClientKind::kH2;
  if (null_server_port >= 0) return infergate::extproc_load::run_null_server(null_server_port);
  if (options.target.empty()) {
    fmt::print(stderr, "--target is required\n");
    return 2;
  }
  return infergate::extproc_load::run(options);
}
