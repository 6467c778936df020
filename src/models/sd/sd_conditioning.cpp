#include "models/sd/sd_conditioning.h"

#include "ops/ops.h"
#include "text/prompt_parser.h"

namespace nuance {

namespace {

struct EncodedChunks {
    std::vector<Tensor> hidden;  // per chunk [1, 77, D]
    Tensor pooled;               // of the first chunk
};

PromptChunks chunks_for(const TextEncoderSlot& te, const std::string& prompt, PromptSyntax syntax) {
    if (syntax == PromptSyntax::A1111) return tokenize_weighted(te.tokenizer(), prompt, te.pad_id);
    PromptChunks c;
    c.ids.push_back(te.tokenizer().encode_padded(prompt, te.pad_id));
    c.weights.push_back(std::vector<float>(c.ids.back().size(), 1.0f));
    return c;
}

// Runs one encoder over every chunk. `sdxl_layer`: hidden_states[-2] without final LN (SDXL); else clip skip with
// the final LayerNorm (SD1/SD2).
EncodedChunks encode_chunks(const TextEncoderSlot& te, const PromptChunks& pc, int clip_skip, bool sdxl_layer,
                            bool want_pooled) {
    EncodedChunks out;
    const ClipTextModel& model = *te.model;
    for (size_t i = 0; i < pc.ids.size(); ++i) {
        const Tensor ids = Tensor::from_ids(pc.ids[i], {1, (int64_t)pc.ids[i].size()});
        Tensor z;
        if (sdxl_layer) {
            ClipTextOutput o = model.forward(ids);
            z = o.hidden_states[o.hidden_states.size() - 2];
            if (i == 0 && want_pooled) out.pooled = o.text_embeds.defined() ? o.text_embeds : o.pooled;
        } else {
            z = model.encode_sd(ids, clip_skip, /*final_ln=*/true);
        }
        // A1111 emphasis: scale each token's vector by its weight, then restore the chunk's original mean.
        const auto& w = pc.weights[i];
        bool all_one = true;
        for (float x : w) all_one = all_one && x == 1.0f;
        if (!all_one) {
            const double before = mean_all(z);
            z = z * Tensor::from_vector(w, {1, (int64_t)w.size(), 1});
            const double after = mean_all(z);
            if (after != 0.0) z = z * (float)(before / after);
        }
        out.hidden.push_back(z);
    }
    return out;
}

}  // namespace

SDConditioning encode_prompt(const StableDiffusionModel& m, const std::string& prompt, const ConditioningOptions& o) {
    const int clip_skip = o.clip_skip > 0 ? o.clip_skip : m.default_clip_skip;
    SDConditioning c;
    if (m.family != SDFamily::SDXL) {
        const PromptChunks pc = chunks_for(m.te1, prompt, o.syntax);
        c.context = cat(encode_chunks(m.te1, pc, clip_skip, false, false).hidden, 1);
        return c;
    }
    const PromptChunks p1 = chunks_for(m.te1, prompt, o.syntax);
    PromptChunks p2 = chunks_for(m.te2, prompt, o.syntax);
    NUANCE_ASSERT(p1.ids.size() == p2.ids.size(), "SDXL tokenizers chunked the prompt differently");
    EncodedChunks e1 = encode_chunks(m.te1, p1, 0, true, false);
    EncodedChunks e2 = encode_chunks(m.te2, p2, 0, true, true);
    std::vector<Tensor> parts;
    for (size_t i = 0; i < e1.hidden.size(); ++i) parts.push_back(cat({e1.hidden[i], e2.hidden[i]}, -1));
    c.context = cat(parts, 1);
    c.pooled = e2.pooled;
    if (o.zero_empty && prompt.empty()) {
        c.context = Tensor::zeros(c.context.shape());
        c.pooled = Tensor::zeros(c.pooled.shape());
    }
    return c;
}

void match_chunk_counts(const StableDiffusionModel& m, SDConditioning& a, SDConditioning& b, const ConditioningOptions& o) {
    if (a.chunks() == b.chunks()) return;
    SDConditioning& shorter = a.chunks() < b.chunks() ? a : b;
    const int64_t missing = std::max(a.chunks(), b.chunks()) - shorter.chunks();
    SDConditioning empty = encode_prompt(m, "", o);
    std::vector<Tensor> parts{shorter.context};
    for (int64_t i = 0; i < missing; ++i) parts.push_back(empty.context);
    shorter.context = cat(parts, 1);
}

}  // namespace nuance
