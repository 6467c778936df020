// Normalisations. All compute in F32 with double accumulation of the statistics.
#pragma once
#include "core/tensor.h"

namespace nuance {

// x: [N, C, *], groups divide C; weight/bias: [C] or undefined. silu=true fuses a SiLU after the affine.
// out: F32, or BF16 for a consumer whose products run in bf16 (the rounding it would do anyway, fused: the same
// values, one pass less).
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps,
                  bool silu = false, DType out = DType::F32);
// Over the last dim. weight/bias: [D] or undefined. out: F32 or BF16, as for group_norm.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, DType out = DType::F32);
// y = w * x / sqrt(mean(x^2) + eps) over the last dim (T5, SD3 qk-norm, Flux).
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
// Softmax over the last dim.
Tensor softmax(const Tensor& x);

}  // namespace nuance
