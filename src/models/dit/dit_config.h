// Configuration of a class-conditional DiT (Peebles & Xie 2022, "Scalable Diffusion Models with Transformers"),
// detected from the shapes of a diffusers DiTTransformer2DModel state dict.
#pragma once
#include <map>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/tensor.h"

namespace nuance {

struct DiTConfig {
    int64_t in_channels = 4;    // latent channels
    int64_t out_channels = 8;   // 2 * in_channels with learned sigma (eps, then the variance interpolation v)
    int64_t patch_size = 2;
    int64_t hidden = 1152;      // D
    int64_t depth = 28;         // number of blocks
    int64_t heads = 16;
    int64_t mlp_hidden = 4608;  // mlp_ratio 4
    int64_t num_classes = 1000;  // the embedding table has one row more: the null class (= num_classes) for CFG
    int64_t sample_size = 0;     // latent height = width the model was trained at; 0 = unknown (any size runs)
    int64_t freq_dim = 256;      // sinusoidal timestep features
    // diffusers' Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1) divides the exponent by
    // (half - 1); the original DiT code (models.py TimestepEmbedder) by half, i.e. shift 0.
    float freq_shift = 1.0f;
    float attn_norm_eps = 1e-6f;  // AdaLayerNormZero's LayerNorm (both layouts)
    float mlp_norm_eps = 1e-5f;   // diffusers: norm3 = LayerNorm(norm_eps = 1e-5); the original DiT: 1e-6
    float final_norm_eps = 1e-6f;

    int64_t head_dim() const { return hidden / heads; }
    int64_t latent_channels() const { return in_channels; }
    bool learned_sigma() const { return out_channels == 2 * in_channels; }

    // Widths, depth, patch size, channels and classes from the diffusers tensor names and shapes; heads from
    // `heads` when > 0, else the DiT presets table by width (XL 1152 -> 16, L 1024 -> 16, B 768 -> 12, S 384 -> 6),
    // else width / 64 when 64 divides it (the presets' head size), else an error asking for config.json.
    // Errors name the missing tensor or the inconsistent shapes.
    static DiTConfig detect(const std::map<std::string, Tensor>& tensors, int64_t heads = 0);

    // Heads for a width with no config: the rule above; 0 when none applies.
    static int64_t preset_heads(int64_t hidden);

    // diffusers transformer/config.json (DiTTransformer2DModel): checks num_attention_heads * attention_head_dim,
    // in/out channels, patch size, layers and num_embeds_ada_norm against the shapes, takes the heads, sample_size
    // and norm_eps. Errors name the field and both values.
    void apply_diffusers_config(const nlohmann::json& config);
};

}  // namespace nuance
