// Rotary position embeddings (Su et al. 2021, RoFormer) over several position axes, as Flux uses them
// (diffusers FluxPosEmbed + apply_rotary_emb with use_real_unbind_dim=-1).
// Shape letters: B batch, L tokens, A position axes, H heads, d head dim (= sum of the axes' dims), J = d/2 pairs.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace nuance {

// ids [L, A] (any float or integer dtype: positions per axis), axes_dims [A] (each even, summing to d) ->
// freqs [L, J, 2] F32 holding (cos, sin) of the angle ids[l, a] * theta^(-2i/d_a) for pair i of axis a; the
// axes' pairs follow each other (axis 0's d_0/2 pairs first). Angles are computed in float64 and rounded once,
// as diffusers does (freqs_dtype=float64). Errors name the ids shape, the axes and the offending value.
Tensor rope_frequencies(const Tensor& ids, const std::vector<int64_t>& axes_dims, double theta = 10000.0);

// Rotates the pairs (x[2j], x[2j+1]) of every head by the angle of pair j at the token's position:
//   y[2j]   = x[2j] cos - x[2j+1] sin,   y[2j+1] = x[2j+1] cos + x[2j] sin.
// x [B, L, H*d] token-major (a projection's output), freqs [L, J, 2] -> [B, L, H*d] in `out` (F32, or BF16 for a
// bf16 attention: the rounding it would do anyway, fused).
Tensor apply_rope(const Tensor& x, const Tensor& freqs, int64_t heads, DType out = DType::F32);

// The qk-norm of Flux / SD3 and then RoPE, in one pass over x: each head is RMS-normalised over its d values
// (y = w * x / sqrt(mean(x^2) + eps), as rms_norm) and then rotated as apply_rope. norm_weight: [d].
Tensor rms_norm_rope(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& freqs, int64_t heads,
                     DType out = DType::F32);

}  // namespace nuance
