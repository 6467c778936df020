// adaLN modulation (DiT, Peebles & Xie 2022; SD3's MMDiT, Flux): per-sample scale, shift and gate vectors from the
// conditioning, applied over every token. Fused so that each costs one pass over the activations, and the
// normalised input of a bf16 product is written in bf16 directly.
// Shape letters: N batch, L tokens, D features.
#pragma once
#include "core/tensor.h"

namespace nuance {

// LayerNorm over D without affine parameters (eps), then modulate: y = norm(x) * (1 + scale[n]) + shift[n].
// x: [N, L, D]; shift, scale: [N, D] (any strides: chunks of one adaLN projection). out: F32, or BF16 for a bf16
// product after it (the same values rounded, in the same pass).
Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                           DType out = DType::F32);

// The gated residual of adaLN-Zero: x + gate[n] * y.  x, y: [N, L, D]; gate: [N, D]. F32 result.
Tensor gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y);

}  // namespace nuance
