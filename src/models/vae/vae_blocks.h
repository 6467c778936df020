// Building blocks of diffusers' AutoencoderKL (Encoder / Decoder in models/autoencoders/vae.py), with diffusers key
// names. Shape letters: N batch, C channels, H/W spatial, S = H*W tokens.
#pragma once
#include <vector>

#include "nn/layers.h"

namespace nuance {

// ResnetBlock2D without time embedding: x + conv2(silu(norm2(conv1(silu(norm1(x)))))), 1x1 conv_shortcut when the
// channel count changes. eps 1e-6 as diffusers' VAE.
struct VaeResnetBlock : Module {
    GroupNorm norm1, norm2;
    Conv2d conv1, conv2, conv_shortcut;
    bool has_shortcut = false;
    VaeResnetBlock() = default;
    VaeResnetBlock(int64_t in, int64_t out, int64_t groups, float eps);
    Tensor operator()(const Tensor& x) const;  // [N, in, H, W] -> [N, out, H, W]
    void visit(ParamVisitor& v) override;
};

// Mid-block self-attention: one head over the H*W tokens, GroupNorm first, residual (Attention with
// _from_deprecated_attn_block). q/k/v/out are Linear [C, C] (original checkpoints store 1x1 convs; load_module
// reshapes them).
struct VaeAttention : Module {
    GroupNorm group_norm;
    Linear to_q, to_k, to_v, to_out;
    VaeAttention() = default;
    VaeAttention(int64_t channels, int64_t groups, float eps);
    Tensor operator()(const Tensor& x) const;  // [N, C, H, W] -> [N, C, H, W]
    void visit(ParamVisitor& v) override;
};

// UNetMidBlock2D: resnet, attention (optional), resnet.
struct VaeMidBlock : Module {
    std::vector<VaeResnetBlock> resnets;
    VaeAttention attention;
    bool has_attention = true;
    VaeMidBlock() = default;
    VaeMidBlock(int64_t channels, int64_t groups, float eps, bool add_attention);
    Tensor operator()(Tensor x) const;
    void visit(ParamVisitor& v) override;
};

// DownEncoderBlock2D: resnets, then (except the last level) F.pad(x, (0, 1, 0, 1)) + conv k3 s2 p0.
struct VaeDownBlock : Module {
    std::vector<VaeResnetBlock> resnets;
    Conv2d downsample;
    bool has_downsample = false;
    VaeDownBlock() = default;
    VaeDownBlock(int64_t in, int64_t out, int64_t num_layers, bool add_downsample, int64_t groups, float eps);
    Tensor operator()(Tensor x) const;
    void visit(ParamVisitor& v) override;
};

// UpDecoderBlock2D: resnets, then (except the last level) nearest x2 + conv k3 p1.
struct VaeUpBlock : Module {
    std::vector<VaeResnetBlock> resnets;
    Conv2d upsample;
    bool has_upsample = false;
    VaeUpBlock() = default;
    VaeUpBlock(int64_t in, int64_t out, int64_t num_layers, bool add_upsample, int64_t groups, float eps);
    Tensor operator()(Tensor x) const;
    void visit(ParamVisitor& v) override;
};

struct AutoencoderKLConfig;

// image [N, in_channels, H, W] -> [N, 2 * latent_channels, H / f, W / f] (f = 2^(levels - 1)).
struct VaeEncoder : Module {
    Conv2d conv_in;
    std::vector<VaeDownBlock> down_blocks;
    VaeMidBlock mid_block;
    GroupNorm conv_norm_out;
    Conv2d conv_out;
    VaeEncoder() = default;
    explicit VaeEncoder(const AutoencoderKLConfig& c);
    Tensor operator()(const Tensor& x) const;
    void visit(ParamVisitor& v) override;
};

// latent [N, latent_channels, h, w] -> image [N, out_channels, h * f, w * f].
struct VaeDecoder : Module {
    Conv2d conv_in;
    VaeMidBlock mid_block;
    std::vector<VaeUpBlock> up_blocks;
    GroupNorm conv_norm_out;
    Conv2d conv_out;
    VaeDecoder() = default;
    explicit VaeDecoder(const AutoencoderKLConfig& c);
    Tensor operator()(const Tensor& z) const;
    void visit(ParamVisitor& v) override;
};

}  // namespace nuance
