// Textual-inversion embeddings on a CLIP window (A1111's EmbeddingsWithFixes), for the families whose conditioning
// has CLIP encoders besides the SD UNet's (SD3's CLIP-L/G, Flux's CLIP-L): the embeddings a prompt names, as
// tokenize_weighted wants them, and the token embeddings of a window with their vectors written in.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/clip/clip_text.h"
#include "text/clip_tokenizer.h"
#include "text/embedding_library.h"
#include "text/prompt_parser.h"

namespace nuance {

struct ClipEmbeddings {
    std::vector<PromptEmbeddingName> names;
    std::map<std::string, Tensor> vectors;  // by name, F32 [N, D]
    const std::vector<PromptEmbeddingName>* names_or_null() const { return names.empty() ? nullptr : &names; }
};

// The vectors of `found` for one encoder: `key` "clip_l" / "clip_g", or "" (the file's one set). `fallback_single`:
// when the file has no `key` set, its one set (key "") is used if it exists (Flux's single CLIP-L takes SD1.x-style
// embeddings as well as SDXL ones). Errors (TextualInversion::for_encoder) name the file, its widths and `model`.
ClipEmbeddings clip_embeddings_for(const std::vector<std::shared_ptr<const TextualInversion>>& found,
                                   const ClipTokenizer& tok, const ClipTextModel& model, const std::string& key,
                                   bool fallback_single, const std::string& model_name);

// The token embeddings [1, L, D] of `ids` with each fix's vectors in place; undefined when `fixes` is empty (the
// encoder then looks the ids up itself).
Tensor clip_token_embeds(const ClipTextModel& model, const std::vector<int64_t>& ids,
                         const std::vector<PromptFix>& fixes, const ClipEmbeddings& emb);

}  // namespace nuance
