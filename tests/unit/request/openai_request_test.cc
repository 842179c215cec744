#include "request/openai_request.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace infergate::request {
namespace {

// Readable one-line rendering so golden-table failures show which field differs.
std::string describe(const OpenAiRequest& request) {
  std::ostringstream out;
  out << "kind=" << (request.kind == ApiKind::kCompletions ? "completions" : "chat")
      << " model=" << request.model << " stream=" << request.stream
      << " include_usage=" << request.include_usage
      << " max_tokens=" << (request.max_tokens ? std::to_string(*request.max_tokens) : "-")
      << " ignore_eos=" << request.ignore_eos
      << " min_tokens=" << (request.min_tokens ? std::to_string(*request.min_tokens) : "-")
      << " cache_salt=" << request.cache_salt
      << " seed=" << (request.seed ? std::to_string(*request.seed) : "-") << " n=" << request.n
      << " prompt=[" << request.prompt << "] ids=";
  if (request.prompt_token_ids) {
    for (std::uint32_t id : *request.prompt_token_ids) out << id << ",";
  } else {
    out << "-";
  }
  out << " messages=";
  for (const ChatMessage& message : request.messages) {
    out << "{" << message.role << ":" << message.content << "}";
  }
  return out.str();
}

OpenAiRequest completions(std::string model, std::string prompt) {
  OpenAiRequest request;
  request.kind = ApiKind::kCompletions;
  request.model = std::move(model);
  request.prompt = std::move(prompt);
  return request;
}

OpenAiRequest chat(std::string model, std::vector<ChatMessage> messages) {
  OpenAiRequest request;
  request.kind = ApiKind::kChatCompletions;
  request.model = std::move(model);
  request.messages = std::move(messages);
  return request;
}

template <typename Edit>
OpenAiRequest with(OpenAiRequest request, Edit edit) {
  edit(request);
  return request;
}

struct ValidCase {
  std::string description;
  ApiKind kind;
  std::string body;
  OpenAiRequest expected;
};

std::vector<ValidCase> valid_cases() {
  constexpr ApiKind kCmpl = ApiKind::kCompletions;
  constexpr ApiKind kChat = ApiKind::kChatCompletions;
  return {
      {"minimal completions", kCmpl, R"({"model":"m","prompt":"hi"})", completions("m", "hi")},
      {"every field", kCmpl,
       R"({"model":"llama","prompt":"p","stream":true,"stream_options":{"include_usage":true},
           "max_tokens":16,"ignore_eos":true,"min_tokens":4,"cache_salt":"salt","seed":42,"n":1})",
       with(completions("llama", "p"),
            [](OpenAiRequest& r) {
              r.stream = true;
              r.include_usage = true;
              r.max_tokens = 16;
              r.ignore_eos = true;
              r.min_tokens = 4;
              r.cache_salt = "salt";
              r.seed = 42;
            })},
      {"whitespace around the document", kCmpl,
       " \n\t{ \"model\" : \"m\" , \"prompt\" : \"x\" }\r\n ", completions("m", "x")},
      {"empty prompt string is allowed", kCmpl, R"({"model":"m","prompt":""})",
       completions("m", "")},
      {"prompt as an array of one string", kCmpl, R"({"model":"m","prompt":["hello"]})",
       completions("m", "hello")},
      {"prompt as token ids", kCmpl, R"({"model":"m","prompt":[1,2,0,4294967295]})",
       with(completions("m", ""),
            [](OpenAiRequest& r) {
              r.prompt_token_ids = std::vector<std::uint32_t>{1, 2, 0, 4294967295u};
            })},
      {"prompt as an array of one array of token ids", kCmpl, R"({"model":"m","prompt":[[7, 8]]})",
       with(completions("m", ""),
            [](OpenAiRequest& r) {
              r.prompt_token_ids = std::vector<std::uint32_t>{7, 8};
            })},
      {"unknown fields of every shape are ignored", kCmpl,
       R"({"temperature":0.7,"top_p":1e-3,"logprobs":null,"echo":false,"stop":["\n",
           "x"],"user":"u","tools":[{"type":"function","function":{"name":"f",
           "parameters":{"type":"object","properties":{"a":{"type":["string","null"]}}}}}],
           "big":123456789012345678901234567890,"neg":-0.5e+10,"model":"m","prompt":"p",
           "kv_transfer_params":{"do_remote_prefill":true},"max_completion_tokens":"ignored"})",
       completions("m", "p")},
      {"numbers beyond double range in unknown fields are valid JSON", kCmpl,
       R"({"model":"m","prompt":"p","a":1e400,"b":-0,"c":0.5E-7,"d":)" + std::string(400, '9') +
           "}",
       completions("m", "p")},
      {"unknown value nested 120 deep is fine", kCmpl,
       R"({"model":"m","prompt":"p","x":)" + std::string(120, '[') + std::string(120, ']') + "}",
       completions("m", "p")},
      {"stream_options without stream", kCmpl,
       R"({"model":"m","prompt":"p","stream_options":{"include_usage":true,"continuous_usage_stats":false}})",
       with(completions("m", "p"), [](OpenAiRequest& r) { r.include_usage = true; })},
      {"null means absent for optional fields", kCmpl,
       R"({"model":"m","prompt":"p","stream":null,"stream_options":null,"max_tokens":null,
           "ignore_eos":null,"min_tokens":null,"cache_salt":null,"seed":null,"n":null})",
       completions("m", "p")},
      {"stream false, include_usage null", kCmpl,
       R"({"model":"m","prompt":"p","stream":false,"stream_options":{"include_usage":null}})",
       completions("m", "p")},
      {"negative seed keeps its bit pattern", kCmpl, R"({"model":"m","prompt":"p","seed":-1})",
       with(completions("m", "p"), [](OpenAiRequest& r) { r.seed = UINT64_MAX; })},
      {"seed up to 2^64-1", kCmpl, R"({"model":"m","prompt":"p","seed":18446744073709551615})",
       with(completions("m", "p"), [](OpenAiRequest& r) { r.seed = UINT64_MAX; })},
      {"max_tokens up to int64 max", kCmpl,
       R"({"model":"m","prompt":"p","max_tokens":9223372036854775807})",
       with(completions("m", "p"), [](OpenAiRequest& r) { r.max_tokens = INT64_MAX; })},
      {"min_tokens equal to max_tokens", kCmpl,
       R"({"model":"m","prompt":"p","max_tokens":5,"min_tokens":5})",
       with(completions("m", "p"),
            [](OpenAiRequest& r) {
              r.max_tokens = 5;
              r.min_tokens = 5;
            })},
      {"min_tokens zero without max_tokens", kCmpl, R"({"model":"m","prompt":"p","min_tokens":0})",
       with(completions("m", "p"), [](OpenAiRequest& r) { r.min_tokens = 0; })},
      {"unicode escapes in the prompt", kCmpl,
       R"({"model":"m","prompt":"caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t \u0041"})",
       completions("m", "caf\xC3\xA9 \xF0\x9F\x98\x80 \"q\" \\ / \b\f\n\r\t A")},
      {"raw UTF-8 in the prompt", kCmpl,
       "{\"model\":\"m\",\"prompt\":\"\xE4\xBD\xA0\xE5\xA5\xBD\"}",
       completions("m", "\xE4\xBD\xA0\xE5\xA5\xBD")},
      {"escaped NUL stays in the prompt", kCmpl, R"({"model":"m","prompt":"a\u0000b"})",
       completions("m", std::string("a\0b", 3))},
      {"escaped key names are unescaped", kCmpl, R"({"\u006dodel":"m","prompt":"p"})",
       completions("m", "p")},
      {"a later duplicate key wins", kCmpl,
       R"({"model":"a","prompt":"p","model":"b","max_tokens":3,"max_tokens":null})",
       completions("b", "p")},
      {"completions ignores messages", kCmpl,
       R"({"model":"m","prompt":"p","messages":"not checked"})", completions("m", "p")},
      {"minimal chat", kChat, R"({"model":"m","messages":[{"role":"user","content":"hi"}]})",
       chat("m", {{"user", "hi"}})},
      {"chat roles, null and missing assistant content", kChat,
       R"({"model":"m","messages":[{"role":"system","content":"be brief"},
           {"role":"user","content":"q1","name":"bob"},{"role":"assistant","content":null,
           "tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},
           {"role":"tool","content":"42","tool_call_id":"c"},{"role":"assistant"},
           {"content":"q2","role":"user"}]})",
       chat("m", {{"system", "be brief"},
                  {"user", "q1"},
                  {"assistant", ""},
                  {"tool", "42"},
                  {"assistant", ""},
                  {"user", "q2"}})},
      {"chat content parts: text joined with newlines, other parts ignored", kChat,
       R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},
           {"type":"image_url","image_url":{"url":"data:x"}},{"text":"b","type":"text"}]}]})",
       chat("m", {{"user", "a\nb"}})},
      {"chat content parts may be empty", kChat,
       R"({"model":"m","messages":[{"role":"user","content":[]}]})", chat("m", {{"user", ""}})},
      {"chat unicode escapes in content", kChat,
       R"({"model":"m","messages":[{"role":"user","content":"\u00fcber \ud83e\udd16"}]})",
       chat("m", {{"user",
                   "\xC3\xBC"
                   "ber \xF0\x9F\xA4\x96"}})},
      {"chat max_completion_tokens wins over max_tokens", kChat,
       R"({"model":"m","max_tokens":5,"max_completion_tokens":7,"messages":[{"role":"user","content":"x"}]})",
       with(chat("m", {{"user", "x"}}), [](OpenAiRequest& r) { r.max_tokens = 7; })},
      {"chat max_tokens alone", kChat,
       R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]})",
       with(chat("m", {{"user", "x"}}), [](OpenAiRequest& r) { r.max_tokens = 5; })},
      {"chat ignores prompt", kChat,
       R"({"model":"m","prompt":123,"messages":[{"role":"user","content":"x"}]})",
       chat("m", {{"user", "x"}})},
      {"chat streaming with usage", kChat,
       R"({"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]})",
       with(chat("m", {{"user", "x"}}),
            [](OpenAiRequest& r) {
              r.stream = true;
              r.include_usage = true;
            })},
  };
}

