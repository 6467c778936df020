#include "models/dit/dit_config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace nuance {

namespace {

const Tensor& need(const std::map<std::string, Tensor>& t, const std::string& k) {
    auto it = t.find(k);
    NUANCE_CHECK(it != t.end(), "DiT checkpoint is missing tensor '", k, "'");
    return it->second;
}

// `name` must have `dims` dims, each > 0.
const Tensor& need(const std::map<std::string, Tensor>& t, const std::string& k, int64_t dims) {
    const Tensor& x = need(t, k);
    NUANCE_CHECK(x.dim() == dims, "DiT tensor '", k, "': expected ", dims, " dims, got ", x.shape());
    for (int64_t d = 0; d < dims; ++d)
        NUANCE_CHECK(x.size(d) > 0, "DiT tensor '", k, "': empty dimension in ", x.shape());
    return x;
}

int64_t count_blocks(const std::map<std::string, Tensor>& t) {
    int64_t n = 0;
    while (t.count("transformer_blocks." + std::to_string(n) + ".norm1.linear.weight")) ++n;
    return n;
}

}  // namespace

int64_t DiTConfig::preset_heads(int64_t hidden) {
    // Peebles & Xie 2022, Table 1: S 384/6, B 768/12, L 1024/16, XL 1152/16.
    switch (hidden) {
        case 384: return 6;
        case 768: return 12;
        case 1024: return 16;
        case 1152: return 16;
        default: return hidden > 0 && hidden % 64 == 0 ? hidden / 64 : 0;
    }
}

DiTConfig DiTConfig::detect(const std::map<std::string, Tensor>& t, int64_t heads) {
    DiTConfig c;
    const Tensor& proj = need(t, "pos_embed.proj.weight", 4);  // [D, C, p, p]
    c.hidden = proj.size(0);
    c.in_channels = proj.size(1);
    c.patch_size = proj.size(2);
    NUANCE_CHECK(proj.size(3) == c.patch_size, "DiT tensor 'pos_embed.proj.weight': patches must be square, got ",
                 proj.shape());
    NUANCE_CHECK(c.patch_size <= 64 && c.in_channels <= 4096 && c.hidden <= 65536,
                 "DiT tensor 'pos_embed.proj.weight': implausible shape ", proj.shape());
    c.depth = count_blocks(t);
    NUANCE_CHECK(c.depth >= 1, "DiT checkpoint has no transformer_blocks (no 'transformer_blocks.0.norm1.linear.weight')");
    NUANCE_CHECK(c.depth <= 1024, "DiT checkpoint: ", c.depth, " transformer blocks is implausible");

    const std::string b0 = "transformer_blocks.0.";
    const Tensor& table = need(t, b0 + "norm1.emb.class_embedder.embedding_table.weight", 2);
    NUANCE_CHECK(table.size(1) == c.hidden && table.size(0) >= 2, "DiT tensor '", b0,
                 "norm1.emb.class_embedder.embedding_table.weight': expected [classes + 1, ", c.hidden, "], got ",
                 table.shape());
    c.num_classes = table.size(0) - 1;
    const Tensor& l1 = need(t, b0 + "norm1.emb.timestep_embedder.linear_1.weight", 2);
    NUANCE_CHECK(l1.size(0) == c.hidden && l1.size(1) % 2 == 0, "DiT tensor '", b0,
                 "norm1.emb.timestep_embedder.linear_1.weight': expected [", c.hidden, ", even], got ", l1.shape());
    c.freq_dim = l1.size(1);
    c.mlp_hidden = need(t, b0 + "ff.net.0.proj.weight", 2).size(0);
    const Tensor& out = need(t, "proj_out_2.weight", 2);
    const int64_t pp = c.patch_size * c.patch_size;
    NUANCE_CHECK(out.size(0) % pp == 0 && out.size(1) == c.hidden, "DiT tensor 'proj_out_2.weight': expected [",
                 pp, " * out_channels, ", c.hidden, "], got ", out.shape());
    c.out_channels = out.size(0) / pp;

    c.heads = heads > 0 ? heads : preset_heads(c.hidden);
    NUANCE_CHECK(c.heads > 0, "DiT checkpoint: width ", c.hidden,
                 " is no DiT preset and 64 does not divide it, so the number of attention heads is unknown; load it "
                 "from a diffusers folder whose transformer/config.json states num_attention_heads");
    NUANCE_CHECK(c.hidden % c.heads == 0, "DiT: ", c.heads, " attention heads do not divide the width ", c.hidden);
    return c;
}

void DiTConfig::apply_diffusers_config(const nlohmann::json& j) {
    if (!j.is_object()) return;
    auto num = [&](const char* key, int64_t fallback) -> int64_t {
        if (!j.contains(key) || j[key].is_null()) return fallback;
        NUANCE_CHECK(j[key].is_number_integer(), "DiT config.json: '", key, "' must be an integer, got ",
                     j[key].dump());
        return j[key].get<int64_t>();
    };
    auto expect = [&](const char* key, int64_t want) {
        const int64_t got = num(key, want);
        NUANCE_CHECK(got == want, "DiT config.json: '", key, "' is ", got, " but the weights' shapes give ", want);
    };
    const int64_t h = num("num_attention_heads", 0);
    const int64_t d = num("attention_head_dim", 0);
    if (h > 0 || d > 0) {
        NUANCE_CHECK(h > 0 && d > 0 && h <= hidden && d <= hidden && h * d == hidden,
                     "DiT config.json: num_attention_heads ", h, " * attention_head_dim ", d,
                     " does not give the weights' width ", hidden);
        heads = h;
    }
    expect("in_channels", in_channels);
    expect("out_channels", out_channels);
    expect("patch_size", patch_size);
    expect("num_layers", depth);
    expect("num_embeds_ada_norm", num_classes);
    const int64_t s = num("sample_size", 0);
    NUANCE_CHECK(s >= 0 && s <= 4096 && (s == 0 || s % patch_size == 0), "DiT config.json: 'sample_size' ", s,
                 " must be a multiple of the patch size ", patch_size, " (at most 4096)");
    if (s > 0) {
        NUANCE_CHECK(sample_size == 0 || sample_size == s, "DiT config.json: 'sample_size' ", s,
                     " but the file's position embedding is for ", sample_size);
        sample_size = s;
    }
    if (j.contains("norm_type") && j["norm_type"].is_string())
        NUANCE_CHECK(j["norm_type"] == "ada_norm_zero", "DiT config.json: norm_type ", j["norm_type"].dump(),
                     " is not supported (only \"ada_norm_zero\")");
    if (j.contains("norm_eps") && j["norm_eps"].is_number()) {
        const double e = j["norm_eps"].get<double>();
        NUANCE_CHECK(e > 0 && e < 1, "DiT config.json: 'norm_eps' ", e, " must be in (0, 1)");
        mlp_norm_eps = (float)e;
    }
}

}  // namespace nuance
