#pragma once

// A scripted ext_proc server for tests of the gateway's EPP client side: it speaks the Endpoint
// Picker Protocol's message flow (FULL_DUPLEX_STREAMED, epp-protocol facts §4, §5) without any
// picking of its own, and fails where the test tells it to.
//
// Request path (every stream): the request body is echoed back (streamed_response chunks, the
// last with end_of_stream) after the request-headers answer, which names `destination` both as
// the x-gateway-destination-endpoint header (raw_value) and as envoy.lb dynamic metadata. A
// body-less request is answered at its headers. With `model_rewrite` set, `"model":"<from>"` in
// the request body becomes `"model":"<to>"`.
//
// Response path, per `response`:
//   kPass         — the headers answered without mutation, every body chunk echoed back (with
//                   `model_rewrite`, `"model":"<to>"` is restored to `"model":"<from>"`);
//   kFailAtHeaders — the stream ends with `failure` (a non-OK gRPC status) instead of the
//                   response-headers answer;
//   kFailInBody   — the headers answered, `body_messages_passed` response_body messages echoed,
//                   then on the next one its first `partial_bytes` bytes echoed (when non-zero)
//                   and the stream ended with `failure`;
//   kHang         — nothing is answered from the response headers on; the stream stays open
//                   until the client cancels it (its message timeout).
//
// Threads: gRPC's synchronous server, one of its threads per stream. set_script() and the
// observers may be called from any thread; a stream uses the script current when it started.
// The destructor shuts the server down (streams still open are cancelled after a short grace).

#include <grpcpp/support/status.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace grpc {
class Server;
}

namespace infergate::test_support {

struct FakeEppScript {
  enum class Response { kPass, kFailAtHeaders, kFailInBody, kHang };

  std::string destination;  // ip:port named on the request path
  Response response = Response::kPass;
  int body_messages_passed = 0;   // kFailInBody
  std::size_t partial_bytes = 0;  // kFailInBody
  grpc::Status failure{grpc::StatusCode::UNAVAILABLE, "scripted endpoint picker failure"};
  std::optional<std::pair<std::string, std::string>> model_rewrite;  // {from, to}
};

class FakeEpp {
 public:
  // Listens on 127.0.0.1, a port of the system's choosing. Throws std::runtime_error when the
  // server cannot start.
  FakeEpp();
  ~FakeEpp();
  FakeEpp(const FakeEpp&) = delete;
  FakeEpp& operator=(const FakeEpp&) = delete;

  std::string target() const;  // 127.0.0.1:port
  void set_script(FakeEppScript script);

  // Streams open now / opened so far.
  int active_streams() const { return active_.load(); }
  int streams() const { return started_.load(); }
  // response_headers messages received so far, and the served endpoint (envoy.lb
  // x-gateway-destination-endpoint-served) of the last one.
  int response_heads() const { return response_heads_.load(); }
  std::string last_served() const;

  class Service;  // the ext_proc service (fake_epp.cc)

 private:
  friend class Service;
  FakeEppScript script() const;
  void record_served(std::string served);

  mutable std::mutex mutex_;
  FakeEppScript script_;
  std::string last_served_;
  std::atomic<int> active_{0};
  std::atomic<int> started_{0};
  std::atomic<int> response_heads_{0};
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace infergate::test_support
