// Scaled dot-product attention.
#pragma once
#include "core/tensor.h"

namespace nuance {

// q: [B, H, Lq, d], k: [B, H, Lk, d], v: [B, H, Lk, dv] -> [B, H, Lq, dv].
// scale <= 0 means 1/sqrt(d). causal masks keys after the query position. bias (optional) is added to the scores,
// broadcastable to [B, H, Lq, Lk] (T5's relative position bias).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = false,
                                    float scale = 0.0f, const Tensor& bias = Tensor());

// Multi-head attention on token-major tensors: q [B, Lq, H*d], k/v [B, Lk, H*d] -> [B, Lq, H*dv].
// compute: BF16 rounds q/k/v (and the softmax weights) to bf16 for the two products; Auto follows q's dtype.
Tensor multi_head_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads, bool causal = false,
                            float scale = 0.0f, Precision compute = Precision::Auto);

}  // namespace nuance
