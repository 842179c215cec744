#pragma once

// Plain value types for the Gateway API Inference Extension resources infergate reads, and for the
// EndpointPickerConfig file. Field names follow the Kubernetes JSON names (camelCase there,
// snake_case here). The types carry no behaviour beyond small helpers; decoding and validation live
// in decode.h, picker-config defaults in endpoint_picker_config.h, legacy conversion in legacy.h.
//
// Values are immutable once decoded; copy them freely (they are small and start-up only).

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace infergate::api {

// API groups and versions (api-types.md §0).
inline constexpr std::string_view kGroupV1 = "inference.networking.k8s.io";
inline constexpr std::string_view kGroupExperimental = "inference.networking.x-k8s.io";
inline constexpr std::string_view kGroupLlmd = "llm-d.ai";
inline constexpr std::string_view kApiVersionV1 = "inference.networking.k8s.io/v1";
inline constexpr std::string_view kApiVersionV1alpha2 = "inference.networking.x-k8s.io/v1alpha2";
// llm-d-router moved InferenceObjective / InferenceModelRewrite to the `llm-d.ai` group; the facts
// name the group but not the version, so the version is assumed unchanged.
inline constexpr std::string_view kApiVersionLlmdV1alpha2 = "llm-d.ai/v1alpha2";
inline constexpr std::string_view kApiVersionConfigV1alpha1 =
    "inference.networking.x-k8s.io/v1alpha1";
inline constexpr std::string_view kApiVersionLlmdConfigV1alpha1 = "llm-d.ai/v1alpha1";

inline constexpr std::string_view kKindInferencePool = "InferencePool";
inline constexpr std::string_view kKindInferenceObjective = "InferenceObjective";
inline constexpr std::string_view kKindInferenceModelRewrite = "InferenceModelRewrite";
inline constexpr std::string_view kKindInferenceModel = "InferenceModel";
inline constexpr std::string_view kKindEndpointPickerConfig = "EndpointPickerConfig";

// Gateway API (gateway.networking.k8s.io/v1): the standalone gateway's listeners and routes.
inline constexpr std::string_view kGroupGatewayApi = "gateway.networking.k8s.io";
inline constexpr std::string_view kApiVersionGatewayV1 = "gateway.networking.k8s.io/v1";
inline constexpr std::string_view kKindGateway = "Gateway";
inline constexpr std::string_view kKindHTTPRoute = "HTTPRoute";

// Port a v1alpha2 extensionRef to a Service is assumed to use when it gives none (api-types §2).
inline constexpr int32_t kDefaultExtensionPort = 9002;

// The subset of Kubernetes ObjectMeta infergate uses. Other ObjectMeta fields (uid,
// resourceVersion, managedFields, ...) are accepted by the decoder and dropped.
struct ObjectMeta {
  std::string name;
  std::string namespace_name;  // JSON `namespace`; empty = unspecified
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string creation_timestamp;  // RFC 3339 as written, empty if absent

  bool operator==(const ObjectMeta&) const = default;
};

// ---- InferencePool (v1; v1alpha2 is converted into this shape) ---------------------------------

enum class FailureMode { kFailClose, kFailOpen };
enum class AppProtocol { kHttp, kH2c };  // `http` (default) | `kubernetes.io/h2c`

struct EndpointPickerRef {
  std::string group;                   // default "" (core)
  std::string kind = "Service";        // default Service
  std::string name;                    // required, 1..253 chars
  std::optional<int32_t> port_number;  // `port.number`; required when kind is Service
  FailureMode failure_mode = FailureMode::kFailClose;

  bool operator==(const EndpointPickerRef&) const = default;
};

struct InferencePoolSpec {
  std::map<std::string, std::string> match_labels;  // `selector.matchLabels`, 1..64 entries
  std::vector<int32_t> target_ports;                // `targetPorts[].number`, 1..8, unique
  AppProtocol app_protocol = AppProtocol::kHttp;
  std::optional<EndpointPickerRef> endpoint_picker_ref;  // optional since GIE v1.6.0

  bool operator==(const InferencePoolSpec&) const = default;
};

struct InferencePool {
  std::string api_version;  // as written: v1, or v1alpha2 (converted)
  ObjectMeta metadata;
  InferencePoolSpec spec;
  nlohmann::json status;  // as written (not interpreted, not converted); null if absent

  bool operator==(const InferencePool&) const = default;
};

// ---- InferenceObjective -------------------------------------------------------------------------

// Reference to an InferencePool in the same namespace.
struct PoolRef {
  std::string group;  // defaulted by the decoder per kind (see decode.h)
  std::string kind = "InferencePool";
  std::string name;

  bool operator==(const PoolRef&) const = default;
};

struct InferenceObjective {
  std::string api_version;
  ObjectMeta metadata;
  int64_t priority = 0;  // higher = more important; negative = sheddable; unset = 0
  PoolRef pool_ref;      // group default inference.networking.k8s.io
  nlohmann::json status;

  bool is_sheddable() const { return priority < 0; }
  bool operator==(const InferenceObjective&) const = default;
};

// ---- InferenceModelRewrite ----------------------------------------------------------------------

enum class ModelMatchType { kExact };  // the only value, and the default

struct ModelMatch {
  ModelMatchType type = ModelMatchType::kExact;
  std::string value;  // min length 1

  bool operator==(const ModelMatch&) const = default;
};

struct RewriteTarget {
  std::string model_rewrite;      // required
  std::optional<int32_t> weight;  // 1..1,000,000 when given; absent counts as 0

  bool operator==(const RewriteTarget&) const = default;
};

struct RewriteRule {
  std::vector<ModelMatch> matches;     // OR'ed; empty = generic rule matching every model
  std::vector<RewriteTarget> targets;  // at least one

  bool is_generic() const { return matches.empty(); }
  bool operator==(const RewriteRule&) const = default;
};

struct InferenceModelRewrite {
  std::string api_version;
  ObjectMeta metadata;
  PoolRef pool_ref;  // group default inference.networking.k8s.io
  std::vector<RewriteRule> rules;
  nlohmann::json status;

  bool operator==(const InferenceModelRewrite&) const = default;
};

// ---- InferenceModel (legacy v1alpha2, removed upstream at v1.0.0)
// --------------------------------

enum class Criticality { kCritical, kStandard, kSheddable };

struct TargetModel {
  std::string name;               // required, max 253
  std::optional<int32_t> weight;  // 1..1,000,000; all targets carry a weight or none does

  bool operator==(const TargetModel&) const = default;
};

struct InferenceModel {
  std::string api_version;
  ObjectMeta metadata;
  std::string model_name;                  // required, max 256
  std::optional<Criticality> criticality;  // unset is treated as Standard
  std::vector<TargetModel> target_models;  // max 10; empty = target is model_name
  PoolRef pool_ref;                        // group default inference.networking.x-k8s.io
  nlohmann::json status;

  bool operator==(const InferenceModel&) const = default;
};

// ---- EndpointPickerConfig -----------------------------------------------------------------------

struct PluginSpec {
  std::string name;           // defaults to `type` when omitted
  std::string type;           // registered plugin type, required
  nlohmann::json parameters;  // plugin-specific object; null when omitted

  bool operator==(const PluginSpec&) const = default;
};

struct ProfilePluginRef {
  std::string plugin_ref;
  std::optional<double> weight;  // scorers without a weight get 1 (fill_implied_defaults)

  bool operator==(const ProfilePluginRef&) const = default;
};

struct SchedulingProfile {
  std::string name;
  std::vector<ProfilePluginRef> plugins;

  bool operator==(const SchedulingProfile&) const = default;
};

struct DataLayerSource {
  std::string plugin_ref;
  std::vector<std::string> extractor_refs;  // `extractors[].pluginRef`

  bool operator==(const DataLayerSource&) const = default;
};

struct DataLayerConfig {
  std::vector<DataLayerSource> sources;

  bool operator==(const DataLayerConfig&) const = default;
};

struct PriorityBandConfig {
  int64_t priority = 0;              // required
  std::optional<int64_t> max_bytes;  // Kubernetes quantity, in bytes
  std::optional<int64_t> max_requests;
  std::string fairness_policy_ref;  // default global-strict-fairness-policy (filled)
  std::string ordering_policy_ref;  // default fcfs-ordering-policy (filled)

  bool operator==(const PriorityBandConfig&) const = default;
};

struct FlowControlConfig {
  std::optional<int64_t> max_bytes;  // Kubernetes quantity, in bytes; 0/absent = unlimited
  std::optional<int64_t> max_requests;
  std::optional<std::chrono::nanoseconds> default_request_ttl;  // Go duration syntax
  nlohmann::json default_priority_band;  // shape not in the facts: kept raw; null if absent
  std::vector<PriorityBandConfig> priority_bands;
  std::string usage_limit_policy_plugin_ref;  // default static-usage-limit-policy (filled)

  bool operator==(const FlowControlConfig&) const = default;
};

struct EndpointPickerConfig {
  std::string api_version = std::string(kApiVersionConfigV1alpha1);
  std::vector<std::string> feature_gates;
  std::vector<PluginSpec> plugins;
  std::vector<SchedulingProfile> scheduling_profiles;
  std::optional<std::string> saturation_detector_ref;  // `saturationDetector.pluginRef`
  std::optional<DataLayerConfig> data_layer;
  std::optional<FlowControlConfig> flow_control;
  std::optional<std::string> parser_ref;  // `parser.pluginRef`

  bool has_feature_gate(std::string_view gate) const;
  const PluginSpec* find_plugin(std::string_view name) const;
  bool operator==(const EndpointPickerConfig&) const = default;
};

// ---- Gateway API: Gateway and HTTPRoute (gateway.networking.k8s.io/v1)
// --------------------------- The subset the standalone gateway serves (docs/gateway.md,
// "Configuration file"); fields outside it are decoding errors rather than silently ignored, except
// those listed as accepted and unused.

struct GatewayListener {
  std::string name;      // required, unique within the Gateway
  std::string hostname;  // optional; empty = any
  int32_t port = 0;      // required, 1..65535
  std::string protocol;  // required: HTTP, HTTPS, TLS, TCP, UDP (only HTTP listeners are served)

  bool operator==(const GatewayListener&) const = default;
};

struct Gateway {
  std::string api_version;
  ObjectMeta metadata;
  std::string gateway_class_name;          // required; not interpreted outside Kubernetes
  std::vector<GatewayListener> listeners;  // 1..64
  nlohmann::json status;

  bool operator==(const Gateway&) const = default;
};

// `parentRefs[]`: the Gateway (and optionally one of its listeners) a route attaches to.
struct ParentReference {
  std::string group = std::string(kGroupGatewayApi);
  std::string kind = "Gateway";
  std::string name;             // required
  std::string namespace_name;   // empty = the route's namespace
  std::string section_name;     // a listener name; empty = every listener
  std::optional<int32_t> port;  // a listener port; unset = every listener

  bool operator==(const ParentReference&) const = default;
};

enum class PathMatchType { kExact, kPathPrefix, kRegularExpression };
enum class HeaderMatchType { kExact, kRegularExpression };

struct HTTPPathMatch {
  PathMatchType type = PathMatchType::kPathPrefix;  // default PathPrefix
  std::string value = "/";                          // default "/"

  bool operator==(const HTTPPathMatch&) const = default;
};

struct HTTPHeaderMatch {
  HeaderMatchType type = HeaderMatchType::kExact;
  std::string name;  // compared case-insensitively
  std::string value;

  bool operator==(const HTTPHeaderMatch&) const = default;
};

// One `matches[]` entry: every condition must hold (AND); entries of a rule are OR'ed.
struct HTTPRouteMatch {
  HTTPPathMatch path;  // a match without `path` matches PathPrefix "/"
  std::vector<HTTPHeaderMatch> headers;
  std::string method;  // empty = any

  bool operator==(const HTTPRouteMatch&) const = default;
};

// `backendRefs[]` of a rule; infergate routes only to InferencePools.
struct HTTPBackendRef {
  std::string group;  // Gateway API default "" (core); must be inference.networking.k8s.io
  std::string kind = "Service";  // Gateway API default; must be InferencePool
  std::string name;
  std::string namespace_name;   // empty = the route's namespace
  std::optional<int32_t> port;  // ignored for an InferencePool (conformance: any value works)
  int32_t weight = 1;           // 0..1,000,000; 0 = never chosen

  bool operator==(const HTTPBackendRef&) const = default;
};

struct HTTPRouteTimeouts {
  // Gateway API durations ("10s", "1m30s", "500ms"); "0s" = no timeout.
  std::optional<std::chrono::nanoseconds> request;          // the whole exchange with the client
  std::optional<std::chrono::nanoseconds> backend_request;  // one attempt to a backend

  bool operator==(const HTTPRouteTimeouts&) const = default;
};

struct HTTPRouteRule {
  std::string name;                     // optional
  std::vector<HTTPRouteMatch> matches;  // empty = one match of PathPrefix "/"
  std::vector<HTTPBackendRef> backend_refs;
  HTTPRouteTimeouts timeouts;

  bool operator==(const HTTPRouteRule&) const = default;
};

struct HTTPRoute {
  std::string api_version;
  ObjectMeta metadata;
  std::vector<ParentReference> parent_refs;
  std::vector<std::string> hostnames;  // empty = any Host
  std::vector<HTTPRouteRule> rules;    // 1..16 (an absent list is one rule matching "/")
  nlohmann::json status;

  bool operator==(const HTTPRoute&) const = default;
};

// One decoded document.
using Resource = std::variant<InferencePool, InferenceObjective, InferenceModelRewrite,
                              InferenceModel, EndpointPickerConfig, Gateway, HTTPRoute>;

// The `kind` of a resource ("InferencePool", ...).
std::string_view kind_of(const Resource& resource);

}  // namespace infergate::api
