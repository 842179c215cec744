#include "director/director.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "api/endpoint_picker_config.h"
#include "director/protocol.h"
#include "prom/registry.h"

namespace infergate::director {
namespace {

constexpr std::string_view kChatBody =
    R"({"model":"llama","messages":[{"role":"user","content":"hello there"}],"max_tokens":8})";

struct PodSpec {
  std::string address;
  std::uint16_t port;
  int waiting = 0;
  double kv = 0;
};

// A Director over a static pool, with GIE's default scheduling profile.
class DirectorTest : public ::testing::Test {
 protected:
  void make_director(const std::vector<PodSpec>& pods, DirectorOptions options = {},
                     std::shared_ptr<const datastore::ModelPolicies> policies = nullptr) {
    std::vector<datastore::EndpointSpec> specs;
    for (std::size_t i = 0; i < pods.size(); ++i) {
      specs.push_back({.pod_name = "pod-" + std::to_string(i),
                       .namespace_name = "default",
                       .address = pods[i].address,
                       .port = pods[i].port});
    }
    auto snapshot = store_.set_endpoints(specs);
    for (std::size_t i = 0; i < pods.size(); ++i) {
      auto metrics = std::make_shared<datastore::EndpointMetrics>();
      metrics->waiting_requests = pods[i].waiting;
      metrics->kv_cache_usage = pods[i].kv;
      metrics->updated_at = clock_.now();
      store_.update_metrics(*snapshot->endpoints[i].info, metrics);
    }
    auto setup = scheduling::build_scheduler(api::default_endpoint_picker_config());
    ASSERT_TRUE(setup.ok()) << setup.status().message();
    if (options.seed == 0) options.seed = 42;
    options.pool_name = "pool";
    director_ = std::make_unique<Director>(store_, std::move(*setup), std::move(policies), clock_,
                                           registry_, options);
  }

  Result<RoutedRequest> route(std::string_view body, Headers headers = {},
                              std::optional<std::vector<std::string>> subset = std::nullopt) {
    if (!find_header(headers, ":path")) headers.emplace_back(":path", "/v1/chat/completions");
    return director_->route({.headers = headers, .body = body, .subset = subset});
  }

  std::string metrics_text() const { return registry_.expose(); }

