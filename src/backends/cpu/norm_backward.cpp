// Gradients of GroupNorm (optionally with its fused SiLU) for autograd's group_norm (src/autograd/ops_norm.cpp).
// Shape letters: N batch, C channels, G groups, cg channels per group, S spatial (all trailing dims), m = cg·S.
//
// With x̂ = (x − μ)·rstd over a group of m elements, z = x̂·w + b, y = z (or SiLU(z)), dz = dy (or dy·σ(z)(1 + z(1 − σ(z))))
// and dx̂ = dz·w:  dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)),  dw = Σ dz·x̂,  db = Σ dz.
// The statistics are recomputed from the saved input in double, as the forward computes them; the per-channel sums
// run in 8 float lanes (AVX2) flushed into double every 256 elements, so their error stays at a few f32 roundings.
#include <immintrin.h>

#include <algorithm>
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
    int64_t i = 0;
    while (i + 8 <= S) {
        __m256 adw = _mm256_setzero_ps(), adb = adw, adx = adw, adxx = adw;
        const int64_t end = std::min(S, i + 256) / 8 * 8;
        for (; i < end; i += 8) {
            const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmu), vr);
            __m256 dz = _mm256_loadu_ps(g + i);
            if (silu) dz = _mm256_mul_ps(dz, cpu::silu_grad8(_mm256_fmadd_ps(xh, vw, vb)));
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

// The same gradients for a channels-last [N, C, H, W] input and gradient (dense N, H, W, C; the training UNet's
// layout): one batch element per task. Per-channel sums run in f32 over blocks of kBlock pixels (8 channels a
// vector) and are flushed into double, as the NCHW kernel's lanes are.
void group_norm_backward_nhwc(const float* px, const float* pg, const float* pw, const float* pb, float* pdx,
                              int64_t N, int64_t C, int64_t S, int64_t groups, float eps, bool silu, double* dw_nc,
                              double* db_nc) {
    constexpr int64_t kBlock = 64;
    const int64_t cg = C / groups, m = cg * S, C8 = C / 8 * 8;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        const float* x = px + n * S * C;
        const float* g = pg + n * S * C;
        float* dx = pdx + n * S * C;
        std::vector<float> t1((size_t)C), t2((size_t)C), t3((size_t)C), t4((size_t)C);
        std::vector<double> a1((size_t)C, 0.0), a2((size_t)C, 0.0), a3((size_t)C, 0.0), a4((size_t)C, 0.0);
        auto flush = [&](std::vector<float>& t, std::vector<double>& a) {
            for (int64_t c = 0; c < C; ++c) a[(size_t)c] += t[(size_t)c], t[(size_t)c] = 0.0f;
        };
        // statistics: Σx per channel, then Σ(x − μ)² with the group mean
        std::fill(t1.begin(), t1.end(), 0.0f);
        for (int64_t i0 = 0; i0 < S; i0 += kBlock) {
            for (int64_t i = i0; i < std::min(S, i0 + kBlock); ++i)
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) t1[(size_t)c] += x[i * C + c];
            flush(t1, a1);
        }
        std::vector<float> mu_f((size_t)C), r_f((size_t)C), w_f((size_t)C), b_f((size_t)C);
        for (int64_t gi = 0; gi < groups; ++gi) {
            double s = 0;
            for (int64_t c = gi * cg; c < (gi + 1) * cg; ++c) s += a1[(size_t)c];
            for (int64_t c = gi * cg; c < (gi + 1) * cg; ++c) mu_f[(size_t)c] = (float)(m ? s / (double)m : 0.0);
        }
        std::fill(a1.begin(), a1.end(), 0.0);
        for (int64_t i0 = 0; i0 < S; i0 += kBlock) {
            for (int64_t i = i0; i < std::min(S, i0 + kBlock); ++i)
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) {
                    const float d = x[i * C + c] - mu_f[(size_t)c];
                    t1[(size_t)c] += d * d;
                }
            flush(t1, a1);
        }
        for (int64_t gi = 0; gi < groups; ++gi) {
            double s2 = 0;
            for (int64_t c = gi * cg; c < (gi + 1) * cg; ++c) s2 += a1[(size_t)c];
            const float r = (float)(1.0 / std::sqrt((m ? s2 / (double)m : 0.0) + eps));
            for (int64_t c = gi * cg; c < (gi + 1) * cg; ++c) r_f[(size_t)c] = r;
        }
        for (int64_t c = 0; c < C; ++c) w_f[(size_t)c] = pw ? pw[c] : 1.0f, b_f[(size_t)c] = pb ? pb[c] : 0.0f;
        // pass 1: dx̂ = dz·w into dx; per-channel Σ dz·x̂, Σ dz, Σ dx̂, Σ dx̂·x̂
        std::fill(a1.begin(), a1.end(), 0.0);
        for (int64_t i0 = 0; i0 < S; i0 += kBlock) {
            for (int64_t i = i0; i < std::min(S, i0 + kBlock); ++i) {
                const float* xr = x + i * C;
                const float* gr = g + i * C;
                float* dr = dx + i * C;
                int64_t c = 0;
                for (; c < C8; c += 8) {
                    const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + c), _mm256_loadu_ps(&mu_f[(size_t)c])),
                                                    _mm256_loadu_ps(&r_f[(size_t)c]));
                    const __m256 vw = _mm256_loadu_ps(&w_f[(size_t)c]);
                    __m256 dz = _mm256_loadu_ps(gr + c);
                    if (silu) dz = _mm256_mul_ps(dz, cpu::silu_grad8(_mm256_fmadd_ps(xh, vw, _mm256_loadu_ps(&b_f[(size_t)c]))));
                    const __m256 dxh = _mm256_mul_ps(dz, vw);
                    _mm256_storeu_ps(dr + c, dxh);
                    _mm256_storeu_ps(&t1[(size_t)c], _mm256_fmadd_ps(dz, xh, _mm256_loadu_ps(&t1[(size_t)c])));
                    _mm256_storeu_ps(&t2[(size_t)c], _mm256_add_ps(_mm256_loadu_ps(&t2[(size_t)c]), dz));
                    _mm256_storeu_ps(&t3[(size_t)c], _mm256_add_ps(_mm256_loadu_ps(&t3[(size_t)c]), dxh));
                    _mm256_storeu_ps(&t4[(size_t)c], _mm256_fmadd_ps(dxh, xh, _mm256_loadu_ps(&t4[(size_t)c])));
                }
                for (; c < C; ++c) {
                    const float xh = (xr[c] - mu_f[(size_t)c]) * r_f[(size_t)c];
                    float dz = gr[c];
                    if (silu) {
                        const float z = xh * w_f[(size_t)c] + b_f[(size_t)c];
                        const float sg = 1.0f / (1.0f + std::exp(-z));
                        dz *= sg * (1.0f + z * (1.0f - sg));
                    }
                    const float dxh = dz * w_f[(size_t)c];
                    dr[c] = dxh;
                    t1[(size_t)c] += dz * xh;
                    t2[(size_t)c] += dz;
                    t3[(size_t)c] += dxh;
                    t4[(size_t)c] += dxh * xh;
                }
            }
            flush(t1, a1);
            flush(t2, a2);
            flush(t3, a3);
            flush(t4, a4);
        }
        std::vector<float> m1((size_t)C), m2((size_t)C);
        for (int64_t gi = 0; gi < groups; ++gi) {
            double s3 = 0, s4 = 0;
            for (int64_t c = gi * cg; c < (gi + 1) * cg; ++c) s3 += a3[(size_t)c], s4 += a4[(size_t)c];
            for (int64_t c = gi * cg; c < (gi + 1) * cg; ++c) {
                m1[(size_t)c] = m ? (float)(s3 / (double)m) : 0.0f;
                m2[(size_t)c] = m ? (float)(s4 / (double)m) : 0.0f;
            }
        }
        for (int64_t c = 0; c < C; ++c) {
            dw_nc[n * C + c] = a1[(size_t)c];
            db_nc[n * C + c] = a2[(size_t)c];
        }
        // pass 2: dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))
        for (int64_t i = 0; i < S; ++i) {
            const float* xr = x + i * C;
            float* dr = dx + i * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                const float xh = (xr[c] - mu_f[(size_t)c]) * r_f[(size_t)c];
                dr[c] = r_f[(size_t)c] * (dr[c] - m1[(size_t)c] - xh * m2[(size_t)c]);
            }
        }
    }
}

}  // namespace

