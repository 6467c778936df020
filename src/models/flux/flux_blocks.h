// The blocks of FluxTransformer2DModel (diffusers names; BFL's names in the comments).
// Shape letters: N batch, Li image tokens, Lt text tokens, L = Lt + Li, D width, H heads, d head dim.
#pragma once
#include <utility>

#include "nn/layers.h"
#include "ops/modulate.h"

namespace nuance {

// RMSNorm weight of the qk-norm: diffusers RMSNorm ("weight"), BFL "scale".
struct RmsNormWeight : Module {
    Param weight;
    RmsNormWeight() = default;
    explicit RmsNormWeight(int64_t d) : weight({d}) {}
    void visit(ParamVisitor& v) override { v("weight", weight); }
};

// GELU(tanh) feed-forward: net.0.proj -> gelu_tanh -> net.2 (BFL img_mlp.0 / img_mlp.2).
struct FluxFeedForward : Module {
    Linear proj, out;
    FluxFeedForward() = default;
    FluxFeedForward(int64_t dim, int64_t hidden) : proj(dim, hidden), out(hidden, dim) {}
    Tensor operator()(const Tensor& x) const { return out(gelu_tanh(proj(x))); }
    void visit(ParamVisitor& v) override { v("net.0.proj", proj); v("net.2", out); }
};

// Joint attention of a double-stream block: both streams' q/k/v (qk RMSNorm, RoPE), attention over
// [text, image] (text FIRST), then each stream's output projection.
struct FluxJointAttention : Module {
    Linear to_q, to_k, to_v, to_out;                       // image stream (BFL img_attn.qkv / .proj)
    Linear add_q_proj, add_k_proj, add_v_proj, to_add_out;  // text stream (BFL txt_attn.qkv / .proj)
    RmsNormWeight norm_q, norm_k, norm_added_q, norm_added_k;
    int64_t heads = 1;
    float eps = 1e-6f;
    FluxJointAttention() = default;
    FluxJointAttention(int64_t dim, int64_t heads_, int64_t head_dim, float eps_);
    // x [N, Li, D], ctx [N, Lt, D], freqs [Lt + Li, d/2, 2] -> (image out [N, Li, D], text out [N, Lt, D]).
    std::pair<Tensor, Tensor> operator()(const Tensor& x, const Tensor& ctx, const Tensor& freqs) const;
    void visit(ParamVisitor& v) override;
};

// Double-stream block (MMDiT-style): each stream has its own AdaLN-Zero modulation, attention is joint.
struct FluxDoubleBlock : Module {
    Linear norm1, norm1_context;  // AdaLayerNormZero linears: 6D = (shift, scale, gate) x (msa, mlp)
    FluxJointAttention attn;
    FluxFeedForward ff, ff_context;
    float eps = 1e-6f;
    FluxDoubleBlock() = default;
    FluxDoubleBlock(int64_t dim, int64_t heads, int64_t head_dim, int64_t mlp_hidden, float eps_);
    // x [N, Li, D], ctx [N, Lt, D], silu_vec = silu(temb) [N, D] -> (x, ctx).
    std::pair<Tensor, Tensor> forward(Tensor x, Tensor ctx, const Tensor& silu_vec, const Tensor& freqs) const;
    void visit(ParamVisitor& v) override;
};

// Single-stream block: one modulation; attention and the MLP run in parallel on the same normed input, and one
// linear (proj_out, BFL linear2) maps concat(attn, gelu_tanh(mlp)) back to D.
struct FluxSingleBlock : Module {
    Linear norm;                  // AdaLayerNormZeroSingle: 3D = (shift, scale, gate)
    Linear to_q, to_k, to_v;      // BFL linear1 rows [0, 3D)
    Linear proj_mlp;              // BFL linear1 rows [3D, 3D + mlp)
    Linear proj_out;              // BFL linear2: [D, D + mlp]
    RmsNormWeight norm_q, norm_k;
    int64_t heads = 1;
    float eps = 1e-6f;
    FluxSingleBlock() = default;
    FluxSingleBlock(int64_t dim, int64_t heads_, int64_t head_dim, int64_t mlp_hidden, float eps_);
    // x [N, L, D] (text then image tokens) -> [N, L, D].
    Tensor forward(const Tensor& x, const Tensor& silu_vec, const Tensor& freqs) const;
    void visit(ParamVisitor& v) override;
};

}  // namespace nuance
