#include "director/protocol.h"

#include <array>

namespace infergate::director::protocol {

bool is_control_header(std::string_view lower_case_name) {
  static constexpr std::array<std::string_view, 10> kControlHeaders = {
      kFairnessHeader,      kObjectiveHeader,        kModelRewriteHeader, kLlmdFairnessHeader,
      kLlmdObjectiveHeader, kLlmdModelRewriteHeader, kSubsetKey,          kDestinationHeader,
      kServedKey,           "content-length"};
  for (std::string_view name : kControlHeaders) {
    if (name == lower_case_name) return true;
  }
  return false;
}

}  // namespace infergate::director::protocol
