#include "request/chat_template.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "request/tokenizer.h"

namespace infergate::request {
namespace {

struct RenderCase {
  std::string description;
  std::vector<ChatMessage> messages;
  std::string expected;
};

TEST(ChatTemplateTest, Render) {
  const std::vector<RenderCase> cases = {
      {"no messages", {}, "<|assistant|>"},
      {"one user message", {{"user", "Hi"}}, "<|user|>Hi\n<|assistant|>"},
      {"system then user",
       {{"system", "Be brief."}, {"user", "What is 2+2?"}},
       "<|system|>Be brief.\n<|user|>What is 2+2?\n<|assistant|>"},
      {"history with an assistant reply",
       {{"user", "Hi"}, {"assistant", " hello there"}, {"user", "More"}},
       "<|user|>Hi\n<|assistant|> hello there\n<|user|>More\n<|assistant|>"},
      {"empty content and multi-line content kept verbatim",
       {{"assistant", ""}, {"tool", "line 1\nline 2\n"}},
       "<|assistant|>\n<|tool|>line 1\nline 2\n\n<|assistant|>"},
  };
  for (const RenderCase& test_case : cases) {
    SCOPED_TRACE(test_case.description);
    EXPECT_EQ(render_chat_prompt(test_case.messages), test_case.expected);
  }
}

std::vector<std::uint32_t> concat(std::vector<std::uint32_t> left,
                                  const std::vector<std::uint32_t>& right) {
  left.insert(left.end(), right.begin(), right.end());
  return left;
}

bool starts_with(const std::vector<std::uint32_t>& sequence,
                 const std::vector<std::uint32_t>& prefix) {
  return prefix.size() <= sequence.size() &&
         std::equal(prefix.begin(), prefix.end(), sequence.begin());
}

// The prompt of turn k+1 starts with the prompt of turn k plus the reply, as text and, for the
// simulator's replies (vocabulary words with a leading space), as tokens.
TEST(ChatTemplateTest, NextTurnExtendsPreviousPromptAndReply) {
  std::vector<ChatMessage> conversation = {{"system", "You are terse."},
                                           {"user", "Tell me a story."}};
  for (std::uint64_t turn = 0; turn < 6; ++turn) {
    SCOPED_TRACE(turn);
    const std::string prompt = render_chat_prompt(conversation);
    const std::string reply = make_text_with_tokens(5 + turn * 3, turn);
    conversation.push_back({"assistant", reply});
    conversation.push_back({"user", "And then? (" + std::to_string(turn) + ")"});
    const std::string next_prompt = render_chat_prompt(conversation);

    EXPECT_EQ(next_prompt.substr(0, prompt.size() + reply.size()), prompt + reply);
    EXPECT_TRUE(starts_with(encode(next_prompt), concat(encode(prompt), encode(reply))));
  }
}

// A reply that does not start with whitespace still keeps the text prefix; only the token at the
// boundary (the end of the generation marker) may differ.
TEST(ChatTemplateTest, ReplyWithoutLeadingSpaceLosesAtMostTheBoundaryToken) {
  const std::vector<ChatMessage> first_turn = {{"user", "Hi"}};
  const std::string prompt = render_chat_prompt(first_turn);
  const std::vector<ChatMessage> second_turn = {
      {"user", "Hi"}, {"assistant", "Sure, here it is."}, {"user", "Thanks"}};
  const std::string next_prompt = render_chat_prompt(second_turn);
  EXPECT_EQ(next_prompt.substr(0, prompt.size()), prompt);
  std::vector<std::uint32_t> prompt_ids = encode(prompt);
  prompt_ids.pop_back();
  EXPECT_TRUE(starts_with(encode(next_prompt), prompt_ids));
}

}  // namespace
}  // namespace infergate::request
