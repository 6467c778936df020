// AUTOMATIC1111 prompt-attention syntax and the 75-token chunker used to encode long prompts with
// CLIP (modules/prompt_parser.py parse_prompt_attention, modules/sd_hijack_clip.py tokenize_line).
//
//   (word)        weight x 1.1              [word]       weight / 1.1
//   (word:1.3)    weight x 1.3              nesting multiplies: ((word)) = 1.21
//   \( \) \[ \] \\   literal characters     unbalanced '(' / '[' apply to the rest of the prompt
//   BREAK         (upper case, a separate word) ends the current 75-token chunk
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "text/clip_tokenizer.h"

namespace nuance {

// Splits a prompt into (text, weight) runs, adjacent equal weights merged, exactly as A1111:
//   "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."
//     -> ("a ",1) ("house",1.573) (" ",1.1) ("on",1) (" a ",1.1) ("hill",0.55) (", sun, ",1.1) ("sky",1.4641) (".",1.1)
// BREAK is returned as the run ("BREAK", -1). An empty prompt gives {("", 1)}. Weights are
// computed in double precision as in Python and rounded to float at the end.
// A weight that is not a number, e.g. "(a:1.2.3)", throws nuance::Error (A1111 raises too).
std::vector<std::pair<std::string, float>> parse_prompt_attention(const std::string& text);

// A textual-inversion embedding the chunker may meet (text/embedding_library.h): the token ids of its name (the
// tokenizer's encode(name), no BOS/EOS) and how many vectors replace them.
struct PromptEmbeddingName {
    std::vector<int> ids;
    int64_t vectors = 1;
    std::string name;
};

// Where an embedding's vectors go in a chunk: ids[offset .. offset + vectors) (BOS is ids[0]); those ids are 0.
struct PromptFix {
    int64_t offset = 0, vectors = 0;
    std::string name;
};

// Token ids and per-token weights of a prompt, in chunks of 1 + chunk_len + 1 tokens.
struct PromptChunks {
    std::vector<std::vector<int64_t>> ids;   // each: [BOS, tokens..., EOS, pad...]
    std::vector<std::vector<float>> weights; // same shape; 1.0 on BOS, EOS and padding
    std::vector<std::vector<PromptFix>> fixes;  // per chunk: textual-inversion embeddings to write in
};

// A1111's tokenize_line: each run of parse_prompt_attention is tokenized on its own (tok.encode);
// tokens fill chunks of chunk_len; when a chunk is full and one of its last 20 tokens is a comma
// (",</w>"), the tokens after that comma move to the next chunk; BREAK closes the current chunk;
// an empty prompt gives one chunk [BOS, EOS, pad...]. As A1111 does when pad_id != EOS (SD2), every
// id after the first EOS of a chunk is pad_id (SD1.x: pad_id = EOS 49407; SD2.x / SDXL's 2nd encoder: 0).
//
// `embeddings` (A1111's EmbeddingDatabase.find_embedding_at_position): where a run's tokens match the ids of an
// embedding's name (the longest name first), they are replaced by `vectors` placeholder tokens (id 0) carrying the
// run's weight, and a PromptFix records where; an embedding that does not fit in what is left of the chunk starts
// the next one. Comma back-tracking moves fixes along with their tokens. Error: an embedding with more than
// chunk_len vectors (it cannot fit in one window).
PromptChunks tokenize_weighted(const ClipTokenizer& tok, const std::string& prompt, int pad_id, int chunk_len = 75,
                               const std::vector<PromptEmbeddingName>* embeddings = nullptr);

}  // namespace nuance
