#pragma once

// One JSON line per request (--access-log, on by default), e.g.
//
//   {"time":"2026-03-01T12:00:00.123Z","request_id":"5f0c…","method":"POST",
//    "path":"/v1/chat/completions","status":200,"model":"llama","target_model":"llama-v2",
//    "endpoint":"10.0.0.7:8000","attempts":1,"ttft_ms":84.2,"duration_ms":1530.7,
//    "prompt_tokens":512,"completion_tokens":128,"error":""}
//
// Fields a request did not reach are empty strings / null (ttft_ms before any response byte,
// token counts when the model server reported no usage). Written through an spdlog logger whose
// pattern is the bare message, so every line is valid JSON.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace spdlog {
class logger;
}

namespace infergate::gateway {

struct AccessRecord {
  std::string request_id;
  std::string method;
  std::string path;
  unsigned status = 0;
  std::string model;         // as the client named it
  std::string target_model;  // as sent to the model server
  std::string endpoint;      // the endpoint that answered ("" when none did)
  int attempts = 0;          // upstream attempts made
  std::optional<double> ttft_ms;
  double duration_ms = 0;
  std::optional<std::int64_t> prompt_tokens;
  std::optional<std::int64_t> completion_tokens;
  std::string error;  // the error message sent to the client, or of the last failed attempt
};

// The JSON object for `record` (no trailing newline); `unix_time_ms` fills "time" (UTC, ISO 8601).
std::string format_access_log(const AccessRecord& record, std::int64_t unix_time_ms);

// A logger writing bare lines to standard output, for the access log.
std::shared_ptr<spdlog::logger> make_stdout_access_logger();

}  // namespace infergate::gateway
