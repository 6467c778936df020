#include "models/mmdit/mmdit.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "ops/modulate.h"

namespace nuance {

namespace {

constexpr float kNormEps = 1e-6f;

// adaLN: LayerNorm without affine (eps 1e-6), then x * (1 + scale) + shift with per-sample [N, D] vectors, written
// in the dtype of the product that reads it (ops/modulate.h).
Tensor norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, DType out) {
    return layer_norm_modulate(x, shift, scale, kNormEps, out);
}

}  // namespace

Tensor HeadRMSNorm::operator()(const Tensor& x) const {
    if (!enabled) return x;
    const int64_t d = weight.shape[0];
    Shape heads_shape = x.shape();  // [N, L, H*d] -> [N, L, H, d]
    heads_shape.back() = x.size(-1) / d;
    heads_shape.push_back(d);
    return rms_norm(x.reshape(heads_shape), *weight, kNormEps).view(x.shape());
}

JointAttention::JointAttention(int64_t dim, int64_t heads_, int64_t head_dim, bool qk_norm, bool joint_,
                               bool pre_only)
    : to_q(dim, dim), to_k(dim, dim), to_v(dim, dim), to_out(dim, dim), norm_q(head_dim, qk_norm),
      norm_k(head_dim, qk_norm), heads(heads_), joint(joint_), context_pre_only(pre_only) {
    if (joint) {
        add_q_proj = Linear(dim, dim);
        add_k_proj = Linear(dim, dim);
        add_v_proj = Linear(dim, dim);
        norm_added_q = HeadRMSNorm(head_dim, qk_norm);
        norm_added_k = HeadRMSNorm(head_dim, qk_norm);
        if (!pre_only) to_add_out = Linear(dim, dim);
    }
}

std::pair<Tensor, Tensor> JointAttention::operator()(const Tensor& x, const Tensor& c) const {
    const DType qkv = to_q.input_dtype();  // bf16 products: the projections give bf16 q/k/v directly
    Tensor q = norm_q(to_q(x, qkv)), k = norm_k(to_k(x, qkv)), v = to_v(x, qkv);  // [N, Lx, D]
    if (!joint) return {to_out(multi_head_attention(q, k, v, heads, false, 0.0f, to_q.weight.compute)), Tensor()};
    const int64_t Lx = x.size(1), Lc = c.size(1);
    // Joint sequence [image tokens, context tokens]: [N, Lx + Lc, D]
    q = cat({q, norm_added_q(add_q_proj(c, qkv))}, 1);
    k = cat({k, norm_added_k(add_k_proj(c, qkv))}, 1);
    v = cat({v, add_v_proj(c, qkv)}, 1);
    const Tensor o = multi_head_attention(q, k, v, heads, false, 0.0f, to_q.weight.compute);
    Tensor ox = to_out(o.narrow(1, 0, Lx));
    Tensor oc = context_pre_only ? Tensor() : to_add_out(o.narrow(1, Lx, Lc));
    return {ox, oc};
}

void JointAttention::visit(ParamVisitor& v) {
    v("to_q", to_q); v("to_k", to_k); v("to_v", to_v);
    if (joint) { v("add_q_proj", add_q_proj); v("add_k_proj", add_k_proj); v("add_v_proj", add_v_proj); }
    v("norm_q", norm_q); v("norm_k", norm_k);
    if (joint) { v("norm_added_q", norm_added_q); v("norm_added_k", norm_added_k); }
    v("to_out.0", to_out);
    if (joint && !context_pre_only) v("to_add_out", to_add_out);
}

JointTransformerBlock::JointTransformerBlock(const MMDiTConfig& c, int64_t index)
    : dual(c.dual(index)), context_pre_only(index == c.depth - 1) {
    const int64_t D = c.hidden;
    norm1 = Linear(D, (dual ? 9 : 6) * D);                        // AdaLayerNormZero / SD35AdaLayerNormZeroX
    norm1_context = Linear(D, (context_pre_only ? 2 : 6) * D);  // AdaLayerNormZero / AdaLayerNormContinuous
    attn = JointAttention(D, c.heads, c.head_dim, c.qk_norm, true, context_pre_only);
    if (dual) attn2 = JointAttention(D, c.heads, c.head_dim, c.qk_norm, false, false);
    ff = GeluFeedForward(D);
    if (!context_pre_only) ff_context = GeluFeedForward(D);
}

