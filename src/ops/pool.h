// Pooling and smooth resampling of [N, C, H, W] feature maps: torch's max_pool2d and bilinear interpolate
// (align_corners=False), as the LPIPS trunks (AlexNet, VGG16) and its spatial maps use them.
#pragma once
#include "core/tensor.h"

namespace nuance {

// torch.nn.functional.max_pool2d(x, kernel, stride, padding, ceil_mode=False): x [N, C, H, W] any float dtype ->
// [N, C, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1] F32. Padding counts as -inf. kernel >= 1, stride >= 1,
// 0 <= padding <= kernel / 2 (torch's rule), and the window must fit: H + 2p >= k.
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding = 0);

// torch.nn.functional.interpolate(x, size=(oh, ow), mode='bilinear', align_corners=False) on [N, C, H, W]:
// src = max((dst + 0.5) * in / out - 0.5, 0), i0 = floor(src), i1 = min(i0 + 1, in - 1), weights in f32
// (torch's CPU kernel). F32 result.
Tensor interpolate_bilinear(const Tensor& x, int64_t oh, int64_t ow);

}  // namespace nuance
