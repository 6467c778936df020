// Prompt -> text conditioning for the UNet: A1111 prompt syntax, 75-token chunks, emphasis, clip skip, SDXL's
// two encoders with pooled embedding.
#pragma once
#include <string>

#include "models/sd/stable_diffusion.h"
#include "text/embedding_library.h"

namespace nuance {

struct SDConditioning {
    Tensor context;  // [1, 77 * chunks, D] (D = sum of the encoders' widths)
    Tensor pooled;   // [1, P] SDXL pooled text embedding; undefined otherwise
    int64_t chunks() const { return context.size(1) / 77; }
};

struct ConditioningOptions {
    PromptSyntax syntax = PromptSyntax::A1111;
    int clip_skip = 0;        // 0 = the model's default; 1 = last layer, 2 = penultimate (SD1.x only)
    bool zero_empty = false;  // SDXL (diffusers force_zeros_for_empty_prompt): an empty prompt gives zeros
    // Textual-inversion embeddings the prompt may name (A1111 syntax only): the name's tokens become the file's
    // vectors (text/embedding_library.h; SDXL: clip_l for the first encoder, clip_g for the second).
    const EmbeddingLibrary* embeddings = nullptr;
};

SDConditioning encode_prompt(const StableDiffusionModel& m, const std::string& prompt, const ConditioningOptions& o);

// Pads the shorter context with empty-prompt chunks so cond and uncond can share a batch (A1111 does the same).
void match_chunk_counts(const StableDiffusionModel& m, SDConditioning& a, SDConditioning& b, const ConditioningOptions& o);

}  // namespace nuance
