#include "common/status.h"

#include <nlohmann/json.hpp>

namespace infergate {

std::string_view Status::type() const {
  if (!type_.empty()) return type_;
  switch (http_status_) {
    case 400:
      return "BadRequestError";
    case 401:
      return "AuthenticationError";
    case 403:
      return "PermissionDeniedError";
    case 404:
      return "NotFoundError";
    case 408:
      return "RequestTimeoutError";
    case 413:
      return "RequestEntityTooLargeError";
    case 422:
      return "UnprocessableEntityError";
    case 429:
      return "RateLimitError";
    case 431:
      return "RequestHeaderFieldsTooLargeError";
    case 503:
      return "ServiceUnavailableError";
    default:
      return http_status_ >= 500 ? "InternalServerError" : "BadRequestError";
  }
}

std::string Status::to_openai_json() const {
  nlohmann::json error = {
      {"message", message_}, {"type", type()}, {"param", nullptr}, {"code", http_status_}};
  return nlohmann::json{{"error", std::move(error)}}.dump();
}

}  // namespace infergate
