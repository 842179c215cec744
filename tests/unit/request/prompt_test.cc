#include "request/prompt.h"

#include <gtest/gtest.h>

#include "request/chat_template.h"
#include "request/tokenizer.h"

namespace infergate::request {
namespace {

TEST(PromptTest, CompletionsTextPrompt) {
  Result<OpenAiRequest> request =
      parse_openai_request(ApiKind::kCompletions, R"({"model":"m","prompt":" hello world"})");
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(prompt_text(*request), " hello world");
  EXPECT_EQ(prompt_token_ids(*request), encode(" hello world"));
}

TEST(PromptTest, CompletionsTokenIdPromptIsUsedAsIs) {
  Result<OpenAiRequest> request =
      parse_openai_request(ApiKind::kCompletions, R"({"model":"m","prompt":[[9,8,7]]})");
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(prompt_text(*request), "");
  EXPECT_EQ(prompt_token_ids(*request), (std::vector<std::uint32_t>{9, 8, 7}));
}

TEST(PromptTest, ChatPromptIsTheRenderedTemplate) {
  Result<OpenAiRequest> request = parse_openai_request(
      ApiKind::kChatCompletions,
      R"({"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}]})");
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(prompt_text(*request), "<|system|>s\n<|user|>u\n<|assistant|>");
  EXPECT_EQ(prompt_token_ids(*request), encode(render_chat_prompt(request->messages)));
}

}  // namespace
}  // namespace infergate::request
