// Shape letters: B batch, L tokens, A position axes, H heads, d head dim, J = d/2 rotated pairs per head.
#include "ops/rope.h"
#include "backends/cpu/cpu_backend.h"

#include <cmath>

#include "core/checked.h"
#include "core/op_stats.h"

namespace nuance {

Tensor CpuBackend::rope_frequencies(const Tensor& ids_in, const std::vector<int64_t>& axes_dims, double theta) {
    OpTimer op_timer("rope_frequencies");
    NUANCE_CHECK(ids_in.dim() == 2, "rope: position ids must be [L, A], got ", ids_in.shape());
    const int64_t L = ids_in.size(0), A = ids_in.size(1);
    NUANCE_CHECK(A == (int64_t)axes_dims.size(), "rope: position ids ", ids_in.shape(), " have ", A,
                 " axes but axes_dims ", axes_dims, " has ", axes_dims.size());
    NUANCE_CHECK(theta > 0 && std::isfinite(theta), "rope: theta must be positive, got ", theta);
    int64_t d = 0;
    for (const int64_t da : axes_dims) {
        NUANCE_CHECK(da > 0 && da % 2 == 0 && da <= (1 << 16), "rope: every axis dim must be even and in [2, 65536], "
                     "axes_dims ", axes_dims);
        d += da;
    }
    const int64_t J = d / 2;
    Tensor out = Tensor::empty({L, J, 2}, DType::F32);
    if (L == 0) return out;
    // Positions as float32 first (diffusers: pos = ids.float()), then float64 products.
    const Tensor ids = dtype_is_float(ids_in.dtype()) ? ids_in.f32().contiguous() : Tensor();
    const std::vector<int64_t> int_ids = ids.defined() ? std::vector<int64_t>() : ids_in.to_ids();
    const float* pf = ids.defined() ? ids.data<float>() : nullptr;
    float* po = out.data<float>();
    std::vector<double> inv_freq;  // per pair, all axes
    for (const int64_t da : axes_dims)
        for (int64_t i = 0; i < da / 2; ++i) inv_freq.push_back(1.0 / std::pow(theta, (double)(2 * i) / (double)da));
    for (int64_t l = 0; l < L; ++l) {
        int64_t j = 0;
        for (int64_t a = 0; a < A; ++a) {
            const double pos = pf ? (double)pf[l * A + a] : (double)(float)int_ids[(size_t)(l * A + a)];
            NUANCE_CHECK(std::isfinite(pos), "rope: position id [", l, ", ", a, "] is not finite (", pos, ")");
            for (int64_t i = 0; i < axes_dims[(size_t)a] / 2; ++i, ++j) {
                const double angle = pos * inv_freq[(size_t)j];
                po[(l * J + j) * 2] = (float)std::cos(angle);
                po[(l * J + j) * 2 + 1] = (float)std::sin(angle);
            }
        }
    }
    return out;
}

namespace {

template <class Out>
void store(Out* p, float v);
template <>
inline void store<float>(float* p, float v) { *p = v; }
template <>
inline void store<uint16_t>(uint16_t* p, float v) { *p = f32_to_bf16(v); }

template <class Out>
void rope_rows(const float* px, const float* pw, float eps, const float* pf, Out* po, int64_t B, int64_t L,
               int64_t H, int64_t d) {
    const int64_t J = d / 2, rows = B * L * H;
#pragma omp parallel for schedule(static) if (rows > 64)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t l = (r / H) % L;
        const float* s = px + r * d;
        const float* f = pf + l * J * 2;
        Out* o = po + r * d;
        float rr = 1.0f;
        if (pw) {  // RMSNorm of this head first (statistics in double, like rms_norm)
            double s2 = 0;
            for (int64_t i = 0; i < d; ++i) s2 += (double)s[i] * s[i];
            rr = (float)(1.0 / std::sqrt(s2 / (double)d + eps));
        }
        for (int64_t j = 0; j < J; ++j) {
            float x0 = s[2 * j], x1 = s[2 * j + 1];
            if (pw) {
                x0 = x0 * rr * pw[2 * j];
                x1 = x1 * rr * pw[2 * j + 1];
            }
            const float c = f[2 * j], sn = f[2 * j + 1];
            store(o + 2 * j, x0 * c + (-x1) * sn);
            store(o + 2 * j + 1, x1 * c + x0 * sn);
        }
    }
}

Tensor rope_impl(const char* op, const Tensor& x_in, const Tensor& w_in, float eps, const Tensor& freqs_in,
                 int64_t heads, DType out) {
    OpTimer op_timer(op);
    NUANCE_CHECK(x_in.dim() == 3, op, ": expected x [B, L, H*d], got ", x_in.shape());
    const int64_t B = x_in.size(0), L = x_in.size(1), C = x_in.size(2);
    NUANCE_CHECK(heads > 0 && C % heads == 0, op, ": x ", x_in.shape(), " does not split into ", heads, " heads");
    const int64_t d = C / heads;
    NUANCE_CHECK(d % 2 == 0, op, ": head dim ", d, " is odd (x ", x_in.shape(), ", ", heads, " heads)");
    NUANCE_CHECK(freqs_in.dim() == 3 && freqs_in.size(0) == L && freqs_in.size(1) * 2 == d && freqs_in.size(2) == 2,
                 op, ": freqs ", freqs_in.shape(), " do not match x ", x_in.shape(), " with ", heads,
                 " heads (expected [", L, ", ", d / 2, ", 2])");
    NUANCE_CHECK(out == DType::F32 || out == DType::BF16, op, ": output dtype must be F32 or BF16, got ",
                 dtype_name(out));
    const Tensor x = x_in.f32().contiguous();
    const Tensor f = freqs_in.f32().contiguous();
    Tensor w;
    if (w_in.defined()) {
        w = w_in.f32().contiguous();
        NUANCE_CHECK(w.numel() == d, op, ": norm weight ", w_in.shape(), " for head dim ", d);
    }
    Tensor y = Tensor::empty(x.shape(), out);
    if (x.numel() == 0) return y;
    const float* pw = w.defined() ? w.data<float>() : nullptr;
    if (out == DType::F32)
        rope_rows(x.data<float>(), pw, eps, f.data<float>(), y.data<float>(), B, L, heads, d);
    else
        rope_rows(x.data<float>(), pw, eps, f.data<float>(), y.data<uint16_t>(), B, L, heads, d);
    return y;
}

}  // namespace

Tensor CpuBackend::apply_rope(const Tensor& x, const Tensor& freqs, int64_t heads, DType out) {
    return rope_impl("apply_rope", x, Tensor(), 0.0f, freqs, heads, out);
}

Tensor CpuBackend::rms_norm_rope(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& freqs,
                                 int64_t heads, DType out) {
    NUANCE_CHECK(norm_weight.defined(), "rms_norm_rope: no norm weight");
    return rope_impl("rms_norm_rope", x, norm_weight, eps, freqs, heads, out);
}

}  // namespace nuance
