// UNet2DConditionModel configuration, detected from tensor names and shapes (design.md §2: configs are data).
#pragma once
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance {

struct UNetConfig {
    int64_t in_channels = 4, out_channels = 4;
    std::vector<int64_t> block_out_channels;  // per level
    int64_t layers_per_block = 2;
    std::vector<bool> down_attn;               // level has cross-attention transformers (CrossAttnDownBlock2D)
    std::vector<int64_t> down_depth;           // transformer blocks per attention, per down level
    std::vector<int64_t> up_depth;             // per up block (up block i mirrors level L-1-i)
    int64_t mid_depth = 1;                     // 0: no mid attention
    std::vector<int64_t> heads;                // attention heads per level (diffusers' legacy "attention_head_dim")
    int64_t cross_attention_dim = 768;
    bool use_linear_projection = false;
    int64_t norm_num_groups = 32;
    float norm_eps = 1e-5f;
    bool flip_sin_to_cos = true;
    float freq_shift = 0.0f;
    int64_t time_embed_dim = 1280;
    // SDXL micro-conditioning (addition_embed_type = "text_time")
    bool text_time = false;
    int64_t add_in_dim = 0;               // pooled text dim + 6 * addition_time_embed_dim
    int64_t addition_time_embed_dim = 256;
    // Guidance-conditioned students (LCM, Luo et al. 2023; diffusers' time_cond_proj_dim): the width of the
    // guidance-scale embedding that time_embedding.cond_proj (no bias) adds to the sinusoidal time embedding. 0: none.
    int64_t time_cond_proj_dim = 0;

    int64_t levels() const { return (int64_t)block_out_channels.size(); }
    std::string describe() const;

    // Widths, depths and layout come from the tensors; head counts and norm groups cannot be seen in shapes and
    // follow the published models (SD1: 8 heads; SD2/SDXL: 64-wide heads; 32 groups) unless a config overrides.
    static UNetConfig detect(const std::map<std::string, Tensor>& t);
    // Applies a diffusers config.json (attention_head_dim / num_attention_heads, norm_num_groups, norm_eps,
    // flip_sin_to_cos, freq_shift, addition_time_embed_dim) on top of a detected config.
    void apply_json(const nlohmann::json& j);
};

}  // namespace nuance
