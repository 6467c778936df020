// Shape letters: N batch, C channels, H/W spatial, S = H*W tokens.
#include "models/vae/vae_blocks.h"

#include "autograd/nn_layers.h"
#include "models/vae/autoencoder_kl.h"
#include "models/vae/vae_forward.h"

namespace nuance {

// ---- ResnetBlock2D ----

VaeResnetBlock::VaeResnetBlock(int64_t in, int64_t out, int64_t groups, float eps)
    : norm1(groups, in, eps), norm2(groups, out, eps), conv1(in, out, 3, 1, 1), conv2(out, out, 3, 1, 1),
      has_shortcut(in != out) {
    if (has_shortcut) conv_shortcut = Conv2d(in, out, 1);
}

template <class V>
V run(const VaeResnetBlock& r, const V& x) {
    V h = apply(r.conv1, apply(r.norm1, x, /*silu=*/true, r.conv1.input_dtype()));
    h = apply(r.conv2, apply(r.norm2, h, /*silu=*/true, r.conv2.input_dtype()));  // dropout 0 at inference
    return residual_add(h, r.has_shortcut ? apply(r.conv_shortcut, x) : x);      // h is fresh: the skip in place
}

Tensor VaeResnetBlock::operator()(const Tensor& x) const { return run(*this, x); }

void VaeResnetBlock::visit(ParamVisitor& v) {
    v("norm1", norm1); v("conv1", conv1); v("norm2", norm2); v("conv2", conv2);
    if (has_shortcut) v("conv_shortcut", conv_shortcut);
}

// ---- mid-block attention ----

VaeAttention::VaeAttention(int64_t channels, int64_t groups, float eps)
    : group_norm(groups, channels, eps), to_q(channels, channels), to_k(channels, channels), to_v(channels, channels),
      to_out(channels, channels) {}

template <class V>
V run(const VaeAttention& a, const V& x) {
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const DType qkv = a.to_q.input_dtype();  // bf16 attention: the norm and the projections hand over bf16
    const V h = apply(a.group_norm, x, false, qkv).permute({0, 2, 3, 1}).reshape({N, H * W, C});  // [N, S, C], a view
    const V o = apply(a.to_out, multi_head_attention(apply(a.to_q, h, qkv), apply(a.to_k, h, qkv),
                                                     apply(a.to_v, h, qkv), /*heads=*/1, false, 0.0f,
                                                     a.to_q.weight.compute));  // [N, S, C]
    // Tensor: fresh memory, channels-last: the residual is added in place; Var: contiguous NCHW
    return residual_add(image_layout(o.reshape({N, H, W, C}).permute({0, 3, 1, 2})), x);
}

Tensor VaeAttention::operator()(const Tensor& x) const { return run(*this, x); }

void VaeAttention::visit(ParamVisitor& v) {
    v("group_norm", group_norm); v("to_q", to_q); v("to_k", to_k); v("to_v", to_v); v("to_out.0", to_out);
}

// ---- UNetMidBlock2D ----

VaeMidBlock::VaeMidBlock(int64_t channels, int64_t groups, float eps, bool add_attention)
    : has_attention(add_attention) {
    resnets.emplace_back(channels, channels, groups, eps);
    if (has_attention) attention = VaeAttention(channels, groups, eps);
    resnets.emplace_back(channels, channels, groups, eps);
}

template <class V>
V run(const VaeMidBlock& m, V x) {
    x = run(m.resnets[0], x);
    if (m.has_attention) x = run(m.attention, x);
    return run(m.resnets[1], x);
}

Tensor VaeMidBlock::operator()(Tensor x) const { return run(*this, x); }

void VaeMidBlock::visit(ParamVisitor& v) {
    v("resnets", resnets);
    if (has_attention) v("attentions.0", attention);
}

// ---- DownEncoderBlock2D / UpDecoderBlock2D ----

VaeDownBlock::VaeDownBlock(int64_t in, int64_t out, int64_t num_layers, bool add_downsample, int64_t groups, float eps)
    : has_downsample(add_downsample) {
    for (int64_t j = 0; j < num_layers; ++j) resnets.emplace_back(j == 0 ? in : out, out, groups, eps);
    if (has_downsample) {
        downsample = Conv2d(out, out, 3, /*stride=*/2, /*pad=*/0);
        downsample.p.padding = {0, 0, 1, 1};  // F.pad(x, (0, 1, 0, 1)): bottom and right only
    }
}

template <class V>
V run(const VaeDownBlock& d, V x) {
    for (const auto& r : d.resnets) x = run(r, x);
    return d.has_downsample ? apply(d.downsample, x) : x;
}

Tensor VaeDownBlock::operator()(Tensor x) const { return run(*this, x); }

void VaeDownBlock::visit(ParamVisitor& v) {
    v("resnets", resnets);
    if (has_downsample) v("downsamplers.0.conv", downsample);
}

VaeUpBlock::VaeUpBlock(int64_t in, int64_t out, int64_t num_layers, bool add_upsample, int64_t groups, float eps)
    : has_upsample(add_upsample) {
    for (int64_t j = 0; j < num_layers; ++j) resnets.emplace_back(j == 0 ? in : out, out, groups, eps);
    if (has_upsample) upsample = Conv2d(out, out, 3, 1, 1);
}

template <class V>
V run(const VaeUpBlock& u, V x) {
    for (const auto& r : u.resnets) x = run(r, x);
    if (u.has_upsample)
        x = apply(u.upsample, interpolate_nearest(x, 2 * x.size(2), 2 * x.size(3), u.upsample.input_dtype()));
    return x;
}

Tensor VaeUpBlock::operator()(Tensor x) const { return run(*this, x); }

void VaeUpBlock::visit(ParamVisitor& v) {
    v("resnets", resnets);
    if (has_upsample) v("upsamplers.0.conv", upsample);
}

// ---- Encoder / Decoder ----

VaeEncoder::VaeEncoder(const AutoencoderKLConfig& c) {
    const auto& ch = c.block_out_channels;
    const int64_t g = c.norm_groups;
    conv_in = Conv2d(c.in_channels, ch[0], 3, 1, 1);
    int64_t prev = ch[0];
    for (size_t i = 0; i < ch.size(); ++i) {
        down_blocks.emplace_back(prev, ch[i], c.layers_per_block, /*add_downsample=*/i + 1 < ch.size(), g, c.norm_eps);
        prev = ch[i];
    }
    mid_block = VaeMidBlock(ch.back(), g, c.norm_eps, c.mid_block_attention);
    conv_norm_out = GroupNorm(g, ch.back(), c.norm_eps);
    conv_out = Conv2d(ch.back(), 2 * c.latent_channels, 3, 1, 1);  // double_z: mean and logvar
}

template <class V>
V run(const VaeEncoder& e, const V& x) {
    V h = apply(e.conv_in, x);
    for (const auto& d : e.down_blocks) h = run(d, h);
    h = run(e.mid_block, h);
    return apply(e.conv_out, apply(e.conv_norm_out, h, /*silu=*/true));
}

Tensor VaeEncoder::operator()(const Tensor& x) const { return run(*this, x); }

void VaeEncoder::visit(ParamVisitor& v) {
    v("conv_in", conv_in); v("down_blocks", down_blocks); v("mid_block", mid_block);
    v("conv_norm_out", conv_norm_out); v("conv_out", conv_out);
}

VaeDecoder::VaeDecoder(const AutoencoderKLConfig& c) {
    const std::vector<int64_t> ch(c.block_out_channels.rbegin(), c.block_out_channels.rend());  // deepest first
    const int64_t g = c.norm_groups;
    conv_in = Conv2d(c.latent_channels, ch[0], 3, 1, 1);
    mid_block = VaeMidBlock(ch[0], g, c.norm_eps, c.mid_block_attention);
    int64_t prev = ch[0];
    for (size_t i = 0; i < ch.size(); ++i) {
        up_blocks.emplace_back(prev, ch[i], c.layers_per_block + 1, /*add_upsample=*/i + 1 < ch.size(), g, c.norm_eps);
        prev = ch[i];
    }
    conv_norm_out = GroupNorm(g, ch.back(), c.norm_eps);
    conv_out = Conv2d(ch.back(), c.out_channels, 3, 1, 1);
}

template <class V>
V run(const VaeDecoder& d, const V& z) {
    V h = run(d.mid_block, apply(d.conv_in, z));
    for (const auto& u : d.up_blocks) h = run(u, h);
    return apply(d.conv_out, apply(d.conv_norm_out, h, /*silu=*/true));
}

Tensor VaeDecoder::operator()(const Tensor& z) const { return run(*this, z); }

void VaeDecoder::visit(ParamVisitor& v) {
    v("conv_in", conv_in); v("mid_block", mid_block); v("up_blocks", up_blocks);
    v("conv_norm_out", conv_norm_out); v("conv_out", conv_out);
}

#define NUANCE_VAE_BLOCKS_INSTANTIATE(V)           \
    template V run(const VaeResnetBlock&, const V&); \
    template V run(const VaeAttention&, const V&);   \
    template V run(const VaeMidBlock&, V);           \
    template V run(const VaeDownBlock&, V);          \
    template V run(const VaeUpBlock&, V);            \
    template V run(const VaeEncoder&, const V&);     \
    template V run(const VaeDecoder&, const V&);
NUANCE_VAE_BLOCKS_INSTANTIATE(Tensor)
NUANCE_VAE_BLOCKS_INSTANTIATE(Var)
#undef NUANCE_VAE_BLOCKS_INSTANTIATE

}  // namespace nuance
