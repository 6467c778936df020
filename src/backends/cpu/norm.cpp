// Shape letters: N batch, C channels, G groups, S spatial (H*W or any trailing dims), D feature dim.
#include "ops/norm.h"
#include "backends/cpu/cpu_backend.h"
#include "core/op_stats.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/moments.h"
#include "backends/cpu/vec_math.h"

namespace nuance {

namespace {

// y = x * a + b (then SiLU) over n floats.
inline void scale_shift_n(const float* x, float* y, int64_t n, float a, float b, bool silu) {
    const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, vb);
        _mm256_storeu_ps(y + i, silu ? cpu::silu8(v) : v);
    }
    for (; i < n; ++i) {
        const float v = x[i] * a + b;
        y[i] = silu ? cpu::scalar_via8<cpu::silu8>(v) : v;
    }
}

// Channels-last input [N, H, W, C]: per-channel affine vectors a_c, b_c over each pixel row of C values.
inline void scale_shift_rows(const float* x, float* y, int64_t pixels, int64_t C, const float* a, const float* b,
                             bool silu) {
    for (int64_t p = 0; p < pixels; ++p) {
        const float* xr = x + p * C;
        float* yr = y + p * C;
        int64_t c = 0;
        for (; c + 8 <= C; c += 8) {
            __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(xr + c), _mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c));
            _mm256_storeu_ps(yr + c, silu ? cpu::silu8(v) : v);
        }
        for (; c < C; ++c) {
            const float v = xr[c] * a[c] + b[c];
            yr[c] = silu ? cpu::scalar_via8<cpu::silu8>(v) : v;
        }
    }
}

// Group statistics of a channels-last image in one pass over it (the image is read once here and once to normalise):
// per channel, the sums of d = x − K_c and d² about a shift K_c (the channel's first value, so the sums stay small),
// over pixel chunks in f32 (vectorised over C) added in double. Per group of channels, with m = S · cg values:
//   μ = Σ_c (S K_c + Σd) / m,   m σ² = Σ_c [Σd² + 2 (K_c − μ) Σd + S (K_c − μ)²]   (x − μ = d + (K_c − μ)).
void channels_last_group_stats(const float* x, int64_t S, int64_t C, int64_t groups, double eps, float* mean_c,
                               float* rstd_c) {
    const int64_t cg = C / groups;
    std::vector<double> s1((size_t)C, 0.0), s2((size_t)C, 0.0);
    const std::vector<float> K(x, x + C);
    const int64_t chunk = 256;
#pragma omp parallel
    {
        std::vector<double> l1((size_t)C, 0.0), l2((size_t)C, 0.0);
        std::vector<float> p1((size_t)C), p2((size_t)C);
#pragma omp for schedule(static)
        for (int64_t p0 = 0; p0 < S; p0 += chunk) {
            std::fill(p1.begin(), p1.end(), 0.0f);
            std::fill(p2.begin(), p2.end(), 0.0f);
            for (int64_t p = p0; p < std::min(S, p0 + chunk); ++p) {
                const float* xr = x + p * C;
                for (int64_t c = 0; c < C; ++c) {
                    const float d = xr[c] - K[c];
                    p1[c] += d;
                    p2[c] += d * d;
                }
            }
            for (int64_t c = 0; c < C; ++c) l1[c] += p1[c], l2[c] += p2[c];
        }
#pragma omp critical
        for (int64_t c = 0; c < C; ++c) s1[c] += l1[c], s2[c] += l2[c];
    }
    const double m = (double)S * (double)cg;
    for (int64_t g = 0; g < groups; ++g) {
        double sum = 0;
        for (int64_t c = g * cg; c < (g + 1) * cg; ++c) sum += (double)S * K[c] + s1[c];
        const double mu = sum / m;
        double ss = 0;
        for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
            const double k = (double)K[c] - mu;
            ss += s2[c] + 2.0 * k * s1[c] + (double)S * k * k;
        }
        const float rstd = (float)(1.0 / std::sqrt(std::max(ss, 0.0) / m + eps));
        for (int64_t c = g * cg; c < (g + 1) * cg; ++c) mean_c[c] = (float)mu, rstd_c[c] = rstd;
    }
}

}  // namespace

