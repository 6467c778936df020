#include "models/dit/dit_family.h"

#include <cmath>

#include "models/dit/dit_model.h"
#include "models/model_defaults.h"

namespace nuance {

namespace {

#define DIT_CLASS_TABLE "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"
constexpr const char* kClassTable = DIT_CLASS_TABLE;
constexpr const char* kFolderClassTable = "transformer/" DIT_CLASS_TABLE;
#undef DIT_CLASS_TABLE

int detect_dit_file(const TensorIndex& t, const std::string& prefix) {
    if (t.has(prefix + "x_embedder.proj.weight") && t.has(prefix + "blocks.0.adaLN_modulation.1.weight")) {
        if (t.has(prefix + "y_embedder.embedding_table.weight")) return 50;
        if (t.has(prefix + "t_embedder.mlp.0.weight") && !t.has_prefix(prefix + "y_embedder.")) return 1;
        return 0;
    }
    if (t.has(prefix + "pos_embed.proj.weight") && t.has(prefix + kClassTable)) return 50;
    return 0;
}

// DiT-XL/2's latent grid from a [1, T, D] position-embedding buffer and the patch size: sqrt(T) * p, 0 if unknown.
int64_t sample_size_of(const TensorInfo* pos, const TensorInfo* proj) {
    if (!pos || !proj || pos->shape.size() != 3 || proj->shape.size() != 4) return 0;
    const int64_t g = (int64_t)std::llround(std::sqrt((double)pos->shape[1]));
    return g >= 1 && g <= 4096 && g * g == pos->shape[1] ? g * proj->shape[2] : 0;
}

}  // namespace

int detect_dit(const TensorIndex& ix) {
    if (!ix.folder) return detect_dit_file(ix, "");
    const bool vae = ix.components.count("vae") > 0;
    if (ix.config_string("model_index", "_class_name") == "DiTPipeline") return vae ? 100 : 50;
    if (ix.components.count("transformer") && detect_dit_file(ix, "transformer/") > 0) return vae ? 100 : 50;
    return 0;
}

GenerationDefaults probe_dit_defaults(const ModelSource& src) {
    GenerationDefaults d = dit_model_spec().defaults;
    const TensorIndex& t = src.index;
    int64_t s = 0;
    if (!src.folder()) {
        s = t.has("pos_embed") ? sample_size_of(t.find("pos_embed"), t.find("x_embedder.proj.weight"))
                               : sample_size_of(t.find("pos_embed.pos_embed"), t.find("pos_embed.proj.weight"));
    } else if (auto c = t.configs.find("transformer"); c != t.configs.end()) {
        if (auto ss = c->second.find("sample_size"); ss != c->second.end() && ss->is_number_integer())
            s = ss->get<int64_t>();
    }
    if (s >= 1 && s <= 2048) d.width = d.height = (int)(s * 8);  // the SD VAE's downscale
    // Class names only for ImageNet's 1000 classes (+ the null row); other models get a class number.
    const TensorInfo* table = t.find("y_embedder.embedding_table.weight");
    if (!table) table = t.find(src.folder() ? kFolderClassTable : kClassTable);
    if (table && !table->shape.empty() && table->shape[0] != 1001)
        d.prompt.assign(1, '0');  // (operator= of a 1-char literal trips GCC 12 -Wrestrict)
    if (src.folder()) apply_folder_defaults(src.path, d);
    return d;
}

ModelSpec dit_model_spec() {
    ModelSpec s;
    s.name = "dit";
    s.description = "DiT (Peebles & Xie 2022: class-conditional ImageNet transformer, learned sigma, SD VAE; "
                    "--class-label N or a class name as the prompt)";
    s.detect = detect_dit;
    s.load = load_dit_model;
    // The diffusers DiT docs' example (DPMSolverMultistepScheduler, 25 steps, guidance 4.0): what users run and
    // see. DiTPipeline's own defaults (DDIM 50 steps) and the paper's 250 DDPM steps are a --sampler/--steps away.
    s.defaults.width = s.defaults.height = 256;
    s.defaults.steps = 25;
    s.defaults.cfg_scale = 4.0f;
    s.defaults.sampler = "dpmpp_2m";
    s.defaults.prompt = "golden retriever";
    s.probe_defaults = probe_dit_defaults;
    return s;
}

}  // namespace nuance
