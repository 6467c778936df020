#include "models/unet/unet_blocks.h"

namespace nuance {

ResnetBlock::ResnetBlock(int64_t in, int64_t out, int64_t temb, int64_t groups, float eps)
    : norm1(groups, in, eps), norm2(groups, out, eps), conv1(in, out, 3, 1, 1), conv2(out, out, 3, 1, 1),
      conv_shortcut(in, out, 1), time_emb_proj(temb, out), has_shortcut(in != out), has_temb(temb > 0) {}

Tensor ResnetBlock::forward(const Tensor& x, const Tensor& emb) const {
    Tensor h = conv1(norm1(x, /*silu=*/true, conv1.input_dtype()));
    if (has_temb) {
        const Tensor t = time_emb_proj(silu(emb));  // [B, C]
        add_(h, t.unsqueeze(-1).unsqueeze(-1));      // h is the conv's fresh output: in place
    }
    h = conv2(norm2(h, /*silu=*/true, conv2.input_dtype()));
    const Tensor skip = has_shortcut ? conv_shortcut(x) : x;
    return add_(h, skip);
}

void ResnetBlock::visit(ParamVisitor& v) {
    v("norm1", norm1);
    v("conv1", conv1);
    if (has_temb) v("time_emb_proj", time_emb_proj);
    v("norm2", norm2);
    v("conv2", conv2);
    if (has_shortcut) v("conv_shortcut", conv_shortcut);
}

Tensor FeedForward::forward(const Tensor& x) const {
    return out(geglu(proj(x), out.input_dtype()));  // hidden * gelu(gate), the two halves of proj(x)
}

TransformerBlock::TransformerBlock(int64_t dim, int64_t heads, int64_t context_dim)
    : norm1(dim), norm2(dim), norm3(dim), attn1(dim, dim, heads, dim / heads),
      attn2(dim, context_dim, heads, dim / heads), ff(dim, dim * 4) {}

Tensor TransformerBlock::forward(Tensor x, const Tensor& context) const {
    // Each sub-layer's output is fresh memory, so the residual is added in place into it.
    // The norms feed only products (q/k/v, the GEGLU projection): they round their outputs for them.
    Tensor h = attn1(norm1(x, attn1.to_q.input_dtype()));
    x = add_(h, x);
    h = attn2(norm2(x, attn2.to_q.input_dtype()), context);
    x = add_(h, x);
    h = ff.forward(norm3(x, ff.proj.input_dtype()));
    return add_(h, x);
}

void TransformerBlock::visit(ParamVisitor& v) {
    v("norm1", norm1);
    v("attn1", attn1);
    v("norm2", norm2);
    v("attn2", attn2);
    v("norm3", norm3);
    v("ff", ff);
}

SpatialTransformer::SpatialTransformer(int64_t ch, int64_t heads, int64_t depth, int64_t context_dim, int64_t groups,
                                       bool linear)
    : norm(groups, ch, 1e-6f), proj_in_conv(ch, ch, 1), proj_out_conv(ch, ch, 1), proj_in_lin(ch, ch),
      proj_out_lin(ch, ch), linear_proj(linear) {
    NUANCE_CHECK(heads > 0 && ch % heads == 0, "transformer: ", ch, " channels not divisible into ", heads, " heads");
    for (int64_t i = 0; i < depth; ++i) blocks.emplace_back(ch, heads, context_dim);
}

Tensor SpatialTransformer::forward(const Tensor& x, const Tensor& context) const {
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    Tensor h = norm(x, false, linear_proj ? proj_in_lin.input_dtype() : proj_in_conv.input_dtype());
    auto to_tokens = [&](const Tensor& t) { return t.permute({0, 2, 3, 1}).reshape({B, H * W, C}); };
    auto to_image = [&](const Tensor& t) { return t.reshape({B, H, W, C}).permute({0, 3, 1, 2}); };  // channels-last
    h = linear_proj ? proj_in_lin(to_tokens(h)) : to_tokens(proj_in_conv(h));
    for (const auto& b : blocks) h = b.forward(h, context);
    h = linear_proj ? to_image(proj_out_lin(h)) : proj_out_conv(to_image(h));
    return add_(h, x);
}

void SpatialTransformer::visit(ParamVisitor& v) {
    v("norm", norm);
    if (linear_proj) v("proj_in", proj_in_lin); else v("proj_in", proj_in_conv);
    v("transformer_blocks", blocks);
    if (linear_proj) v("proj_out", proj_out_lin); else v("proj_out", proj_out_conv);
}

}  // namespace nuance
