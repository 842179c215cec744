// The ext_proc streams the EPP serves: extproc::StreamProcessor, wired to a real Director over a
// pool of three endpoints (no model servers: they are never scraped), fed messages decoded from
// the wire as the native transport decodes them.
// Input: one byte choosing the options (body chunk size, body limit, endpoint scores), then
// messages, each a 2-byte little-endian length and that many bytes; bytes that do not decode are
// skipped, as the transport drops such a message.
// Properties: every answer is a ProcessingResponse with one of its parts set, and once the
// stream ends (the processor finishes it, after which nothing more is fed, as the transport
// does; or the messages run out) no request is left in flight on any endpoint.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "api/endpoint_picker_config.h"
#include "api/types.h"
#include "common/clock.h"
#include "datastore/datastore.h"
#include "datastore/model_policies.h"
#include "director/director.h"
#include "extproc/request_view.h"
#include "extproc/stream_processor.h"
#include "fuzz/fuzz_input.h"
#include "prom/registry.h"
#include "scheduling/config_loader.h"

namespace {

using infergate::fuzz::FuzzInput;
using infergate::fuzz::require;
namespace extproc = infergate::extproc;
namespace datastore = infergate::datastore;

// One director for the whole run, as one EPP serves many streams.
struct Epp {
  Epp() {
    store.set_endpoints({
        {.pod_name = "pod-1", .namespace_name = "default", .address = "10.0.0.1", .port = 8000},
        {.pod_name = "pod-2", .namespace_name = "default", .address = "10.0.0.2", .port = 8000},
        {.pod_name = "pod-3", .namespace_name = "default", .address = "10.0.0.3", .port = 8000},
    });
    infergate::api::InferenceModelRewrite rewrite;
    rewrite.metadata.name = "food-review-canary";
    rewrite.rules.push_back({.matches = {{.value = "food-review"}},
                             .targets = {{.model_rewrite = "food-review-v2", .weight = 1}}});
    auto policies = std::make_shared<const datastore::ModelPolicies>(
        std::vector<infergate::api::InferenceObjective>{},
        std::vector<infergate::api::InferenceModelRewrite>{rewrite});
    auto setup =
        infergate::scheduling::build_scheduler(infergate::api::default_endpoint_picker_config());
    require(setup.ok(), "the default scheduler does not build");
    director = std::make_unique<infergate::director::Director>(
        store, std::move(*setup), policies, clock, registry,
        infergate::director::DirectorOptions{.seed = 7});
    metrics = std::make_unique<extproc::ProcessorMetrics>(registry);
  }

  std::int64_t inflight() const {
    std::int64_t total = 0;
    for (const auto& endpoint : store.snapshot()->endpoints) {
      total += endpoint.state->inflight_requests.load();
    }
    return total;
  }

  infergate::ManualClock clock;
  datastore::Datastore store;
  infergate::prom::Registry registry;
  std::unique_ptr<infergate::director::Director> director;
  std::unique_ptr<extproc::ProcessorMetrics> metrics;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Epp epp;
  FuzzInput input(data, size);
  const std::uint8_t choice = input.take_byte();
  extproc::ProcessorOptions options;
  options.body_chunk_bytes = 1 + (choice & 0x0f) * 8;
  options.max_body_bytes = (choice & 0x10) != 0 ? 64 : 0;
  options.emit_endpoint_scores = (choice & 0x20) != 0;

  {
    extproc::StreamProcessor processor(*epp.director, options, *epp.metrics);
    extproc::Answers answers(nullptr);
    std::string_view rest = input.rest();
    while (rest.size() >= 2) {
      const std::size_t length =
          static_cast<std::uint8_t>(rest[0]) |
          (static_cast<std::size_t>(static_cast<std::uint8_t>(rest[1])) << 8);
      rest.remove_prefix(2);
      const std::string_view wire = rest.substr(0, length);
      rest.remove_prefix(wire.size());

      infergate::extproc::pb::ProcessingRequest rest_fields;
      extproc::ViewStorage storage;
      extproc::RequestView view;
      if (!extproc::decode_request(wire, rest_fields, storage, view)) continue;
      answers.clear();
      const extproc::StreamAction action = processor.on_message(view, answers);
      for (const auto& answer : answers) {
        require(
            answer.response_case() != infergate::extproc::pb::ProcessingResponse::RESPONSE_NOT_SET,
            "an answer without a part");
      }
      if (action != extproc::StreamAction::kContinue) break;
    }
    processor.on_stream_end();
  }
  require(epp.inflight() == 0, "a request is left in flight after its stream ended");
  return 0;
}
