// Shape letters: N batch, C channels, G groups, S spatial (H*W or any trailing dims), D feature dim.
#include "ops/norm.h"

#include <algorithm>
#include <cmath>

namespace nuance {

Tensor group_norm(const Tensor& x_in, int64_t groups, const Tensor& w_in, const Tensor& b_in, float eps, bool silu) {
    NUANCE_CHECK(x_in.dim() >= 2, "group_norm: input must be [N, C, ...], got ", x_in.shape());
    const int64_t N = x_in.size(0), C = x_in.size(1);
    NUANCE_CHECK(groups > 0 && C % groups == 0, "group_norm: ", C, " channels not divisible into ", groups, " groups");
    const Tensor x = x_in.f32().contiguous();
    const Tensor w = w_in.defined() ? w_in.f32().contiguous() : Tensor();
    const Tensor b = b_in.defined() ? b_in.f32().contiguous() : Tensor();
    NUANCE_CHECK(!w.defined() || w.numel() == C, "group_norm: weight ", w.shape(), " for ", C, " channels");
    NUANCE_CHECK(!b.defined() || b.numel() == C, "group_norm: bias ", b.shape(), " for ", C, " channels");
    const int64_t S = C ? x.numel() / (N * C) : 0;
    const int64_t cg = C / groups;
    Tensor y = Tensor::empty(x.shape(), DType::F32);
    const float* px = x.data<float>();
    float* py = y.data<float>();
    const float* pw = w.defined() ? w.data<float>() : nullptr;
    const float* pb = b.defined() ? b.data<float>() : nullptr;
#pragma omp parallel for schedule(static) collapse(2)
    for (int64_t n = 0; n < N; ++n)
        for (int64_t g = 0; g < groups; ++g) {
            const float* src = px + (n * C + g * cg) * S;
            float* dst = py + (n * C + g * cg) * S;
            const int64_t m = cg * S;
            double s = 0, s2 = 0;
            for (int64_t i = 0; i < m; ++i) s += src[i];
            const double mu = s / (double)m;
            for (int64_t i = 0; i < m; ++i) { const double d = src[i] - mu; s2 += d * d; }
            const float rstd = (float)(1.0 / std::sqrt(s2 / (double)m + eps));
            const float fmu = (float)mu;
            for (int64_t c = 0; c < cg; ++c) {
                const int64_t ch = g * cg + c;
                const float a = rstd * (pw ? pw[ch] : 1.0f);
                const float bb = (pb ? pb[ch] : 0.0f);
                const float* s_c = src + c * S;
                float* d_c = dst + c * S;
                for (int64_t i = 0; i < S; ++i) {
                    float v = (s_c[i] - fmu) * a + bb;
                    if (silu) v = v / (1.0f + std::exp(-v));
                    d_c[i] = v;
                }
            }
        }
    return y;
}

Tensor layer_norm(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, float eps) {
    NUANCE_CHECK(x_in.dim() >= 1, "layer_norm: scalar input");
    const int64_t D = x_in.size(-1);
    const Tensor x = x_in.f32().contiguous();
    const Tensor w = w_in.defined() ? w_in.f32().contiguous() : Tensor();
    const Tensor b = b_in.defined() ? b_in.f32().contiguous() : Tensor();
    NUANCE_CHECK(!w.defined() || w.numel() == D, "layer_norm: weight ", w.shape(), " for feature dim ", D);
    NUANCE_CHECK(!b.defined() || b.numel() == D, "layer_norm: bias ", b.shape(), " for feature dim ", D);
    const int64_t rows = D ? x.numel() / D : 0;
    Tensor y = Tensor::empty(x.shape(), DType::F32);
    const float* px = x.data<float>();
    float* py = y.data<float>();
    const float* pw = w.defined() ? w.data<float>() : nullptr;
    const float* pb = b.defined() ? b.data<float>() : nullptr;
#pragma omp parallel for schedule(static) if (rows > 16)
    for (int64_t r = 0; r < rows; ++r) {
        const float* s = px + r * D;
        float* d = py + r * D;
        double sum = 0, s2 = 0;
        for (int64_t i = 0; i < D; ++i) sum += s[i];
        const double mu = sum / (double)D;
        for (int64_t i = 0; i < D; ++i) { const double t = s[i] - mu; s2 += t * t; }
        const float rstd = (float)(1.0 / std::sqrt(s2 / (double)D + eps));
        const float fmu = (float)mu;
        for (int64_t i = 0; i < D; ++i) d[i] = (s[i] - fmu) * rstd * (pw ? pw[i] : 1.0f) + (pb ? pb[i] : 0.0f);
    }
    return y;
}

Tensor rms_norm(const Tensor& x_in, const Tensor& w_in, float eps) {
    const int64_t D = x_in.size(-1);
    const Tensor x = x_in.f32().contiguous();
    const Tensor w = w_in.defined() ? w_in.f32().contiguous() : Tensor();
    NUANCE_CHECK(!w.defined() || w.numel() == D, "rms_norm: weight ", w.shape(), " for feature dim ", D);
    const int64_t rows = D ? x.numel() / D : 0;
    Tensor y = Tensor::empty(x.shape(), DType::F32);
    const float* px = x.data<float>();
    float* py = y.data<float>();
    const float* pw = w.defined() ? w.data<float>() : nullptr;
#pragma omp parallel for schedule(static) if (rows > 16)
    for (int64_t r = 0; r < rows; ++r) {
        const float* s = px + r * D;
        float* d = py + r * D;
        double s2 = 0;
        for (int64_t i = 0; i < D; ++i) s2 += (double)s[i] * s[i];
        const float rr = (float)(1.0 / std::sqrt(s2 / (double)D + eps));
        for (int64_t i = 0; i < D; ++i) d[i] = s[i] * rr * (pw ? pw[i] : 1.0f);
    }
    return y;
}

Tensor softmax(const Tensor& x_in) {
    const int64_t D = x_in.size(-1);
    const Tensor x = x_in.f32().contiguous();
    const int64_t rows = D ? x.numel() / D : 0;
    Tensor y = Tensor::empty(x.shape(), DType::F32);
    const float* px = x.data<float>();
    float* py = y.data<float>();
#pragma omp parallel for schedule(static) if (rows > 16)
    for (int64_t r = 0; r < rows; ++r) {
        const float* s = px + r * D;
        float* d = py + r * D;
        float m = -INFINITY;
        for (int64_t i = 0; i < D; ++i) m = std::max(m, s[i]);
        double sum = 0;
        for (int64_t i = 0; i < D; ++i) { d[i] = std::exp(s[i] - m); sum += d[i]; }
        const float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < D; ++i) d[i] *= inv;
    }
    return y;
}

}  // namespace nuance
