#pragma once

// Strict decoding of GIE resources and EndpointPickerConfig from YAML or JSON text (JSON is YAML).
//
// Called at start-up (and by the static-config loader); not on the request path. Thread-safe (no
// shared state). Never throws: every problem becomes one error line of the form
//
//   <file>: <Kind> "<name>" (document <n>): <problem>
//
// e.g. `pool.yaml: InferencePool "my-pool" (document 2): unknown field "spec.selectr"`. The object
// part is `<Kind> (document <n>)` when the name is unknown, and `document <n>` when even the kind
// is. Documents are numbered from 1 in file order; empty documents are skipped but still counted.
// Field paths use JSON names: `spec.targetPorts[0].number`, `metadata.labels["app"]`.
//
// Strictness follows the Kubernetes strict decoder: unknown keys, duplicate keys, wrong JSON types,
// missing required fields and values outside the CRD validation rules are all errors, and every
// error in a file is reported (decoding does not stop at the first one).
//
// Dispatch on apiVersion + kind:
//   InferencePool          inference.networking.k8s.io/v1, inference.networking.x-k8s.io/v1alpha2
//                          (v1alpha2 is converted to the v1 shape; api_version keeps what was
//                          written)
//   InferenceObjective     inference.networking.x-k8s.io/v1alpha2, llm-d.ai/v1alpha2
//   InferenceModelRewrite  inference.networking.x-k8s.io/v1alpha2, llm-d.ai/v1alpha2
//   InferenceModel         inference.networking.x-k8s.io/v1alpha2 (legacy; see legacy.h)
//   EndpointPickerConfig   inference.networking.x-k8s.io/v1alpha1, llm-d.ai/v1alpha1
//   Gateway, HTTPRoute     gateway.networking.k8s.io/v1 (the subset the standalone gateway
//                          serves; unsupported features such as filters or queryParams are
//                          errors, not ignored)
//
// Defaults applied while decoding are the CRD defaults (kind Service, failureMode FailClose,
// appProtocol http, poolRef group/kind, priority 0, plugin name = type; for Gateway API objects
// the Gateway API defaults: path match PathPrefix "/", match type Exact, backendRef weight 1, a
// route without rules or a rule without matches matching every path). EndpointPickerConfig's
// implied plugins and weights are NOT added here; see endpoint_picker_config.h.

#include <string>
#include <string_view>
#include <vector>

#include "api/types.h"
#include "common/status.h"

namespace infergate::api {

// Everything decoded from one text, plus every error found. Resources of documents with errors
// are left out, so `resources` is only meaningful when `errors` is empty.
struct DecodeReport {
  std::vector<Resource> resources;
  std::vector<std::string> errors;  // one complete message per problem, in document order

  bool ok() const { return errors.empty(); }
};

// Decodes every document in `text`; `file_name` is used only in messages.
DecodeReport decode_documents_report(std::string_view text, std::string_view file_name);

// As above, folded into a Result: on any error, a 400 Status whose message is all error lines
// joined by '\n'.
Result<std::vector<Resource>> decode_documents(std::string_view text, std::string_view file_name);

// Reads `path` and decodes it; an unreadable file is an error naming the path.
Result<std::vector<Resource>> load_file(const std::string& path);

}  // namespace infergate::api
