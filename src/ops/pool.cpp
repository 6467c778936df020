#include "ops/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/op_stats.h"

namespace nuance {

namespace {
constexpr int64_t kMaxSide = int64_t(1) << 20;  // any real feature map is far smaller; bounds every product below

void check_map(const Tensor& x, const char* op) {
    NUANCE_CHECK(x.defined() && x.dim() == 4, op, ": input must be [N, C, H, W], got ",
                 x.defined() ? x.str() : std::string("an undefined tensor"));
    NUANCE_CHECK(x.size(2) > 0 && x.size(3) > 0 && x.size(2) <= kMaxSide && x.size(3) <= kMaxSide, op,
                 ": spatial size ", x.size(2), "x", x.size(3), " must be in 1..", kMaxSide);
}
}  // namespace

Tensor max_pool2d(const Tensor& x_in, int64_t k, int64_t s, int64_t p) {
    OpTimer op_timer("max_pool2d");
    check_map(x_in, "max_pool2d");
    NUANCE_CHECK(k >= 1 && k <= 64 && s >= 1 && s <= 64, "max_pool2d: kernel ", k, " and stride ", s,
                 " must be in 1..64");
    NUANCE_CHECK(p >= 0 && p <= k / 2, "max_pool2d: padding ", p, " must be in 0..kernel/2 (", k / 2, ")");
    const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
    NUANCE_CHECK(H + 2 * p >= k && W + 2 * p >= k, "max_pool2d: input ", H, "x", W, " (padding ", p,
                 ") is smaller than the ", k, "x", k, " window");
    const int64_t oh = (H + 2 * p - k) / s + 1, ow = (W + 2 * p - k) / s + 1;
    const Tensor x = x_in.f32().contiguous();
    Tensor y = Tensor::empty({N, C, oh, ow}, DType::F32);
    const float* px = x.data<float>();
    float* py = y.data<float>();
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < N * C; ++nc) {
        const float* src = px + nc * H * W;
        float* dst = py + nc * oh * ow;
        for (int64_t i = 0; i < oh; ++i) {
            const int64_t y0 = std::max<int64_t>(i * s - p, 0), y1 = std::min<int64_t>(i * s - p + k, H);
            for (int64_t j = 0; j < ow; ++j) {
                const int64_t x0 = std::max<int64_t>(j * s - p, 0), x1 = std::min<int64_t>(j * s - p + k, W);
                float m = -std::numeric_limits<float>::infinity();
                for (int64_t yy = y0; yy < y1; ++yy)
                    for (int64_t xx = x0; xx < x1; ++xx) {
                        const float v = src[yy * W + xx];
                        if (v > m || std::isnan(v)) m = v;  // torch propagates NaN
                    }
                dst[i * ow + j] = m;
            }
        }
    }
    return y;
}

}  // namespace nuance
