// Shape letters: N batch, Li image tokens, Lt text tokens, L = Lt + Li, D width, H heads, d head dim.
#include "models/flux/flux_blocks.h"

namespace nuance {

FluxJointAttention::FluxJointAttention(int64_t dim, int64_t heads_, int64_t head_dim, float eps_)
    : to_q(dim, dim), to_k(dim, dim), to_v(dim, dim), to_out(dim, dim), add_q_proj(dim, dim), add_k_proj(dim, dim),
      add_v_proj(dim, dim), to_add_out(dim, dim), norm_q(head_dim), norm_k(head_dim), norm_added_q(head_dim),
      norm_added_k(head_dim), heads(heads_), eps(eps_) {}

std::pair<Tensor, Tensor> FluxJointAttention::operator()(const Tensor& x, const Tensor& ctx,
                                                        const Tensor& freqs) const {
    const int64_t Lt = ctx.size(1), Li = x.size(1);
    const DType qkv = to_q.input_dtype();  // bf16 attention: q/k/v leave the rope / projection in bf16
    const Tensor f_txt = freqs.narrow(0, 0, Lt), f_img = freqs.narrow(0, Lt, Li);
    // [N, L, D] each, text first
    const Tensor q = cat({rms_norm_rope(add_q_proj(ctx), *norm_added_q.weight, eps, f_txt, heads, qkv),
                          rms_norm_rope(to_q(x), *norm_q.weight, eps, f_img, heads, qkv)}, 1);
    const Tensor k = cat({rms_norm_rope(add_k_proj(ctx), *norm_added_k.weight, eps, f_txt, heads, qkv),
                          rms_norm_rope(to_k(x), *norm_k.weight, eps, f_img, heads, qkv)}, 1);
    const Tensor v = cat({add_v_proj(ctx, qkv), to_v(x, qkv)}, 1);
    const Tensor o = multi_head_attention(q, k, v, heads, false, 0.0f, to_q.weight.compute);  // [N, L, D]
    return {to_out(o.narrow(1, Lt, Li)), to_add_out(o.narrow(1, 0, Lt))};
}

void FluxJointAttention::visit(ParamVisitor& v) {
    v("to_q", to_q); v("to_k", to_k); v("to_v", to_v); v("to_out.0", to_out);
    v("add_q_proj", add_q_proj); v("add_k_proj", add_k_proj); v("add_v_proj", add_v_proj);
    v("to_add_out", to_add_out);
    v("norm_q", norm_q); v("norm_k", norm_k); v("norm_added_q", norm_added_q); v("norm_added_k", norm_added_k);
}

FluxDoubleBlock::FluxDoubleBlock(int64_t dim, int64_t heads, int64_t head_dim, int64_t mlp_hidden, float eps_)
    : norm1(dim, 6 * dim), norm1_context(dim, 6 * dim), attn(dim, heads, head_dim, eps_), ff(dim, mlp_hidden),
      ff_context(dim, mlp_hidden), eps(eps_) {}

std::pair<Tensor, Tensor> FluxDoubleBlock::forward(Tensor x, Tensor ctx, const Tensor& silu_vec,
                                                   const Tensor& freqs) const {
    // AdaLN-Zero (Peebles & Xie 2022) per stream: [N, D] each
    const auto [shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp] = chunk<6>(norm1(silu_vec), 1);
    const auto [c_shift_msa, c_scale_msa, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp] =
        chunk<6>(norm1_context(silu_vec), 1);

    const DType in = attn.to_q.input_dtype();  // what the linears after each norm take (bf16 in bf16 mode)
    const auto [attn_x, attn_ctx] = attn(layer_norm_modulate(x, shift_msa, scale_msa, eps, in),
                                         layer_norm_modulate(ctx, c_shift_msa, c_scale_msa, eps, in), freqs);
    x = gated_residual(x, gate_msa, attn_x);
    x = gated_residual(x, gate_mlp, ff(layer_norm_modulate(x, shift_mlp, scale_mlp, eps, in)));

    ctx = gated_residual(ctx, c_gate_msa, attn_ctx);
    ctx = gated_residual(ctx, c_gate_mlp,
                         ff_context(layer_norm_modulate(ctx, c_shift_mlp, c_scale_mlp, eps, in)));
    return {x, ctx};
}

void FluxDoubleBlock::visit(ParamVisitor& v) {
    v("norm1.linear", norm1); v("norm1_context.linear", norm1_context); v("attn", attn);
    v("ff", ff); v("ff_context", ff_context);
}

FluxSingleBlock::FluxSingleBlock(int64_t dim, int64_t heads_, int64_t head_dim, int64_t mlp_hidden, float eps_)
    : norm(dim, 3 * dim), to_q(dim, dim), to_k(dim, dim), to_v(dim, dim), proj_mlp(dim, mlp_hidden),
      proj_out(dim + mlp_hidden, dim), norm_q(head_dim), norm_k(head_dim), heads(heads_), eps(eps_) {}

Tensor FluxSingleBlock::forward(const Tensor& x, const Tensor& silu_vec, const Tensor& freqs) const {
    const auto [shift, scale, gate] = chunk<3>(norm(silu_vec), 1);  // [N, D] each
    const DType qkv = to_q.input_dtype();
    const Tensor h = layer_norm_modulate(x, shift, scale, eps, qkv);  // [N, L, D]
    const Tensor q = rms_norm_rope(to_q(h), *norm_q.weight, eps, freqs, heads, qkv);
    const Tensor k = rms_norm_rope(to_k(h), *norm_k.weight, eps, freqs, heads, qkv);
    const Tensor attn = multi_head_attention(q, k, to_v(h, qkv), heads, false, 0.0f, to_q.weight.compute);
    const Tensor mlp = gelu_tanh(proj_mlp(h));                                    // [N, L, mlp]
    return gated_residual(x, gate, proj_out(cat({attn, mlp}, 2)));  // [N, L, D]
}

void FluxSingleBlock::visit(ParamVisitor& v) {
    v("norm.linear", norm);
    v("attn.to_q", to_q); v("attn.to_k", to_k); v("attn.to_v", to_v);
    v("attn.norm_q", norm_q); v("attn.norm_k", norm_k);
    v("proj_mlp", proj_mlp); v("proj_out", proj_out);
}

}  // namespace nuance
