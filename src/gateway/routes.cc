#include "gateway/routes.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <tuple>

namespace infergate::gateway {
namespace {

std::string lower_case(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

std::optional<std::chrono::milliseconds> timeout(const std::optional<std::chrono::nanoseconds>& d) {
  if (!d || d->count() <= 0) return std::nullopt;
  return std::chrono::ceil<std::chrono::milliseconds>(*d);
}

bool path_matches(api::PathMatchType type, const std::string& value, const std::regex* regex,
                  std::string_view path) {
  switch (type) {
    case api::PathMatchType::kExact:
      return path == value;
    case api::PathMatchType::kPathPrefix:
      // `value` has no trailing "/" ("" for "/"): a whole-segment prefix.
      return path.starts_with(value) && (path.size() == value.size() || path[value.size()] == '/');
    case api::PathMatchType::kRegularExpression:
      return std::regex_match(path.begin(), path.end(), *regex);
  }
  return false;
}

bool host_matches(const std::vector<std::string>& hostnames, std::string_view host) {
  if (hostnames.empty()) return true;
  // Strip a port (not from a bracketed IPv6 literal).
  if (const auto colon = host.rfind(':');
      colon != std::string_view::npos && host.find(']') == std::string_view::npos) {
    host = host.substr(0, colon);
  }
  const std::string lower = lower_case(host);
  return std::any_of(hostnames.begin(), hostnames.end(), [&](const std::string& name) {
    if (name.starts_with("*.")) {
      const std::string_view suffix = std::string_view(name).substr(1);  // ".example.com"
      return lower.size() > suffix.size() && std::string_view(lower).ends_with(suffix);
    }
    return lower == name;
  });
}

}  // namespace

Result<RouteTable> RouteTable::build(const std::vector<api::HTTPRoute>& routes,
                                     const std::vector<std::string>& pool_keys,
                                     std::string_view default_namespace) {
  RouteTable table;
  // Precedence keys kept beside each match while sorting.
  struct Ordered {
    CompiledMatch match;
    int path_rank = 0;
    std::size_t path_length = 0;
    std::string created;
    std::string route;
    std::size_t match_index = 0;
  };
  std::vector<Ordered> ordered;
  std::set<std::string> route_names;
  for (const api::HTTPRoute& route : routes) {
    const std::string ns = route.metadata.namespace_name.empty() ? std::string(default_namespace)
                                                                 : route.metadata.namespace_name;
    const std::string route_key = ns + "/" + route.metadata.name;
    if (!route_names.insert(route_key).second) {
      return Status::bad_request(
          fmt::format("HTTPRoute \"{}\" (namespace \"{}\") is defined twice; names must be unique",
                      route.metadata.name, ns));
    }
    std::vector<std::string> hostnames;
    for (const auto& hostname : route.hostnames) hostnames.push_back(lower_case(hostname));
    for (std::size_t rule_index = 0; rule_index < route.rules.size(); ++rule_index) {
      const api::HTTPRouteRule& rule = route.rules[rule_index];
      RouteRule compiled{.route = route_key, .rule_index = rule_index};
      for (std::size_t ref_index = 0; ref_index < rule.backend_refs.size(); ++ref_index) {
        const api::HTTPBackendRef& ref = rule.backend_refs[ref_index];
        const std::string pool_key =
            (ref.namespace_name.empty() ? ns : ref.namespace_name) + "/" + ref.name;
        const auto found = std::find(pool_keys.begin(), pool_keys.end(), pool_key);
        if (found == pool_keys.end()) {
          return Status::bad_request(fmt::format(
              "HTTPRoute \"{}\": field \"spec.rules[{}].backendRefs[{}].name\": no InferencePool "
              "\"{}\" in the configuration",
              route.metadata.name, rule_index, ref_index, pool_key));
        }
        if (ref.weight == 0) continue;
        compiled.backends.push_back(
            {.pool_index = static_cast<std::size_t>(found - pool_keys.begin()),
             .weight = static_cast<std::uint32_t>(ref.weight)});
        compiled.total_weight += static_cast<std::uint64_t>(ref.weight);
      }
      compiled.request_timeout = timeout(rule.timeouts.request);
      compiled.backend_request_timeout = timeout(rule.timeouts.backend_request);
      const std::size_t rule_slot = table.rules_.size();
      table.rules_.push_back(std::move(compiled));

      for (std::size_t match_index = 0; match_index < rule.matches.size(); ++match_index) {
        const api::HTTPRouteMatch& match = rule.matches[match_index];
        Ordered entry;
        CompiledMatch& out = entry.match;
        out.path_type = match.path.type;
        out.path = match.path.value;
        if (out.path_type == api::PathMatchType::kPathPrefix) {
          while (!out.path.empty() && out.path.back() == '/') out.path.pop_back();
        } else if (out.path_type == api::PathMatchType::kRegularExpression) {
          out.path_regex = std::make_shared<const std::regex>(out.path, std::regex::ECMAScript);
        }
        out.method = match.method;
        for (const auto& header : match.headers) {
          HeaderCondition condition{
              .name = lower_case(header.name), .type = header.type, .value = header.value};
          if (header.type == api::HeaderMatchType::kRegularExpression) {
            condition.regex =
                std::make_shared<const std::regex>(header.value, std::regex::ECMAScript);
          }
          out.headers.push_back(std::move(condition));
        }
        out.rule = rule_slot;
        out.hostnames = hostnames;
        entry.path_rank = match.path.type == api::PathMatchType::kExact               ? 0
                          : match.path.type == api::PathMatchType::kRegularExpression ? 1
                                                                                      : 2;
        entry.path_length = out.path.size();  // "/v1/" and "/v1" are the same prefix
        entry.created = route.metadata.creation_timestamp;
        entry.route = route_key;
        entry.match_index = match_index;
        ordered.push_back(std::move(entry));
      }
    }
  }
  // Stable: matches equal on every key keep their order of declaration.
  std::stable_sort(ordered.begin(), ordered.end(), [&](const Ordered& a, const Ordered& b) {
    const auto key = [&](const Ordered& entry) {
      // RFC 3339 timestamps in one zone sort as text; routes without one compare equal.
      return std::make_tuple(entry.path_rank, -static_cast<std::int64_t>(entry.path_length),
                             entry.match.method.empty() ? 1 : 0,
                             -static_cast<std::int64_t>(entry.match.headers.size()));
    };
    if (key(a) != key(b)) return key(a) < key(b);
    if (!a.created.empty() && !b.created.empty() && a.created != b.created) {
      return a.created < b.created;
    }
    if (a.route != b.route) return a.route < b.route;
    const std::size_t rule_a = table.rules_[a.match.rule].rule_index;
    const std::size_t rule_b = table.rules_[b.match.rule].rule_index;
    if (rule_a != rule_b) return rule_a < rule_b;
    return a.match_index < b.match_index;
  });
  for (auto& entry : ordered) table.matches_.push_back(std::move(entry.match));
  return table;
}

const RouteRule* RouteTable::match(const RouteRequest& request) const {
  for (const CompiledMatch& match : matches_) {
    if (!match.method.empty() && match.method != request.method) continue;
    if (!path_matches(match.path_type, match.path, match.path_regex.get(), request.path)) continue;
    const bool headers_match =
        std::all_of(match.headers.begin(), match.headers.end(), [&](const HeaderCondition& c) {
          const std::optional<std::string_view> value =
              director::find_header(request.headers, c.name);
          if (!value) return false;
          if (c.type == api::HeaderMatchType::kExact) return *value == c.value;
          return std::regex_match(value->begin(), value->end(), *c.regex);
        });
    if (!headers_match) continue;
    if (!host_matches(match.hostnames, request.host)) continue;
    return &rules_[match.rule];
  }
  return nullptr;
}

std::optional<RouteBackend> RouteTable::pick_backend(const RouteRule& rule, std::uint64_t random) {
  if (rule.total_weight == 0) return std::nullopt;
  std::uint64_t point = random % rule.total_weight;
  for (const RouteBackend& backend : rule.backends) {
    if (point < backend.weight) return backend;
    point -= backend.weight;
  }
  return rule.backends.back();
}

std::vector<RoutedModel> RouteTable::routed_models() const {
  std::vector<RoutedModel> models;
  std::set<std::string> seen;
  for (const CompiledMatch& match : matches_) {
    const RouteRule& rule = rules_[match.rule];
    if (rule.backends.empty()) continue;
    for (const HeaderCondition& condition : match.headers) {
      if (condition.name != kModelNameHeader || condition.type != api::HeaderMatchType::kExact) {
        continue;
      }
      if (seen.insert(condition.value).second) {
        models.push_back(
            {.model = condition.value, .pool_index = rule.backends.front().pool_index});
      }
    }
  }
  return models;
}

}  // namespace infergate::gateway
