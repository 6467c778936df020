// Class-conditional DiT (Peebles & Xie 2022) as diffusers' DiTTransformer2DModel runs it, with its key names:
// pos_embed.proj (patchify), transformer_blocks.N (adaLN-Zero blocks, each with its own timestep + class embedder
// under norm1.emb: diffusers' converter copies the original single t_embedder / y_embedder into every block, and
// the final layer reads block 0's), norm_out + proj_out_1 (final adaLN), proj_out_2 (linear decoder).
// Shape letters: N batch, C latent channels, H/W latent size, p patch size, h/w = H/p, W/p, T = h*w tokens,
// D width, M MLP width, Co output channels (2C with learned sigma).
#pragma once
#include <vector>

#include "models/dit/dit_config.h"
#include "nn/attention.h"

namespace nuance {

// Timestep features -> MLP, plus the class embedding: c = t_emb + y_emb   [N, D]
struct DiTConditioning : Module {
    Linear linear_1, linear_2;
    Param embedding_table;  // [num_classes + 1, D]; the last row is the null class
    int64_t freq_dim = 256;
    float freq_shift = 1.0f;
    DiTConditioning() = default;
    explicit DiTConditioning(const DiTConfig& c);
    Tensor operator()(const Tensor& timestep, const Tensor& class_labels) const;
    void visit(ParamVisitor& v) override;
};

// adaLN-Zero block.  x: [N, T, D], c: [N, D] (this block's own conditioning)
struct DiTBlock : Module {
    DiTConditioning emb;
    Linear ada_ln;  // SiLU(c) -> 6 D: shift/scale/gate for attention, then for the MLP
    Attention attn;
    Linear fc1, fc2;
    float attn_norm_eps = 1e-6f, mlp_norm_eps = 1e-5f;
    DiTBlock() = default;
    explicit DiTBlock(const DiTConfig& c);
    Tensor forward(Tensor x, const Tensor& c) const;
    void visit(ParamVisitor& v) override;
};

class DiTTransformer2DModel : public Module {
public:
    explicit DiTTransformer2DModel(const DiTConfig& cfg);
    const DiTConfig& config() const { return cfg_; }

    // x [N, C, H, W] (H, W multiples of p; equal to sample_size when the config knows it), timestep [N] (any
    // numeric dtype; one value is broadcast to N), class_labels [N] integer in [0, num_classes] (num_classes is the
    // null class) -> [N, Co, H, W]: channels [0, C) the noise prediction eps, [C, 2C) the learned variance.
    Tensor forward(const Tensor& x, const Tensor& timestep, const Tensor& class_labels) const;
    void visit(ParamVisitor& v) override;

    Conv2d patch_embed;
    std::vector<DiTBlock> blocks;
    Linear proj_out_1, proj_out_2;

private:
    DiTConfig cfg_;
};

// The fixed 2-D sin-cos position embedding of MAE/DiT (get_2d_sincos_pos_embed) for an h x w grid: [h * w, D].
// The first D/2 features encode the column, the last D/2 the row, computed in double like the numpy reference.
Tensor dit_pos_embed(int64_t dim, int64_t grid_h, int64_t grid_w);

}  // namespace nuance