// Channels-last inputs stay channels-last (the layout the convolutions around a GroupNorm use).
Tensor CpuBackend::group_norm(const Tensor& x_in, int64_t groups, const Tensor& w_in, const Tensor& b_in, float eps,
                              bool silu, DType out) {
    OpTimer op_timer("group_norm");
    NUANCE_CHECK(out == DType::F32 || out == DType::BF16, "group_norm: output dtype ", dtype_name(out));
    NUANCE_CHECK(x_in.dim() >= 2, "group_norm: input must be [N, C, ...], got ", x_in.shape());
    const int64_t N = x_in.size(0), C = x_in.size(1);
    NUANCE_CHECK(groups > 0 && C % groups == 0, "group_norm: ", C, " channels not divisible into ", groups, " groups");
    const bool cl = x_in.is_channels_last() && !x_in.is_contiguous();
    const Tensor x = cl ? x_in.f32() : x_in.f32().contiguous();
    const Tensor w = w_in.defined() ? w_in.f32().contiguous() : Tensor();
    const Tensor b = b_in.defined() ? b_in.f32().contiguous() : Tensor();
    NUANCE_CHECK(!w.defined() || w.numel() == C, "group_norm: weight ", w.shape(), " for ", C, " channels");
    NUANCE_CHECK(!b.defined() || b.numel() == C, "group_norm: bias ", b.shape(), " for ", C, " channels");
    const int64_t S = C ? x.numel() / (N * C) : 0;
    const int64_t cg = C / groups;
    const bool to_bf16 = out == DType::BF16 && cl;  // planar inputs (tests, small tools) convert at the end
    Tensor y = Tensor::empty_like(x, to_bf16 ? DType::BF16 : DType::F32);
    const float* px = x.data<float>();
    float* py = to_bf16 ? nullptr : y.data<float>();
    uint16_t* py16 = to_bf16 ? static_cast<uint16_t*>(y.raw()) : nullptr;
    const float* pw = w.defined() ? w.data<float>() : nullptr;
    const float* pb = b.defined() ? b.data<float>() : nullptr;
    if (cl) {
        std::vector<float> mean((size_t)C), rstd((size_t)C), a((size_t)C), sh((size_t)C);
        for (int64_t n = 0; n < N; ++n) {
            const float* xn = px + n * S * C;
            channels_last_group_stats(xn, S, C, groups, eps, mean.data(), rstd.data());
            for (int64_t c = 0; c < C; ++c) {
                a[c] = rstd[c] * (pw ? pw[c] : 1.0f);
                sh[c] = (pb ? pb[c] : 0.0f) - mean[c] * a[c];
            }
            const int64_t chunk = 64;
            if (to_bf16) {
#pragma omp parallel
                {
                    std::vector<float> buf((size_t)(chunk * C));  // one chunk in f32, rounded to bf16 from cache
#pragma omp for schedule(static)
                    for (int64_t p0 = 0; p0 < S; p0 += chunk) {
                        const int64_t rows = std::min(chunk, S - p0);
                        scale_shift_rows(xn + p0 * C, buf.data(), rows, C, a.data(), sh.data(), silu);
                        cpu::f32_to_bf16_n(buf.data(), py16 + (n * S + p0) * C, rows * C);
                    }
                }
                continue;
            }
            float* yn = py + n * S * C;
#pragma omp parallel for schedule(static)
            for (int64_t p0 = 0; p0 < S; p0 += chunk)
                scale_shift_rows(xn + p0 * C, yn + p0 * C, std::min(chunk, S - p0), C, a.data(), sh.data(), silu);
        }
        return y;
    }
#pragma omp parallel for schedule(static) collapse(2)
    for (int64_t n = 0; n < N; ++n)
        for (int64_t g = 0; g < groups; ++g) {
            const float* src = px + (n * C + g * cg) * S;
            float* dst = py + (n * C + g * cg) * S;
            const int64_t m = cg * S;
            const double mu = cpu::sum_n(src, m) / (double)m;
            const float fmu = (float)mu;
            const float rstd = (float)(1.0 / std::sqrt(cpu::sq_dev_n(src, m, fmu) / (double)m + eps));
            for (int64_t c = 0; c < cg; ++c) {
                const int64_t ch = g * cg + c;
                const float a = rstd * (pw ? pw[ch] : 1.0f);
                const float sh = (pb ? pb[ch] : 0.0f) - fmu * a;
                scale_shift_n(src + c * S, dst + c * S, S, a, sh, silu);
            }
        }
    return out == DType::BF16 ? y.to(DType::BF16) : y;
}

