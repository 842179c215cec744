#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace infergate {

// The outcome of a request-path operation: an HTTP status and, on error, an OpenAI-style error.
// Request-path code returns Status / Result<T> instead of throwing (ARCHITECTURE.md, error policy).
class Status {
 public:
  Status() = default;  // OK
  Status(int http_status, std::string message, std::string type = {})
      : http_status_(http_status), message_(std::move(message)), type_(std::move(type)) {}

  static Status ok() { return {}; }
  static Status bad_request(std::string message) { return {400, std::move(message)}; }
  static Status not_found(std::string message) { return {404, std::move(message)}; }
  static Status internal(std::string message) { return {500, std::move(message)}; }
  static Status unavailable(std::string message) { return {503, std::move(message)}; }

  bool is_ok() const { return http_status_ < 400; }
  int http_status() const { return http_status_; }
  const std::string& message() const { return message_; }
  // The OpenAI error `type`: the explicit one, else the name vLLM uses for the status.
  std::string_view type() const;

  // {"error":{"message":...,"type":...,"param":null,"code":<status>}}
  std::string to_openai_json() const;

 private:
  int http_status_ = 200;
  std::string message_;
  std::string type_;
};

// A value or an error: a Status on the request path; a module with an error type of its own uses
// Result<T, ThatError> (e.g. extproc::ExtProcResult).
template <typename T, typename E = Status>
class Result {
 public:
  // By reference, not by value: a returned value is moved once, not twice.
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(const T& value) : storage_(std::in_place_index<0>, value) {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(T&& value) : storage_(std::in_place_index<0>, std::move(value)) {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(const E& error) : storage_(std::in_place_index<1>, error) {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(E&& error) : storage_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const { return std::holds_alternative<T>(storage_); }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<T>(storage_); }
  const T& value() const { return std::get<T>(storage_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const E& status() const { return std::get<E>(storage_); }
  const E& error() const { return status(); }

 private:
  std::variant<T, E> storage_;
};

}  // namespace infergate
