#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "request/openai_request.h"

namespace infergate::request {

// The prompt as text: completions -> `prompt` (empty when given as token ids);
// chat -> render_chat_prompt(messages); responses / embeddings -> a string `input` (empty when
// `input` is an array); conversations -> empty. Pure and thread-safe.
std::string prompt_text(const OpenAiRequest& request);

// The prompt's token ids: `prompt_token_ids` when the completions body gave ids, otherwise
// encode(prompt_text(request)). What the simulator counts as prompt_tokens and caches by.
std::vector<std::uint32_t> prompt_token_ids(const OpenAiRequest& request);

}  // namespace infergate::request
