#include "text/t5_prompt.h"

#include "core/error.h"
#include "text/prompt_parser.h"

namespace nuance {

bool T5WeightedIds::all_one() const {
    for (float w : weights)
        if (w != 1.0f) return false;
    return true;
}

T5WeightedIds tokenize_t5_weighted(const T5Tokenizer& tok, const std::string& prompt, int max_length) {
    NUANCE_CHECK(max_length >= 1 && max_length <= (1 << 20), "T5 tokenizer: max_length ", max_length,
                 " is outside 1..", 1 << 20);
    const int eos = tok.eos_id(), pad = tok.pad_id();
    T5WeightedIds out;
    for (const auto& [text, weight] : parse_prompt_attention(prompt)) {
        if (weight == -1.0f && text == "BREAK") continue;  // A1111's SD3T5 skips it too
        std::vector<int> ids = tok.encode(text, /*legacy=*/true);
        if (!ids.empty() && ids.back() == eos) ids.pop_back();  // one </s> at the very end only
        for (int id : ids) {
            out.ids.push_back(id);
            out.weights.push_back(weight);
        }
        if (out.ids.size() >= (size_t)max_length) break;  // the rest would be truncated anyway
    }
    if (out.ids.size() + 1 > (size_t)max_length) {  // truncation=True: room for </s>
        out.ids.resize((size_t)max_length - 1);
        out.weights.resize((size_t)max_length - 1);
    }
    out.ids.push_back(eos);
    out.weights.push_back(1.0f);
    out.ids.resize((size_t)max_length, pad);
    out.weights.resize((size_t)max_length, 1.0f);
    return out;
}

void apply_t5_token_weights(float* z, const float* empty, const std::vector<float>& weights, int64_t length,
                            int64_t width) {
    NUANCE_CHECK((int64_t)weights.size() == length && length >= 0 && width >= 0, "T5 token weights: ",
                 weights.size(), " weights for ", length, " tokens");
    for (int64_t j = 0; j < length; ++j) {
        const float w = weights[(size_t)j];
        if (w == 1.0f) continue;
        float* zj = z + j * width;
        const float* ej = empty + j * width;
        // ComfyUI's (z - e) * w + e, rounded as torch does it (this file builds with -ffp-contract=off)
        for (int64_t d = 0; d < width; ++d) zj[d] = (zj[d] - ej[d]) * w + ej[d];
    }
}

}  // namespace nuance
