#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "request/openai_request.h"

namespace infergate::request {

// The marker that ends every rendered chat prompt: the model's reply is generated after it.
inline constexpr std::string_view kGenerationMarker = "<|assistant|>";

// Renders chat messages as one prompt string with infergate's own template (not any real model's):
//
//   for each message:  "<|" + role + "|>" + content + "\n"
//   then:              "<|assistant|>"
//
// e.g. [{user, "Hi"}] -> "<|user|>Hi\n<|assistant|>". Content is copied verbatim.
//
// Multi-turn prefix property: if turn k's prompt is P_k = render(M) and the model replies R, the
// client's next request is M + [{assistant, R}, {user, U}], whose prompt is
//   P_k + R + "\n<|user|>" + U + "\n<|assistant|>"
// so P_k + R is a prefix of P_{k+1}. The marker ends in '>' with no newline after it, so when R
// starts with whitespace (the simulator's replies always do: see output_vocabulary()),
// encode(P_{k+1}) starts with encode(P_k) + encode(R): the prompt tokens AND the generated tokens
// of turn k are a token prefix of turn k+1, as with real engines' prefix caches across turns.
//
// Pure and thread-safe.
std::string render_chat_prompt(const std::vector<ChatMessage>& messages);

}  // namespace infergate::request
