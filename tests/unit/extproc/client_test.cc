// The ext_proc client's pure parts: header mutations applied as Envoy applies them, the steering
// headers a client must not set, and the destination list.
#include "extproc/client.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace infergate::extproc {
namespace {

namespace pb = ::envoy::service::ext_proc::v3;
namespace core = ::envoy::config::core::v3;

struct Set {
  std::string key;
  std::string raw_value;
  std::string value;  // the deprecated string field; raw_value wins when both are set
  std::optional<bool> append;
  core::HeaderValueOption::HeaderAppendAction action =
      core::HeaderValueOption::APPEND_IF_EXISTS_OR_ADD;
  bool keep_empty_value = false;
};

pb::HeaderMutation mutation(const std::vector<Set>& sets, const std::vector<std::string>& removes) {
  pb::HeaderMutation out;
  for (const Set& set : sets) {
    core::HeaderValueOption* option = out.add_set_headers();
    option->mutable_header()->set_key(set.key);
    option->mutable_header()->set_raw_value(set.raw_value);
    option->mutable_header()->set_value(set.value);
    if (set.append) option->mutable_append()->set_value(*set.append);
    option->set_append_action(set.action);
    option->set_keep_empty_value(set.keep_empty_value);
  }
  for (const std::string& name : removes) out.add_remove_headers(name);
  return out;
}

TEST(ApplyHeaderMutationTest, AppliesAsEnvoyDoes) {
  const director::Headers base = {{":method", "POST"},  {":path", "/v1/completions"},
                                  {":authority", "gw"}, {"content-type", "application/json"},
                                  {"x-a", "1"},         {"x-a", "2"}};
  struct Case {
    std::string description;
    std::vector<Set> sets;
    std::vector<std::string> removes;
    director::Headers expected;
    std::size_t refused = 0;
  };
  using H = director::Headers;
  const std::vector<Case> cases = {
      {"set adds a new header at the end",
       {{.key = "x-gateway-destination-endpoint", .raw_value = "10.0.0.1:8000"}},
       {},
       H{{":method", "POST"},
         {":path", "/v1/completions"},
         {":authority", "gw"},
         {"content-type", "application/json"},
         {"x-a", "1"},
         {"x-a", "2"},
         {"x-gateway-destination-endpoint", "10.0.0.1:8000"}}},
      {"set overwrites every value in place (ext_proc's default is overwrite)",
       {{.key = "X-A", .raw_value = "3"}},
       {},
       H{{":method", "POST"},
         {":path", "/v1/completions"},
         {":authority", "gw"},
         {"content-type", "application/json"},
         {"x-a", "3"}}},
      {"append=true appends",
       {{.key = "x-a", .raw_value = "3", .append = true}},
       {},
       H{{":method", "POST"},
         {":path", "/v1/completions"},
         {":authority", "gw"},
         {"content-type", "application/json"},
         {"x-a", "1"},
         {"x-a", "2"},
         {"x-a", "3"}}},
      {"ADD_IF_ABSENT leaves an existing header alone",
       {{.key = "x-a", .raw_value = "3", .action = core::HeaderValueOption::ADD_IF_ABSENT},
        {.key = "x-b", .raw_value = "4", .action = core::HeaderValueOption::ADD_IF_ABSENT}},
       {},
       H{{":method", "POST"},
         {":path", "/v1/completions"},
         {":authority", "gw"},
         {"content-type", "application/json"},
         {"x-a", "1"},
         {"x-a", "2"},
         {"x-b", "4"}}},
      {"OVERWRITE_IF_EXISTS only overwrites",
       {{.key = "x-b", .raw_value = "4", .action = core::HeaderValueOption::OVERWRITE_IF_EXISTS},
        {.key = "content-type",
         .raw_value = "text/plain",
         .action = core::HeaderValueOption::OVERWRITE_IF_EXISTS}},
       {},
       H{{":method", "POST"},
         {":path", "/v1/completions"},
         {":authority", "gw"},
         {"content-type", "text/plain"},
         {"x-a", "1"},
         {"x-a", "2"}}},
      {"value is the fallback when raw_value is empty",
       {{.key = "x-b", .value = "legacy"}},
       {},
       H{{":method", "POST"},
         {":path", "/v1/completions"},
         {":authority", "gw"},
         {"content-type", "application/json"},
         {"x-a", "1"},
         {"x-a", "2"},
         {"x-b", "legacy"}}},
      {"removals come before sets; an empty value removes unless kept",
       {{.key = "x-a", .raw_value = "new"},
        {.key = "content-type"},
        {.key = "x-empty", .keep_empty_value = true}},
       {"x-a"},
       H{{":method", "POST"},
         {":path", "/v1/completions"},
         {":authority", "gw"},
         {"x-a", "new"},
         {"x-empty", ""}}},
      {"routing pseudo-headers, host and x-envoy-* are refused; :path may be set",
       {{.key = ":authority", .raw_value = "evil"},
        {.key = ":method", .raw_value = "GET"},
        {.key = "host", .raw_value = "evil"},
        {.key = "x-envoy-original-dst-host", .raw_value = "10.0.0.9:1"},
        {.key = ":path", .raw_value = "/v1/chat/completions"}},
       {":path", "host"},
       H{{":method", "POST"},
         {":path", "/v1/chat/completions"},
         {":authority", "gw"},
         {"content-type", "application/json"},
         {"x-a", "1"},
         {"x-a", "2"}},
       6},
      {"values with CR, LF or NUL are refused (no header injection)",
       {{.key = "x-b", .raw_value = "a\r\nx-c: d"}, {.key = "", .raw_value = "x"}},
       {},
       H{{":method", "POST"},
         {":path", "/v1/completions"},
         {":authority", "gw"},
         {"content-type", "application/json"},
         {"x-a", "1"},
         {"x-a", "2"}},
       2},
  };
  for (const Case& c : cases) {
    director::Headers headers = base;
    const std::size_t refused = apply_header_mutation(mutation(c.sets, c.removes), headers);
    EXPECT_EQ(headers, c.expected) << c.description;
    EXPECT_EQ(refused, c.refused) << c.description;
  }
}

TEST(StripSteeringHeadersTest, RemovesOnlyTheDestinationKeys) {
  director::Headers headers = {{":path", "/v1/completions"},
                               {"x-gateway-destination-endpoint", "10.0.0.9:1"},
                               {"x-gateway-destination-endpoint-served", "10.0.0.9:1"},
                               {"x-gateway-destination-endpoint-subset", "10.0.0.9:1"},
                               {"x-gateway-inference-objective", "interactive"},
                               {"test-epp-endpoint-selection", "10.0.0.1"}};
  EXPECT_EQ(strip_steering_headers(headers), 3u);
  EXPECT_EQ(headers, (director::Headers{{":path", "/v1/completions"},
                                        {"x-gateway-inference-objective", "interactive"},
                                        {"test-epp-endpoint-selection", "10.0.0.1"}}));
}

TEST(SplitDestinationsTest, ParsesTheOrderedList) {
  struct Case {
    std::string input;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"", {}},
      {"10.0.0.1:8000", {"10.0.0.1:8000"}},
      {"10.0.0.1:8000,10.0.0.2:8000", {"10.0.0.1:8000", "10.0.0.2:8000"}},
      {" [fd00::1]:8000 , ,10.0.0.2:8000,", {"[fd00::1]:8000", "10.0.0.2:8000"}},
  };
  for (const Case& c : cases) EXPECT_EQ(split_destinations(c.input), c.expected) << c.input;
}

TEST(ErrorKindNameTest, NamesEveryKind) {
  EXPECT_EQ(error_kind_name(ExtProcErrorKind::kUnavailable), "unavailable");
  EXPECT_EQ(error_kind_name(ExtProcErrorKind::kStreamBroken), "stream_broken");
  EXPECT_EQ(error_kind_name(ExtProcErrorKind::kTimeout), "timeout");
  EXPECT_EQ(error_kind_name(ExtProcErrorKind::kProtocol), "protocol");
  EXPECT_EQ(error_kind_name(ExtProcErrorKind::kCancelled), "cancelled");
}

}  // namespace
}  // namespace infergate::extproc
