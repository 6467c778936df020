// diffusers' Attention processor layout: to_q, to_k, to_v (optional bias), to_out.0.  x: [B, L, C].
#pragma once
#include "nn/layers.h"

namespace nuance {

struct Attention : Module {
    Linear to_q, to_k, to_v, to_out;
    int64_t heads = 1;
    Attention() = default;
    // query_dim C, context_dim Cc (== C for self-attention), heads H, head_dim d (inner = H*d).
    Attention(int64_t query_dim, int64_t context_dim, int64_t heads_, int64_t head_dim, bool qkv_bias = false)
        : to_q(query_dim, heads_ * head_dim, qkv_bias), to_k(context_dim, heads_ * head_dim, qkv_bias),
          to_v(context_dim, heads_ * head_dim, qkv_bias), to_out(heads_ * head_dim, query_dim), heads(heads_) {}
    Tensor operator()(const Tensor& x, const Tensor& context = Tensor()) const {
        const Tensor& c = context.defined() ? context : x;
        const DType qkv = to_q.input_dtype();  // bf16 attention: the projections give bf16 q/k/v directly
        return to_out(multi_head_attention(to_q(x, qkv), to_k(c, qkv), to_v(c, qkv), heads, false, 0.0f,
                                           to_q.weight.compute));
    }
    void visit(ParamVisitor& v) override { v("to_q", to_q); v("to_k", to_k); v("to_v", to_v); v("to_out.0", to_out); }
};

}  // namespace nuance
