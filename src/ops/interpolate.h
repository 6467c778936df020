// Resizing latents (hires fix): torch F.interpolate modes other than 'nearest' (ops/shape_ops.h).
#pragma once
#include "core/tensor.h"

namespace nuance {

// [N, C, H, W] -> [N, C, oh, ow] F32, torch F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False,
// antialias=False): src = max((dst + 0.5) * in / out - 0.5, 0) in float, the two nearest taps weighted linearly.
Tensor interpolate_bilinear(const Tensor& x, int64_t oh, int64_t ow);
// mode="nearest-exact": src = min(floor((dst + 0.5) * in / out), in - 1) (PIL/scikit's rule; 'nearest' drops the +0.5).
Tensor interpolate_nearest_exact(const Tensor& x, int64_t oh, int64_t ow);

}  // namespace nuance
