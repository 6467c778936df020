#include "models/clip/clip_embeddings.h"

#include <algorithm>

#include "core/error.h"

namespace nuance {

ClipEmbeddings clip_embeddings_for(const std::vector<std::shared_ptr<const TextualInversion>>& found,
                                   const ClipTokenizer& tok, const ClipTextModel& model, const std::string& key,
                                   bool fallback_single, const std::string& model_name) {
    ClipEmbeddings e;
    for (const auto& ti : found) {
        const std::string k = fallback_single && !ti->vectors.count(key) && ti->vectors.count("") ? "" : key;
        const Tensor& v = ti->for_encoder(k, model.config().hidden, model_name);
        e.names.push_back({tok.encode(ti->name), ti->count, ti->name});
        e.vectors[ti->name] = v.f32().contiguous();
    }
    return e;
}

Tensor clip_token_embeds(const ClipTextModel& model, const std::vector<int64_t>& ids,
                         const std::vector<PromptFix>& fixes, const ClipEmbeddings& emb) {
    if (fixes.empty()) return Tensor();
    const int64_t L = (int64_t)ids.size();
    Tensor embeds = model.embed_tokens(Tensor::from_ids(ids, {1, L})).clone();  // [1, L, D]
    const int64_t D = embeds.size(2);
    float* dst = embeds.data<float>();
    for (const PromptFix& f : fixes) {
        const auto it = emb.vectors.find(f.name);
        NUANCE_CHECK_CODE(it != emb.vectors.end() && f.offset >= 1 && f.offset + f.vectors <= L - 1 &&
                              it->second.size(0) == f.vectors && it->second.size(1) == D,
                          Internal, "embedding '", f.name, "' does not fit its place in the window");
        std::copy(it->second.data<float>(), it->second.data<float>() + f.vectors * D, dst + f.offset * D);
    }
    return embeds;
}

}  // namespace nuance
