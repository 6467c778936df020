// Pooling of [N, C, H, W] feature maps: torch's max_pool2d, as the LPIPS trunks (AlexNet, VGG16) use it.
// (Bilinear resampling is ops/interpolate.h.)
#pragma once
#include "core/tensor.h"

namespace nuance {

// torch.nn.functional.max_pool2d(x, kernel, stride, padding, ceil_mode=False): x [N, C, H, W] any float dtype ->
// [N, C, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1] F32. Padding counts as -inf. kernel >= 1, stride >= 1,
// 0 <= padding <= kernel / 2 (torch's rule), and the window must fit: H + 2p >= k.
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding = 0);

}  // namespace nuance
