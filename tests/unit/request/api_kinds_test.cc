// Request kinds beyond completions/chat, the path → kind mapping, and the prefix-hash bytes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "request/openai_request.h"
#include "request/prompt.h"

namespace infergate::request {
namespace {

TEST(ApiKindFromPathTest, GoldenTable) {
  struct Case {
    std::string path;
    ApiKind expected;
  };
  const std::vector<Case> cases = {
      {"/v1/completions", ApiKind::kCompletions},
      {"/v1/chat/completions", ApiKind::kChatCompletions},
      {"/v1/responses", ApiKind::kResponses},
      {"/v1/conversations", ApiKind::kConversations},
      {"/v1/embeddings", ApiKind::kEmbeddings},
      {"/openai/deployments/x/chat/completions", ApiKind::kChatCompletions},
      {"/chat/completions", ApiKind::kChatCompletions},
      {"/completions", ApiKind::kCompletions},
      {"/v1/chat/completions?api-version=1", ApiKind::kChatCompletions},
      {"/v1/responses?x=/v1/embeddings", ApiKind::kResponses},
      {"/v1/models", ApiKind::kCompletions},
      {"", ApiKind::kCompletions},
      {"/", ApiKind::kCompletions},
      {"/v1/chat/completions/", ApiKind::kCompletions},
      {"/v1/Chat/Completions", ApiKind::kCompletions},
      {"/v1/mycompletions", ApiKind::kCompletions},
      {"/v1/myresponses", ApiKind::kCompletions},
      {"/v1/responses/abc", ApiKind::kCompletions},
      {"/v1/conversations/abc/items", ApiKind::kCompletions},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.path);
    EXPECT_EQ(api_kind_from_path(test_case.path), test_case.expected);
  }
}

struct ValidCase {
  std::string description;
  ApiKind kind;
  std::string body;
  std::string prompt;        // expected `prompt`
  std::string prefix_bytes;  // expected prefix_bytes()
  std::optional<std::int64_t> max_tokens;
};

std::vector<ValidCase> valid_cases() {
  constexpr ApiKind kCmpl = ApiKind::kCompletions;
  constexpr ApiKind kChat = ApiKind::kChatCompletions;
  constexpr ApiKind kResp = ApiKind::kResponses;
  constexpr ApiKind kConv = ApiKind::kConversations;
  constexpr ApiKind kEmb = ApiKind::kEmbeddings;
  return {
      {"completions text prompt hashes the unescaped text",
       kCmpl,
       R"({"model":"m","prompt":"a\nb \u00e9"})",
       "a\nb \xC3\xA9",
       "a\nb \xC3\xA9",
       {}},
      {"completions token ids hash the raw prompt JSON", kCmpl,
       R"({"model":"m","prompt": [ [1, 2] ] ,"max_tokens":3})", "", "[ [1, 2] ]", 3},
      {"chat hashes the raw messages array, whitespace and escapes kept",
       kChat,
       "{\"messages\" :\n [ {\"role\":\"user\", \"content\":\"caf\\u00e9\"} ]\n,\"model\":\"m\"}",
       "",
       R"([ {"role":"user", "content":"caf\u00e9"} ])",
       {}},
      {"chat: the later duplicate messages is hashed",
       kChat,
       R"({"model":"m","messages":[{"role":"user","content":"a"}],"messages":[{"role":"user","content":"b"}]})",
       "",
       R"([{"role":"user","content":"b"}])",
       {}},
      {"chat typed content blocks are accepted",
       kChat,
       R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"t"},)"
       R"({"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}},)"
       R"({"type":"input_audio","input_audio":{"data":"AA==","format":"wav"}},)"
       R"({"type":"video_url","video_url":{"url":"https://x/v.mp4"}}]}]})",
       "",
       R"([{"role":"user","content":[{"type":"text","text":"t"},)"
       R"({"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}},)"
       R"({"type":"input_audio","input_audio":{"data":"AA==","format":"wav"}},)"
       R"({"type":"video_url","video_url":{"url":"https://x/v.mp4"}}]}])",
       {}},
      {"responses string input, no instructions or tools",
       kResp,
       R"({"model":"m","input":"Tell me a joke"})",
       "Tell me a joke",
       R"([null,null,"Tell me a joke"])",
       {}},
      {"responses with instructions, tools, array input, max_output_tokens", kResp,
       R"({"tools":[{"type":"function","name":"f"}],"input":[{"role":"user","content":"hi"}],)"
       R"("model":"m","instructions":"be \"brief\"","max_output_tokens":64,"max_tokens":5})",
       "", R"(["be \"brief\"",[{"type":"function","name":"f"}],[{"role":"user","content":"hi"}]])",
       64},
      {"responses null instructions and tools count as absent",
       kResp,
       R"({"model":"m","instructions":null,"tools":null,"input":"x"})",
       "x",
       R"([null,null,"x"])",
       {}},
      {"responses ignore prompt, messages and max_completion_tokens",
       kResp,
       R"({"model":"m","prompt":{"id":"pmpt_1"},"messages":5,"max_completion_tokens":"x","input":"q"})",
       "q",
       R"([null,null,"q"])",
       {}},
      {"responses empty string input",
       kResp,
       R"({"model":"m","input":""})",
       "",
       R"([null,null,""])",
       {}},
      {"conversations hash the raw items",
       kConv,
       R"({"model":"m","metadata":{"topic":"x"},"items":[{"type":"message","role":"user","content":"hello"}]})",
       "",
       R"([{"type":"message","role":"user","content":"hello"}])",
       {}},
      {"embeddings string input",
       kEmb,
       R"({"model":"e","input":"some text"})",
       "some text",
       R"("some text")",
       {}},
      {"embeddings array of strings",
       kEmb,
       R"({"model":"e","input":["a","b"],"dimensions":8})",
       "",
       R"(["a","b"])",
       {}},
      {"embeddings token ids",
       kEmb,
       R"({"model":"e","input":[[1,2],[3]]})",
       "",
       R"([[1,2],[3]])",
       {}},
  };
}

