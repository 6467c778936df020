// Dense products through oneDNN.
#pragma once
#include "core/tensor.h"

namespace nuance {

// y = x · wᵀ + b.  x: [..., K], w: [N, K] (checkpoint layout), b: [N] or undefined.  y: [..., N] F32.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// Batched matrix product with broadcasting over leading dims: a [..., M, K] · b [..., K, N] -> [..., M, N].
// Either operand may be a transposed view (e.g. k.transpose(-1, -2)).
Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace nuance
