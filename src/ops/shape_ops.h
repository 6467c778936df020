// Ops that move data: concatenation, splitting, padding, resampling, embedding lookup.
#pragma once
#include <array>
#include <vector>

#include "core/tensor.h"

namespace nuance {

Tensor cat(const std::vector<Tensor>& ts, int64_t dim);  // result F32 unless all inputs share a dtype
std::vector<Tensor> chunk(const Tensor& t, int64_t n, int64_t dim);  // views
template <size_t K>
std::array<Tensor, K> chunk(const Tensor& t, int64_t dim) {
    auto v = chunk(t, (int64_t)K, dim);
    std::array<Tensor, K> out;
    for (size_t i = 0; i < K; ++i) out[i] = v[i];
    return out;
}
// Constant pad of the last two dims of [N, C, H, W]: (left, right, top, bottom) like F.pad(x, (l, r, t, b)).
Tensor pad2d(const Tensor& x, int64_t left, int64_t right, int64_t top, int64_t bottom, float value = 0.0f);
// Nearest-neighbour resize of [N, C, H, W] to (oh, ow), torch's 'nearest' index rule.
// out: F32, or BF16 for a bf16 convolution after it (the input is rounded, then copied: the same values, less traffic).
Tensor interpolate_nearest(const Tensor& x, int64_t oh, int64_t ow, DType out = DType::F32);
// ids: any integer dtype [...]; weight: [V, D] -> [..., D] F32. Out-of-range ids are an error.
Tensor embedding(const Tensor& ids, const Tensor& weight);
// Sinusoidal timestep embedding (diffusers get_timestep_embedding): t [B] -> [B, dim].
Tensor timestep_embedding(const Tensor& t, int64_t dim, bool flip_sin_to_cos, float downscale_freq_shift,
                          float scale = 1.0f, int64_t max_period = 10000);

}  // namespace nuance