TEST(ParseOpenAiRequestTest, ValidBodies) {
  for (const ValidCase& test_case : valid_cases()) {
    SCOPED_TRACE(test_case.description);
    Result<OpenAiRequest> result = parse_openai_request(test_case.kind, test_case.body);
    ASSERT_TRUE(result.ok()) << result.status().message();
    EXPECT_EQ(describe(*result), describe(test_case.expected));
    EXPECT_TRUE(*result == test_case.expected);
  }
}

struct ErrorCase {
  std::string description;
  ApiKind kind;
  std::string body;
  // The whole message, or, when it ends with ": ", a prefix (simdjson's wording follows it).
  std::string expected_message;
};

constexpr std::string_view kNotJson = "request body is not valid JSON: ";

std::vector<ErrorCase> error_cases() {
  constexpr ApiKind kCmpl = ApiKind::kCompletions;
  constexpr ApiKind kChat = ApiKind::kChatCompletions;
  const std::string not_json(kNotJson);
  const std::string deep_unknown =
      R"({"model":"m","prompt":"p","x":)" + std::string(200, '[') + std::string(200, ']') + "}";
  const std::string very_deep_unknown = R"({"model":"m","prompt":"p","x":)" +
                                        std::string(100000, '[') + std::string(100000, ']') + "}";
  const std::string deep_objects = [] {
    std::string body = R"({"model":"m","prompt":"p","x":)";
    for (int level = 0; level < 300; ++level) body += R"({"k":)";
    body += "1";
    body += std::string(300, '}');
    return body + "}";
  }();
  return {
      // Not JSON at all, or broken in some part.
      {"empty body", kCmpl, "", not_json},
      {"only whitespace", kCmpl, "  \n ", not_json},
      {"plain text", kCmpl, "hello", not_json},
      {"lone brace", kCmpl, "{", not_json},
      {"truncated after a key", kCmpl, R"({"model":)", not_json},
      {"truncated inside a string", kCmpl, R"({"model":"m","prompt":"abc)", not_json},
      {"truncated before the closing brace", kCmpl, R"({"model":"m","prompt":"abc")", not_json},
      {"truncated inside an array", kCmpl, R"({"model":"m","prompt":[1,2)", not_json},
      {"trailing comma", kCmpl, R"({"model":"m","prompt":"p",})", not_json},
      {"missing colon", kCmpl, R"({"model" "m","prompt":"p"})", not_json},
      {"single quotes", kCmpl, R"({'model':'m','prompt':'p'})", not_json},
      {"trailing garbage", kCmpl, R"({"model":"m","prompt":"p"} x)", not_json},
      {"two documents", kCmpl, R"({"model":"m","prompt":"p"}{"model":"m"})", not_json},
      {"invalid UTF-8 in a string", kCmpl, "{\"model\":\"m\",\"prompt\":\"\xFF\xFE\"}", not_json},
      {"invalid UTF-8 in a key", kCmpl, "{\"model\":\"m\",\"\xC3\x28\":1,\"prompt\":\"p\"}",
       not_json},
      {"truncated UTF-8 sequence", kCmpl, "{\"model\":\"m\",\"prompt\":\"\xE4\xBD\"}", not_json},
      {"bad escape", kCmpl, R"({"model":"m","prompt":"a\qb"})", not_json},
      {"lone surrogate escape", kCmpl, R"({"model":"m","prompt":"\ud800"})", not_json},
      {"short unicode escape", kCmpl, R"({"model":"m","prompt":"\u12"})", not_json},
      {"raw control character in a string", kCmpl, "{\"model\":\"m\",\"prompt\":\"a\nb\"}",
       not_json},
      {"malformed literal in a known field", kCmpl, R"({"model":"m","prompt":"p","stream":tru})",
       not_json},
      {"malformed null in a known field", kCmpl, R"({"model":"m","prompt":"p","max_tokens":nul})",
       not_json},
      {"malformed literal in an unknown field", kCmpl, R"({"model":"m","prompt":"p","echo":fals})",
       not_json},
      {"leading zero in an unknown number", kCmpl, R"({"model":"m","prompt":"p","top_p":01})",
       not_json},
      {"lone minus in an unknown field", kCmpl, R"({"model":"m","prompt":"p","top_p":-})",
       not_json},
      {"number with a dangling dot", kCmpl, R"({"model":"m","prompt":"p","top_p":1.})", not_json},
      {"number without integer part", kCmpl, R"({"model":"m","prompt":"p","top_p":.5})", not_json},
      {"number with an empty exponent", kCmpl, R"({"model":"m","prompt":"p","top_p":1e})",
       not_json},
      {"number with a plus sign", kCmpl, R"({"model":"m","prompt":"p","top_p":+1})", not_json},
      {"number glued to letters", kCmpl, R"({"model":"m","prompt":"p","top_p":1x})", not_json},
      {"hex number", kCmpl, R"({"model":"m","prompt":"p","top_p":0x10})", not_json},
      {"leading zero in a known number", kCmpl, R"({"model":"m","prompt":"p","max_tokens":016})",
       not_json},
      {"broken nested unknown value", kCmpl, R"({"model":"m","prompt":"p","tools":[{"a":[1,2,]}]})",
       not_json},
      {"missing comma in an unknown array", kCmpl, R"({"model":"m","prompt":"p","stop":["a" "b"]})",
       not_json},
      {"bad escape in an unknown field", kCmpl, R"({"model":"m","prompt":"p","user":"\x"})",
       not_json},
      {"unknown arrays nested 200 deep", kCmpl, deep_unknown, not_json},
      {"unknown arrays nested 100000 deep", kCmpl, very_deep_unknown, not_json},
      {"unknown objects nested 300 deep", kCmpl, deep_objects, not_json},
      {"broken JSON inside messages", kChat, R"({"model":"m","messages":[{"role":"user",}]})",
       not_json},

      // The root is not an object.
      {"root array", kCmpl, R"([{"model":"m"}])", "request body must be a JSON object"},
      {"root string", kCmpl, R"("model")", "request body must be a JSON object"},
      {"root number", kCmpl, "42", "request body must be a JSON object"},
      {"root null", kCmpl, "null", "request body must be a JSON object"},

      // model
      {"model missing", kCmpl, R"({"prompt":"p"})", "'model' is required"},
      {"model null", kCmpl, R"({"model":null,"prompt":"p"})", "'model' is required"},
      {"model empty", kCmpl, R"({"model":"","prompt":"p"})", "'model' must be a non-empty string"},
      {"model number", kCmpl, R"({"model":42,"prompt":"p"})", "'model' must be a non-empty string"},
      {"model array", kChat, R"({"model":["m"],"messages":[]})",
       "'model' must be a non-empty string"},
      {"model missing in chat", kChat, R"({"messages":[{"role":"user","content":"x"}]})",
       "'model' is required"},

      // booleans
      {"stream as a string", kCmpl, R"({"model":"m","prompt":"p","stream":"true"})",
       "'stream' must be a boolean"},
      {"stream as a number", kCmpl, R"({"model":"m","prompt":"p","stream":1})",
       "'stream' must be a boolean"},
      {"ignore_eos as a string", kCmpl, R"({"model":"m","prompt":"p","ignore_eos":"yes"})",
       "'ignore_eos' must be a boolean"},
      {"stream_options as a string", kCmpl, R"({"model":"m","prompt":"p","stream_options":"x"})",
       "'stream_options' must be an object"},
      {"stream_options as an array", kCmpl, R"({"model":"m","prompt":"p","stream_options":[]})",
       "'stream_options' must be an object"},
      {"include_usage as a number", kCmpl,
       R"({"model":"m","prompt":"p","stream":true,"stream_options":{"include_usage":1}})",
       "'stream_options.include_usage' must be a boolean"},

      // integers
      {"max_tokens zero", kCmpl, R"({"model":"m","prompt":"p","max_tokens":0})",
       "'max_tokens' must be an integer >= 1"},
      {"max_tokens negative", kCmpl, R"({"model":"m","prompt":"p","max_tokens":-5})",
       "'max_tokens' must be an integer >= 1"},
      {"max_tokens fractional", kCmpl, R"({"model":"m","prompt":"p","max_tokens":1.5})",
       "'max_tokens' must be an integer >= 1"},
      {"max_tokens in exponent form", kCmpl, R"({"model":"m","prompt":"p","max_tokens":1e3})",
       "'max_tokens' must be an integer >= 1"},
      {"max_tokens as a string", kCmpl, R"({"model":"m","prompt":"p","max_tokens":"16"})",
       "'max_tokens' must be an integer >= 1"},
      {"max_tokens as a boolean", kCmpl, R"({"model":"m","prompt":"p","max_tokens":true})",
       "'max_tokens' must be an integer >= 1"},
      {"max_tokens beyond int64", kCmpl,
       R"({"model":"m","prompt":"p","max_tokens":99999999999999999999})",
       "'max_tokens' must be an integer >= 1"},
      {"max_tokens hugely beyond int64", kCmpl,
       R"({"model":"m","prompt":"p","max_tokens":)" + std::string(400, '9') + "}",
       "'max_tokens' must be an integer >= 1"},
      {"max_completion_tokens zero", kChat,
       R"({"model":"m","max_completion_tokens":0,"messages":[{"role":"user","content":"x"}]})",
       "'max_completion_tokens' must be an integer >= 1"},
      {"max_completion_tokens as a string", kChat,
       R"({"model":"m","max_completion_tokens":"8","messages":[{"role":"user","content":"x"}]})",
       "'max_completion_tokens' must be an integer >= 1"},
      {"min_tokens negative", kCmpl, R"({"model":"m","prompt":"p","min_tokens":-1})",
       "'min_tokens' must be an integer >= 0"},
      {"min_tokens as a string", kCmpl, R"({"model":"m","prompt":"p","min_tokens":"1"})",
       "'min_tokens' must be an integer >= 0"},
      {"min_tokens above max_tokens", kCmpl,
       R"({"model":"m","prompt":"p","min_tokens":9,"max_tokens":8})",
       "'min_tokens' must be <= 'max_tokens'"},
      {"min_tokens above max_completion_tokens", kChat,
       R"({"model":"m","min_tokens":9,"max_tokens":100,"max_completion_tokens":8,
           "messages":[{"role":"user","content":"x"}]})",
       "'min_tokens' must be <= 'max_tokens'"},
      {"cache_salt as a number", kCmpl, R"({"model":"m","prompt":"p","cache_salt":5})",
       "'cache_salt' must be a string"},
      {"seed as a string", kCmpl, R"({"model":"m","prompt":"p","seed":"1"})",
       "'seed' must be an integer"},
      {"seed fractional", kCmpl, R"({"model":"m","prompt":"p","seed":1.5})",
       "'seed' must be an integer"},
      {"seed beyond uint64", kCmpl, R"({"model":"m","prompt":"p","seed":18446744073709551616})",
       "'seed' must be an integer"},
      {"n two", kCmpl, R"({"model":"m","prompt":"p","n":2})", "only n=1 is supported"},
      {"n zero", kChat, R"({"model":"m","n":0,"messages":[{"role":"user","content":"x"}]})",
       "only n=1 is supported"},
      {"n as a string", kCmpl, R"({"model":"m","prompt":"p","n":"1"})", "'n' must be an integer"},

      // prompt
      {"prompt missing", kCmpl, R"({"model":"m"})", "'prompt' is required"},
      {"prompt null", kCmpl, R"({"model":"m","prompt":null})", "'prompt' is required"},
      {"prompt number", kCmpl, R"({"model":"m","prompt":42})",
       "'prompt' must be a string, an array of one string, an array of token ids or an array of "
       "one array of token ids"},
      {"prompt object", kCmpl, R"({"model":"m","prompt":{"text":"x"}})",
       "'prompt' must be a string, an array of one string, an array of token ids or an array of "
       "one array of token ids"},
      {"prompt array of booleans", kCmpl, R"({"model":"m","prompt":[true]})",
       "'prompt' must be a string, an array of one string, an array of token ids or an array of "
       "one array of token ids"},
      {"prompt ids mixed with a string", kCmpl, R"({"model":"m","prompt":[1,"a"]})",
       "'prompt' must be a string, an array of one string, an array of token ids or an array of "
       "one array of token ids"},
      {"prompt nested ids mixed with null", kCmpl, R"({"model":"m","prompt":[[1,null]]})",
       "'prompt' must be a string, an array of one string, an array of token ids or an array of "
       "one array of token ids"},
      {"prompt empty array", kCmpl, R"({"model":"m","prompt":[]})", "'prompt' must not be empty"},
      {"prompt empty nested array", kCmpl, R"({"model":"m","prompt":[[]]})",
       "'prompt' must not be empty"},
      {"batch of strings", kCmpl, R"({"model":"m","prompt":["a","b"]})",
       "batched prompts are not supported"},
      {"batch of token id arrays", kCmpl, R"({"model":"m","prompt":[[1],[2]]})",
       "batched prompts are not supported"},
      {"string followed by an id", kCmpl, R"({"model":"m","prompt":["a",1]})",
       "batched prompts are not supported"},
      {"negative token id", kCmpl, R"({"model":"m","prompt":[-1]})",
       "'prompt' token ids must be integers in [0, 4294967295]"},
      {"token id beyond uint32", kCmpl, R"({"model":"m","prompt":[4294967296]})",
       "'prompt' token ids must be integers in [0, 4294967295]"},
      {"fractional token id", kCmpl, R"({"model":"m","prompt":[[1.5]]})",
       "'prompt' token ids must be integers in [0, 4294967295]"},
      {"malformed token id", kCmpl, R"({"model":"m","prompt":[1,-]})", not_json},

      // messages
      {"messages missing", kChat, R"({"model":"m"})", "'messages' is required"},
      {"messages null", kChat, R"({"model":"m","messages":null})", "'messages' is required"},
      {"messages empty", kChat, R"({"model":"m","messages":[]})",
       "'messages' must be a non-empty array"},
      {"messages as a string", kChat, R"({"model":"m","messages":"hi"})",
       "'messages' must be a non-empty array"},
      {"messages as an object", kChat, R"({"model":"m","messages":{"role":"user"}})",
       "'messages' must be a non-empty array"},
      {"message not an object", kChat, R"({"model":"m","messages":[1]})",
       "'messages[0]' must be an object"},
      {"message without role", kChat, R"({"model":"m","messages":[{"content":"x"}]})",
       "'messages[0].role' is required"},
      {"message with a numeric role", kChat,
       R"({"model":"m","messages":[{"role":5,"content":"x"}]})",
       "'messages[0].role' must be a non-empty string"},
      {"message with an empty role", kChat,
       R"({"model":"m","messages":[{"role":"","content":"x"}]})",
       "'messages[0].role' must be a non-empty string"},
      {"user message without content", kChat,
       R"({"model":"m","messages":[{"role":"system","content":"s"},{"role":"user"}]})",
       "'messages[1].content' is required"},
      {"user message with null content", kChat,
       R"({"model":"m","messages":[{"role":"user","content":null}]})",
       "'messages[0].content' is required"},
      {"content as a number", kChat, R"({"model":"m","messages":[{"role":"user","content":5}]})",
       "'messages[0].content' must be a string or an array of content parts"},
      {"content part not an object", kChat,
       R"({"model":"m","messages":[{"role":"user","content":["x"]}]})",
       "'messages[0].content[0]' must be an object"},
      {"content part without type", kChat,
       R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"text":"b"}]}]})",
       "'messages[0].content[1].type' is required"},
      {"text part without text", kChat,
       R"({"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]})",
       "'messages[0].content[0].text' is required"},
      {"content part type as a number", kChat,
       R"({"model":"m","messages":[{"role":"user","content":[{"type":1}]}]})",
       "'messages[0].content[0].type' must be a string"},
      {"text part with numeric text", kChat,
       R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":1}]}]})",
       "'messages[0].content[0].text' must be a string"},
  };
}

