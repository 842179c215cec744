#pragma once

// Header names and metadata keys of the Endpoint Picker Protocol (epp-protocol facts §5.1, §11),
// shared by every front end: the ext_proc server, the standalone gateway and their tests.

#include <string_view>

namespace infergate::director::protocol {

// Destination: request header and `envoy.lb` dynamic-metadata key, `ip:port[,ip:port...]`.
inline constexpr std::string_view kDestinationHeader = "x-gateway-destination-endpoint";
inline constexpr std::string_view kDestinationNamespace = "envoy.lb";
// Subset hint (gateway → EPP): `filter_metadata["envoy.lb.subset_hint"][key]`, a list of strings.
inline constexpr std::string_view kSubsetNamespace = "envoy.lb.subset_hint";
inline constexpr std::string_view kSubsetKey = "x-gateway-destination-endpoint-subset";
// Served endpoint (gateway → EPP, response path): `filter_metadata["envoy.lb"][key]`.
inline constexpr std::string_view kServedKey = "x-gateway-destination-endpoint-served";
// Per-endpoint scores for explainability (opt-in): `envoy.lb` metadata key and response header.
inline constexpr std::string_view kScoresKey = "x-gateway-destination-endpoint-scores";

inline constexpr std::string_view kFairnessHeader = "x-gateway-inference-fairness-id";
inline constexpr std::string_view kDefaultFairnessId = "default-flow";
inline constexpr std::string_view kObjectiveHeader = "x-gateway-inference-objective";
inline constexpr std::string_view kModelRewriteHeader = "x-gateway-model-name-rewrite";
// llm-d-router spellings of the three headers above, accepted as well.
inline constexpr std::string_view kLlmdFairnessHeader = "x-llm-d-inference-fairness-id";
inline constexpr std::string_view kLlmdObjectiveHeader = "x-llm-d-inference-objective";
inline constexpr std::string_view kLlmdModelRewriteHeader = "x-llm-d-model-name-rewrite";
inline constexpr std::string_view kRequestIdHeader = "x-request-id";

// Conformance test hooks (test only, behind DirectorOptions::conformance_hooks).
inline constexpr std::string_view kTestSelectionHeader = "test-epp-endpoint-selection";
inline constexpr std::string_view kServedTestHeader = "x-conformance-test-served-endpoint";

// Headers the picker owns: stripped from the request headers it forwards upstream and from the
// response headers it echoes (epp-protocol §7.3, §7.6). Also `content-length`, which the picker
// sets itself. `lower_case_name` must be lower case.
bool is_control_header(std::string_view lower_case_name);

}  // namespace infergate::director::protocol
