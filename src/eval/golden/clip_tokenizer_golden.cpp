// Golden check of the CLIP tokenizer (exact ids, the `clip_tokenizer` case).
#include "eval/golden/clip_tokenizer_golden.h"

#include <fstream>

#include "eval/golden_case.h"
#include "text/clip_tokenizer.h"

namespace nuance {

std::vector<CompareLine> check_golden_clip_tokenizer(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    std::ifstream f(gc.path("prompts.json"));
    NUANCE_CHECK_CODE(f.good(), NotFound, "golden case '", gc.name(), "' has no prompts.json");
    const nlohmann::json prompts = nlohmann::json::parse(f);
    // The case's own vocabulary (the real CLIP vocab; a held-out case may ship another).
    const ClipTokenizer tok = ClipTokenizer::from_files(gc.path("vocab.json"), gc.path("merges.txt"));
    const int64_t L = gc.has("ids_sd1") ? gc.tensor("ids_sd1").size(1) : 77;
    struct Conv { const char* tensor; int pad; bool pad_is_special; ClipNormalization norm; };
    std::vector<CompareLine> out;
    for (const Conv conv : {Conv{"ids_sd1", ClipTokenizer::kEosId, true, ClipNormalization::Ftfy}, Conv{"ids_sd2", 0, true, ClipNormalization::Ftfy},
                            Conv{"ids_sd1_noftfy", ClipTokenizer::kEosId, true, ClipNormalization::Basic},
                            Conv{"ids_sd2_noftfy", 0, true, ClipNormalization::Basic},
                            Conv{"ids_openai_padded", 0, false, ClipNormalization::Ftfy}}) {
        if (!gc.has(conv.tensor)) continue;
        std::vector<int64_t> all;
        std::string first_bad;
        const std::vector<int64_t> ref = gc.tensor(conv.tensor).to_ids();
        for (size_t i = 0; i < prompts.size(); ++i) {
            const std::vector<int64_t> ids = tok.encode_padded(prompts[i]["text"].get<std::string>(), conv.pad, (int)L, conv.pad_is_special, conv.norm);
            if (first_bad.empty() && !std::equal(ids.begin(), ids.end(), ref.begin() + (int64_t)i * L))
                first_bad = str("prompt ", i, " differs");
            all.insert(all.end(), ids.begin(), ids.end());
        }
        out.push_back(compare_ids(gc.name() + "/" + conv.tensor, gc.tensor(conv.tensor).to_ids(), all, first_bad));
    }
    if (gc.has("num_tokens")) {
        std::vector<int64_t> n;
        for (const auto& p : prompts) n.push_back((int64_t)tok.encode(p["text"].get<std::string>()).size());
        out.push_back(compare_ids(gc.name() + "/num_tokens", gc.tensor("num_tokens").to_ids(), n, "token counts differ"));
    }
    if (gc.has("attention_mask")) {
        std::vector<int64_t> mask;
        for (const auto& p : prompts) {
            const int64_t n = std::min<int64_t>((int64_t)tok.encode(p["text"].get<std::string>()).size(), L - 2) + 2;
            for (int64_t j = 0; j < L; ++j) mask.push_back(j < n ? 1 : 0);
        }
        out.push_back(compare_ids(gc.name() + "/attention_mask", gc.tensor("attention_mask").to_ids(), mask, "mask differs"));
    }
    return out;
}

}  // namespace nuance
