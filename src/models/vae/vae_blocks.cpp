// Shape letters: N batch, C channels, H/W spatial, S = H*W tokens.
#include "models/vae/vae_blocks.h"

#include "models/vae/autoencoder_kl.h"

namespace nuance {

// ---- ResnetBlock2D ----

VaeResnetBlock::VaeResnetBlock(int64_t in, int64_t out, int64_t groups, float eps)
    : norm1(groups, in, eps), norm2(groups, out, eps), conv1(in, out, 3, 1, 1), conv2(out, out, 3, 1, 1),
      has_shortcut(in != out) {
    if (has_shortcut) conv_shortcut = Conv2d(in, out, 1);
}

Tensor VaeResnetBlock::operator()(const Tensor& x) const {
    Tensor h = conv1(norm1(x, /*silu=*/true, conv1.input_dtype()));
    h = conv2(norm2(h, /*silu=*/true, conv2.input_dtype()));  // dropout 0 at inference
    return add_(h, has_shortcut ? conv_shortcut(x) : x);  // h is fresh: add the skip in place
}

void VaeResnetBlock::visit(ParamVisitor& v) {
    v("norm1", norm1); v("conv1", conv1); v("norm2", norm2); v("conv2", conv2);
    if (has_shortcut) v("conv_shortcut", conv_shortcut);
}

// ---- mid-block attention ----

VaeAttention::VaeAttention(int64_t channels, int64_t groups, float eps)
    : group_norm(groups, channels, eps), to_q(channels, channels), to_k(channels, channels), to_v(channels, channels),
      to_out(channels, channels) {}

Tensor VaeAttention::operator()(const Tensor& x) const {
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const DType qkv = to_q.input_dtype();  // bf16 attention: the norm and the projections hand over bf16
    const Tensor h = group_norm(x, false, qkv).permute({0, 2, 3, 1}).reshape({N, H * W, C});  // [N, S, C], free view
    const Tensor o = to_out(multi_head_attention(to_q(h, qkv), to_k(h, qkv), to_v(h, qkv), /*heads=*/1, false, 0.0f,
                                                   to_q.weight.compute));  // [N, S, C]
    Tensor y = o.reshape({N, H, W, C}).permute({0, 3, 1, 2});  // fresh memory, channels-last: add the residual in place
    return add_(y, x);
}

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

Tensor VaeMidBlock::operator()(Tensor x) const {
    x = resnets[0](x);
    if (has_attention) x = attention(x);
    return resnets[1](x);
}

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

Tensor VaeDownBlock::operator()(Tensor x) const {
    for (const auto& r : resnets) x = r(x);
    return has_downsample ? downsample(x) : x;
}

void VaeDownBlock::visit(ParamVisitor& v) {
    v("resnets", resnets);
    if (has_downsample) v("downsamplers.0.conv", downsample);
}

VaeUpBlock::VaeUpBlock(int64_t in, int64_t out, int64_t num_layers, bool add_upsample, int64_t groups, float eps)
    : has_upsample(add_upsample) {
    for (int64_t j = 0; j < num_layers; ++j) resnets.emplace_back(j == 0 ? in : out, out, groups, eps);
    if (has_upsample) upsample = Conv2d(out, out, 3, 1, 1);
}

Tensor VaeUpBlock::operator()(Tensor x) const {
    for (const auto& r : resnets) x = r(x);
    if (has_upsample) x = upsample(interpolate_nearest(x, 2 * x.size(2), 2 * x.size(3), upsample.input_dtype()));
    return x;
}

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

Tensor VaeEncoder::operator()(const Tensor& x) const {
    Tensor h = conv_in(x);
    for (const auto& d : down_blocks) h = d(h);
    h = mid_block(h);
    return conv_out(conv_norm_out(h, /*silu=*/true));
}

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

Tensor VaeDecoder::operator()(const Tensor& z) const {
    Tensor h = mid_block(conv_in(z));
    for (const auto& u : up_blocks) h = u(h);
    return conv_out(conv_norm_out(h, /*silu=*/true));
}

void VaeDecoder::visit(ParamVisitor& v) {
    v("conv_in", conv_in); v("mid_block", mid_block); v("up_blocks", up_blocks);
    v("conv_norm_out", conv_norm_out); v("conv_out", conv_out);
}

}  // namespace nuance