Tensor CpuBackend::layer_norm(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, float eps, DType out) {
    OpTimer op_timer("layer_norm");
    NUANCE_CHECK(out == DType::F32 || out == DType::BF16, "layer_norm: output dtype ", dtype_name(out));
    NUANCE_CHECK(x_in.dim() >= 1, "layer_norm: scalar input");
    const int64_t D = x_in.size(-1);
    const Tensor x = x_in.f32().contiguous();
    const Tensor w = w_in.defined() ? w_in.f32().contiguous() : Tensor();
    const Tensor b = b_in.defined() ? b_in.f32().contiguous() : Tensor();
    NUANCE_CHECK(!w.defined() || w.numel() == D, "layer_norm: weight ", w.shape(), " for feature dim ", D);
    NUANCE_CHECK(!b.defined() || b.numel() == D, "layer_norm: bias ", b.shape(), " for feature dim ", D);
    const int64_t rows = D ? x.numel() / D : 0;
    const bool to_bf16 = out == DType::BF16;
    Tensor y = Tensor::empty(x.shape(), out);
    const float* px = x.data<float>();
    float* py = to_bf16 ? nullptr : y.data<float>();
    uint16_t* py16 = to_bf16 ? static_cast<uint16_t*>(y.raw()) : nullptr;
    const float* pw = w.defined() ? w.data<float>() : nullptr;
    const float* pb = b.defined() ? b.data<float>() : nullptr;
#pragma omp parallel if (rows > 16)
    {
    std::vector<float> row(to_bf16 ? (size_t)D : 0);  // bf16 output: the row in f32, then rounded
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float* s = px + r * D;
        float* d = to_bf16 ? row.data() : py + r * D;
        const auto [fmu, rstd] = cpu::layer_norm_moments(s, D, eps);
        if (!pw || !pb) {
            for (int64_t i = 0; i < D; ++i) d[i] = (s[i] - fmu) * rstd * (pw ? pw[i] : 1.0f) + (pb ? pb[i] : 0.0f);
        } else {
            const __m256 vm = _mm256_set1_ps(fmu), vr = _mm256_set1_ps(rstd);
            int64_t i = 0;
            for (; i + 8 <= D; i += 8) {
                const __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm), vr);
                _mm256_storeu_ps(d + i, _mm256_fmadd_ps(t, _mm256_loadu_ps(pw + i), _mm256_loadu_ps(pb + i)));
            }
            for (; i < D; ++i) d[i] = (s[i] - fmu) * rstd * pw[i] + pb[i];
        }
        if (to_bf16) cpu::f32_to_bf16_n(d, py16 + r * D, D);
    }
    }
    return y;
}

Tensor CpuBackend::rms_norm(const Tensor& x_in, const Tensor& w_in, float eps) {
    OpTimer op_timer("rms_norm");
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

Tensor CpuBackend::softmax(const Tensor& x_in) {
    OpTimer op_timer("softmax");
    const int64_t D = x_in.size(-1);
    const Tensor x = x_in.f32().contiguous();
    const int64_t rows = D ? x.numel() / D : 0;
    Tensor y = Tensor::empty(x.shape(), DType::F32);
    const float* px = x.data<float>();
    float* py = y.data<float>();
#pragma omp parallel for schedule(static) if (rows > 16)
    for (int64_t r = 0; r < rows; ++r) {
        std::copy(px + r * D, px + (r + 1) * D, py + r * D);
        cpu::softmax_row(py + r * D, D, 1.0f);
    }
    return y;
}

}  // namespace nuance