  ManualClock clock_;
  datastore::Datastore store_;
  prom::Registry registry_;
  std::unique_ptr<Director> director_;
};

std::shared_ptr<const datastore::ModelPolicies> rewrite_llama_to(std::string target) {
  api::InferenceModelRewrite rewrite;
  rewrite.metadata.name = "canary";
  rewrite.metadata.namespace_name = "default";
  rewrite.rules.push_back({.matches = {{.value = "llama"}},
                           .targets = {{.model_rewrite = std::move(target), .weight = 1}}});
  api::InferenceObjective objective;
  objective.metadata.name = "batch";
  objective.priority = -1;
  return std::make_shared<const datastore::ModelPolicies>(
      std::vector<api::InferenceObjective>{objective},
      std::vector<api::InferenceModelRewrite>{rewrite});
}

TEST_F(DirectorTest, RoutesToOneEndpointAndChargesItUntilFinished) {
  make_director({{"10.0.0.1", 8000}, {"10.0.0.2", 8000}, {"10.0.0.3", 8000}});
  auto routed = route(kChatBody, {{"x-request-id", "abc"}});
  ASSERT_TRUE(routed.ok()) << routed.status().message();
  EXPECT_EQ(routed->request_id(), "abc");
  EXPECT_FALSE(routed->request_id_generated());
  EXPECT_TRUE(std::regex_match(routed->destination(), std::regex(R"(10\.0\.0\.[123]:8000)")));
  EXPECT_EQ(routed->body(), kChatBody);  // no rewrite: the bytes are kept
  EXPECT_EQ(routed->incoming_model(), "llama");
  EXPECT_EQ(routed->target_model(), "llama");
  ASSERT_NE(routed->scheduling(), nullptr);
  EXPECT_EQ(routed->scheduling()->primary_result().scored.size(), 3u);

  auto snapshot = store_.snapshot();
  const datastore::Endpoint* chosen = nullptr;
  for (const auto& endpoint : snapshot->endpoints) {
    if (endpoint.info->host_port == routed->destination()) chosen = &endpoint;
  }
  ASSERT_NE(chosen, nullptr);
  EXPECT_EQ(chosen->state->inflight_requests.load(), 1);
  EXPECT_GT(chosen->state->inflight_tokens.load(), 0);
  EXPECT_NE(metrics_text().find("inference_objective_running_requests{model_name=\"llama\"} 1.0"),
            std::string::npos);

  routed->finish(false);
  EXPECT_EQ(chosen->state->inflight_requests.load(), 0);
  EXPECT_EQ(chosen->state->inflight_tokens.load(), 0);
  routed->finish();  // idempotent
  EXPECT_EQ(chosen->state->inflight_requests.load(), 0);

  const std::string text = metrics_text();
  EXPECT_NE(text.find("inference_objective_request_total{model_name=\"llama\",priority=\"0\","
                      "target_model_name=\"llama\"} 1.0"),
            std::string::npos);
  EXPECT_NE(text.find("inference_objective_running_requests{model_name=\"llama\"} 0.0"),
            std::string::npos);
  EXPECT_NE(text.find("inference_extension_scheduler_e2e_duration_seconds_count 1.0"),
            std::string::npos);
  EXPECT_NE(text.find("inference_extension_plugin_duration_seconds_count{extension_point=\"Scorer\""
                      ",plugin_name=\"queue-scorer\",plugin_type=\"queue-scorer\"} 1.0"),
            std::string::npos);
  EXPECT_NE(text.find("inference_extension_scheduler_attempts_total{namespace=\"default\""),
            std::string::npos);
  EXPECT_NE(text.find("inference_pool_ready_pods{name=\"pool\"} 3.0"), std::string::npos);
}

// The series a request charges are cached per thread: a second director (own registry) on the
// same thread, and an endpoint replaced by another, still count in their own series.
TEST_F(DirectorTest, CachedSeriesStayWithTheirDirectorAndEndpoint) {
  make_director({{"10.0.0.1", 8000}});
  ASSERT_TRUE(route(kChatBody).ok());
  prom::Registry other_registry;
  auto setup = scheduling::build_scheduler(api::default_endpoint_picker_config());
  ASSERT_TRUE(setup.ok());
  Director other(store_, std::move(*setup), nullptr, clock_, other_registry,
                 {.pool_name = "other", .seed = 7});
  const Headers headers{{":path", "/v1/chat/completions"}};
  const std::optional<std::vector<std::string>> no_subset;
  const auto other_routed =
      other.route({.headers = headers, .body = kChatBody, .subset = no_subset});
  ASSERT_TRUE(other_routed.ok());
  ASSERT_TRUE(route(kChatBody).ok());
  const std::string request_total =
      "inference_objective_request_total{model_name=\"llama\",priority=\"0\","
      "target_model_name=\"llama\"} ";
  EXPECT_NE(metrics_text().find(request_total + "2.0"), std::string::npos) << metrics_text();
  EXPECT_NE(other_registry.expose().find(request_total + "1.0"), std::string::npos);

  // The same address under another pod name: a new scheduler_attempts_total series.
  store_.set_endpoints({{.pod_name = "pod-renamed",
                         .namespace_name = "default",
                         .address = "10.0.0.1",
                         .port = 8000}});
  auto snapshot = store_.snapshot();
  auto metrics = std::make_shared<datastore::EndpointMetrics>();
  metrics->updated_at = clock_.now();
  store_.update_metrics(*snapshot->endpoints[0].info, metrics);
  ASSERT_TRUE(route(kChatBody).ok());
  const std::string text = metrics_text();
  EXPECT_NE(text.find("inference_extension_scheduler_attempts_total{namespace=\"default\","
                      "pod_name=\"pod-0\",port=\"8000\",status=\"success\","
                      "target_model_name=\"llama\"} 2.0"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("inference_extension_scheduler_attempts_total{namespace=\"default\","
                      "pod_name=\"pod-renamed\",port=\"8000\",status=\"success\","
                      "target_model_name=\"llama\"} 1.0"),
            std::string::npos)
      << text;
}

TEST_F(DirectorTest, DestructionReleasesTheCharge) {
  make_director({{"10.0.0.1", 8000}});
  {
    auto routed = route(kChatBody);
    ASSERT_TRUE(routed.ok());
    RoutedRequest moved = std::move(*routed);  // moving does not release twice
    EXPECT_EQ(store_.snapshot()->endpoints[0].state->inflight_requests.load(), 1);
  }
  EXPECT_EQ(store_.snapshot()->endpoints[0].state->inflight_requests.load(), 0);
}

TEST_F(DirectorTest, GeneratesAUuidRequestIdWhenNoneIsGiven) {
  make_director({{"10.0.0.1", 8000}});
  auto routed = route(kChatBody);
  ASSERT_TRUE(routed.ok());
  EXPECT_TRUE(routed->request_id_generated());
  EXPECT_TRUE(std::regex_match(
      routed->request_id(),
      std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << routed->request_id();
}

TEST_F(DirectorTest, ModelRewriteHeaderSetsTheTargetModel) {
  make_director({{"10.0.0.1", 8000}});
  auto routed = route(kChatBody, {{"x-gateway-model-name-rewrite", "llama-lora"}});
  ASSERT_TRUE(routed.ok());
  EXPECT_EQ(routed->target_model(), "llama-lora");
  EXPECT_NE(routed->body().find(R"("model":"llama-lora")"), std::string::npos);
  auto llmd = route(kChatBody, {{"x-llm-d-model-name-rewrite", "other"}});
  ASSERT_TRUE(llmd.ok());
  EXPECT_EQ(llmd->target_model(), "other");
}

TEST_F(DirectorTest, InferenceModelRewriteWinsOverTheHeaderAndIsCounted) {
  make_director({{"10.0.0.1", 8000}}, {}, rewrite_llama_to("llama-v2"));
  auto routed = route(kChatBody, {{"x-gateway-model-name-rewrite", "ignored"}});
  ASSERT_TRUE(routed.ok());
  EXPECT_EQ(routed->target_model(), "llama-v2");
  EXPECT_EQ(
      routed->body(),
      R"({"model":"llama-v2","messages":[{"role":"user","content":"hello there"}],"max_tokens":8})");
  EXPECT_NE(
      metrics_text().find("inference_extension_model_rewrite_decisions_total{model_name=\"llama\","
                          "model_rewrite_name=\"default/canary\",target_model=\"llama-v2\"} "
                          "1.0"),
      std::string::npos)
      << metrics_text();
}

// A thread keeps the policies it read while they are unchanged: new ones apply from the next
// request on, on the same thread too.
TEST_F(DirectorTest, NewPoliciesApplyFromTheNextRequest) {
  make_director({{"10.0.0.1", 8000}}, {}, rewrite_llama_to("llama-v2"));
  auto before = route(kChatBody);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->target_model(), "llama-v2");
  director_->set_policies(rewrite_llama_to("llama-v3"));
  auto after = route(kChatBody);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->target_model(), "llama-v3");
  director_->set_policies(nullptr);
  auto without = route(kChatBody);
  ASSERT_TRUE(without.ok());
  EXPECT_EQ(without->target_model(), "llama");
}

TEST_F(DirectorTest, UnreadableBodiesAre400AndCounted) {
  make_director({{"10.0.0.1", 8000}});
  for (std::string_view body : {std::string_view("{not json"),
                                std::string_view(R"({"messages":[]})"), std::string_view("[]")}) {
    auto routed = route(body);
    ASSERT_FALSE(routed.ok()) << body;
    EXPECT_EQ(routed.status().http_status(), 400) << body;
  }
  EXPECT_NE(
      metrics_text().find("{error_code=\"BadRequest\",model_name=\"\",target_model_name=\"\"} 3.0"),
      std::string::npos);
  EXPECT_EQ(store_.snapshot()->endpoints[0].state->inflight_requests.load(), 0);
}

TEST_F(DirectorTest, EmptyPoolIs503) {
  make_director({});
  auto routed = route(kChatBody);
  ASSERT_FALSE(routed.ok());
  EXPECT_EQ(routed.status().http_status(), 503);
  EXPECT_EQ(error_body(routed.status()),
            "inference error: ServiceUnavailable - no ready endpoints in the inference pool");
  auto bodyless = director_->route_bodyless({}, std::nullopt);
  ASSERT_FALSE(bodyless.ok());
  EXPECT_EQ(bodyless.status().http_status(), 503);
}

TEST_F(DirectorTest, SubsetHintMatchesByAddressAndAnEmptyOneMatchesNothing) {
  make_director({{"10.0.0.1", 8000}, {"10.0.0.1", 8001}, {"10.0.0.2", 8000}});
  for (int i = 0; i < 20; ++i) {
    auto routed = route(kChatBody, {}, std::vector<std::string>{"10.0.0.1:9999"});
    ASSERT_TRUE(routed.ok());
    EXPECT_EQ(routed->destination().rfind("10.0.0.1:", 0), 0u) << routed->destination();
  }
  auto none = route(kChatBody, {}, std::vector<std::string>{});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().http_status(), 503);
  auto unmatched = route(kChatBody, {}, std::vector<std::string>{"10.9.9.9:8000"});
  ASSERT_FALSE(unmatched.ok());
  EXPECT_EQ(unmatched.status().http_status(), 503);
}

TEST_F(DirectorTest, DisabledSubsetFilterIgnoresTheHint) {
  make_director({{"10.0.0.1", 8000}}, {.disable_subset_filter = true});
  auto routed = route(kChatBody, {}, std::vector<std::string>{});
  ASSERT_TRUE(routed.ok());
  EXPECT_EQ(routed->destination(), "10.0.0.1:8000");
}

TEST_F(DirectorTest, ConformanceTestHeaderPinsPortsAndBeatsTheSubsetHint) {
  make_director({{"10.0.0.1", 8000}, {"10.0.0.1", 8002}, {"10.0.0.2", 8000}},
                {.conformance_hooks = true});
  for (int i = 0; i < 10; ++i) {
    auto routed = route(kChatBody, {{"test-epp-endpoint-selection", "10.0.0.1:8002"}},
                        std::vector<std::string>{"10.0.0.2:8000"});
    ASSERT_TRUE(routed.ok());
    EXPECT_EQ(routed->destination(), "10.0.0.1:8002");
  }
  for (int i = 0; i < 10; ++i) {
    auto routed = route(kChatBody, {{"test-epp-endpoint-selection", " 10.0.0.2 , 10.7.7.7"}});
    ASSERT_TRUE(routed.ok());
    EXPECT_EQ(routed->destination(), "10.0.0.2:8000");
  }
}

TEST_F(DirectorTest, WithoutConformanceHooksTheTestHeaderIsAnOrdinaryHeader) {
  make_director({{"10.0.0.1", 8000}});
  auto routed = route(kChatBody, {{"test-epp-endpoint-selection", "10.0.0.9"}});
  ASSERT_TRUE(routed.ok());
  EXPECT_EQ(routed->destination(), "10.0.0.1:8000");
}

TEST_F(DirectorTest, SheddableRequestsAre429WhileThePoolIsSaturated) {
  make_director({{"10.0.0.1", 8000, 50, 0.99}, {"10.0.0.2", 8000, 50, 0.99}}, {},
                rewrite_llama_to("llama"));
  auto shed = route(kChatBody, {{"x-gateway-inference-objective", "batch"}});
  ASSERT_FALSE(shed.ok());
  EXPECT_EQ(shed.status().http_status(), 429);
  EXPECT_NE(metrics_text().find("{error_code=\"ResourceExhausted\",model_name=\"llama\",target_"
                                "model_name=\"llama\"} 1.0"),
            std::string::npos);
  // Priority 0 is never shed by admission.
  auto kept = route(kChatBody);
  EXPECT_TRUE(kept.ok() || kept.status().http_status() == 429);  // filters may still refuse
}

TEST_F(DirectorTest, PicksFollowQueueDepth) {
  make_director({{"10.0.0.1", 8000, 40, 0.5}, {"10.0.0.2", 8000, 0, 0.1}});
  for (int i = 0; i < 10; ++i) {
    auto routed = route(kChatBody);
    ASSERT_TRUE(routed.ok());
    EXPECT_EQ(routed->destination(), "10.0.0.2:8000");
  }
}

TEST_F(DirectorTest, EndpointScoresListEveryCandidateBestFirst) {
  make_director({{"10.0.0.1", 8000, 40, 0.5}, {"10.0.0.2", 8000, 0, 0.1}});
  auto routed = route(kChatBody);
  ASSERT_TRUE(routed.ok());
  auto scores = nlohmann::ordered_json::parse(routed->endpoint_scores());
  ASSERT_EQ(scores.size(), 2u);
  EXPECT_EQ(scores.begin().key(), "10.0.0.2:8000");
  EXPECT_GT(scores["10.0.0.2:8000"]["total"].get<double>(),
            scores["10.0.0.1:8000"]["total"].get<double>());
  EXPECT_TRUE(scores["10.0.0.2:8000"].contains("queue-scorer"));
  EXPECT_TRUE(scores["10.0.0.2:8000"].contains("prefix-cache-scorer"));
}

TEST_F(DirectorTest, StreamedResponseRestoresTheModelAcrossChunksAndReadsUsage) {
  make_director({{"10.0.0.1", 8000}}, {}, rewrite_llama_to("llama-v2"));
  auto routed =
      route(R"({"model":"llama","stream":true,"messages":[{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(routed.ok());
  routed->on_response_headers({{":status", "200"}, {"content-type", "text/event-stream"}});
  std::string out;
  routed->on_response_body("data: {\"model\":\"llama-v", false, out);
  routed->on_response_body("2\",\"choices\":[]}\n\n", false, out);
  clock_.advance(std::chrono::seconds(1));
  routed->on_response_body(
      "data: {\"model\":\"llama-v2\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
      "\"completion_tokens\":4,\"total_tokens\":7}}\n\ndata: [DONE]\n\n",
      true, out);
  EXPECT_EQ(out,
            "data: {\"model\":\"llama\",\"choices\":[]}\n\n"
            "data: {\"model\":\"llama\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
            "\"completion_tokens\":4,\"total_tokens\":7}}\n\ndata: [DONE]\n\n");
  EXPECT_TRUE(routed->finished());
  ASSERT_TRUE(routed->usage().has_value());
  EXPECT_EQ(routed->usage()->completion_tokens, 4);
  const std::string text = metrics_text();
  EXPECT_NE(text.find("inference_objective_output_tokens_sum{model_name=\"llama\",target_model_"
                      "name=\"llama-v2\"} 4.0"),
            std::string::npos);
  EXPECT_NE(text.find("inference_objective_request_duration_seconds_sum{model_name=\"llama\","
                      "target_model_name=\"llama-v2\"} 1.0"),
            std::string::npos);
  EXPECT_NE(text.find("inference_objective_normalized_time_per_output_token_seconds_sum{model_"
                      "name=\"llama\",target_model_name=\"llama-v2\"} 0.25"),
            std::string::npos);
}

TEST_F(DirectorTest, JsonResponseIsHeldAndRestoredAtTheEnd) {
  make_director({{"10.0.0.1", 8000}}, {}, rewrite_llama_to("llama-v2"));
  auto routed = route(kChatBody);
  ASSERT_TRUE(routed.ok());
  routed->on_response_headers({{":status", "200"}, {"content-type", "application/json"}});
  std::string out;
  routed->on_response_body(R"({"id":"x","model":"lla)", false, out);
  EXPECT_EQ(out, "");
  routed->on_response_body(R"(ma-v2","usage":{"prompt_tokens":5,"completion_tokens":2}})", true,
                           out);
  EXPECT_EQ(out, R"({"id":"x","model":"llama","usage":{"prompt_tokens":5,"completion_tokens":2}})");
  ASSERT_TRUE(routed->usage().has_value());
  EXPECT_EQ(routed->usage()->prompt_tokens, 5);
}

TEST_F(DirectorTest, JsonResponseWithoutRewritePassesThroughAtOnce) {
  make_director({{"10.0.0.1", 8000}});
  auto routed = route(kChatBody);
  ASSERT_TRUE(routed.ok());
  routed->on_response_headers({{":status", "200"}, {"content-type", "application/json"}});
  std::string out;
  routed->on_response_body(R"({"model":"llama",)", false, out);
  EXPECT_EQ(out, R"({"model":"llama",)");
  routed->on_response_body(R"("usage":{"prompt_tokens":5,"completion_tokens":2}})", true, out);
  EXPECT_EQ(routed->usage()->completion_tokens, 2);
}

TEST_F(DirectorTest, WholeJsonResponseIsReadAndRestoredInPlace) {
  make_director({{"10.0.0.1", 8000}}, {}, rewrite_llama_to("llama-v2"));
  auto routed = route(kChatBody);
  ASSERT_TRUE(routed.ok());
  routed->on_response_head(200, "application/json");
  std::string body =
      R"({"id":"x","model":"llama-v2","usage":{"prompt_tokens":5,"completion_tokens":2}})";
  routed->on_response_piece(40);
  routed->on_response_piece(body.size() - 40);
  routed->on_whole_response_body(body);
  EXPECT_EQ(body,
            R"({"id":"x","model":"llama","usage":{"prompt_tokens":5,"completion_tokens":2}})");
  ASSERT_TRUE(routed->usage().has_value());
  EXPECT_EQ(routed->usage()->completion_tokens, 2);
  EXPECT_TRUE(routed->finished());
  EXPECT_EQ(store_.snapshot()->endpoints[0].state->inflight_requests.load(), 0);
  EXPECT_NE(metrics_text().find("inference_objective_output_tokens_sum{model_name=\"llama\",target_"
                                "model_name=\"llama-v2\"} 2"),
            std::string::npos)
      << metrics_text();

  // An error answer keeps its body as sent, and is counted as the model server's error.
  auto failed = route(kChatBody);
  ASSERT_TRUE(failed.ok());
  failed->on_response_head(500, "application/json");
  std::string error = R"({"error":{"message":"llama-v2 is down","model":"llama-v2"}})";
  const std::string sent = error;
  failed->on_response_piece(error.size());
  failed->on_whole_response_body(error);
  EXPECT_EQ(error, sent);
  EXPECT_NE(metrics_text().find("{error_code=\"ModelServerError\",model_name=\"llama\",target_"
                                "model_name=\"llama-v2\"} 1.0"),
            std::string::npos);
}

TEST_F(DirectorTest, UpstreamErrorsCountAsModelServerErrors) {
  make_director({{"10.0.0.1", 8000}}, {}, rewrite_llama_to("llama-v2"));
  auto routed = route(kChatBody);
  ASSERT_TRUE(routed.ok());
  routed->on_response_headers({{":status", "500"}, {"content-type", "text/plain"}});
  std::string out;
  routed->on_response_body("engine died", true, out);
  EXPECT_EQ(out, "engine died");  // not JSON: passed on unchanged
  EXPECT_NE(metrics_text().find("{error_code=\"ModelServerError\",model_name=\"llama\",target_"
                                "model_name=\"llama-v2\"} 1.0"),
            std::string::npos);
  EXPECT_EQ(store_.snapshot()->endpoints[0].state->inflight_requests.load(), 0);
}

TEST_F(DirectorTest, AParsedResponseHeadActsAsItsHeaders) {
  make_director({{"10.0.0.1", 8000}});
  auto streamed = route(kChatBody);
  ASSERT_TRUE(streamed.ok());
  // An event stream although the request did not ask for one: its usage is read from the events.
  streamed->on_response_head(200, "text/event-stream; charset=utf-8");
  std::string out;
  streamed->on_response_body(
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n", true,
      out);
  ASSERT_TRUE(streamed->usage().has_value());
  EXPECT_EQ(streamed->usage()->total_tokens, 7);

  auto failed = route(kChatBody);
  ASSERT_TRUE(failed.ok());
  failed->on_response_head(503, std::nullopt);
  failed->on_response_body("busy", true, out);
  EXPECT_NE(metrics_text().find("{error_code=\"ModelServerError\",model_name=\"llama\",target_"
                                "model_name=\"llama\"} 1.0"),
            std::string::npos)
      << metrics_text();
}

TEST_F(DirectorTest, BodylessRequestsGoToARandomCandidate) {
  make_director({{"10.0.0.1", 8000}, {"10.0.0.2", 8000}, {"10.0.0.3", 8000}});
  std::set<std::string> seen;
  for (int i = 0; i < 60; ++i) {
    auto routed = director_->route_bodyless({{":path", "/v1/models"}}, std::nullopt);
    ASSERT_TRUE(routed.ok());
    EXPECT_EQ(routed->body(), "");
    EXPECT_EQ(routed->scheduling(), nullptr);
    EXPECT_EQ(routed->endpoint_scores(), "{}");
    seen.insert(routed->destination());
  }
  EXPECT_EQ(seen.size(), 3u);
  auto subset = director_->route_bodyless({}, std::vector<std::string>{"10.0.0.3:8000"});
  ASSERT_TRUE(subset.ok());
  EXPECT_EQ(subset->destination(), "10.0.0.3:8000");
}

TEST(ProtocolTest, ControlHeaders) {
  for (std::string_view name :
       {"x-gateway-inference-fairness-id", "x-gateway-inference-objective",
        "x-gateway-model-name-rewrite", "x-gateway-destination-endpoint-subset",
        "x-gateway-destination-endpoint", "x-gateway-destination-endpoint-served", "content-length",
        "x-llm-d-inference-objective"}) {
    EXPECT_TRUE(protocol::is_control_header(name)) << name;
  }
  for (std::string_view name : {"content-type", "x-request-id", "authorization", ":path"}) {
    EXPECT_FALSE(protocol::is_control_header(name)) << name;
  }
}

TEST(ErrorBodyTest, NamesTheReferenceErrorCodes) {
  EXPECT_EQ(error_body(Status(429, "shed")), "inference error: ResourceExhausted - shed");
  EXPECT_EQ(error_code_name(400), "BadRequest");
  EXPECT_EQ(error_code_name(503), "ServiceUnavailable");
  EXPECT_EQ(error_code_name(500), "Internal");
  EXPECT_EQ(error_code_name(413), "PayloadTooLarge");
  EXPECT_EQ(error_code_name(405), "MethodNotAllowed");
  EXPECT_EQ(error_code_name(502), "BadGateway");
  EXPECT_EQ(error_code_name(504), "GatewayTimeout");
  EXPECT_EQ(error_code_name(599), "Internal");
}

}  // namespace
}  // namespace infergate::director