std::pair<Tensor, Tensor> JointTransformerBlock::forward(Tensor x, Tensor c, const Tensor& temb) const {
    const Tensor act = silu(temb);                                     // [N, D]
    const std::vector<Tensor> m = chunk(norm1(act), dual ? 9 : 6, 1);  // each [N, D]
    const Tensor &shift_msa = m[0], &scale_msa = m[1], &gate_msa = m[2];
    const Tensor &shift_mlp = m[3], &scale_mlp = m[4], &gate_mlp = m[5];
    const std::vector<Tensor> mc = chunk(norm1_context(act), context_pre_only ? 2 : 6, 1);
    const DType qkv = attn.to_q.input_dtype();
    // AdaLayerNormContinuous of the last block orders its halves (scale, shift); adaLN-Zero (shift, scale, gate).
    const Tensor nc = context_pre_only ? norm_modulate(c, mc[1], mc[0], qkv) : norm_modulate(c, mc[0], mc[1], qkv);

    auto [ax, ac] = attn(norm_modulate(x, shift_msa, scale_msa, qkv), nc);
    // MMDiT-X: a second self-attention of the image tokens on the same normalised input (shift2, scale2, gate2).
    const Tensor nx2 = dual ? norm_modulate(x, m[6], m[7], attn2.to_q.input_dtype()) : Tensor();
    x = gated_residual(x, gate_msa, ax);
    if (dual) x = gated_residual(x, m[8], attn2(nx2, Tensor()).first);
    x = gated_residual(x, gate_mlp, ff(norm_modulate(x, shift_mlp, scale_mlp, ff.proj.input_dtype())));
    if (context_pre_only) return {x, Tensor()};

    c = gated_residual(c, mc[2], ac);
    c = gated_residual(c, mc[5], ff_context(norm_modulate(c, mc[3], mc[4], ff_context.proj.input_dtype())));
    return {x, c};
}

void JointTransformerBlock::visit(ParamVisitor& v) {
    v("norm1.linear", norm1);
    v("norm1_context.linear", norm1_context);
    v("attn", attn);
    if (dual) v("attn2", attn2);
    v("ff", ff);
    if (!context_pre_only) v("ff_context", ff_context);
}

SD3Transformer2DModel::SD3Transformer2DModel(const MMDiTConfig& c) : cfg_(c) {
    c.validate();
    const int64_t D = c.hidden, p = c.patch_size, S = c.pos_embed_max_size;
    proj_ = Conv2d(c.in_channels, D, p, p, 0);
    pos_embed_ = Param({1, S * S, D});
    timestep_embedder_ = MlpEmbedder(c.time_freq_dim, D);
    text_embedder_ = MlpEmbedder(c.pooled_projection_dim, D);
    context_embedder_ = Linear(c.joint_attention_dim, D);
    for (int64_t i = 0; i < c.depth; ++i) blocks_.emplace_back(c, i);
    norm_out_ = Linear(D, 2 * D);
    proj_out_ = Linear(D, p * p * c.out_channels);
}

void SD3Transformer2DModel::visit(ParamVisitor& v) {
    v("pos_embed.proj", proj_);
    v("pos_embed.pos_embed", pos_embed_);
    v("time_text_embed.timestep_embedder", timestep_embedder_);
    v("time_text_embed.text_embedder", text_embedder_);
    v("context_embedder", context_embedder_);
    v("transformer_blocks", blocks_);
    v("norm_out.linear", norm_out_);
    v("proj_out", proj_out_);
}

Tensor SD3Transformer2DModel::patch_embed(const Tensor& x) const {
    const int64_t N = x.size(0), p = cfg_.patch_size, S = cfg_.pos_embed_max_size, D = cfg_.hidden;
    const int64_t h = x.size(2) / p, w = x.size(3) / p;
    const Tensor patches = proj_(x).reshape({N, D, h * w}).transpose(1, 2);  // [N, Lx, D]
    // The table is a centre crop of the S x S grid (diffusers PatchEmbed.cropped_pos_embed).
    const int64_t top = (S - h) / 2, left = (S - w) / 2;
    const Tensor pos = (*pos_embed_).view({S, S, D}).slice(0, top, top + h).slice(1, left, left + w);
    return patches + pos.reshape({1, h * w, D});
}

