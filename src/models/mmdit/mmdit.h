// SD3 / SD3.5 MMDiT (Esser et al. 2024, "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis";
// SD3.5-Medium's MMDiT-X dual attention), diffusers SD3Transformer2DModel names. The original single-file layout
// is mapped onto these names in mmdit_original.h.
// Shape letters: N batch, C latent channels, H/W latent size, p patch, h = H/p, w = W/p, Lx = h*w image tokens,
// Lc context tokens, D model width = heads * head_dim, Dj context width, P pooled width.
#pragma once
#include <vector>

#include "models/mmdit/mmdit_config.h"
#include "nn/layers.h"

namespace nuance {

// RMSNorm over each head's features (qk-norm of SD3.5), eps 1e-6. Absent (no weight) when qk_norm is off.
struct HeadRMSNorm : Module {
    Param weight;
    bool enabled = false;
    HeadRMSNorm() = default;
    HeadRMSNorm(int64_t head_dim, bool on) : weight({head_dim}), enabled(on) {}
    // x: [N, L, H*d] -> the same, each head's d features normalised (identity when disabled).
    Tensor operator()(const Tensor& x) const;
    void visit(ParamVisitor& v) override {
        if (enabled) v("weight", weight);
    }
};

// Joint attention (MMDiT): image and context tokens have their own q/k/v and output projections and attend
// together over [image tokens, context tokens] (image first). With no context it is plain self-attention (attn2).
struct JointAttention : Module {
    Linear to_q, to_k, to_v, to_out;
    Linear add_q_proj, add_k_proj, add_v_proj, to_add_out;
    HeadRMSNorm norm_q, norm_k, norm_added_q, norm_added_k;
    int64_t heads = 1;
    bool joint = true;             // has the context projections (attn), or not (attn2)
    bool context_pre_only = false; // last block: the context output is not used, so there is no to_add_out
    JointAttention() = default;
    JointAttention(int64_t dim, int64_t heads, int64_t head_dim, bool qk_norm, bool joint, bool context_pre_only);
    // x: [N, Lx, D], c: [N, Lc, D] (undefined when !joint) -> (x_out [N, Lx, D], c_out [N, Lc, D] or undefined).
    std::pair<Tensor, Tensor> operator()(const Tensor& x, const Tensor& c) const;
    void visit(ParamVisitor& v) override;
};

// GELU(tanh) feed-forward, 4x wide: net.0.proj -> gelu_tanh -> net.2.
struct GeluFeedForward : Module {
    Linear proj, out;
    GeluFeedForward() = default;
    explicit GeluFeedForward(int64_t dim) : proj(dim, 4 * dim), out(4 * dim, dim) {}
    Tensor operator()(const Tensor& x) const { return out(gelu_tanh(proj(x), out.input_dtype())); }
    void visit(ParamVisitor& v) override { v("net.0.proj", proj); v("net.2", out); }
};

// JointTransformerBlock: adaLN-Zero modulation of both streams from the conditioning vector, joint attention,
// per-stream feed-forward. The last block is context_pre_only (its context stream only feeds the attention).
struct JointTransformerBlock : Module {
    Linear norm1, norm1_context;  // the adaLN ".linear" projections: 6D (9D with attn2) and 6D (2D when pre-only)
    JointAttention attn, attn2;
    GeluFeedForward ff, ff_context;
    bool dual = false, context_pre_only = false;
    JointTransformerBlock() = default;
    JointTransformerBlock(const MMDiTConfig& c, int64_t index);
    // x: [N, Lx, D], c: [N, Lc, D], temb: [N, D] -> (x, c); c undefined after a context_pre_only block.
    std::pair<Tensor, Tensor> forward(Tensor x, Tensor c, const Tensor& temb) const;
    void visit(ParamVisitor& v) override;
};

class SD3Transformer2DModel : public Module {
public:
    explicit SD3Transformer2DModel(const MMDiTConfig& c);
    const MMDiTConfig& config() const { return cfg_; }

    // x: [N, C, H, W] latent (H, W multiples of the patch size, at most pos_embed_max_size patches each way),
    // timestep: [N] or scalar in [0, 1000] (sigma * 1000), context: [N, Lc, Dj], pooled: [N, P]
    // -> velocity [N, C_out, H, W]. skip_layers: block indices left out (skip-layer guidance, SD3.5-Medium).
    Tensor forward(const Tensor& x, const Tensor& timestep, const Tensor& context, const Tensor& pooled,
                   const std::vector<int64_t>& skip_layers = {}) const;
    void visit(ParamVisitor& v) override;

private:
    Tensor patch_embed(const Tensor& x) const;  // [N, C, H, W] -> [N, Lx, D], plus the cropped positional table
    MMDiTConfig cfg_;
    Conv2d proj_;          // pos_embed.proj
    Param pos_embed_;      // pos_embed.pos_embed [1, S*S, D]: the fixed 2-D sincos table, stored in the file
    MlpEmbedder timestep_embedder_, text_embedder_;
    Linear context_embedder_;
    std::vector<JointTransformerBlock> blocks_;
    Linear norm_out_;      // AdaLayerNormContinuous: (scale, shift) from silu(temb)
    Linear proj_out_;
};

}  // namespace nuance
