// Gradients of GroupNorm (optionally with its fused SiLU) for autograd's group_norm (src/autograd/ops_norm.cpp).
// Shape letters: N batch, C channels, G groups, cg channels per group, S spatial (all trailing dims), m = cg·S.
//
// With x̂ = (x − μ)·rstd over a group of m elements, z = x̂·w + b, y = z (or SiLU(z)), dz = dy (or dy·σ(z)(1 + z(1 − σ(z))))
// and dx̂ = dz·w:  dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)),  dw = Σ dz·x̂,  db = Σ dz.
// The statistics are recomputed from the saved input in double, as the forward computes them; the per-channel sums
// run in 8 float lanes (AVX2) flushed into double every 256 elements, so their error stays at a few f32 roundings.
#include <immintrin.h>

#include <cmath>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/vec_math.h"
#include "core/op_stats.h"

namespace nuance {

namespace {

inline double hsum(__m256 v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    double s = 0;
    for (float f : t) s += f;
    return s;
}

struct ChannelSums {
    double dw = 0, db = 0, dxh = 0, dxh_xh = 0;
};

// dz into dst (as dx̂ = dz·w) for one channel of S elements; returns the channel's sums.
ChannelSums channel_pass1(const float* x, const float* g, float* dst, int64_t S, float mu, float rstd, float w, float b,
                          bool silu) {
    ChannelSums out;
    const __m256 vmu = _mm256_set1_ps(mu), vr = _mm256_set1_ps(rstd), vw = _mm256_set1_ps(w), vb = _mm256_set1_ps(b);
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    while (i + 8 <= S) {
        __m256 adw = _mm256_setzero_ps(), adb = adw, adx = adw, adxx = adw;
        const int64_t end = std::min(S, i + 256) / 8 * 8;
        for (; i < end; i += 8) {
            const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmu), vr);
            __m256 dz = _mm256_loadu_ps(g + i);
            if (silu) {
                const __m256 z = _mm256_fmadd_ps(xh, vw, vb);
                const __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, cpu::exp8(_mm256_sub_ps(_mm256_setzero_ps(), z))));
                dz = _mm256_mul_ps(dz, _mm256_mul_ps(sg, _mm256_fmadd_ps(z, _mm256_sub_ps(one, sg), one)));
            }
            adw = _mm256_fmadd_ps(dz, xh, adw);
            adb = _mm256_add_ps(adb, dz);
            const __m256 dxh = _mm256_mul_ps(dz, vw);
            _mm256_storeu_ps(dst + i, dxh);
            adx = _mm256_add_ps(adx, dxh);
            adxx = _mm256_fmadd_ps(dxh, xh, adxx);
        }
        out.dw += hsum(adw);
        out.db += hsum(adb);
        out.dxh += hsum(adx);
        out.dxh_xh += hsum(adxx);
    }
    for (; i < S; ++i) {
        const float xh = (x[i] - mu) * rstd;
        float dz = g[i];
        if (silu) {
            const float z = xh * w + b;
            const float sg = 1.0f / (1.0f + std::exp(-z));
            dz *= sg * (1.0f + z * (1.0f - sg));
        }
        out.dw += (double)dz * xh;
        out.db += dz;
        const float dxh = dz * w;
        dst[i] = dxh;
        out.dxh += dxh;
        out.dxh_xh += (double)dxh * xh;
    }
    return out;
}

}  // namespace

NormGrads CpuBackend::group_norm_backward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& g,
                                          int64_t groups, float eps, bool silu) {
    OpTimer op_timer("group_norm backward");
    NUANCE_CHECK(x.dim() >= 2 && x.dtype() == DType::F32 && x.is_contiguous(),
                 "group_norm backward: the input must be contiguous f32 [N, C, ...], got ", x.str());
    NUANCE_CHECK(g.shape() == x.shape() && g.dtype() == DType::F32 && g.is_contiguous(),
                 "group_norm backward: the gradient ", g.str(), " must be contiguous f32 shaped like the input ",
                 x.shape());
    const int64_t N = x.size(0), C = x.size(1);
    NUANCE_CHECK(groups > 0 && C % groups == 0, "group_norm backward: ", C, " channels not divisible into ", groups,
                 " groups");
    for (const Tensor* t : {&w, &b})
        NUANCE_CHECK(!t->defined() || (t->numel() == C && t->dtype() == DType::F32 && t->is_contiguous()),
                     "group_norm backward: weight/bias ", t->str(), " for ", C, " channels");
    const int64_t S = C && N ? x.numel() / (N * C) : 0, cg = C / groups, m = cg * S;
    NormGrads out;
    out.dx = Tensor::empty(x.shape(), DType::F32);
    std::vector<double> dw_nc((size_t)(N * C), 0.0), db_nc((size_t)(N * C), 0.0);
    const float *px = x.data<float>(), *pg = g.data<float>();
    const float* pw = w.defined() ? w.data<float>() : nullptr;
    const float* pb = b.defined() ? b.data<float>() : nullptr;
    float* pdx = out.dx.data<float>();
#pragma omp parallel for schedule(static) collapse(2)
    for (int64_t n = 0; n < N; ++n)
        for (int64_t gi = 0; gi < groups; ++gi) {
            const int64_t base = (n * C + gi * cg) * S;
            const float* xg = px + base;
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < m; ++i) s += xg[i];
            const double mu = m ? s / (double)m : 0.0;
            double s2 = 0;
#pragma omp simd reduction(+ : s2)
            for (int64_t i = 0; i < m; ++i) s2 += (xg[i] - mu) * (xg[i] - mu);
            const double rstd = 1.0 / std::sqrt((m ? s2 / (double)m : 0.0) + eps);
            double sum_dxh = 0, sum_dxh_xh = 0;
            for (int64_t c = 0; c < cg; ++c) {
                const int64_t ch = gi * cg + c;
                const ChannelSums cs = channel_pass1(xg + c * S, pg + base + c * S, pdx + base + c * S, S, (float)mu,
                                                     (float)rstd, pw ? pw[ch] : 1.0f, pb ? pb[ch] : 0.0f, silu);
                dw_nc[(size_t)(n * C + ch)] = cs.dw;
                db_nc[(size_t)(n * C + ch)] = cs.db;
                sum_dxh += cs.dxh;
                sum_dxh_xh += cs.dxh_xh;
            }
            // pass 2: dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))
            const float fm1 = m ? (float)(sum_dxh / (double)m) : 0.0f, fm2 = m ? (float)(sum_dxh_xh / (double)m) : 0.0f;
            const float fmu = (float)mu, fr = (float)rstd;
            float* dg = pdx + base;
#pragma omp simd
            for (int64_t i = 0; i < m; ++i) {
                const float xh = (xg[i] - fmu) * fr;
                dg[i] = fr * (dg[i] - fm1 - xh * fm2);
            }
        }
    auto reduce_n = [&](const std::vector<double>& part) {
        Tensor t = Tensor::empty({C}, DType::F32);
        float* p = t.data<float>();
        for (int64_t c = 0; c < C; ++c) {
            double a = 0;
            for (int64_t n = 0; n < N; ++n) a += part[(size_t)(n * C + c)];
            p[c] = (float)a;
        }
        return t;
    };
    out.dw = reduce_n(dw_nc);
    out.db = reduce_n(db_nc);
    return out;
}

}  // namespace nuance
