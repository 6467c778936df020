// FluxTransformer2DModel configuration (Flux.1 dev / schnell, Black Forest Labs 2024), detected from the tensor
// names and shapes of a diffusers-layout state dict (design.md §2: configs are data).
#pragma once
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance {

struct FluxConfig {
    int64_t in_channels = 64;             // packed latent channels (2x2 patches of the 16-channel VAE latent)
    int64_t out_channels = 64;            // proj_out width (packed velocity)
    int64_t hidden = 3072;                // D, the width of both streams
    int64_t heads = 24;                   // H
    int64_t head_dim = 128;               // d = D / H (the qk-norm weights are [d])
    int64_t mlp_hidden = 12288;           // 4D (mlp_ratio 4)
    int64_t joint_attention_dim = 4096;   // T5-XXL width
    int64_t pooled_projection_dim = 768;  // CLIP-L pooled width
    int64_t timestep_channels = 256;      // sinusoid width of time_in / guidance_in
    int64_t num_double = 19;              // transformer_blocks (BFL double_blocks)
    int64_t num_single = 38;              // single_transformer_blocks (BFL single_blocks)
    bool guidance_embeds = true;          // dev: distilled guidance input; schnell: none
    std::vector<int64_t> axes_dims_rope{16, 56, 56};
    double rope_theta = 10000.0;
    float eps = 1e-6f;                    // LayerNorms (no affine) and the qk RMSNorms

    std::string describe() const;

    // Widths and depths from the shapes; heads = D / (length of attn.norm_q.weight), which is right for Flux.1
    // (3072 = 24 x 128) and any tiny model alike. axes_dims_rope cannot be seen in shapes: Flux.1's [16, 56, 56]
    // for 128-wide heads, otherwise [d/4, 3d/8, 3d/8] when those are even (the tiny goldens' [4, 6, 6] at d = 16);
    // a config.json (apply_json) overrides. Errors name the tensor and its shape.
    static FluxConfig detect(const std::map<std::string, Tensor>& t);
    // diffusers config.json keys: num_attention_heads, attention_head_dim, axes_dims_rope, guidance_embeds (checked
    // against the file: a dev config with a file that lacks guidance_embedder is an error).
    void apply_json(const nlohmann::json& j);
    // Consistency of the derived values (head split, rope axes summing to d); throws InvalidArgument naming them.
    void validate() const;
};

}  // namespace nuance
