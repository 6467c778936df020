// Normalisations on Var, with hand-written backward kernels (statistics recomputed from the saved input in double,
// as the forward computes them). Shape letters: N batch, C channels, G groups, S spatial (all trailing dims),
// D feature dim (last), R rows (all dims but the last).
//
// With x̂ = (x − μ)·rstd over a group of m elements and dx̂ = dz·w:
//   dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)),   dw = Σ dz · x̂,   db = Σ dz.
#include <algorithm>
#include <cmath>

#include "autograd/functions.h"
#include "backends/backend.h"
#include "ops/norm.h"

namespace nuance {

namespace {

const float* opt_ptr(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

}  // namespace

Var group_norm(const Var& x, int64_t groups, const Var& weight, const Var& bias, float eps, bool silu) {
    NUANCE_CHECK(x.defined(), "group_norm: undefined input");
    Tensor y = group_norm(x.value(), groups, weight.defined() ? weight.value() : Tensor(),
                          bias.defined() ? bias.value() : Tensor(), eps, silu);  // checks the shapes
    // A channels-last input (the training UNet's layout) is kept so; the backward takes the gradient in its layout.
    const Tensor& x0 = x.value();
    const bool cl = x0.dim() == 4 && !x0.is_contiguous() && x0.is_channels_last();
    const Tensor xv = cl ? x0 : x0.contiguous();
    const Tensor wv = weight.defined() ? weight.value().contiguous() : Tensor();
    const Tensor bv = bias.defined() ? bias.value().contiguous() : Tensor();
    return record(silu ? "group_norm_silu" : "group_norm", std::move(y), {x, weight, bias},
                  [xv, wv, bv, groups, eps, silu, cl](const Tensor& g_in, const std::vector<bool>& need) {
        const Tensor g32 = g_in.f32();
        const Tensor g = cl ? (g32.is_channels_last() ? g32 : g32.channels_last()) : g32.contiguous();
        NormGrads r = backend_for(op_device("group_norm backward", {&xv, &g}))
                          .group_norm_backward(xv, wv, bv, g, groups, eps, silu);
        std::vector<Tensor> out(3);
        if (need[0]) out[0] = r.dx;
        if (need[1]) out[1] = r.dw.reshape(wv.shape());
        if (need[2]) out[2] = r.db.reshape(bv.shape());
        return out;
    });
}

Var layer_norm(const Var& x, const Var& weight, const Var& bias, float eps) {
    NUANCE_CHECK(x.defined(), "layer_norm: undefined input");
    Tensor y = layer_norm(x.value(), weight.defined() ? weight.value() : Tensor(),
                          bias.defined() ? bias.value() : Tensor(), eps);  // checks the shapes
    const Tensor xv = x.value().contiguous();
    const Tensor wv = weight.defined() ? weight.value().contiguous() : Tensor();
    const Shape bshape = bias.defined() ? bias.shape() : Shape{};
    return record("layer_norm", std::move(y), {x, weight, bias},
                  [xv, wv, bshape, eps](const Tensor& g_in, const std::vector<bool>& need) {
        const Tensor g = g_in.f32().contiguous();
        const int64_t D = xv.size(-1), R = D ? xv.numel() / D : 0;
        const float *px = xv.data<float>(), *pg = g.data<float>(), *pw = opt_ptr(wv);
        Tensor dx = Tensor::empty(xv.shape(), DType::F32);
        float* pdx = dx.data<float>();
        std::vector<double> mus((size_t)R), rstds((size_t)R);
#pragma omp parallel for schedule(static) if (R > 16)
        for (int64_t r = 0; r < R; ++r) {
            const float* s = px + r * D;
            const float* gr = pg + r * D;
            // the row sums in double, vectorised (omp simd: lanes summed at the end)
            double sum = 0, s2 = 0;
#pragma omp simd reduction(+ : sum)
            for (int64_t i = 0; i < D; ++i) sum += s[i];
            const double mu = sum / (double)D;
#pragma omp simd reduction(+ : s2)
            for (int64_t i = 0; i < D; ++i) { const double t = s[i] - mu; s2 += t * t; }
            const double rstd = 1.0 / std::sqrt(s2 / (double)D + eps);
            mus[(size_t)r] = mu;
            rstds[(size_t)r] = rstd;
            double m1 = 0, m2 = 0;
#pragma omp simd reduction(+ : m1, m2)
            for (int64_t i = 0; i < D; ++i) {
                const double dxh = (double)gr[i] * (pw ? pw[i] : 1.0f);
                m1 += dxh;
                m2 += dxh * (s[i] - mu) * rstd;
            }
            m1 /= (double)D;
            m2 /= (double)D;
#pragma omp simd
            for (int64_t i = 0; i < D; ++i) {
                const double xh = (s[i] - mu) * rstd;
                pdx[r * D + i] = (float)(rstd * ((double)gr[i] * (pw ? pw[i] : 1.0f) - m1 - xh * m2));
            }
        }
        std::vector<Tensor> out(3);
        if (need[0]) out[0] = dx;
        if (need[1] || need[2]) {
            // per column, rows in order (the same sums for any thread count); columns split between threads
            std::vector<double> dw((size_t)D, 0.0), db((size_t)D, 0.0);
            constexpr int64_t kCols = 64;
#pragma omp parallel for schedule(static) if (R * D > 65536)
            for (int64_t c0 = 0; c0 < D; c0 += kCols) {
                const int64_t c1 = std::min(D, c0 + kCols);
                for (int64_t r = 0; r < R; ++r) {
                    const double mu = mus[(size_t)r], rs = rstds[(size_t)r];
#pragma omp simd
                    for (int64_t i = c0; i < c1; ++i) {
                        const double gv = pg[r * D + i];
                        dw[(size_t)i] += gv * (px[r * D + i] - mu) * rs;
                        db[(size_t)i] += gv;
                    }
                }
            }
            auto to_tensor = [&](const std::vector<double>& v, const Shape& s) {
                Tensor t = Tensor::empty({D}, DType::F32);
                for (int64_t i = 0; i < D; ++i) t.data<float>()[i] = (float)v[(size_t)i];
                return t.reshape(s);
            };
            if (need[1]) out[1] = to_tensor(dw, wv.shape());
            if (need[2]) out[2] = to_tensor(db, bshape);
        }
        return out;
    });
}

Var softmax(const Var& x) {
    NUANCE_CHECK(x.defined() && x.dim() >= 1, "softmax: needs a tensor of rank >= 1");
    Tensor y = softmax(x.value());
    const Tensor yv = y.contiguous();
    return record("softmax", std::move(y), {x}, [yv](const Tensor& g_in, const std::vector<bool>&) {
        // dx = y · (g − Σ g·y) per row
        const Tensor g = g_in.f32().contiguous();
        const int64_t D = yv.size(-1), R = D ? yv.numel() / D : 0;
        Tensor dx = Tensor::empty(yv.shape(), DType::F32);
        const float *py = yv.data<float>(), *pg = g.data<float>();
        float* pd = dx.data<float>();
#pragma omp parallel for schedule(static) if (R > 64)
        for (int64_t r = 0; r < R; ++r) {
            double dot = 0;
            for (int64_t i = 0; i < D; ++i) dot += (double)pg[r * D + i] * py[r * D + i];
            for (int64_t i = 0; i < D; ++i) pd[r * D + i] = py[r * D + i] * (pg[r * D + i] - (float)dot);
        }
        return std::vector<Tensor>{dx};
    });
}

}  // namespace nuance
