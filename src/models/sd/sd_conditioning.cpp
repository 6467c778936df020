#include "models/sd/sd_conditioning.h"

#include <map>

#include "ops/ops.h"
#include "text/prompt_parser.h"

namespace nuance {

namespace {

struct EncodedChunks {
    std::vector<Tensor> hidden;  // per chunk [1, 77, D]
    Tensor pooled;               // of the first chunk
};

// The embeddings a prompt names, with the vectors for one encoder: `key` "" (one encoder) or "clip_l" / "clip_g".
struct EncoderEmbeddings {
    std::vector<PromptEmbeddingName> names;
    std::map<std::string, Tensor> vectors;  // by name, F32 [N, D]
};

EncoderEmbeddings embeddings_for(const StableDiffusionModel& m, const TextEncoderSlot& te, const std::string& key,
                                 const std::vector<std::shared_ptr<const TextualInversion>>& found) {
    EncoderEmbeddings e;
    for (const auto& ti : found) {
        const Tensor& v = ti->for_encoder(key, te.model->config().hidden, m.describe());
        e.names.push_back({te.tokenizer().encode(ti->name), ti->count, ti->name});
        e.vectors[ti->name] = v;
    }
    return e;
}

PromptChunks chunks_for(const TextEncoderSlot& te, const std::string& prompt, PromptSyntax syntax,
                        const EncoderEmbeddings* emb = nullptr) {
    if (syntax == PromptSyntax::A1111)
        return tokenize_weighted(te.tokenizer(), prompt, te.pad_id, 75, emb && !emb->names.empty() ? &emb->names : nullptr);
    PromptChunks c;
    c.ids.push_back(te.tokenizer().encode_padded(prompt, te.pad_id));
    c.weights.push_back(std::vector<float>(c.ids.back().size(), 1.0f));
    return c;
}

// Runs one encoder over every chunk. `sdxl_layer`: hidden_states[-2] without final LN (SDXL); else clip skip with
// the final LayerNorm (SD1/SD2).
EncodedChunks encode_chunks(const TextEncoderSlot& te, const PromptChunks& pc, int clip_skip, bool sdxl_layer,
                            bool want_pooled, const EncoderEmbeddings* emb = nullptr) {
    EncodedChunks out;
    const ClipTextModel& model = *te.model;
    for (size_t i = 0; i < pc.ids.size(); ++i) {
        const Tensor ids = Tensor::from_ids(pc.ids[i], {1, (int64_t)pc.ids[i].size()});
        // Textual inversion (A1111's EmbeddingsWithFixes): the placeholder rows take the embedding's vectors.
        Tensor embeds;
        if (i < pc.fixes.size() && !pc.fixes[i].empty()) {
            NUANCE_ASSERT(emb, "prompt chunk has embedding fixes but no embeddings were given");
            embeds = model.embed_tokens(ids).clone();  // [1, 77, D]
            const int64_t L = ids.size(1), D = embeds.size(2);
            float* dst = embeds.data<float>();
            for (const PromptFix& f : pc.fixes[i]) {
                const Tensor& v = emb->vectors.at(f.name);
                NUANCE_ASSERT(f.offset >= 1 && f.offset + f.vectors <= L - 1 && v.size(0) == f.vectors,
                              "embedding fix out of its chunk");
                std::copy(v.data<float>(), v.data<float>() + f.vectors * D, dst + f.offset * D);
            }
        }
        Tensor z;
        if (sdxl_layer) {
            ClipTextOutput o = model.forward(ids, -1, embeds);
            z = o.hidden_states[o.hidden_states.size() - 2];
            if (i == 0 && want_pooled) out.pooled = o.text_embeds.defined() ? o.text_embeds : o.pooled;
        } else {
            z = model.encode_sd(ids, clip_skip, /*final_ln=*/true, embeds);
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
    std::vector<std::shared_ptr<const TextualInversion>> found;
    if (o.embeddings && o.syntax == PromptSyntax::A1111) found = o.embeddings->mentioned(prompt);
    if (m.family != SDFamily::SDXL) {
        const EncoderEmbeddings emb = embeddings_for(m, m.te1, "", found);
        const PromptChunks pc = chunks_for(m.te1, prompt, o.syntax, &emb);
        c.context = cat(encode_chunks(m.te1, pc, clip_skip, false, false, &emb).hidden, 1);
        return c;
    }
    const EncoderEmbeddings emb1 = embeddings_for(m, m.te1, "clip_l", found);
    const EncoderEmbeddings emb2 = embeddings_for(m, m.te2, "clip_g", found);
    const PromptChunks p1 = chunks_for(m.te1, prompt, o.syntax, &emb1);
    PromptChunks p2 = chunks_for(m.te2, prompt, o.syntax, &emb2);
    NUANCE_ASSERT(p1.ids.size() == p2.ids.size(), "SDXL tokenizers chunked the prompt differently");
    EncodedChunks e1 = encode_chunks(m.te1, p1, 0, true, false, &emb1);
    EncodedChunks e2 = encode_chunks(m.te2, p2, 0, true, true, &emb2);
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