NormGrads CpuBackend::group_norm_backward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& g,
                                          int64_t groups, float eps, bool silu) {
    OpTimer op_timer("group_norm backward");
    // channels-last (rank 4, dense N, H, W, C): both x and the gradient, else both contiguous
    const bool cl = x.dim() == 4 && !x.is_contiguous() && x.is_channels_last() && g.is_channels_last();
    NUANCE_CHECK(x.dim() >= 2 && x.dtype() == DType::F32 && (x.is_contiguous() || cl),
                 "group_norm backward: the input must be f32 [N, C, ...], contiguous or channels-last, got ", x.str());
    NUANCE_CHECK(g.shape() == x.shape() && g.dtype() == DType::F32 && (cl || g.is_contiguous()),
                 "group_norm backward: the gradient ", g.str(), " must be f32 shaped and laid out like the input ",
                 x.str());
    const int64_t N = x.size(0), C = x.size(1);
    NUANCE_CHECK(groups > 0 && C % groups == 0, "group_norm backward: ", C, " channels not divisible into ", groups,
                 " groups");
    for (const Tensor* t : {&w, &b})
        NUANCE_CHECK(!t->defined() || (t->numel() == C && t->dtype() == DType::F32 && t->is_contiguous()),
                     "group_norm backward: weight/bias ", t->str(), " for ", C, " channels");
    const int64_t S = C && N ? x.numel() / (N * C) : 0, cg = C / groups, m = cg * S;
    NormGrads out;
    out.dx = cl ? Tensor::empty_channels_last(x.shape()) : Tensor::empty(x.shape(), DType::F32);
    std::vector<double> dw_nc((size_t)(N * C), 0.0), db_nc((size_t)(N * C), 0.0);
    const float *px = x.data<float>(), *pg = g.data<float>();
    const float* pw = w.defined() ? w.data<float>() : nullptr;
    const float* pb = b.defined() ? b.data<float>() : nullptr;
    float* pdx = out.dx.data<float>();
    if (cl) group_norm_backward_nhwc(px, pg, pw, pb, pdx, N, C, S, groups, eps, silu, dw_nc.data(), db_nc.data());
#pragma omp parallel for if (!cl) schedule(static) collapse(2)
    for (int64_t n = 0; n < (cl ? 0 : N); ++n)
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
