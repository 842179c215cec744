#include "request/chat_template.h"

namespace infergate::request {

std::string render_chat_prompt(const std::vector<ChatMessage>& messages) {
  constexpr std::size_t kFramingBytes = 5;  // "<|", "|>", "\n"
  std::size_t size = kGenerationMarker.size();
  for (const ChatMessage& message : messages) {
    size += message.role.size() + message.content.size() + kFramingBytes;
  }
  std::string prompt;
  prompt.reserve(size);
  for (const ChatMessage& message : messages) {
    prompt += "<|";
    prompt += message.role;
    prompt += "|>";
    prompt += message.content;
    prompt += '\n';
  }
  prompt += kGenerationMarker;
  return prompt;
}

}  // namespace infergate::request
