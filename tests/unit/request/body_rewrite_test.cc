#include "request/body_rewrite.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "request/openai_request.h"

namespace infergate::request {
namespace {

struct RewriteCase {
  std::string description;
  std::string body;
  std::string new_model;
  std::string expected;  // the whole rewritten body, or the error message
  bool ok = true;
};

std::vector<RewriteCase> rewrite_cases() {
  return {
      {"model first", R"({"model":"a","prompt":"p"})", "b", R"({"model":"b","prompt":"p"})"},
      {"model not first, whitespace kept", "{ \"prompt\" : \"p\" ,\n  \"model\" :  \"a\"  \n}",
       "llama-3", "{ \"prompt\" : \"p\" ,\n  \"model\" :  \"llama-3\"  \n}"},
      {"nested model keys untouched",
       R"({"tools":[{"model":"a"}],"meta":{"model":"a","x":{"model":1}},"model":"a","m":"model"})",
       "b",
       R"({"tools":[{"model":"a"}],"meta":{"model":"a","x":{"model":1}},"model":"b","m":"model"})"},
      {"model as a string value elsewhere", R"({"input":"\"model\":\"a\"","model":"a"})", "b",
       R"({"input":"\"model\":\"a\"","model":"b"})"},
      {"escaping of quotes, backslash, controls", R"({"model":"a"})",
       std::string("q\"b\\s\n\t\x01\x1f/", 10), R"({"model":"q\"b\\s\n\t\u0001\u001f/"})"},
      {"UTF-8 copied as is", R"({"model":"a"})", "mod\xC3\xA8le-\xF0\x9F\xA6\x99",
       "{\"model\":\"mod\xC3\xA8le-\xF0\x9F\xA6\x99\"}"},
      {"escaped old value and escaped key", R"({"\u006dodel":"caf\u00e9\"x\"","p":1})", "b",
       R"({"\u006dodel":"b","p":1})"},
      {"unicode elsewhere untouched",
       "{\"prompt\":\"\xE4\xBD\xA0 \\ud83d\\ude00\",\"model\":\"a\"}", "b",
       "{\"prompt\":\"\xE4\xBD\xA0 \\ud83d\\ude00\",\"model\":\"b\"}"},
      {"every duplicate top-level model", R"({"model":"a","x":1,"model":"c"})", "b",
       R"({"model":"b","x":1,"model":"b"})"},
      {"non-string model values replaced whole", R"({"model":{"name":"a"},"p":[1]})", "b",
       R"({"model":"b","p":[1]})"},
      {"null and numeric model", R"({"model":null,"model":12.5e3})", "b",
       R"({"model":"b","model":"b"})"},
      {"array model last", R"({"p":1,"model":[1,[2]] })", "b", R"({"p":1,"model":"b" })"},
      {"response body round trip",
       R"({"id":"cmpl-1","object":"chat.completion","model":"target","choices":[]})", "incoming",
       R"({"id":"cmpl-1","object":"chat.completion","model":"incoming","choices":[]})"},
      {"no model", R"({"prompt":"p","x":{"model":"a"}})", "b", "'model' is required", false},
      {"root array", R"([{"model":"a"}])", "b", "request body must be a JSON object", false},
      {"empty new model", R"({"model":"a"})", "", "model name must be a non-empty string", false},
      {"invalid UTF-8 new model", R"({"model":"a"})", "\xFF", "model name is not valid UTF-8",
       false},
      {"trailing content", R"({"model":"a"} {})", "b",
       "request body is not valid JSON: unexpected content after the top-level object", false},
  };
}

TEST(RewriteModelTest, GoldenTable) {
  for (const RewriteCase& test_case : rewrite_cases()) {
    SCOPED_TRACE(test_case.description);
    Result<std::string> result = rewrite_model(test_case.body, test_case.new_model);
    if (!test_case.ok) {
      ASSERT_FALSE(result.ok()) << *result;
      EXPECT_EQ(result.status().http_status(), 400);
      EXPECT_EQ(result.status().message(), test_case.expected);
      continue;
    }
    ASSERT_TRUE(result.ok()) << result.status().message();
    EXPECT_EQ(*result, test_case.expected);
  }
}

