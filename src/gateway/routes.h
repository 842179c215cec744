#pragma once

// Gateway API routing of `infergate serve --config` (docs/gateway.md, "Configuration file"):
// every HTTPRoute rule's matches compiled into one table, in Gateway API precedence order, and the
// weighted choice among a rule's InferencePool backends. Pure; built once at start-up, then
// read-only and safe from any number of threads.
//
// A request matches a rule's match when the path, the method (when given) and every header
// condition hold, and the Host is one of the route's hostnames (when it lists any):
//   path        Exact: equal; PathPrefix: equal to the prefix or continuing it with "/" (a
//               trailing "/" of the prefix is ignored; "/" matches everything);
//               RegularExpression: the whole path matches (ECMAScript)
//   headers     Exact: the first field of that name (case-insensitive) equals the value;
//               RegularExpression: its whole value matches
//   hostnames   equal (case-insensitive, port ignored), or `*.suffix` for any subdomain of suffix
// Precedence across every rule of every route (the Gateway API order, continuing on ties):
//   1. Exact path, then RegularExpression (longer pattern first), then PathPrefix (longer first)
//   2. a match with a method before one without
//   3. more header matches first
//   4. the older route (metadata.creationTimestamp; routes without one count as equal), then
//      "<namespace>/<name>" alphabetically
//   5. the first rule of a route, then its first match
//
// Body-based routing: the gateway sets X-Gateway-Model-Name from the body's `model` before
// matching (proxy.h), so a header match on it picks a pool by model.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "api/types.h"
#include "common/status.h"
#include "director/director.h"

namespace infergate::gateway {

// Pools, routes and policies without a namespace live here.
inline constexpr std::string_view kDefaultNamespace = "default";

// The header body-based routing sets (BBR's name; lower case as director::Headers holds it).
inline constexpr std::string_view kModelNameHeader = "x-gateway-model-name";

// What a request is matched on.
struct RouteRequest {
  std::string_view method;           // "GET", "POST", ...
  std::string_view path;             // without the query
  std::string_view host;             // the Host header (a port is ignored)
  const director::Headers& headers;  // lower-case names, as the director reads them
};

// One backendRef of a rule, resolved to a pool.
struct RouteBackend {
  std::size_t pool_index = 0;  // into the `pools` given to RouteTable::build
  std::uint32_t weight = 1;
};

// One HTTPRoute rule, as routing uses it.
struct RouteRule {
  std::string route;  // "<namespace>/<name>" of its HTTPRoute
  std::size_t rule_index = 0;
  std::vector<RouteBackend> backends;  // empty when none, or all weigh 0: the rule answers 500
  std::uint64_t total_weight = 0;
  // Gateway API timeouts; nullopt (or 0 in the file) = none.
  std::optional<std::chrono::milliseconds> request_timeout;
  std::optional<std::chrono::milliseconds> backend_request_timeout;
};

// A model name a route serves: an Exact match of X-Gateway-Model-Name, and the pool it goes to
// (the rule's first backend of weight > 0).
struct RoutedModel {
  std::string model;
  std::size_t pool_index = 0;
};

class RouteTable {
 public:
  // The pools a backendRef may name: "<namespace>/<name>" each, in pool index order (a backendRef
  // without a namespace looks in its route's; a route without one is in `default_namespace`).
  // Errors (400, naming the route, rule and field): a backendRef naming no pool, two routes with
  // the same namespace/name.
  static Result<RouteTable> build(const std::vector<api::HTTPRoute>& routes,
                                  const std::vector<std::string>& pool_keys,
                                  std::string_view default_namespace);

  // The rule of the best match (precedence above), or null when none matches.
  const RouteRule* match(const RouteRequest& request) const;

  // The backend a request matching `rule` goes to, from `random` (any 64-bit value): each with
  // probability weight / total weight; nullopt when the rule has no backend of weight > 0.
  static std::optional<RouteBackend> pick_backend(const RouteRule& rule, std::uint64_t random);

  // Exact X-Gateway-Model-Name matches, in precedence order, each model once.
  std::vector<RoutedModel> routed_models() const;

  std::size_t rule_count() const { return rules_.size(); }

 private:
  struct HeaderCondition {
    std::string name;  // lower case
    api::HeaderMatchType type = api::HeaderMatchType::kExact;
    std::string value;
    std::shared_ptr<const std::regex> regex;
  };
  struct CompiledMatch {
    api::PathMatchType path_type = api::PathMatchType::kPathPrefix;
    std::string path;  // a PathPrefix without its trailing "/"
    std::shared_ptr<const std::regex> path_regex;
    std::string method;
    std::vector<HeaderCondition> headers;
    std::size_t rule = 0;                // into rules_
    std::vector<std::string> hostnames;  // lower case; empty = any
  };

  std::vector<RouteRule> rules_;
  std::vector<CompiledMatch> matches_;  // precedence order
};

}  // namespace infergate::gateway
