#include "ops/interpolate.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/op_stats.h"

namespace nuance {

namespace {

void check_args(const Tensor& x, int64_t oh, int64_t ow, const char* op) {
    NUANCE_CHECK(x.dim() == 4, op, ": input must be [N, C, H, W], got ", x.shape());
    NUANCE_CHECK(x.size(2) > 0 && x.size(3) > 0, op, ": empty input ", x.shape());
    NUANCE_CHECK(oh > 0 && ow > 0 && oh <= 65536 && ow <= 65536, op, ": bad output size ", oh, "x", ow);
    int64_t n = 0;
    NUANCE_CHECK(!__builtin_mul_overflow(x.size(0) * x.size(1), oh * ow, &n) && n <= ((int64_t)1 << 34), op,
                 ": output [", x.size(0), ", ", x.size(1), ", ", oh, ", ", ow, "] is too large");
}

struct Taps {
    std::vector<int64_t> i0, i1;
    std::vector<float> l0, l1;
};

// torch area_pixel_compute_source_index (align_corners=False) + upsample_bilinear2d's index/lambda pairs.
Taps linear_taps(int64_t in, int64_t out) {
    Taps t;
    const float scale = (float)in / (float)out;
    for (int64_t o = 0; o < out; ++o) {
        const float src = std::max(scale * ((float)o + 0.5f) - 0.5f, 0.0f);
        const int64_t i0 = std::min((int64_t)src, in - 1);
        const int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
        const float l1 = src - (float)i0, l0 = 1.0f - l1;
        t.i0.push_back(i0);
        t.i1.push_back(i1);
        t.l0.push_back(l0);
        t.l1.push_back(l1);
    }
    return t;
}

}  // namespace

Tensor interpolate_bilinear(const Tensor& x_in, int64_t oh, int64_t ow) {
    OpTimer op_timer("upsample");
    check_args(x_in, oh, ow, "interpolate_bilinear");
    const Tensor x = x_in.f32().contiguous();
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const Taps ty = linear_taps(H, oh), tx = linear_taps(W, ow);
    Tensor y = Tensor::empty({N, C, oh, ow}, DType::F32);
    const float* px = x.data<float>();
    float* py = y.data<float>();
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < N * C; ++nc) {
        const float* s = px + nc * H * W;
        float* d = py + nc * oh * ow;
        for (int64_t i = 0; i < oh; ++i) {
            const float* r0 = s + ty.i0[i] * W;
            const float* r1 = s + ty.i1[i] * W;
            for (int64_t j = 0; j < ow; ++j) {
                const int64_t a = tx.i0[j], b = tx.i1[j];
                d[i * ow + j] = ty.l0[i] * (tx.l0[j] * r0[a] + tx.l1[j] * r0[b]) +
                                ty.l1[i] * (tx.l0[j] * r1[a] + tx.l1[j] * r1[b]);
            }
        }
    }
    return y;
}

Tensor interpolate_nearest_exact(const Tensor& x_in, int64_t oh, int64_t ow) {
    OpTimer op_timer("upsample");
    check_args(x_in, oh, ow, "interpolate_nearest_exact");
    const Tensor x = x_in.f32().contiguous();
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    auto idx = [](int64_t o, int64_t in, int64_t out) {
        const float scale = (float)in / (float)out;
        return std::min((int64_t)std::floor(((float)o + 0.5f) * scale), in - 1);
    };
    std::vector<int64_t> iy(oh), ix(ow);
    for (int64_t i = 0; i < oh; ++i) iy[i] = idx(i, H, oh);
    for (int64_t j = 0; j < ow; ++j) ix[j] = idx(j, W, ow);
    Tensor y = Tensor::empty({N, C, oh, ow}, DType::F32);
    const float* px = x.data<float>();
    float* py = y.data<float>();
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < N * C; ++nc)
        for (int64_t i = 0; i < oh; ++i)
            for (int64_t j = 0; j < ow; ++j) py[(nc * oh + i) * ow + j] = px[nc * H * W + iy[i] * W + ix[j]];
    return y;
}

}  // namespace nuance
