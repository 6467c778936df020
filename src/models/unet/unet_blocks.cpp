#include "models/unet/unet_blocks.h"

#include "autograd/nn_layers.h"
#include "models/unet/unet_forward.h"

namespace nuance {

ResnetBlock::ResnetBlock(int64_t in, int64_t out, int64_t temb, int64_t groups, float eps)
    : norm1(groups, in, eps), norm2(groups, out, eps), conv1(in, out, 3, 1, 1), conv2(out, out, 3, 1, 1),
      conv_shortcut(in, out, 1), time_emb_proj(temb, out), has_shortcut(in != out), has_temb(temb > 0) {}

template <class V>
V run(const ResnetBlock& r, const V& x, const V& emb) {
    V h = apply(r.conv1, apply(r.norm1, x, /*silu=*/true, r.conv1.input_dtype()));
    if (r.has_temb) {
        const V t = apply(r.time_emb_proj, silu(emb));        // [B, C]
        h = residual_add(h, t.unsqueeze(-1).unsqueeze(-1));  // h is the conv's fresh output: in place
    }
    h = apply(r.conv2, apply(r.norm2, h, /*silu=*/true, r.conv2.input_dtype()));
    const V skip = r.has_shortcut ? apply(r.conv_shortcut, x) : x;
    return residual_add(h, skip);
}

Tensor ResnetBlock::forward(const Tensor& x, const Tensor& emb) const { return run(*this, x, emb); }

void ResnetBlock::visit(ParamVisitor& v) {
    v("norm1", norm1);
    v("conv1", conv1);
    if (has_temb) v("time_emb_proj", time_emb_proj);
    v("norm2", norm2);
    v("conv2", conv2);
    if (has_shortcut) v("conv_shortcut", conv_shortcut);
}

template <class V>
V run(const FeedForward& f, const V& x) {
    return apply(f.out, geglu(apply(f.proj, x), f.out.input_dtype()));  // hidden * gelu(gate), the halves of proj(x)
}

Tensor FeedForward::forward(const Tensor& x) const { return run(*this, x); }

TransformerBlock::TransformerBlock(int64_t dim, int64_t heads, int64_t context_dim)
    : norm1(dim), norm2(dim), norm3(dim), attn1(dim, dim, heads, dim / heads),
      attn2(dim, context_dim, heads, dim / heads), ff(dim, dim * 4) {}

template <class V>
V run(const TransformerBlock& b, V x, const V& context) {
    // Each sub-layer's output is fresh memory, so the residual is added in place into it.
    // The norms feed only products (q/k/v, the GEGLU projection): they round their outputs for them.
    x = residual_add(apply(b.attn1, apply(b.norm1, x, b.attn1.to_q.input_dtype()), V()), x);
    x = residual_add(apply(b.attn2, apply(b.norm2, x, b.attn2.to_q.input_dtype()), context), x);
    return residual_add(run(b.ff, apply(b.norm3, x, b.ff.proj.input_dtype())), x);
}

Tensor TransformerBlock::forward(Tensor x, const Tensor& context) const { return run(*this, x, context); }

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

template <class V>
V run(const SpatialTransformer& s, const V& x, const V& context) {
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    V h = apply(s.norm, x, false, s.linear_proj ? s.proj_in_lin.input_dtype() : s.proj_in_conv.input_dtype());
    auto to_tokens = [&](const V& t) { return t.permute({0, 2, 3, 1}).reshape({B, H * W, C}); };
    // Tensor: the channels-last view as it is; Var: contiguous NCHW
    auto to_image = [&](const V& t) { return image_layout(t.reshape({B, H, W, C}).permute({0, 3, 1, 2})); };
    h = s.linear_proj ? apply(s.proj_in_lin, to_tokens(h)) : to_tokens(apply(s.proj_in_conv, h));
    for (const auto& b : s.blocks) h = run(b, h, context);
    h = s.linear_proj ? to_image(apply(s.proj_out_lin, h)) : apply(s.proj_out_conv, to_image(h));
    return residual_add(h, x);
}

Tensor SpatialTransformer::forward(const Tensor& x, const Tensor& context) const { return run(*this, x, context); }

void SpatialTransformer::visit(ParamVisitor& v) {
    v("norm", norm);
    if (linear_proj) v("proj_in", proj_in_lin); else v("proj_in", proj_in_conv);
    v("transformer_blocks", blocks);
    if (linear_proj) v("proj_out", proj_out_lin); else v("proj_out", proj_out_conv);
}

#define NUANCE_UNET_BLOCKS_INSTANTIATE(V)                           \
    template V run(const ResnetBlock&, const V&, const V&);         \
    template V run(const FeedForward&, const V&);                   \
    template V run(const TransformerBlock&, V, const V&);           \
    template V run(const SpatialTransformer&, const V&, const V&);
NUANCE_UNET_BLOCKS_INSTANTIATE(Tensor)
NUANCE_UNET_BLOCKS_INSTANTIATE(Var)
#undef NUANCE_UNET_BLOCKS_INSTANTIATE

}  // namespace nuance
