// Dense products through oneDNN.
#pragma once
#include "core/tensor.h"

namespace nuance {

// y = x · wᵀ + b.  x: [..., K], w: [N, K] (checkpoint layout, any float dtype), b: [N] or undefined.  y: [..., N].
// compute: FP32, or BF16 (x rounded to bf16, f32 accumulation); Auto = BF16 for BF16 weights, else FP32.
// out: F32, or BF16 (the f32 result rounded to nearest even) for a consumer that rounds its input to bf16 anyway.
// The weight is packed once per weight tensor into the layout the product wants (backends/cpu/dnnl_cache.h).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), Precision compute = Precision::Auto,
              DType out = DType::F32);

// Batched matrix product with broadcasting over leading dims: a [..., M, K] · b [..., K, N] -> [..., M, N].
// Either operand may be a transposed view (e.g. k.transpose(-1, -2)). compute: FP32 (and Auto) in f32; BF16 rounds
// both operands to bf16 with f32 accumulation (mixed-precision training's backward products).
Tensor matmul(const Tensor& a, const Tensor& b, Precision compute = Precision::FP32);

}  // namespace nuance
