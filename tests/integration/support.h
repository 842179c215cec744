#pragma once

// Pieces every integration test needs: a temporary file, polling with a deadline, a log sink that
// keeps the lines, and the EPP resources of the simulator pool the ext_proc tests share.

#include <fmt/format.h>
#include <spdlog/sinks/base_sink.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace infergate::test_support {

// A file under the temporary directory, removed with the object.
class TempFile {
 public:
  TempFile(std::string_view name, std::string_view contents) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("infergate-test-{}-{}-{}", getpid(), counter++, name);
    std::ofstream(path_, std::ios::binary) << contents;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// Polls `condition` every millisecond for at most `limit`; its last value.
template <typename Condition>
bool eventually(Condition condition,
                std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return condition();
}

// Keeps the lines logged to it (e.g. the gateway's access log).
class LineSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> lines() {
    std::lock_guard lock(mutex_);
    return lines_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& message) override {
    lines_.emplace_back(message.payload.data(), message.payload.size());
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;
};

// The EPP's resources for a pool of simulators: InferencePool "sims" and a rewrite of the
// client's model name "food-review" to the served meta-llama/Llama-3.1-8B-Instruct.
inline constexpr std::string_view kSimPoolResources = R"(
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: sims, namespace: default}
spec:
  selector: {matchLabels: {app: sim}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: epp, port: {number: 9002}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: food-review, namespace: default}
spec:
  poolRef: {name: sims}
  rules:
  - matches: [{model: {type: Exact, value: food-review}}]
    targets: [{modelRewrite: meta-llama/Llama-3.1-8B-Instruct, weight: 100}]
)";

}  // namespace infergate::test_support