namespace infergate::director {
namespace {

TEST_F(DirectorTest, AllowedEndpointsNarrowTheCandidatesExactly) {
  make_director({{"10.0.0.1", 8000}, {"10.0.0.1", 8001}, {"10.0.0.2", 8000}});
  const std::vector<std::string> allowed{"10.0.0.1:8001"};
  const Headers headers{{":path", "/v1/chat/completions"}};
  const std::optional<std::vector<std::string>> no_subset;
  for (int i = 0; i < 10; ++i) {
    auto routed = director_->route(
        {.headers = headers, .body = kChatBody, .subset = no_subset, .allowed = &allowed});
    ASSERT_TRUE(routed.ok());
    EXPECT_EQ(routed->destination(), "10.0.0.1:8001");
    auto bodyless = director_->route_bodyless(headers, no_subset, &allowed);
    ASSERT_TRUE(bodyless.ok());
    EXPECT_EQ(bodyless->destination(), "10.0.0.1:8001");
  }
  // Within the subset hint: nothing left is a 503.
  const std::optional<std::vector<std::string>> subset = std::vector<std::string>{"10.0.0.2"};
  auto none = director_->route(
      {.headers = headers, .body = kChatBody, .subset = subset, .allowed = &allowed});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().http_status(), 503);
}

}  // namespace
}  // namespace infergate::director
