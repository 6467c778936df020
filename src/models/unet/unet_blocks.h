// Blocks of the Stable Diffusion UNet (diffusers names). x: [B, C, H, W], emb: [B, T], context: [B, S, Cc].
#pragma once
#include "nn/attention.h"
#include "nn/layers.h"

namespace nuance {

// ResnetBlock2D (Ho et al. 2020, with the time embedding added after the first conv).
struct ResnetBlock : Module {
    GroupNorm norm1, norm2;
    Conv2d conv1, conv2, conv_shortcut;
    Linear time_emb_proj;
    bool has_shortcut = false, has_temb = true;
    ResnetBlock() = default;
    ResnetBlock(int64_t in, int64_t out, int64_t temb, int64_t groups, float eps);
    Tensor forward(const Tensor& x, const Tensor& emb) const;
    void visit(ParamVisitor& v) override;
};

// GEGLU feed-forward (Shazeer 2020): proj -> split [hidden, gate] -> hidden * gelu(gate) -> out.
struct FeedForward : Module {
    Linear proj, out;
    FeedForward() = default;
    FeedForward(int64_t dim, int64_t inner) : proj(dim, inner * 2), out(inner, dim) {}
    Tensor forward(const Tensor& x) const;
    void visit(ParamVisitor& v) override { v("net.0.proj", proj); v("net.2", out); }
};

// BasicTransformerBlock: self-attention, cross-attention, feed-forward, each pre-LayerNorm with a residual.
struct TransformerBlock : Module {
    LayerNorm norm1, norm2, norm3;
    Attention attn1, attn2;
    FeedForward ff;
    TransformerBlock() = default;
    TransformerBlock(int64_t dim, int64_t heads, int64_t context_dim);
    Tensor forward(Tensor x, const Tensor& context) const;
    void visit(ParamVisitor& v) override;
};

// Transformer2DModel: GroupNorm, proj_in (1x1 conv or linear), transformer blocks over HW tokens, proj_out, residual.
struct SpatialTransformer : Module {
    GroupNorm norm;
    Conv2d proj_in_conv, proj_out_conv;
    Linear proj_in_lin, proj_out_lin;
    std::vector<TransformerBlock> blocks;
    bool linear_proj = false;
    SpatialTransformer() = default;
    SpatialTransformer(int64_t channels, int64_t heads, int64_t depth, int64_t context_dim, int64_t groups, bool linear);
    Tensor forward(const Tensor& x, const Tensor& context) const;
    void visit(ParamVisitor& v) override;
};

struct Downsample : Module {
    Conv2d conv;
    Downsample() = default;
    explicit Downsample(int64_t ch) : conv(ch, ch, 3, 2, 1) {}
    Tensor forward(const Tensor& x) const { return conv(x); }
    void visit(ParamVisitor& v) override { v("conv", conv); }
};

// Nearest upsampling to the size of the skip connection it meets (2x unless the size was odd), then a 3x3 conv.
struct Upsample : Module {
    Conv2d conv;
    Upsample() = default;
    explicit Upsample(int64_t ch) : conv(ch, ch, 3, 1, 1) {}
    Tensor forward(const Tensor& x, int64_t oh, int64_t ow) const {
        return conv(interpolate_nearest(x, oh, ow, conv.input_dtype()));
    }
    void visit(ParamVisitor& v) override { v("conv", conv); }
};

}  // namespace nuance
