#include "models/random_families.h"

#include <algorithm>

#include "io/safetensors.h"
#include "models/clip/clip_text.h"
#include "models/convert/original_parts.h"
#include "models/dit/dit_config.h"
#include "models/flux/flux_config.h"
#include "models/mmdit/mmdit_presets.h"
#include "models/t5/t5_encoder.h"
#include "models/vae/autoencoder_kl.h"

namespace nuance {

namespace {

using List = std::vector<RandomTensor>;

void add(List& l, const std::string& key, Shape shape) { l.push_back({key, std::move(shape), Tensor()}); }

// A Linear's weight [out, in] and bias [out].
void linear(List& l, const std::string& name, int64_t out, int64_t in, bool bias = true) {
    add(l, name + ".weight", {out, in});
    if (bias) add(l, name + ".bias", {out});
}

// Every parameter of a module tree, shapes only (nothing is allocated), under `prefix`.
template <class M>
void module_params(List& l, M&& m, const std::string& prefix) {
    for_each_param(m, [&](const std::string& name, Param& p) { add(l, prefix + name, p.shape); });
}

// ---- SD3 / SD3.5: Stability's original keys (the inverse of mmdit_original.cpp's rules) ----
void sd3_original(List& l, const MMDiTConfig& c) {
    const std::string P = "model.diffusion_model.";
    const int64_t D = c.hidden, p = c.patch_size;
    add(l, P + "pos_embed", {1, c.pos_embed_max_size * c.pos_embed_max_size, D});
    add(l, P + "x_embedder.proj.weight", {D, c.in_channels, p, p});
    add(l, P + "x_embedder.proj.bias", {D});
    linear(l, P + "t_embedder.mlp.0", D, c.time_freq_dim);
    linear(l, P + "t_embedder.mlp.2", D, D);
    linear(l, P + "y_embedder.mlp.0", D, c.pooled_projection_dim);
    linear(l, P + "y_embedder.mlp.2", D, D);
    linear(l, P + "context_embedder", D, c.joint_attention_dim);
    for (int64_t b = 0; b < c.depth; ++b) {
        const std::string B = P + "joint_blocks." + std::to_string(b) + ".";
        const bool last = b == c.depth - 1, dual = c.dual(b);
        linear(l, B + "x_block.attn.qkv", 3 * D, D);
        linear(l, B + "x_block.attn.proj", D, D);
        if (c.qk_norm)
            for (const char* n : {"x_block.attn.ln_q", "x_block.attn.ln_k"}) add(l, B + n + ".weight", {c.head_dim});
        if (dual) {
            linear(l, B + "x_block.attn2.qkv", 3 * D, D);
            linear(l, B + "x_block.attn2.proj", D, D);
            if (c.qk_norm)
                for (const char* n : {"x_block.attn2.ln_q", "x_block.attn2.ln_k"})
                    add(l, B + n + ".weight", {c.head_dim});
        }
        linear(l, B + "x_block.adaLN_modulation.1", (dual ? 9 : 6) * D, D);
        linear(l, B + "x_block.mlp.fc1", 4 * D, D);
        linear(l, B + "x_block.mlp.fc2", D, 4 * D);
        linear(l, B + "context_block.attn.qkv", 3 * D, D);
        if (c.qk_norm)
            for (const char* n : {"context_block.attn.ln_q", "context_block.attn.ln_k"})
                add(l, B + n + ".weight", {c.head_dim});
        linear(l, B + "context_block.adaLN_modulation.1", (last ? 2 : 6) * D, D);
        if (!last) {
            linear(l, B + "context_block.attn.proj", D, D);
            linear(l, B + "context_block.mlp.fc1", 4 * D, D);
            linear(l, B + "context_block.mlp.fc2", D, 4 * D);
        }
    }
    linear(l, P + "final_layer.linear", p * p * c.out_channels, D);
    linear(l, P + "final_layer.adaLN_modulation.1", 2 * D, D);
}

// ---- Flux.1: BFL keys (flux_original.cpp's renames) ----
void flux_bfl(List& l, const FluxConfig& c) {
    const int64_t D = c.hidden, M = c.mlp_hidden, d = c.head_dim;
    linear(l, "img_in", D, c.in_channels);
    linear(l, "txt_in", D, c.joint_attention_dim);
    linear(l, "time_in.in_layer", D, c.timestep_channels);
    linear(l, "time_in.out_layer", D, D);
    linear(l, "vector_in.in_layer", D, c.pooled_projection_dim);
    linear(l, "vector_in.out_layer", D, D);
    if (c.guidance_embeds) {
        linear(l, "guidance_in.in_layer", D, c.timestep_channels);
        linear(l, "guidance_in.out_layer", D, D);
    }
    for (int64_t i = 0; i < c.num_double; ++i) {
        const std::string B = "double_blocks." + std::to_string(i) + ".";
        for (const char* s : {"img", "txt"}) {
            const std::string S = B + s;
            linear(l, S + "_mod.lin", 6 * D, D);
            linear(l, S + "_attn.qkv", 3 * D, D);
            add(l, S + "_attn.norm.query_norm.scale", {d});
            add(l, S + "_attn.norm.key_norm.scale", {d});
            linear(l, S + "_attn.proj", D, D);
            linear(l, S + "_mlp.0", M, D);
            linear(l, S + "_mlp.2", D, M);
        }
    }
    for (int64_t i = 0; i < c.num_single; ++i) {
        const std::string B = "single_blocks." + std::to_string(i) + ".";
        linear(l, B + "linear1", 3 * D + M, D);
        linear(l, B + "linear2", D, D + M);
        add(l, B + "norm.query_norm.scale", {d});
        add(l, B + "norm.key_norm.scale", {d});
        linear(l, B + "modulation.lin", 3 * D, D);
    }
    linear(l, "final_layer.linear", c.out_channels, D);
    linear(l, "final_layer.adaLN_modulation.1", 2 * D, D);
}

// ---- DiT: the original models.py state dict (timm names) ----
void dit_original(List& l, const DiTConfig& c) {
    const int64_t D = c.hidden, p = c.patch_size, g = c.sample_size / p;
    add(l, "pos_embed", {1, g * g, D});
    add(l, "x_embedder.proj.weight", {D, c.in_channels, p, p});
    add(l, "x_embedder.proj.bias", {D});
    linear(l, "t_embedder.mlp.0", D, c.freq_dim);
    linear(l, "t_embedder.mlp.2", D, D);
    add(l, "y_embedder.embedding_table.weight", {c.num_classes + 1, D});
    for (int64_t i = 0; i < c.depth; ++i) {
        const std::string B = "blocks." + std::to_string(i) + ".";
        linear(l, B + "attn.qkv", 3 * D, D);
        linear(l, B + "attn.proj", D, D);
        linear(l, B + "mlp.fc1", c.mlp_hidden, D);
        linear(l, B + "mlp.fc2", D, c.mlp_hidden);
        linear(l, B + "adaLN_modulation.1", 6 * D, D);
    }
    linear(l, "final_layer.linear", p * p * c.out_channels, D);
    linear(l, "final_layer.adaLN_modulation.1", 2 * D, D);
}

ClipTextConfig clip_cfg(int64_t hidden, int64_t layers, int64_t projection) {
    ClipTextConfig c;
    c.hidden = hidden;
    c.intermediate = hidden * 4;
    c.layers = layers;
    c.heads = ClipTextConfig::default_heads(hidden);
    c.act = ClipTextConfig::default_act(hidden);
    c.projection_dim = projection;
    return c;
}

int64_t depth_or(const RandomFamilyOptions& o, int64_t real) { return o.depth > 0 ? std::min(o.depth, real) : real; }

// CLIP-L (SD3's CLIPTextModelWithProjection: 768, 12 layers, projection 768; tiny: width 8 for SD3, 24 for Flux).
ClipTextConfig clip_l_cfg(const RandomFamilyOptions& o, int64_t tiny_width) {
    return o.tiny ? clip_cfg(tiny_width, 1, tiny_width) : clip_cfg(768, depth_or(o, 12), 768);
}
ClipTextConfig clip_g_cfg(const RandomFamilyOptions& o) {
    return o.tiny ? clip_cfg(16, 1, 16) : clip_cfg(1280, depth_or(o, 32), 1280);
}
T5Config t5_cfg(const RandomFamilyOptions& o) {
    T5Config c;  // T5 v1.1 XXL (the defaults); tiny: the family tests' d_model 32 with the real vocabulary
    if (o.tiny) {
        c.d_model = 32;
        c.d_kv = 8;
        c.heads = 4;
        c.d_ff = 64;
        c.layers = 1;
    } else {
        c.layers = depth_or(o, c.layers);
    }
    return c;
}

// A VAE built whole (<= 84 M parameters): in the original (CompVis) names as ae.safetensors and the SD3 all-in-one
// keep it, or in diffusers names (`original` false) as stabilityai/sd-vae-ft-ema, DiT's VAE, ships.
void vae_file(List& l, const RandomFamilyOptions& o, int64_t latent, const std::string& prefix, bool original = true) {
    AutoencoderKLConfig c;
    c.latent_channels = latent;
    if (latent == 16) c.use_quant_conv = c.use_post_quant_conv = false;  // SD3 / Flux ae
    if (o.tiny) {
        c.block_out_channels = {8, 8};
        c.layers_per_block = 1;
        c.norm_groups = 8;
    }
    AutoencoderKL vae(c);
    init_random(vae, o.seed + 17);
    std::vector<std::pair<std::string, Tensor>> sd = state_dict(vae);
    if (original) {
        const auto orig = original_format::vae_to_original({sd.begin(), sd.end()});
        sd.assign(orig.begin(), orig.end());
    }
    for (auto& [k, t] : sd) l.push_back({prefix + k, t.shape(), t});
}

}  // namespace

const std::vector<std::string>& random_family_names() {
    static const std::vector<std::string> n{"sd35-medium", "sd35-large", "flux-dev", "flux-schnell", "dit-xl-2-256",
                                            "dit-xl-2-512", "clip-l", "clip-g", "t5xxl", "vae16", "vae"};
    return n;
}

bool is_random_family(const std::string& name) {
    const auto& n = random_family_names();
    return std::find(n.begin(), n.end(), name) != n.end();
}

std::vector<RandomTensor> random_family_tensors(const RandomFamilyOptions& o) {
    NUANCE_CHECK(is_random_family(o.family), "make-random: unknown family '", o.family, "' (valid: sd15, sd2, sdxl, ",
                 random_family_names(), ")");
    const bool sd3 = o.family == "sd35-medium" || o.family == "sd35-large";
    NUANCE_CHECK(!o.with_text_encoders || sd3, "make-random: --with-text-encoders is for sd35-medium / sd35-large ",
                 "(the all-in-one file); family '", o.family, "' keeps its text encoders in their own files ",
                 "(make-random --family clip-l / clip-g / t5xxl / vae16)");
    NUANCE_CHECK(o.depth >= 0 && o.depth <= 1000, "make-random: --depth ", o.depth, " (valid: 0 = the real depth, ",
                 "or 1..1000)");
    List l;
    if (sd3) {
        MMDiTConfig c = mmdit_preset(o.tiny ? "tiny" : o.family == "sd35-medium" ? "sd3.5-medium" : "sd3.5-large");
        c.depth = depth_or(o, c.depth);
        std::erase_if(c.dual_attention_layers, [&](int64_t b) { return b >= c.depth; });
        sd3_original(l, c);
        if (o.with_text_encoders) {
            module_params(l, ClipTextModel(clip_l_cfg(o, 8)), "text_encoders.clip_l.transformer.");
            module_params(l, ClipTextModel(clip_g_cfg(o)), "text_encoders.clip_g.transformer.");
            module_params(l, T5EncoderModel(t5_cfg(o)), "text_encoders.t5xxl.transformer.");
            vae_file(l, o, 16, "first_stage_model.");
        }
    } else if (o.family == "flux-dev" || o.family == "flux-schnell") {
        FluxConfig c;  // Flux.1: D 3072 = 24 x 128, 19 double + 38 single blocks
        if (o.tiny) {  // the flux family tests' widths
            c.hidden = 32;
            c.heads = 2;
            c.head_dim = 16;
            c.mlp_hidden = 128;
            c.joint_attention_dim = 32;
            c.pooled_projection_dim = 24;
            c.num_double = c.num_single = 2;
            c.axes_dims_rope = {4, 6, 6};
        }
        c.num_double = depth_or(o, c.num_double);
        c.num_single = depth_or(o, c.num_single);
        c.guidance_embeds = o.family == "flux-dev";
        flux_bfl(l, c);
    } else if (o.family == "dit-xl-2-256" || o.family == "dit-xl-2-512") {
        DiTConfig c;  // XL/2: D 1152, 28 blocks, 16 heads, learned sigma
        c.sample_size = o.family == "dit-xl-2-256" ? 32 : 64;
        if (o.tiny) {
            c.hidden = 64;
            c.heads = 1;
            c.depth = 2;
            c.mlp_hidden = 256;
            c.sample_size = 8;
        }
        c.depth = depth_or(o, c.depth);
        dit_original(l, c);
    } else if (o.family == "clip-l") {
        module_params(l, ClipTextModel(clip_l_cfg(o, 24)), "");
    } else if (o.family == "clip-g") {
        module_params(l, ClipTextModel(clip_g_cfg(o)), "");
    } else if (o.family == "t5xxl") {
        module_params(l, T5EncoderModel(t5_cfg(o)), "");
    } else {
        vae_file(l, o, o.family == "vae16" ? 16 : 4, "", o.family == "vae16");
    }
    return l;
}

int64_t write_random_family(const std::string& path, const RandomFamilyOptions& o) {
    const std::vector<RandomTensor> l = random_family_tensors(o);
    return write_random_safetensors(path, l, o.dtype, o.seed,
                                    {{"nuance", str("make-random family=", o.family, o.tiny ? " tiny" : "",
                                                    o.with_text_encoders ? " with-text-encoders" : "",
                                                    o.depth > 0 ? str(" depth=", o.depth) : std::string(),
                                                    o.fp8 ? " fp8" : "", " seed=", o.seed)}},
                                    o.fp8);
}

}  // namespace nuance
