#include "models/dit/dit_load.h"

#include <algorithm>
#include <cmath>

#include "io/json_file.h"
#include "io/weights.h"

namespace nuance {

namespace {

using TensorMap = std::map<std::string, Tensor>;

bool has(const TensorMap& t, const std::string& k) { return t.count(k) > 0; }

// The first `n` names of `t`, for messages about a layout nobody recognised.
std::string first_keys(const TensorMap& t, size_t n) {
    std::string s;
    size_t i = 0;
    for (const auto& [k, v] : t) {
        if (i++ == n) return s + ", ... (" + std::to_string(t.size()) + " tensors)";
        s += (s.empty() ? "" : ", ") + k;
    }
    return s.empty() ? "(no tensors)" : s;
}

int64_t count_original_blocks(const TensorMap& t) {
    int64_t n = 0;
    while (has(t, "blocks." + std::to_string(n) + ".adaLN_modulation.1.weight")) ++n;
    return n;
}

const std::vector<std::string> kWeightNames{"diffusion_pytorch_model.safetensors",
                                            "diffusion_pytorch_model.safetensors.index.json",
                                            "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.bin"};

}  // namespace

const char* dit_layout_name(DiTLayout l) { return l == DiTLayout::Original ? "original" : "diffusers"; }

bool is_original_dit(const TensorMap& t) {
    return has(t, "x_embedder.proj.weight") && has(t, "blocks.0.adaLN_modulation.1.weight");
}

bool is_diffusers_dit(const TensorMap& t) {
    return has(t, "pos_embed.proj.weight") &&
           has(t, "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight");
}

TensorMap dit_original_to_diffusers(const TensorMap& t, const std::string& source, int64_t* sample_size,
                                    std::map<std::string, std::string>* origin) {
    auto need = [&](const std::string& k) -> const Tensor& {
        auto it = t.find(k);
        NUANCE_CHECK(it != t.end(), "DiT original checkpoint '", source, "' is missing tensor '", k, "'");
        return it->second;
    };
    TensorMap out;
    auto put = [&](const std::string& to, const Tensor& v, const std::string& from) {
        out[to] = v;
        if (origin) (*origin)[to] = from;
    };
    auto copy = [&](const std::string& from, const std::string& to) {
        put(to + ".weight", need(from + ".weight"), from + ".weight");
        put(to + ".bias", need(from + ".bias"), from + ".bias");
    };
    const int64_t depth = count_original_blocks(t);
    NUANCE_CHECK(depth >= 1, "DiT original checkpoint '", source, "' has no blocks.0.adaLN_modulation.1.weight");
    const Tensor& proj = need("x_embedder.proj.weight");
    NUANCE_CHECK(proj.dim() == 4 && proj.size(0) > 0 && proj.size(2) > 0, "DiT original checkpoint '", source,
                 "': 'x_embedder.proj.weight' must be [D, C, p, p], got ", proj.shape());
    const int64_t D = proj.size(0), p = proj.size(2);
    copy("x_embedder.proj", "pos_embed.proj");
    copy("final_layer.adaLN_modulation.1", "proj_out_1");
    copy("final_layer.linear", "proj_out_2");
    for (int64_t i = 0; i < depth; ++i) {
        const std::string o = "blocks." + std::to_string(i) + ".";
        const std::string d = "transformer_blocks." + std::to_string(i) + ".";
        // The one timestep/class embedder of the original serves every block (diffusers keeps a copy per block).
        copy("t_embedder.mlp.0", d + "norm1.emb.timestep_embedder.linear_1");
        copy("t_embedder.mlp.2", d + "norm1.emb.timestep_embedder.linear_2");
        put(d + "norm1.emb.class_embedder.embedding_table.weight", need("y_embedder.embedding_table.weight"),
            "y_embedder.embedding_table.weight");
        copy(o + "adaLN_modulation.1", d + "norm1.linear");
        // Fused qkv [3D, D] / [3D]: rows 0..D are q, then k, then v (timm Attention).
        const Tensor& qkv_w = need(o + "attn.qkv.weight");
        const Tensor& qkv_b = need(o + "attn.qkv.bias");
        NUANCE_CHECK(qkv_w.dim() == 2 && qkv_w.size(0) == 3 * D && qkv_b.dim() == 1 && qkv_b.size(0) == 3 * D,
                     "DiT original checkpoint '", source, "': '", o, "attn.qkv' must be [", 3 * D, ", ", D,
                     "] + [", 3 * D, "] for width ", D, ", got ", qkv_w.shape(), " + ", qkv_b.shape());
        const char* names[3] = {"to_q", "to_k", "to_v"};
        for (int64_t j = 0; j < 3; ++j) {
            const std::string rows = " rows " + std::to_string(j * D) + ".." + std::to_string((j + 1) * D);
            put(d + "attn1." + names[j] + ".weight", qkv_w.narrow(0, j * D, D), o + "attn.qkv.weight" + rows);
            put(d + "attn1." + names[j] + ".bias", qkv_b.narrow(0, j * D, D), o + "attn.qkv.bias" + rows);
        }
        copy(o + "attn.proj", d + "attn1.to_out.0");
        copy(o + "mlp.fc1", d + "ff.net.0.proj");
        copy(o + "mlp.fc2", d + "ff.net.2");
    }
    int64_t s = 0;
    if (auto it = t.find("pos_embed"); it != t.end()) {
        const Tensor& pe = it->second;
        NUANCE_CHECK(pe.dim() == 3 && pe.size(0) == 1 && pe.size(2) == D && pe.size(1) >= 1,
                     "DiT original checkpoint '", source, "': 'pos_embed' must be [1, T, ", D, "], got ", pe.shape());
        const int64_t g = (int64_t)std::llround(std::sqrt((double)pe.size(1)));
        NUANCE_CHECK(g * g == pe.size(1) && g <= 4096, "DiT original checkpoint '", source, "': 'pos_embed' has ",
                     pe.size(1), " tokens, not a square grid");
        s = g * p;
    }
    if (sample_size) *sample_size = s;
    // Every tensor must have been used: a file with parts this map does not know is not silently half-loaded.
    for (const auto& [k, v] : t) {
        if (k == "pos_embed" || k.rfind("t_embedder.", 0) == 0 || k.rfind("y_embedder.", 0) == 0 ||
            k.rfind("x_embedder.", 0) == 0 || k.rfind("final_layer.", 0) == 0)
            continue;
        if (k.rfind("blocks.", 0) == 0) {
            const size_t dot = k.find('.', 7);
            const std::string idx = k.substr(7, dot == std::string::npos ? std::string::npos : dot - 7);
            char* end = nullptr;
            const long long i = std::strtoll(idx.c_str(), &end, 10);
            if (!idx.empty() && end && *end == '\0' && i >= 0 && i < depth) continue;
        }
        NUANCE_CHECK(false, "DiT original checkpoint '", source, "': unexpected tensor '", k, "' (", depth,
                    " blocks found: blocks.0 .. blocks.", depth - 1, ")");
    }
    return out;
}

DiTConfig dit_config_for(const TensorMap& t, DiTLayout layout, int64_t heads, int64_t sample_size) {
    DiTConfig c = DiTConfig::detect(t, heads);
    c.sample_size = sample_size;
    if (layout == DiTLayout::Original) {
        c.freq_shift = 0.0f;      // models.py TimestepEmbedder: freqs = exp(-ln(10000) * arange(half) / half)
        c.mlp_norm_eps = 1e-6f;   // models.py DiTBlock: norm2 = LayerNorm(eps=1e-6)
    }
    return c;
}

LoadedDiT load_dit_tensors(const TensorMap& tensors, const std::string& source, const DiTLoadOptions& opt,
                           const nlohmann::json* config_json) {
    LoadedDiT r;
    int64_t sample_size = 0;
    TensorMap mapped;
    std::map<std::string, std::string> origin;
    const TensorMap* t = &tensors;
    if (is_original_dit(tensors)) {
        r.layout = DiTLayout::Original;
        mapped = dit_original_to_diffusers(tensors, source, &sample_size, &origin);
        t = &mapped;
    } else if (auto pe = tensors.find("pos_embed.pos_embed"); pe != tensors.end()) {
        // Some diffusers exports keep PatchEmbed's sin-cos buffer: it states the sample size, and is not a weight.
        const Tensor& b = pe->second;
        const auto proj = tensors.find("pos_embed.proj.weight");
        const int64_t p = proj != tensors.end() && proj->second.dim() == 4 ? proj->second.size(2) : 0;
        const int64_t g = b.dim() == 3 ? (int64_t)std::llround(std::sqrt((double)b.size(1))) : -1;
        NUANCE_CHECK(p > 0 && b.dim() == 3 && b.size(0) == 1 && g >= 1 && g <= 4096 && g * g == b.size(1),
                     "DiT checkpoint '", source, "': 'pos_embed.pos_embed' must be [1, T, D] with T a square, got ",
                     b.shape());
        sample_size = g * p;
        mapped = tensors;
        mapped.erase("pos_embed.pos_embed");
        t = &mapped;
    }
    if (r.layout == DiTLayout::Diffusers) {
        NUANCE_CHECK_CODE(is_diffusers_dit(*t), InvalidArgument, "'", source,
                          "' is not a DiT checkpoint: expected the original layout (x_embedder.proj.weight, "
                          "blocks.0.adaLN_modulation.1.weight, ...) or diffusers' DiTTransformer2DModel "
                          "(pos_embed.proj.weight, transformer_blocks.0.norm1.emb.class_embedder.embedding_table."
                          "weight, ...); its tensors: ",
                          first_keys(*t, 8));
    }
    // Heads: the caller's, else config.json's (checked against the width by apply_diffusers_config), else the rule.
    int64_t heads = opt.heads;
    if (heads <= 0 && config_json && config_json->is_object() && config_json->contains("num_attention_heads") &&
        (*config_json)["num_attention_heads"].is_number_integer())
        heads = std::max<int64_t>(0, (*config_json)["num_attention_heads"].get<int64_t>());
    DiTConfig cfg = dit_config_for(*t, r.layout, heads, sample_size);
    if (config_json) cfg.apply_diffusers_config(*config_json);
    if (opt.heads > 0) cfg.heads = opt.heads;
    r.model = std::make_unique<DiTTransformer2DModel>(cfg);
    // Shapes are checked here first so that a message names the tensor as the file spells it.
    for_each_param(*r.model, [&](const std::string& name, Param& p) {
        auto it = t->find(name);
        if (it == t->end() || it->second.shape() == p.shape) return;
        auto o = origin.find(name);
        NUANCE_CHECK(false, "DiT checkpoint '", source, "': tensor '", o == origin.end() ? name : o->second,
                     "': expected ", p.shape, " for the detected config (width ", cfg.hidden, ", MLP ", cfg.mlp_hidden,
                     ", ", cfg.depth, " blocks), got ", it->second.shape());
    });
    LoadOptions lo = opt.load;
    lo.source = source;
    const std::vector<std::string> unused = load_module(*r.model, *t, lo);
    NUANCE_CHECK(unused.empty(), "DiT checkpoint '", source, "': ", unused.size(), " tensors the model does not use, ",
                 "first '", unused.front(), "' (", cfg.depth, " blocks detected)");
    r.weights_path = source;
    return r;
}

LoadedDiT load_dit(const std::string& path, const DiTLoadOptions& opt) {
    if (is_directory(path)) {
        const std::string dir = is_directory(path + "/transformer") ? path + "/transformer" : path;
        const std::string w = find_first_file(dir, kWeightNames);
        NUANCE_CHECK_CODE(!w.empty(), NotFound, "DiT folder '", path, "': no diffusion_pytorch_model.safetensors (or ",
                          ".bin) in ", dir);
        const std::optional<nlohmann::json> cfg = read_optional_json_object(dir + "/config.json");
        if (cfg && cfg->contains("_class_name") && (*cfg)["_class_name"].is_string())
            NUANCE_CHECK_CODE((*cfg)["_class_name"] == "DiTTransformer2DModel" ||
                                  (*cfg)["_class_name"] == "Transformer2DModel",
                              Unsupported, "DiT folder '", path, "': ", dir, "/config.json is a ",
                              (*cfg)["_class_name"].get<std::string>(), ", not a DiTTransformer2DModel");
        const WeightFile wf = load_weights(w);
        return load_dit_tensors(wf.tensors, w, opt, cfg ? &*cfg : nullptr);
    }
    const WeightFile wf = load_weights(path);
    return load_dit_tensors(wf.tensors, path, opt, nullptr);
}

}  // namespace nuance
