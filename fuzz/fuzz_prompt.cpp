// Prompt syntax (src/text/prompt_parser.cpp: A1111 attention syntax, BREAK, 75-token chunking) and the CLIP BPE
// tokenizer with both text clean-ups (src/text/clip_tokenizer.cpp, text_fix.cpp, unicode.cpp), on arbitrary bytes
// (invalid UTF-8 included) with the built-in openai vocabulary.
#include <string>

#include "fuzz_util.h"
#include "text/clip_tokenizer.h"
#include "text/prompt_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace nuance;
    static const ClipTokenizer& tok = ClipTokenizer::builtin();
    const std::string text(reinterpret_cast<const char*>(data), size);
    fuzz::expect_ok_or_error([&] { (void)parse_prompt_attention(text); });
    fuzz::expect_ok_or_error([&] {
        const PromptChunks c = tokenize_weighted(tok, text, ClipTokenizer::kEosId);
        if (c.ids.size() != c.weights.size()) __builtin_trap();
        for (size_t i = 0; i < c.ids.size(); ++i)
            if (c.ids[i].size() != 77 || c.weights[i].size() != 77) __builtin_trap();
    });
    fuzz::expect_ok_or_error([&] { (void)tok.encode_padded(text, 0, ClipTokenizer::kMaxLength, true); });
    fuzz::expect_ok_or_error([&] { (void)tok.encode(text, {}, ClipNormalization::Basic); });
    return 0;
}
