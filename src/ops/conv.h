// 2-D convolution through oneDNN.
#pragma once
#include <array>

#include "core/tensor.h"

namespace nuance {

struct Conv2dParams {
    int64_t stride = 1;
    std::array<int64_t, 4> padding{0, 0, 0, 0};  // top, left, bottom, right
    int64_t dilation = 1;
    int64_t groups = 1;
    static Conv2dParams same(int64_t pad, int64_t stride = 1) { return {stride, {pad, pad, pad, pad}, 1, 1}; }
};

// x: [N, C, H, W], w: [O, C/groups, kh, kw], b: [O] or undefined -> [N, O, H', W'] F32.
// compute: as for linear() (FP32 | BF16 | Auto = from the weight's dtype).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p,
              Precision compute = Precision::Auto);

}  // namespace nuance
