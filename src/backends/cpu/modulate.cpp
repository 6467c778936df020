// Shape letters: N batch, L tokens, D features.
#include "ops/modulate.h"
#include "backends/cpu/cpu_backend.h"

#include <cmath>
#include <vector>

#include "backends/cpu/moments.h"
#include "backends/cpu/vec_math.h"
#include "core/op_stats.h"

namespace nuance {

namespace {

void check_vectors(const char* op, const Tensor& x, const Tensor& v, const char* what) {
    NUANCE_CHECK(v.dim() == 2 && v.size(0) == x.size(0) && v.size(1) == x.size(2), op, ": ", what, " ", v.shape(),
                 " does not match input ", x.shape(), " (expected [N, D])");
}

}  // namespace

Tensor CpuBackend::layer_norm_modulate(const Tensor& x_in, const Tensor& shift_in, const Tensor& scale_in, float eps,
                                       DType out) {
    OpTimer op_timer("layer_norm");
    NUANCE_CHECK(out == DType::F32 || out == DType::BF16, "layer_norm_modulate: output dtype ", dtype_name(out));
    NUANCE_CHECK(x_in.dim() == 3 && x_in.size(2) > 0, "layer_norm_modulate: input ", x_in.shape(),
                 ", expected [N, L, D]");
    check_vectors("layer_norm_modulate", x_in, shift_in, "shift");
    check_vectors("layer_norm_modulate", x_in, scale_in, "scale");
    const int64_t N = x_in.size(0), L = x_in.size(1), D = x_in.size(2);
    const Tensor x = x_in.f32().contiguous();
    const Tensor shift = shift_in.f32().contiguous();
    std::vector<float> one_plus_scale((size_t)(N * D));
    {
        const Tensor sc = scale_in.f32().contiguous();
        const float* ps = sc.data<float>();
        for (int64_t i = 0; i < N * D; ++i) one_plus_scale[(size_t)i] = 1.0f + ps[i];
    }
    const bool to_bf16 = out == DType::BF16;
    Tensor y = Tensor::empty(x.shape(), out);
    const float* px = x.data<float>();
    const float* psh = shift.data<float>();
    const int64_t rows = N * L;
#pragma omp parallel if (rows > 16)
    {
        std::vector<float> row(to_bf16 ? (size_t)D : 0);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t n = r / L;
            const float* s = px + r * D;
            const float* sc = one_plus_scale.data() + n * D;
            const float* sh = psh + n * D;
            float* d = to_bf16 ? row.data() : y.data<float>() + r * D;
            const auto [mu, rstd] = cpu::layer_norm_moments(s, D, eps);
            const __m256 vm = _mm256_set1_ps(mu), vr = _mm256_set1_ps(rstd);
            int64_t i = 0;
            for (; i + 8 <= D; i += 8) {
                const __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm), vr);
                _mm256_storeu_ps(d + i, _mm256_fmadd_ps(t, _mm256_loadu_ps(sc + i), _mm256_loadu_ps(sh + i)));
            }
            for (; i < D; ++i) d[i] = (s[i] - mu) * rstd * sc[i] + sh[i];
            if (to_bf16) cpu::f32_to_bf16_n(d, static_cast<uint16_t*>(y.raw()) + r * D, D);
        }
    }
    return y;
}

Tensor CpuBackend::gated_residual(const Tensor& x_in, const Tensor& gate_in, const Tensor& y_in) {
    OpTimer op_timer("elementwise_binary");
    NUANCE_CHECK(x_in.dim() == 3 && x_in.shape() == y_in.shape(), "gated_residual: x ", x_in.shape(), " and y ",
                 y_in.shape(), " must be the same [N, L, D]");
    check_vectors("gated_residual", x_in, gate_in, "gate");
    const int64_t N = x_in.size(0), L = x_in.size(1), D = x_in.size(2);
    const Tensor x = x_in.f32().contiguous(), y = y_in.f32().contiguous(), g = gate_in.f32().contiguous();
    Tensor o = Tensor::empty(x.shape(), DType::F32);
    const float *px = x.data<float>(), *py = y.data<float>(), *pg = g.data<float>();
    float* po = o.data<float>();
    const int64_t rows = N * L;
#pragma omp parallel for schedule(static) if (rows * D > 65536)
    for (int64_t r = 0; r < rows; ++r) {
        const float* gr = pg + (r / L) * D;
        const float *a = px + r * D, *b = py + r * D;
        float* d = po + r * D;
        int64_t i = 0;
        for (; i + 8 <= D; i += 8)
            _mm256_storeu_ps(d + i, _mm256_fmadd_ps(_mm256_loadu_ps(gr + i), _mm256_loadu_ps(b + i),
                                                    _mm256_loadu_ps(a + i)));
        for (; i < D; ++i) d[i] = a[i] + gr[i] * b[i];
    }
    return o;
}

}  // namespace nuance
