#include "request/prompt.h"

#include "request/chat_template.h"
#include "request/tokenizer.h"

namespace infergate::request {

std::string prompt_text(const OpenAiRequest& request) {
  if (request.kind == ApiKind::kChatCompletions) return render_chat_prompt(request.messages);
  return request.prompt;
}

std::vector<std::uint32_t> prompt_token_ids(const OpenAiRequest& request) {
  if (request.prompt_token_ids) return *request.prompt_token_ids;
  return encode(prompt_text(request));
}

}  // namespace infergate::request
