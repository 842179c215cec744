#include "integration/fake_epp.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <stdexcept>

#include "director/protocol.h"
#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"

namespace infergate::test_support {
namespace {

namespace pb = ::envoy::service::ext_proc::v3;
namespace protocol = director::protocol;

constexpr std::size_t kChunkBytes = 62000;

using Stream = grpc::ServerReaderWriter<pb::ProcessingResponse, pb::ProcessingRequest>;

// Every `"model":"<from>"` in `text` becomes `"model":"<to>"`.
std::string replace_model(std::string text, std::string_view from, std::string_view to) {
  const std::string needle = fmt::format(R"("model":"{}")", from);
  const std::string replacement = fmt::format(R"("model":"{}")", to);
  for (std::size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + replacement.size())) {
    text.replace(at, needle.size(), replacement);
  }
  return text;
}

// The request-headers answer naming `destination` as header and envoy.lb metadata.
pb::ProcessingResponse headers_answer(const std::string& destination) {
  pb::ProcessingResponse answer;
  pb::CommonResponse* common = answer.mutable_request_headers()->mutable_response();
  common->set_clear_route_cache(true);
  auto* header = common->mutable_header_mutation()->add_set_headers()->mutable_header();
  header->set_key(std::string(protocol::kDestinationHeader));
  header->set_raw_value(destination);
  auto& lb = (*answer.mutable_dynamic_metadata()
                   ->mutable_fields())[std::string(protocol::kDestinationNamespace)];
  (*lb.mutable_struct_value()->mutable_fields())[std::string(protocol::kDestinationHeader)]
      .set_string_value(destination);
  return answer;
}

// A body answer (request or response direction) streaming `bytes` back.
pb::ProcessingResponse body_answer(bool response_direction, std::string bytes, bool end) {
  pb::ProcessingResponse answer;
  pb::BodyResponse* body =
      response_direction ? answer.mutable_response_body() : answer.mutable_request_body();
  pb::StreamedBodyResponse* streamed =
      body->mutable_response()->mutable_body_mutation()->mutable_streamed_response();
  streamed->set_body(std::move(bytes));
  streamed->set_end_of_stream(end);
  return answer;
}

}  // namespace

class FakeEpp::Service final : public pb::ExternalProcessor::Service {
 public:
  explicit Service(FakeEpp& owner) : owner_(owner) {}

  grpc::Status Process(grpc::ServerContext* /*context*/, Stream* stream) override {
    ++owner_.started_;
    ++owner_.active_;
    const grpc::Status status = run(owner_.script(), *stream);
    --owner_.active_;
    return status;
  }

 private:
  grpc::Status run(const FakeEppScript& script, Stream& stream) {
    using Response = FakeEppScript::Response;
    pb::ProcessingRequest request;
    std::string body;
    int body_messages = 0;
    bool hanging = false;
    const auto restored = [&](std::string bytes) {
      if (!script.model_rewrite) return bytes;
      return replace_model(std::move(bytes), script.model_rewrite->second,
                           script.model_rewrite->first);
    };
    while (stream.Read(&request)) {
      if (hanging) continue;  // until the client cancels
      switch (request.request_case()) {
        case pb::ProcessingRequest::kRequestHeaders:
          if (request.request_headers().end_of_stream() &&
              !stream.Write(headers_answer(script.destination))) {
            return grpc::Status::OK;
          }
          break;
        case pb::ProcessingRequest::kRequestBody: {
          body += request.request_body().body();
          if (!request.request_body().end_of_stream()) break;
          if (script.model_rewrite) {
            body = replace_model(std::move(body), script.model_rewrite->first,
                                 script.model_rewrite->second);
          }
          if (!stream.Write(headers_answer(script.destination))) return grpc::Status::OK;
          for (std::size_t offset = 0; offset == 0 || offset < body.size(); offset += kChunkBytes) {
            const bool last = offset + kChunkBytes >= body.size();
            if (!stream.Write(body_answer(false, body.substr(offset, kChunkBytes), last))) {
              return grpc::Status::OK;
            }
          }
          break;
        }
        case pb::ProcessingRequest::kResponseHeaders: {
          ++owner_.response_heads_;
          const auto& metadata = request.metadata_context().filter_metadata();
          const auto lb = metadata.find(std::string(protocol::kDestinationNamespace));
          if (lb != metadata.end()) {
            const auto served = lb->second.fields().find(std::string(protocol::kServedKey));
            if (served != lb->second.fields().end()) {
              owner_.record_served(served->second.string_value());
            }
          }
          if (script.response == Response::kFailAtHeaders) return script.failure;
          if (script.response == Response::kHang) {
            hanging = true;
            break;
          }
          pb::ProcessingResponse answer;
          answer.mutable_response_headers();
          if (!stream.Write(answer)) return grpc::Status::OK;
          break;
        }
        case pb::ProcessingRequest::kResponseBody: {
          const pb::HttpBody& chunk = request.response_body();
          if (script.response == Response::kFailInBody &&
              body_messages == script.body_messages_passed) {
            if (script.partial_bytes > 0) {
              std::string prefix = restored(chunk.body().substr(0, script.partial_bytes));
              stream.Write(body_answer(true, std::move(prefix), false));
            }
            return script.failure;
          }
          ++body_messages;
          if (!stream.Write(body_answer(true, restored(chunk.body()), chunk.end_of_stream()))) {
            return grpc::Status::OK;
          }
          break;
        }
        default:
          break;
      }
    }
    return grpc::Status::OK;
  }

  FakeEpp& owner_;
};

FakeEpp::FakeEpp() : service_(std::make_unique<Service>(*this)) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) throw std::runtime_error("fake EPP: cannot listen on 127.0.0.1");
}

FakeEpp::~FakeEpp() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  server_->Wait();
}

std::string FakeEpp::target() const { return fmt::format("127.0.0.1:{}", port_); }

void FakeEpp::set_script(FakeEppScript script) {
  std::lock_guard lock(mutex_);
  script_ = std::move(script);
}

std::string FakeEpp::last_served() const {
  std::lock_guard lock(mutex_);
  return last_served_;
}

FakeEppScript FakeEpp::script() const {
  std::lock_guard lock(mutex_);
  return script_;
}

void FakeEpp::record_served(std::string served) {
  std::lock_guard lock(mutex_);
  last_served_ = std::move(served);
}

}  // namespace infergate::test_support
