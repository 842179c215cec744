#include "gateway/access_log.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "request/json_scan.h"

namespace infergate::gateway {
namespace {

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += ",\"";
  out += name;
  out += "\":";
  request::json_scan::append_json_string(out, value);
}

void append_number(std::string& out, std::string_view name, std::optional<double> value) {
  if (value) {
    fmt::format_to(std::back_inserter(out), ",\"{}\":{:.1f}", name, *value);
  } else {
    fmt::format_to(std::back_inserter(out), ",\"{}\":null", name);
  }
}

void append_integer(std::string& out, std::string_view name, std::optional<std::int64_t> value) {
  if (value) {
    fmt::format_to(std::back_inserter(out), ",\"{}\":{}", name, *value);
  } else {
    fmt::format_to(std::back_inserter(out), ",\"{}\":null", name);
  }
}

}  // namespace

std::string format_access_log(const AccessRecord& record, std::int64_t unix_time_ms) {
  std::string out;
  out.reserve(384);
  const std::chrono::sys_seconds time{std::chrono::seconds(unix_time_ms / 1000)};
  fmt::format_to(std::back_inserter(out), "{{\"time\":\"{:%Y-%m-%dT%H:%M:%S}.{:03d}Z\"", time,
                 unix_time_ms % 1000);
  append_field(out, "request_id", record.request_id);
  append_field(out, "method", record.method);
  append_field(out, "path", record.path);
  fmt::format_to(std::back_inserter(out), ",\"status\":{}", record.status);
  append_field(out, "model", record.model);
  append_field(out, "target_model", record.target_model);
  append_field(out, "endpoint", record.endpoint);
  fmt::format_to(std::back_inserter(out), ",\"attempts\":{}", record.attempts);
  append_number(out, "ttft_ms", record.ttft_ms);
  append_number(out, "duration_ms", record.duration_ms);
  append_integer(out, "prompt_tokens", record.prompt_tokens);
  append_integer(out, "completion_tokens", record.completion_tokens);
  append_field(out, "error", record.error);
  out += '}';
  return out;
}

std::shared_ptr<spdlog::logger> make_stdout_access_logger() {
  auto logger =
      std::make_shared<spdlog::logger>("access", std::make_shared<spdlog::sinks::stdout_sink_mt>());
  logger->set_pattern("%v");
  logger->set_level(spdlog::level::info);
  return logger;
}

}  // namespace infergate::gateway
