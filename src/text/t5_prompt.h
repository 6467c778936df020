// A1111 prompt syntax for T5 (SD3's and Flux's third / second text encoder): token ids with a weight per token.
//
//   parse_prompt_attention(prompt) -> each (text, weight) run tokenized on its own (T5Tokenizer legacy, without its
//   </s>), "BREAK" runs dropped (T5 has no 75-token chunks) -> ids + </s>, truncated to max_length - 1 ids + </s>,
//   padded with <pad> to max_length; </s> and padding weigh 1.
//
// This is A1111's SD3T5.tokenize_line and sd.cpp's T5 tokenize (each run encoded separately, so a run gets its own
// dummy '▁' prefix), with diffusers' truncation. A prompt without syntax is one run: exactly
// T5Tokenizer::encode_padded(prompt, max_length) with every weight 1.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "text/t5_tokenizer.h"

namespace nuance {

struct T5WeightedIds {
    std::vector<int64_t> ids;    // [max_length]
    std::vector<float> weights;  // [max_length]
    bool all_one() const;
};

// Error: max_length outside 1..2^20, or a weight that is not a number (the parser's error).
T5WeightedIds tokenize_t5_weighted(const T5Tokenizer& tok, const std::string& prompt, int max_length);

// ComfyUI's weighting of T5 outputs (comfy/sd1_clip.py ClipTokenWeightEncoder.encode_token_weights): each token j
// whose weight w_j != 1 becomes  z_j = (z_j - e_j) * w_j + e_j,  e = the encoding of the empty prompt's tokens
// ([</s>, <pad> ...], same length); tokens of weight 1 are untouched. z, e: [1, L, D] F32; weights: L values.
// Error: shapes that do not agree.
void apply_t5_token_weights(float* z, const float* empty, const std::vector<float>& weights, int64_t length,
                            int64_t width);

}  // namespace nuance
