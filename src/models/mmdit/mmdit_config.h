// SD3Transformer2DModel (MMDiT, Esser et al. 2024 "Scaling Rectified Flow Transformers") configuration, detected from
// the tensor names and shapes of a diffusers-layout state dict (design.md §2: configs are data), so the tiny golden
// models and the full SD3-Medium / SD3.5-Medium / SD3.5-Large run the same code.
#pragma once
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance {

struct MMDiTConfig {
    int64_t patch_size = 2;
    int64_t in_channels = 16, out_channels = 16;
    int64_t hidden = 1536;               // D = heads * head_dim (diffusers' inner_dim)
    int64_t heads = 24, head_dim = 64;
    int64_t depth = 24;                  // joint blocks; the last one is context_pre_only
    int64_t joint_attention_dim = 4096;  // context width (CLIP-L ++ CLIP-G padded to T5's 4096)
    int64_t pooled_projection_dim = 2048;
    int64_t pos_embed_max_size = 192;    // the positional table is a pos_embed_max_size^2 grid, centre-cropped
    int64_t time_freq_dim = 256;         // sinusoidal timestep features
    bool qk_norm = false;                // SD3.5: RMSNorm of q and k per head (eps 1e-6)
    std::vector<int64_t> dual_attention_layers;  // SD3.5-Medium MMDiT-X: blocks with a second image self-attention
    bool heads_guessed = false;          // true when the head count could not be seen in the shapes (see detect)

    bool dual(int64_t block) const;
    std::string describe() const;
    // Throws (InvalidArgument) when the numbers do not make a model: zero or absurd sizes, heads * head_dim != D.
    void validate() const;

    // Everything comes from the shapes but the head count when the file has no qk-norm weights (their size is the
    // head width): then 64-wide heads (every released SD3 model: heads = depth, D = 64 * depth) when 64 divides D,
    // else Stability's rule heads = depth, with heads_guessed set -- tiny models must state theirs (config.json).
    static MMDiTConfig detect(const std::map<std::string, Tensor>& t);
    // A diffusers transformer/config.json on top of a detected config: num_attention_heads / attention_head_dim
    // are taken; every other field it has must agree with the shapes (else InvalidArgument naming the field).
    void apply_json(const nlohmann::json& j);
};

}  // namespace nuance
