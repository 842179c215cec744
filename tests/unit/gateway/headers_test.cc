#include "gateway/headers.h"

#include <gtest/gtest.h>

#include <boost/beast/http/verb.hpp>

namespace infergate::gateway {
namespace {

namespace bhttp = boost::beast::http;

http::Request request_with(const http::Headers& fields) {
  http::Request request(bhttp::verb::post, "/v1/chat/completions?trace=1", 11);
  for (const auto& [name, value] : fields) request.insert(name, value);
  request.body() = "{}";
  return request;
}

std::vector<std::string> names(const http::Request& request) {
  std::vector<std::string> out;
  for (const auto& field : request) out.emplace_back(field.name_string());
  return out;
}

TEST(DirectorHeaders, PseudoHeadersFirstThenLowerCasedFieldsWithoutReservedOnes) {
  const http::Request request = request_with({
      {"Host", "gateway.example:8080"},
      {"Content-Type", "application/json"},
      {"X-Gateway-Destination-Endpoint", "10.0.0.66:8000"},  // a client trying to steer
      {"test-epp-endpoint-selection", "10.0.0.66:8000"},
      {"X-Gateway-Destination-Endpoint-Served", "x"},
      {"X-Gateway-Model-Name-Rewrite", "llama-v2"},  // the director reads this one
      {"X-Request-Id", "abc"},
  });
  const director::Headers expected = {
      {":method", "POST"},
      {":path", "/v1/chat/completions?trace=1"},
      {":authority", "gateway.example:8080"},
      {"host", "gateway.example:8080"},
      {"content-type", "application/json"},
      {"x-gateway-model-name-rewrite", "llama-v2"},
      {"x-request-id", "abc"},
  };
  EXPECT_EQ(director_headers(request), expected);
}

TEST(EppRequestHeaders, LikeEnvoyWithTheTestSelectionHeaderKept) {
  const http::Request request = request_with({
      {"Host", "gateway.example:8080"},
      {"X-Gateway-Destination-Endpoint", "10.0.0.66:8000"},  // a client trying to steer
      {"X-Gateway-Destination-Endpoint-Subset", "10.0.0.66:8000"},
      {"Test-Epp-Endpoint-Selection", "10.0.0.7"},  // the external EPP honours it
      {"X-Request-Id", "abc"},
  });
  const director::Headers expected = {
      {":method", "POST"},
      {":path", "/v1/chat/completions?trace=1"},
      {":authority", "gateway.example:8080"},
      {":scheme", "http"},
      {"host", "gateway.example:8080"},
      {"test-epp-endpoint-selection", "10.0.0.7"},
      {"x-request-id", "abc"},
  };
  EXPECT_EQ(epp_request_headers(request), expected);
}

TEST(MutatedHeaders, ForwardsEndToEndFieldsOnly) {
  const director::Headers mutated = {
      {":method", "POST"},
      {":path", "/v1/completions"},
      {"host", "gateway.example"},
      {"connection", "keep-alive, x-hop"},
      {"x-hop", "1"},
      {"content-length", "99"},
      {"expect", "100-continue"},
      {"x-gateway-destination-endpoint", "10.0.0.7:8000"},
      {"x-gateway-inference-objective", "batch"},
      {"test-epp-endpoint-selection", "10.0.0.7"},
      {"content-type", "application/json"},
      {"x-request-id", "abc"},
  };
  http::Request upstream(bhttp::verb::post, "/v1/completions", 11);
  copy_mutated_headers(mutated, upstream);
  EXPECT_EQ(names(upstream), (std::vector<std::string>{"content-type", "x-request-id"}));
  EXPECT_EQ(without_pseudo_headers({{":status", "200"}, {"content-type", "text/plain"}}),
            (http::Headers{{"content-type", "text/plain"}}));
}

TEST(DirectorHeaders, SetReplacesAndEmptyRemoves) {
  director::Headers headers = {{"a", "1"}, {"b", "2"}, {"a", "3"}};
  set_director_header(headers, "a", "9");
  EXPECT_EQ(headers, (director::Headers{{"b", "2"}, {"a", "9"}}));
  set_director_header(headers, "a", "");
  EXPECT_EQ(headers, (director::Headers{{"b", "2"}}));
}

// One row per client header: forwarded to the model server or not.
struct ForwardCase {
  std::string description;
  std::string name;
  std::string value;
  bool forwarded;
};

TEST(ForwardedHeaders, Table) {
  const std::vector<ForwardCase> cases = {
      {"content type is the body's", "Content-Type", "application/json", true},
      {"authorization goes to the model server", "Authorization", "Bearer sk-1", true},
      {"request id", "x-request-id", "abc", true},
      {"arbitrary application header", "X-Tenant", "blue", true},
      {"host is the upstream's, set by the client connection", "Host", "gw:8080", false},
      {"length is recomputed for the rewritten body", "Content-Length", "2", false},
      {"connection is hop-by-hop", "Connection", "keep-alive, X-Hop", false},
      {"a field named by Connection is hop-by-hop", "X-Hop", "1", false},
      {"keep-alive", "Keep-Alive", "timeout=5", false},
      {"te", "TE", "trailers", false},
      {"upgrade", "Upgrade", "h2c", false},
      {"proxy authorization", "Proxy-Authorization", "Basic x", false},
      {"transfer encoding", "Transfer-Encoding", "chunked", false},
      {"expect (the body is already here)", "Expect", "100-continue", false},
      {"destination is the picker's", "x-gateway-destination-endpoint", "10.0.0.1:8000", false},
      {"objective is consumed by the picker", "x-gateway-inference-objective", "batch", false},
      {"rewrite is consumed by the picker", "x-gateway-model-name-rewrite", "llama-v2", false},
      {"fairness id is consumed by the picker", "x-gateway-inference-fairness-id", "t1", false},
      {"llm-d spelling of the objective", "x-llm-d-inference-objective", "batch", false},
      {"the gateway's own candidate header", "test-epp-endpoint-selection", "x:1", false},
  };
  http::Headers fields;
  for (const auto& row : cases) fields.emplace_back(row.name, row.value);
  const http::Request client = request_with(fields);
  http::Request upstream(bhttp::verb::post, "/v1/chat/completions", 11);
  copy_forwarded_headers(client, upstream);
  const std::vector<std::string> forwarded = names(upstream);
  for (const auto& row : cases) {
    const bool present = std::find(forwarded.begin(), forwarded.end(), row.name) != forwarded.end();
    EXPECT_EQ(present, row.forwarded) << row.description << " (" << row.name << ")";
  }
  // Spelling and order kept.
  EXPECT_EQ(forwarded, (std::vector<std::string>{"Content-Type", "Authorization", "x-request-id",
                                                 "X-Tenant"}));
}

TEST(RelayedResponseHeaders, DropsFramingHopByHopServerAndControlHeaders) {
  const http::Headers upstream = {
      {"Date", "Tue, 01 Jan 2030 00:00:00 GMT"},
      {"Server", "uvicorn"},
      {"Content-Type", "text/event-stream"},
      {"Content-Length", "120"},
      {"Transfer-Encoding", "chunked"},
      {"Connection", "close, X-Internal"},
      {"X-Internal", "1"},
      {"x-gateway-destination-endpoint", "10.0.0.1:8000"},
      {"X-Inference-Pod", "vllm-0"},
      {"x-request-id", "abc"},
  };
  const http::Headers expected = {
      {"Date", "Tue, 01 Jan 2030 00:00:00 GMT"},
      {"X-Inference-Pod", "vllm-0"},
      {"x-request-id", "abc"},
  };
  EXPECT_EQ(relayed_response_headers(upstream), expected);
  http::Headers moved = upstream;
  EXPECT_EQ(relayed_response_headers(std::move(moved)), expected);
}

TEST(RelayedResponseHeaders, HopByHopNamesInAnyCaseAndKnownNamesListedByConnection) {
  const http::Headers upstream = {
      {"KEEP-ALIVE", "timeout=5"},
      {"Proxy-Connection", "keep-alive"},
      {"te", "trailers"},
      {"Trailer", "X-Checksum"},
      {"upgrade", "h2c"},
      {"Proxy-Authenticate", "Basic"},
      {"proxy-authorization", "Basic x"},
      {"SERVER", "vllm"},
      {"content-TYPE", "application/json"},
      {"Connection", "Cache-Control"},
      {"cache-control", "no-store"},
      {"Cache-Control-Extension", "kept"},
      {"X-Gateway-Destination-Endpoint-Served", "10.0.0.1:8000"},
      {"X-Gateway-Inference-Objective", "batch"},
      {"Vary", "Accept"},
  };
  const http::Headers expected = {{"Cache-Control-Extension", "kept"}, {"Vary", "Accept"}};
  EXPECT_EQ(relayed_response_headers(upstream), expected);
  http::Headers moved = upstream;
  EXPECT_EQ(relayed_response_headers(std::move(moved)), expected);
}

TEST(RelayedResponseHeaders, InPlaceFormWithManyFieldsAndConnectionTokens) {
  http::Headers upstream = {{"Connection", "keep-alive, X-Drop"}, {"Content-Type", "text/plain"}};
  for (int i = 0; i < 70; ++i) {
    upstream.emplace_back("X-Field-" + std::to_string(i), std::to_string(i));
    if (i % 10 == 0) upstream.emplace_back("x-drop", "1");
  }
  const http::Headers expected = relayed_response_headers(upstream);
  EXPECT_EQ(expected.size(), 70u);
  http::Headers small(upstream.begin(), upstream.begin() + 12);
  const http::Headers small_expected = relayed_response_headers(small);
  EXPECT_EQ(relayed_response_headers(std::move(small)), small_expected);
  EXPECT_EQ(relayed_response_headers(std::move(upstream)), expected);
}

TEST(ConnectionTokens, ManyTokensOverSeveralFieldsAllCount) {
  // Eight tokens fill the inline room; the ones after it, in a second field, count as well.
  const std::vector<std::pair<std::string, std::string>> fields = {
      {"Connection", "t1, t2, t3, t4, t5, t6, t7, t8"},
      {"X-Ninth", "dropped"},
      {"X-Keep", "kept"},
      {"connection", " ,, X-Ninth , x-tenth,"},
      {"x-TENTH", "dropped"}};
  http::Headers upstream(fields.begin(), fields.end());
  const http::Headers expected = {{"X-Keep", "kept"}};
  EXPECT_EQ(relayed_response_headers(upstream), expected);
  EXPECT_EQ(relayed_response_headers(std::move(upstream)), expected);

  http::Request client(bhttp::verb::post, "/v1/completions", 11);
  for (const auto& [name, value] : fields) client.insert(name, value);
  http::Request forwarded(bhttp::verb::post, "/v1/completions", 11);
  copy_forwarded_headers(client, forwarded);
  EXPECT_EQ(names(forwarded), (std::vector<std::string>{"X-Keep"}));
}

TEST(ForwardedHeaders, LongAndUpperCaseNames) {
  const std::string long_name = "X-" + std::string(80, 'L');
  const http::Request client = request_with({{"X-GATEWAY-INFERENCE-OBJECTIVE", "batch"},
                                             {long_name, "1"},
                                             {"X-B", "2"},
                                             {"Connection", "x-b"}});
  http::Request upstream(bhttp::verb::post, "/v1/completions", 11);
  copy_forwarded_headers(client, upstream);
  EXPECT_EQ(names(upstream), (std::vector<std::string>{long_name}));
}

TEST(DirectorResponseHeaders, StatusFirstThenLowerCased) {
  http::ResponseHead head;
  head.status = 503;
  head.headers = {{"Content-Type", "application/json"}, {"X-A", "b"}};
  EXPECT_EQ(
      director_response_headers(head),
      (director::Headers{{":status", "503"}, {"content-type", "application/json"}, {"x-a", "b"}}));
}

TEST(EventStream, MediaTypeMatchIgnoresParametersAndCase) {
  EXPECT_TRUE(is_event_stream("text/event-stream"));
  EXPECT_TRUE(is_event_stream("Text/Event-Stream; charset=utf-8"));
  EXPECT_TRUE(is_event_stream(" text/event-stream ;x=y"));
  EXPECT_FALSE(is_event_stream("application/json"));
  EXPECT_FALSE(is_event_stream("text/event-stream-ish"));
  EXPECT_FALSE(is_event_stream(""));
}

TEST(HopByHop, KnownNames) {
  for (std::string_view name :
       {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
        "proxy-authorization", "proxy-authenticate", "transfer-encoding"}) {
    EXPECT_TRUE(is_hop_by_hop(name)) << name;
  }
  EXPECT_FALSE(is_hop_by_hop("content-type"));
  EXPECT_FALSE(is_hop_by_hop("authorization"));
}

}  // namespace
}  // namespace infergate::gateway