TEST(ApiKindsTest, ValidBodies) {
  for (const ValidCase& test_case : valid_cases()) {
    SCOPED_TRACE(test_case.description);
    Result<OpenAiRequest> result = parse_openai_request(test_case.kind, test_case.body);
    ASSERT_TRUE(result.ok()) << result.status().message();
    EXPECT_EQ(result->kind, test_case.kind);
    EXPECT_EQ(result->prompt, test_case.prompt);
    EXPECT_EQ(result->prefix_bytes(), test_case.prefix_bytes);
    EXPECT_EQ(result->max_tokens, test_case.max_tokens);
  }
}

struct ErrorCase {
  std::string description;
  ApiKind kind;
  std::string body;
  std::string expected_message;
};

TEST(ApiKindsTest, InvalidBodies) {
  constexpr ApiKind kResp = ApiKind::kResponses;
  constexpr ApiKind kConv = ApiKind::kConversations;
  constexpr ApiKind kEmb = ApiKind::kEmbeddings;
  const std::vector<ErrorCase> cases = {
      {"responses without model", kResp, R"({"input":"x"})", "'model' is required"},
      {"responses without input", kResp, R"({"model":"m"})", "'input' is required"},
      {"responses null input", kResp, R"({"model":"m","input":null})", "'input' is required"},
      {"responses numeric input", kResp, R"({"model":"m","input":1})",
       "'input' must be a string or a non-empty array"},
      {"responses object input", kResp, R"({"model":"m","input":{}})",
       "'input' must be a string or a non-empty array"},
      {"responses empty input array", kResp, R"({"model":"m","input":[]})",
       "'input' must be a string or a non-empty array"},
      {"responses numeric instructions", kResp, R"({"model":"m","input":"x","instructions":1})",
       "'instructions' must be a string"},
      {"responses max_output_tokens zero", kResp,
       R"({"model":"m","input":"x","max_output_tokens":0})",
       "'max_output_tokens' must be an integer >= 1"},
      {"responses n=2", kResp, R"({"model":"m","input":"x","n":2})", "only n=1 is supported"},
      {"responses broken JSON in tools", kResp, R"({"model":"m","input":"x","tools":[1,]})",
       "request body is not valid JSON: "},
      {"responses broken JSON inside input", kResp, R"({"model":"m","input":[{"a":tru}]})",
       "request body is not valid JSON: "},
      {"conversations without items", kConv, R"({"model":"m","metadata":{}})",
       "'items' is required"},
      {"conversations null items", kConv, R"({"model":"m","items":null})", "'items' is required"},
      {"conversations empty items", kConv, R"({"model":"m","items":[]})",
       "'items' must be a non-empty array"},
      {"conversations items as a string", kConv, R"({"model":"m","items":"x"})",
       "'items' must be a non-empty array"},
      {"embeddings without input", kEmb, R"({"model":"e","prompt":"x"})", "'input' is required"},
      {"embeddings boolean input", kEmb, R"({"model":"e","input":true})",
       "'input' must be a string or a non-empty array"},
      {"embeddings model empty", kEmb, R"({"model":"","input":"x"})",
       "'model' must be a non-empty string"},
      {"embeddings trailing garbage", kEmb, R"({"model":"e","input":"x"} x)",
       "request body is not valid JSON: "},
  };
  for (const ErrorCase& test_case : cases) {
    SCOPED_TRACE(test_case.description);
    Result<OpenAiRequest> result = parse_openai_request(test_case.kind, test_case.body);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().http_status(), 400);
    const std::string& expected = test_case.expected_message;
    if (expected.ends_with(": ")) {
      EXPECT_TRUE(result.status().message().starts_with(expected)) << result.status().message();
    } else {
      EXPECT_EQ(result.status().message(), expected);
    }
  }
}

