#pragma once

// Value-format checks and parsers shared by the decoder: Kubernetes names and labels, Kubernetes
// quantities, Go durations. Pure functions; an empty problem string means valid.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace infergate::api {

// RFC 1123 subdomain (object names): at most 253 characters of [a-z0-9.-], starting and ending
// with an alphanumeric character.
std::string dns_subdomain_problem(std::string_view name);

// RFC 1123 label (namespaces): at most 63 characters of [a-z0-9-], alphanumeric at both ends.
std::string dns_label_problem(std::string_view name);

// Label key: optional DNS-subdomain prefix and '/', then a name of at most 63 characters of
// [A-Za-z0-9._-] with alphanumeric ends.
std::string label_key_problem(std::string_view key);

// Label value: empty, or at most 63 characters of [A-Za-z0-9._-] with alphanumeric ends.
std::string label_value_problem(std::string_view value);

// A Kubernetes quantity ("10Gi", "2G", "1500", "1.5Mi", "1e3") in whole units, rounded up;
// nullopt if malformed or out of the int64 range.
std::optional<int64_t> parse_quantity(std::string_view text);

// A Go duration ("30s", "200ms", "1h30m", "1.5s", "-2s", "0"); nullopt if malformed or out of
// range.
std::optional<std::chrono::nanoseconds> parse_go_duration(std::string_view text);

}  // namespace infergate::api
