// Checks of prompt text before any work is spent on it: a prompt must be valid UTF-8 without NUL bytes (the PNG
// metadata, the infotext and the tokenizer all need that) and of bounded length.
#pragma once
#include <cstddef>
#include <string>

namespace nuance {

constexpr size_t kMaxPromptBytes = 1 << 20;  // 1 MiB: far beyond any prompt (77-token chunks), bounds the tokenizer

// Offset of the first byte that is not part of a valid UTF-8 sequence (overlong forms, surrogates and code points
// above U+10FFFF are invalid), or std::string::npos when `s` is valid.
size_t utf8_error_offset(const std::string& s);

// Throws ErrorCode::InvalidArgument naming `what` ("prompt", "negative prompt") and the offset:
// "prompt is not valid UTF-8: byte 0xff at offset 3".
void check_prompt_text(const std::string& s, const std::string& what);

}  // namespace nuance
