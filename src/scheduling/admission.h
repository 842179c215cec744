#pragma once

#include "common/status.h"

namespace infergate::scheduling {

// Legacy admission (scheduling facts §5.3), used when flow control is off: a request with
// priority < 0 is shed with 429 while the pool is saturated (saturation >= 1.0); requests with
// priority >= 0 are never shed here.
inline Status admit_legacy(int priority, double pool_saturation) {
  if (priority < 0 && pool_saturation >= 1.0) {
    return Status(429, "the inference pool is saturated and the request's priority is below 0");
  }
  return Status::ok();
}

}  // namespace infergate::scheduling