Tensor SD3Transformer2DModel::forward(const Tensor& x, const Tensor& timestep, const Tensor& context,
                                      const Tensor& pooled, const std::vector<int64_t>& skip_layers) const {
    const MMDiTConfig& c = cfg_;
    const int64_t p = c.patch_size, S = c.pos_embed_max_size;
    NUANCE_CHECK(x.dim() == 4 && x.size(0) >= 1 && x.size(1) == c.in_channels, "SD3 transformer: latent ", x.shape(),
                 ", expected [N, ", c.in_channels, ", H, W]");
    const int64_t N = x.size(0), H = x.size(2), W = x.size(3);
    NUANCE_CHECK(H >= p && W >= p && H % p == 0 && W % p == 0, "SD3 transformer: latent size ", H, "x", W,
                 " is not a multiple of the patch size ", p);
    NUANCE_CHECK(H / p <= S && W / p <= S, "SD3 transformer: latent ", H, "x", W, " is ", H / p, "x", W / p,
                 " patches, more than pos_embed_max_size ", S, " each way (largest latent ", S * p, "x", S * p, ")");
    NUANCE_CHECK(context.dim() == 3 && context.size(0) == N && context.size(1) >= 1 &&
                     context.size(2) == c.joint_attention_dim,
                 "SD3 transformer: context ", context.shape(), ", expected [", N, ", L, ", c.joint_attention_dim, "]");
    NUANCE_CHECK(pooled.dim() == 2 && pooled.size(0) == N && pooled.size(1) == c.pooled_projection_dim,
                 "SD3 transformer: pooled embedding ", pooled.shape(), ", expected [", N, ", ",
                 c.pooled_projection_dim, "]");
    NUANCE_CHECK(timestep.numel() == N || timestep.numel() == 1, "SD3 transformer: timestep ", timestep.shape(),
                 " for a batch of ", N);
    for (int64_t s : skip_layers)
        NUANCE_CHECK(s >= 0 && s < c.depth, "SD3 transformer: skip layer ", s, " is not a block index (0..",
                     c.depth - 1, ")");

    Tensor t = timestep.f32().contiguous().reshape({timestep.numel()});
    const std::vector<float> tv = t.to_vector();
    for (size_t i = 0; i < tv.size(); ++i)
        NUANCE_CHECK(std::isfinite(tv[i]), "SD3 transformer: timestep ", i, " is ", tv[i], " (expected a finite value "
                     "in 0..1000)");
    if (t.numel() != N) t = t.expand({N}).contiguous();
    // Conditioning vector: timestep MLP (sinusoidal, [cos, sin], shift 0) + pooled text MLP.  [N, D]
    const Tensor temb = timestep_embedder_(timestep_embedding(t, c.time_freq_dim, true, 0.0f)) + text_embedder_(pooled);

    Tensor hx = patch_embed(x);                  // [N, Lx, D]
    Tensor hc = context_embedder_(context);      // [N, Lc, D]
    for (int64_t i = 0; i < c.depth; ++i) {
        if (std::find(skip_layers.begin(), skip_layers.end(), i) != skip_layers.end()) continue;
        std::tie(hx, hc) = blocks_[i].forward(hx, hc, temb);
    }

    // Final AdaLayerNormContinuous: (scale, shift) = linear(silu(temb)); then the per-token patch projection.
    const auto [scale, shift] = chunk<2>(norm_out_(silu(temb)), 1);
    const Tensor out = proj_out_(norm_modulate(hx, shift, scale, proj_out_.input_dtype()));  // [N, Lx, p*p*C]
    // Unpatchify: [N, h, w, p, q, C] -> [N, C, h, p, w, q] -> [N, C, H, W]
    return out.view({N, H / p, W / p, p, p, c.out_channels}).permute({0, 5, 1, 3, 2, 4}).reshape(
        {N, c.out_channels, H, W});
}

}  // namespace nuance