TEST(RewriteModelTest, RewrittenBodyParsesWithTheNewModel) {
  const std::string body =
      R"({"messages":[{"role":"user","content":"x"}],"model":"a","stream":true})";
  const std::string new_model = "we\"ird\\name\n\xC3\xA9";
  Result<std::string> rewritten = rewrite_model(body, new_model);
  ASSERT_TRUE(rewritten.ok());
  Result<OpenAiRequest> parsed = parse_openai_request(ApiKind::kChatCompletions, *rewritten);
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->model, new_model);
  EXPECT_TRUE(parsed->stream);
}

TEST(RewriteModelTest, TruncatedBodiesNeverCrash) {
  const std::string body = R"({"a":[1,{"b":"c"}],"model":{"x":[1,2]},"z":"\u00e9"})";
  for (std::size_t length = 0; length < body.size(); ++length) {
    Result<std::string> result = rewrite_model(body.substr(0, length), "b");
    if (result.ok()) {
      EXPECT_LE(result->size(), length + 16);
    }
  }
}

std::string restore_in_chunks(std::string_view stream, const std::vector<std::size_t>& cuts,
                              std::string_view target, std::string_view incoming) {
  ModelNameRestorer restorer(target, incoming);
  std::string out;
  std::size_t begin = 0;
  for (std::size_t cut : cuts) {
    restorer.feed(stream.substr(begin, cut - begin), out);
    begin = cut;
  }
  restorer.feed(stream.substr(begin), out);
  restorer.finish(out);
  return out;
}

TEST(ModelNameRestorerTest, RestoresAtEverySplit) {
  const std::string stream =
      "data: {\"id\":\"1\",\"model\":\"tgt\",\"choices\":[{\"text\":\"model\"}]}\n\n"
      "data: {\"model\": \"tgt\",\"x\":\"\\\"model\\\":\\\"tgt\\\"\"}\n\n"
      "data: {\"type\":\"response.completed\",\"response\":{\"model\":\"tgt\"}}\n\n"
      "data: {\"model\":\"tgt2\",\"model\":\"tg\",\"model\":  \"tgt\"}\n\n"
      "data: [DONE]\n\n";
  const std::string expected =
      "data: {\"id\":\"1\",\"model\":\"in\\\"c\",\"choices\":[{\"text\":\"model\"}]}\n\n"
      "data: {\"model\": \"in\\\"c\",\"x\":\"\\\"model\\\":\\\"tgt\\\"\"}\n\n"
      "data: {\"type\":\"response.completed\",\"response\":{\"model\":\"in\\\"c\"}}\n\n"
      "data: {\"model\":\"tgt2\",\"model\":\"tg\",\"model\":  \"tgt\"}\n\n"
      "data: [DONE]\n\n";
  EXPECT_EQ(restore_in_chunks(stream, {}, "tgt", "in\"c"), expected);
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    EXPECT_EQ(restore_in_chunks(stream, {cut}, "tgt", "in\"c"), expected) << "cut " << cut;
  }
  std::vector<std::size_t> every_byte;
  for (std::size_t cut = 1; cut < stream.size(); ++cut) every_byte.push_back(cut);
  EXPECT_EQ(restore_in_chunks(stream, every_byte, "tgt", "in\"c"), expected);
}

TEST(ModelNameRestorerTest, HoldsBackOnlyAPossibleMatch) {
  ModelNameRestorer restorer("tgt", "in");
  std::string out;
  restorer.feed("data: {\"x\":1}\n\n", out);
  EXPECT_EQ(out, "data: {\"x\":1}\n\n");
  restorer.feed("data: {\"mod", out);
  EXPECT_EQ(out, "data: {\"x\":1}\n\ndata: {");
  restorer.feed("el\":\"tgt\"}", out);
  EXPECT_EQ(out, "data: {\"x\":1}\n\ndata: {\"model\":\"in\"}");
  restorer.feed("\"model\":\"t", out);
  restorer.finish(out);
  EXPECT_EQ(out, "data: {\"x\":1}\n\ndata: {\"model\":\"in\"}\"model\":\"t");
}

}  // namespace
}  // namespace infergate::request
