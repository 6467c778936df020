#include "eval/golden/t5_golden.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "eval/golden_case.h"
#include "io/json_file.h"
#include "io/weights.h"
#include "ops/elementwise.h"
#include "models/t5/t5_loader.h"
#include "text/t5_tokenizer.h"

namespace nuance {

std::vector<CompareLine> check_golden_t5_tokenizer(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    const nlohmann::json prompts = read_json_file(gc.path("prompts.json"));
    NUANCE_CHECK(prompts.is_array(), "golden case '", gc.name(), "': prompts.json is not an array");

    // The case's own SentencePiece model (files: {"*.model": ...}); the built-in T5 vocabulary otherwise.
    std::string model_file;
    if (gc.meta().contains("files") && gc.meta()["files"].is_object())
        for (auto it = gc.meta()["files"].begin(); it != gc.meta()["files"].end(); ++it)
            if (it.key().size() > 6 && it.key().compare(it.key().size() - 6, 6, ".model") == 0 &&
                file_exists(gc.path(it.key())))
                model_file = gc.path(it.key());
    std::optional<T5Tokenizer> own;
    if (!model_file.empty()) own.emplace(T5Tokenizer::from_file(model_file));
    const T5Tokenizer& tok = own ? *own : T5Tokenizer::builtin();

    std::vector<CompareLine> out;
    for (const char* tensor : {"ids_legacy", "ids_nonlegacy", "ids_256", "ids_512", "ids_256_nonlegacy",
                               "ids_512_nonlegacy"}) {
        if (!gc.has(tensor)) continue;
        const Tensor ref_t = gc.tensor(tensor);
        NUANCE_CHECK(ref_t.dim() == 2 && ref_t.size(0) == (int64_t)prompts.size(), "golden case '", gc.name(),
                     "': ", tensor, " has shape ", ref_t.shape(), " for ", prompts.size(), " prompts");
        const int L = (int)ref_t.size(1);
        const bool legacy = std::string(tensor).find("nonlegacy") == std::string::npos;
        const std::vector<int64_t> ref = ref_t.to_ids();
        std::vector<int64_t> all;
        std::string first_bad;
        for (size_t i = 0; i < prompts.size(); ++i) {
            const std::vector<int64_t> ids = tok.encode_padded(prompts[i]["text"].get<std::string>(), L, legacy);
            if (first_bad.empty() && !std::equal(ids.begin(), ids.end(), ref.begin() + (int64_t)i * L))
                first_bad = str("prompt ", i, " differs");
            all.insert(all.end(), ids.begin(), ids.end());
        }
        out.push_back(compare_ids(gc.name() + "/" + tensor, ref, all, first_bad));
    }
    if (gc.has("num_tokens")) {
        std::vector<int64_t> n;
        for (const auto& p : prompts) n.push_back((int64_t)tok.encode(p["text"].get<std::string>()).size());
        out.push_back(compare_ids(gc.name() + "/num_tokens", gc.tensor("num_tokens").to_ids(), n, "token counts differ"));
    }
    return out;
}

std::vector<CompareLine> check_golden_t5_encoder(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    std::vector<CompareLine> lines;
    for (const auto& [name, wpath] : gc.models()) {
        const WeightFile w = load_weights(wpath);
        const nlohmann::json cfg = gc.model_config(name);
        const Precision p = gc.precision();
        const auto model = load_t5_encoder(w.tensors, "", wpath, p, cfg.empty() ? nullptr : &cfg);
        const Tensor ids = gc.tensor("input_ids");
        const T5EncoderOutput plain = model->forward(ids, Tensor(), /*all_hidden=*/true);
        const T5EncoderOutput masked = model->forward(ids, gc.tensor("attention_mask"));
        // case.json tolerance.<model>.suggested_atol.<tensor>
        auto atol = [&](const std::string& tensor) {
            const nlohmann::json& c = gc.meta();
            if (c.contains("tolerance") && c["tolerance"].contains(name) &&
                c["tolerance"][name].contains("suggested_atol") &&
                c["tolerance"][name]["suggested_atol"].contains(tensor) &&
                c["tolerance"][name]["suggested_atol"][tensor].is_number())
                return c["tolerance"][name]["suggested_atol"][tensor].get<double>();
            return gc.atol(tensor, 1e-4);
        };
        if (gc.has("last_hidden_state"))
            lines.push_back(gc.compare("last_hidden_state", plain.last_hidden_state, atol("last_hidden_state")));
        if (gc.has("last_hidden_state_masked"))
            lines.push_back(gc.compare("last_hidden_state_masked", masked.last_hidden_state,
                                       atol("last_hidden_state_masked")));
        if (gc.has("hidden_states")) {
            const Tensor ref = gc.tensor("hidden_states");
            const double atol_h = atol("hidden_states");
            if (ref.dim() < 1 || ref.size(0) != (int64_t)plain.hidden_states.size()) {
                lines.push_back(fail_line(gc.name() + "/hidden_states", str("reference has shape ", ref.shape(),
                                                                            " for ", plain.hidden_states.size(),
                                                                            " hidden states")));
                continue;
            }
            for (int64_t i = 0; i < ref.size(0); ++i) {
                const Tensor got = plain.hidden_states[(size_t)i], r = ref[i];
                CompareLine l;
                l.name = gc.name() + "/hidden_states." + std::to_string(i);
                l.atol = atol_h;
                if (got.shape() != r.shape()) {
                    l = fail_line(l.name, str("shape ", got.shape(), " vs reference ", r.shape()));
                } else {
                    l.max_abs = max_abs_diff(got, r);
                    l.pass = std::isfinite(l.max_abs) && l.max_abs <= atol_h;
                }
                lines.push_back(l);
            }
        }
    }
    return lines;
}

}  // namespace nuance