TEST(ApiKindsTest, PromptOfNewKinds) {
  Result<OpenAiRequest> responses =
      parse_openai_request(ApiKind::kResponses, R"({"model":"m","input":" hello"})");
  ASSERT_TRUE(responses.ok());
  EXPECT_EQ(prompt_text(*responses), " hello");
  Result<OpenAiRequest> conversations = parse_openai_request(
      ApiKind::kConversations, R"({"model":"m","items":[{"type":"message"}]})");
  ASSERT_TRUE(conversations.ok());
  EXPECT_EQ(prompt_text(*conversations), "");
}

// Multi-turn chat: the hashed bytes of turn k, minus the closing ']', prefix those of turn k+1.
TEST(ApiKindsTest, ChatPrefixBytesGrowAcrossTurns) {
  const std::string turn1 = R"({"role":"user","content":"hi"})";
  const std::string turn2 =
      R"({"role":"assistant","content":"hello"},{"role":"user","content":"q"})";
  Result<OpenAiRequest> first = parse_openai_request(ApiKind::kChatCompletions,
                                                     R"({"model":"m","messages":[)" + turn1 + "]}");
  Result<OpenAiRequest> second = parse_openai_request(
      ApiKind::kChatCompletions, R"({"model":"m","messages":[)" + turn1 + "," + turn2 + "]}");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  std::string_view first_bytes = first->prefix_bytes();
  first_bytes.remove_suffix(1);
  EXPECT_TRUE(second->prefix_bytes().starts_with(first_bytes));
}

// prefix_bytes() of a big body is copied out of the per-thread buffer, not viewed into it.
TEST(ApiKindsTest, PrefixBytesSurviveLaterParses) {
  Result<OpenAiRequest> first = parse_openai_request(
      ApiKind::kChatCompletions, R"({"model":"m","messages":[{"role":"user","content":"one"}]})");
  Result<OpenAiRequest> second = parse_openai_request(
      ApiKind::kChatCompletions, R"({"model":"m","messages":[{"role":"user","content":"two"}]})");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(first->prefix_bytes(), R"([{"role":"user","content":"one"}])");
  const std::string huge = std::string(2 << 20, 'x');
  Result<OpenAiRequest> big =
      parse_openai_request(ApiKind::kEmbeddings, R"({"model":"m","input":[")" + huge + R"("]})");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->prefix_bytes(), "[\"" + huge + "\"]");
}

// Every truncation of bodies of the new kinds is an error, never a crash.
TEST(ApiKindsTest, TruncatedBodiesAreErrors) {
  const std::vector<std::pair<ApiKind, std::string>> bodies = {
      {ApiKind::kResponses,
       R"({"model":"m","instructions":"i","tools":[{"a":1}],"input":[{"role":"user","content":"x"}]})"},
      {ApiKind::kConversations, R"({"model":"m","items":[{"type":"message"}]})"},
      {ApiKind::kEmbeddings, R"({"model":"m","input":["a","b"]})"},
  };
  for (const auto& [kind, body] : bodies) {
    ASSERT_TRUE(parse_openai_request(kind, body).ok()) << body;
    for (std::size_t length = 0; length < body.size(); ++length) {
      EXPECT_FALSE(parse_openai_request(kind, body.substr(0, length)).ok()) << length;
    }
  }
}

}  // namespace
}  // namespace infergate::request
