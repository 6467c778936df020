// Normalisations. All compute in F32 with double accumulation of the statistics.
#pragma once
#include "core/tensor.h"

namespace nuance {

// x: [N, C, *], groups divide C; weight/bias: [C] or undefined. silu=true fuses a SiLU after the affine.
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps,
                  bool silu = false);
// Over the last dim. weight/bias: [D] or undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
// y = w * x / sqrt(mean(x^2) + eps) over the last dim (T5, SD3 qk-norm, Flux).
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
// Softmax over the last dim.
Tensor softmax(const Tensor& x);

}  // namespace nuance