TEST(ParseOpenAiRequestTest, InvalidBodiesAreBadRequestsNamingTheField) {
  for (const ErrorCase& test_case : error_cases()) {
    SCOPED_TRACE(test_case.description);
    Result<OpenAiRequest> result = parse_openai_request(test_case.kind, test_case.body);
    ASSERT_FALSE(result.ok()) << describe(*result);
    EXPECT_EQ(result.status().http_status(), 400);
    const std::string& message = result.status().message();
    const std::string& expected = test_case.expected_message;
    if (expected.size() >= 2 && expected.compare(expected.size() - 2, 2, ": ") == 0) {
      EXPECT_EQ(message.substr(0, expected.size()), expected) << message;
      EXPECT_GT(message.size(), expected.size()) << "the JSON error should be explained";
    } else {
      EXPECT_EQ(message, expected);
    }
  }
}

TEST(ParseOpenAiRequestTest, ErrorBodyIsOpenAiStyle) {
  Result<OpenAiRequest> result = parse_openai_request(ApiKind::kCompletions, R"({"model":"m"})");
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().to_openai_json().find("'prompt' is required"), std::string::npos);
}

TEST(ParseOpenAiRequestTest, LongPromptsAreCopiedWhole) {
  // 16 KiB exercises the thread's reusable buffer, 3 MiB the one-off parser for huge bodies.
  for (std::size_t prompt_bytes : {std::size_t{16} << 10, std::size_t{3} << 20}) {
    std::string escaped;  // as written in the JSON body
    std::string expected;
    for (std::size_t index = 0; escaped.size() < prompt_bytes; ++index) {
      escaped += index % 7 == 0 ? "\\n" : " word";
      expected += index % 7 == 0 ? "\n" : " word";
    }
    const std::string body = R"({"model":"m","max_tokens":8,"prompt":")" + escaped + R"("})";
    Result<OpenAiRequest> result = parse_openai_request(ApiKind::kCompletions, body);
    ASSERT_TRUE(result.ok()) << result.status().message();
    EXPECT_EQ(result->prompt, expected);
    EXPECT_EQ(result->max_tokens, 8);
  }
}

