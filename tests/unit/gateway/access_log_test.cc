#include "gateway/access_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace infergate::gateway {
namespace {

// 2030-01-02T03:04:05.678Z
constexpr std::int64_t kUnixMs = 1893553445678;

TEST(AccessLog, CompleteRecordIsOneJsonObjectWithEveryField) {
  const AccessRecord record{.request_id = "req-1",
                            .method = "POST",
                            .path = "/v1/chat/completions",
                            .status = 200,
                            .model = "llama",
                            .target_model = "llama-v2",
                            .endpoint = "10.0.0.7:8000",
                            .attempts = 2,
                            .ttft_ms = 84.25,
                            .duration_ms = 1530.71,
                            .prompt_tokens = 512,
                            .completion_tokens = 128,
                            .error = ""};
  EXPECT_EQ(format_access_log(record, kUnixMs),
            R"({"time":"2030-01-02T03:04:05.678Z","request_id":"req-1","method":"POST",)"
            R"("path":"/v1/chat/completions","status":200,"model":"llama",)"
            R"("target_model":"llama-v2","endpoint":"10.0.0.7:8000","attempts":2,)"
            R"("ttft_ms":84.2,"duration_ms":1530.7,"prompt_tokens":512,)"
            R"("completion_tokens":128,"error":""})");
}

TEST(AccessLog, MissingFiguresAreNullAndStringsAreEscaped) {
  const AccessRecord record{.method = "POST",
                            .path = "/v1/completions",
                            .status = 400,
                            .model = "we\"ird\nname",
                            .duration_ms = 0.25,
                            .error = "bad \\ body\t"};
  const std::string line = format_access_log(record, kUnixMs);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const auto parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["model"], "we\"ird\nname");
  EXPECT_EQ(parsed["error"], "bad \\ body\t");
  EXPECT_TRUE(parsed["ttft_ms"].is_null());
  EXPECT_TRUE(parsed["prompt_tokens"].is_null());
  EXPECT_TRUE(parsed["completion_tokens"].is_null());
  EXPECT_EQ(parsed["status"], 400);
  EXPECT_EQ(parsed["attempts"], 0);
  EXPECT_EQ(parsed["endpoint"], "");
}

}  // namespace
}  // namespace infergate::gateway