TEST(ParseOpenAiRequestTest, LargeTokenIdPrompt) {
  std::string body = R"({"model":"m","prompt":[)";
  for (int id = 0; id < 50000; ++id) body += (id ? "," : "") + std::to_string(id * 7);
  body += "]}";
  Result<OpenAiRequest> result = parse_openai_request(ApiKind::kCompletions, body);
  ASSERT_TRUE(result.ok()) << result.status().message();
  ASSERT_TRUE(result->prompt_token_ids.has_value());
  ASSERT_EQ(result->prompt_token_ids->size(), 50000u);
  EXPECT_EQ(result->prompt_token_ids->back(), 49999u * 7);
}

TEST(ParseOpenAiRequestTest, ResultsDoNotDependOnLaterParses) {
  Result<OpenAiRequest> first =
      parse_openai_request(ApiKind::kCompletions, R"({"model":"first","prompt":"one"})");
  Result<OpenAiRequest> second =
      parse_openai_request(ApiKind::kCompletions, R"({"model":"second","prompt":"two"})");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(first->model, "first");
  EXPECT_EQ(first->prompt, "one");
  EXPECT_EQ(second->model, "second");
}

// Every truncation and many random corruptions of a body that uses every field: each must give a
// request or a 400, never a crash (ASan/UBSan builds check memory safety on the way).
TEST(ParseOpenAiRequestTest, NeverCrashesOnTruncatedOrCorruptedBodies) {
  const std::string chat_body =
      R"({"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":16,)"
      R"("max_completion_tokens":9,"ignore_eos":false,"min_tokens":1,"cache_salt":"s","seed":-3,)"
      R"("n":1,"tools":[{"type":"function","function":{"name":"f","parameters":{"a":[1,2.5e3,)"
      R"(null,true,"\u00e9"]}}}],"messages":[{"role":"system","content":"sys"},{"role":"user",)"
      R"("content":[{"type":"text","text":"a\"b"},{"type":"image_url","image_url":{"url":"u"}}]},)"
      R"({"role":"assistant","content":null}, {"role":"user","content":"caf\u00e9"}]})";
  const std::string completions_body =
      R"({"model":"m","prompt":[[1,2,3]],"seed":18446744073709551615,"logprobs":null,)"
      R"("echo":false,"stop":["\n"],"prompt2":["a","b"],"top_p":0.5})";
  ASSERT_TRUE(parse_openai_request(ApiKind::kChatCompletions, chat_body).ok());
  ASSERT_TRUE(parse_openai_request(ApiKind::kCompletions, completions_body).ok());

  auto check = [](ApiKind kind, std::string_view body) {
    Result<OpenAiRequest> result = parse_openai_request(kind, body);
    if (!result.ok()) {
      EXPECT_EQ(result.status().http_status(), 400) << body;
    }
  };
  for (const auto& [kind, body] : {std::pair{ApiKind::kChatCompletions, chat_body},
                                   std::pair{ApiKind::kCompletions, completions_body}}) {
    for (std::size_t length = 0; length < body.size(); ++length) {
      Result<OpenAiRequest> result = parse_openai_request(kind, body.substr(0, length));
      EXPECT_FALSE(result.ok()) << "truncated at " << length;
    }
    std::mt19937 random(12345);
    const std::string alphabet = "{}[]:,\"\\ntfu0123456789.-eE \x80\xC3\xFF";
    for (int round = 0; round < 3000; ++round) {
      std::string mutated = body;
      const int edits = 1 + static_cast<int>(random() % 4);
      for (int edit = 0; edit < edits; ++edit) {
        const std::size_t position = random() % mutated.size();
        switch (random() % 3) {
          case 0:
            mutated[position] = alphabet[random() % alphabet.size()];
            break;
          case 1:
            mutated.erase(position, 1 + random() % 8);
            break;
          default:
            mutated.insert(position, 1, alphabet[random() % alphabet.size()]);
            break;
        }
        if (mutated.empty()) mutated = "{";
      }
      check(kind, mutated);
    }
  }
  std::mt19937 random(99);
  for (int round = 0; round < 2000; ++round) {
    std::string noise(random() % 64, '\0');
    for (char& byte : noise) byte = static_cast<char>(random());
    check(ApiKind::kCompletions, noise);
  }
}

TEST(ParseOpenAiRequestTest, ConcurrentParsesOnTwoThreads) {
  auto worker = [](std::string model, int* failures) {
    const std::string body = R"({"model":")" + model + R"(","prompt":"p"})";
    for (int iteration = 0; iteration < 500; ++iteration) {
      Result<OpenAiRequest> result = parse_openai_request(ApiKind::kCompletions, body);
      if (!result.ok() || result->model != model) ++*failures;
    }
  };
  int failures_a = 0;
  int failures_b = 0;
  std::thread thread_a(worker, "model-a", &failures_a);
  std::thread thread_b(worker, "model-b", &failures_b);
  thread_a.join();
  thread_b.join();
  EXPECT_EQ(failures_a, 0);
  EXPECT_EQ(failures_b, 0);
}

}  // namespace
}  // namespace infergate::request
