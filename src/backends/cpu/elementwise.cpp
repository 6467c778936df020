// Elementwise kernels. Shape letters: none (any shape); broadcasting follows numpy.
#include "backends/cpu/cpu_backend.h"
#include "core/op_stats.h"

#include <algorithm>
#include <cmath>

#include "backends/cpu/vec_math.h"

namespace nuance {

namespace {

Shape broadcast_shape(const Shape& a, const Shape& b) {
    const size_t n = std::max(a.size(), b.size());
    Shape out(n);
    for (size_t i = 0; i < n; ++i) {
        const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
        const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
        NUANCE_CHECK(da == db || da == 1 || db == 1, "cannot broadcast shapes ", a, " and ", b);
        out[i] = da == 1 ? db : da;
    }
    return out;
}

// Iterates `out` (contiguous in the given view) in rows of its last dimension;
// f(row, a_offset, a_inner_stride, b_offset, b_inner_stride, len).
template <class F>
void for_each_row(const Shape& shape, const Tensor& a, const Tensor& b, F&& f) {
    const int64_t nd = (int64_t)shape.size();
    const int64_t inner = nd ? shape[nd - 1] : 1;
    const int64_t rows = inner ? shape_numel(shape) / inner : 0;
    const Shape& sa = a.strides();
    const Shape& sb = b.strides();
#pragma omp parallel for schedule(static) if (rows > 8 && rows * inner > 32768)
    for (int64_t r = 0; r < rows; ++r) {
        int64_t oa = 0, ob = 0, rem = r;
        for (int64_t d = nd - 2; d >= 0; --d) {
            const int64_t i = rem % shape[d];
            rem /= shape[d];
            oa += i * sa[d];
            ob += i * sb[d];
        }
        f(r, oa, nd ? sa[nd - 1] : 0, ob, nd ? sb[nd - 1] : 0, inner);
    }
}

// The result takes the layout of a dense operand of the output's shape (channels-last in, channels-last out), so
// chains of elementwise ops run over memory flat. Broadcast operands are walked in the result's memory order.
// `into` (optional) receives the result: a dense F32 tensor of the output shape, which may be `a` itself.
template <class Op>
Tensor binary(const Tensor& a_in, const Tensor& b_in, Op op, const Tensor* into = nullptr) {
    OpTimer op_timer("elementwise_binary");
    const Tensor a = a_in.f32();
    const Tensor b = b_in.f32();
    const Shape out_shape = broadcast_shape(a.shape(), b.shape());
    const bool a_full = a.shape() == out_shape && a.is_dense(), b_full = b.shape() == out_shape && b.is_dense();
    Tensor out = into ? *into
                      : a_full ? Tensor::empty_like(a, DType::F32)
                               : b_full ? Tensor::empty_like(b, DType::F32) : Tensor::empty(out_shape, DType::F32);
    NUANCE_CHECK(out.shape() == out_shape, "in-place op: result ", out_shape, " does not fit target ", out.shape());
    float* po = out.data<float>();
    const float* pa = a.data<float>();
    const float* pb = b.data<float>();
    const int64_t n = out.numel();
    if (a_full && b_full && a.strides() == out.strides() && b.strides() == out.strides()) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; ++i) po[i] = op(pa[i], pb[i]);
        return out;
    }
    if (b.numel() == 1 && a_full) {
        const float s = pb[0];
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; ++i) po[i] = op(pa[i], s);
        return out;
    }
    const std::vector<int64_t> order = out.memory_order();
    const Tensor ov = out.permute(order);  // contiguous view
    const Tensor ea = a.expand(out_shape).permute(order), eb = b.expand(out_shape).permute(order);
    for_each_row(ov.shape(), ea, eb, [&](int64_t r, int64_t oa, int64_t sa, int64_t ob, int64_t sb, int64_t len) {
        float* o = po + r * len;
        const float* x = pa + oa;
        const float* y = pb + ob;
        if (sa == 1 && sb == 1) {
#pragma omp simd
            for (int64_t j = 0; j < len; ++j) o[j] = op(x[j], y[j]);
        } else if (sa == 1 && sb == 0) {
            const float s = y[0];
#pragma omp simd
            for (int64_t j = 0; j < len; ++j) o[j] = op(x[j], s);
        } else if (sa == 0 && sb == 1) {
            const float s = x[0];
#pragma omp simd
            for (int64_t j = 0; j < len; ++j) o[j] = op(s, y[j]);
        } else {
            for (int64_t j = 0; j < len; ++j) o[j] = op(x[j * sa], y[j * sb]);
        }
    });
    return out;
}

// Dense inputs keep their layout; others are made contiguous first.
inline Tensor dense_f32(const Tensor& a_in) {
    const Tensor a = a_in.f32();
    return a.is_dense() ? a : a.contiguous();
}

template <class Op>
Tensor unary(const Tensor& a_in, Op op) {
    OpTimer op_timer("elementwise_unary");
    const Tensor a = dense_f32(a_in);
    Tensor out = Tensor::empty_like(a, DType::F32);
    const float* pa = a.data<float>();
    float* po = out.data<float>();
    const int64_t n = a.numel();
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) po[i] = op(pa[i]);
    return out;
}

// Unary op with a vectorised kernel (cpu::map_n), in parallel chunks.
template <__m256 (*F)(__m256)>
Tensor unary_vec(const Tensor& a_in) {
    OpTimer op_timer("elementwise_unary");
    const Tensor a = dense_f32(a_in);
    Tensor out = Tensor::empty_like(a, DType::F32);
    const float* pa = a.data<float>();
    float* po = out.data<float>();
    const int64_t n = a.numel(), chunk = 16384;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t c = 0; c < (n + chunk - 1) / chunk; ++c)
        cpu::map_n<F>(pa + c * chunk, po + c * chunk, std::min(chunk, n - c * chunk));
    return out;
}

// In-place target: dense F32, and b either the same layout (flat loop) or anything broadcastable (via binary()).
void check_inplace_target(const Tensor& a, const char* op) {
    NUANCE_CHECK(a.dtype() == DType::F32 && a.is_dense(), op, ": target must be dense F32, got ", a.str());
}

}  // namespace

// The kernels of each family member (CpuBackend::unary / binary below pick one per call).
namespace cpu {

Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, [](float x, float y) { return x + y; }); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(a, b, [](float x, float y) { return x - y; }); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, [](float x, float y) { return x * y; }); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(a, b, [](float x, float y) { return x / y; }); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(a, b, [](float x, float y) { return std::max(x, y); }); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(a, b, [](float x, float y) { return std::min(x, y); }); }
Tensor add(const Tensor& a, float s) { return unary(a, [s](float x) { return x + s; }); }
Tensor mul(const Tensor& a, float s) { return unary(a, [s](float x) { return x * s; }); }
Tensor rsub(float s, const Tensor& a) { return unary(a, [s](float x) { return s - x; }); }
Tensor rdiv(float s, const Tensor& a) { return unary(a, [s](float x) { return s / x; }); }

Tensor& add_(Tensor& a, const Tensor& b) {
    OpTimer op_timer("add_");
    check_inplace_target(a, "add_");
    binary(a, b, [](float x, float y) { return x + y; }, &a);
    return a;
}

Tensor& mul_(Tensor& a, float s) {
    OpTimer op_timer("mul_");
    check_inplace_target(a, "mul_");
    float* p = a.data<float>();
    const int64_t n = a.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) p[i] *= s;
    return a;
}

Tensor& axpy_(Tensor& a, float alpha, const Tensor& b_in) {
    OpTimer op_timer("axpy_");
    check_inplace_target(a, "axpy_");
    NUANCE_CHECK(a.shape() == b_in.shape(), "axpy_: shapes ", a.shape(), " and ", b_in.shape());
    Tensor b = b_in.f32();
    if (b.strides() != a.strides()) {  // bring b into a's layout
        Tensor t = Tensor::empty_like(a, DType::F32);
        t.copy_(b);
        b = t;
    }
    float* pa = a.data<float>();
    const float* pb = b.data<float>();
    const int64_t n = a.numel();
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) pa[i] += alpha * pb[i];
    return a;
}

Tensor exp(const Tensor& a) { return unary(a, [](float x) { return std::exp(x); }); }
Tensor log(const Tensor& a) { return unary(a, [](float x) { return std::log(x); }); }
Tensor sqrt(const Tensor& a) { return unary(a, [](float x) { return std::sqrt(x); }); }
Tensor abs(const Tensor& a) { return unary(a, [](float x) { return std::fabs(x); }); }
Tensor square(const Tensor& a) { return unary(a, [](float x) { return x * x; }); }
Tensor pow(const Tensor& a, float p) { return unary(a, [p](float x) { return std::pow(x, p); }); }
Tensor cos(const Tensor& a) { return unary(a, [](float x) { return std::cos(x); }); }
Tensor sin(const Tensor& a) { return unary(a, [](float x) { return std::sin(x); }); }
Tensor tanh(const Tensor& a) { return unary(a, [](float x) { return std::tanh(x); }); }
Tensor sigmoid(const Tensor& a) { return unary(a, [](float x) { return 1.0f / (1.0f + std::exp(-x)); }); }
Tensor relu(const Tensor& a) { return unary(a, [](float x) { return x > 0 ? x : 0.0f; }); }
Tensor silu(const Tensor& a) { return unary_vec<cpu::silu8>(a); }
Tensor gelu(const Tensor& a) { return unary_vec<cpu::gelu8>(a); }

Tensor geglu(const Tensor& x_in, DType out_dtype) {
    OpTimer op_timer("geglu");
    NUANCE_CHECK(x_in.dim() >= 1 && x_in.size(-1) % 2 == 0, "geglu: last dimension must be even, got ", x_in.shape());
    NUANCE_CHECK(out_dtype == DType::F32 || out_dtype == DType::BF16, "geglu: output dtype ", dtype_name(out_dtype));
    const Tensor x = x_in.f32().contiguous();
    const int64_t F = x.size(-1) / 2, rows = F ? x.numel() / (2 * F) : 0;
    Shape s = x.shape();
    s.back() = F;
    const bool to_bf16 = out_dtype == DType::BF16;
    Tensor out = Tensor::empty(s, out_dtype);
    const float* px = x.data<float>();
#pragma omp parallel if (rows > 1)
    {
        std::vector<float> row(to_bf16 ? (size_t)F : 0);  // bf16 output: the row in f32, then rounded
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            const float* h = px + r * 2 * F;
            const float* g = h + F;
            float* o = to_bf16 ? row.data() : out.data<float>() + r * F;
            int64_t j = 0;
            for (; j + 8 <= F; j += 8)
                _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_loadu_ps(h + j), cpu::gelu8(_mm256_loadu_ps(g + j))));
            for (; j < F; ++j) o[j] = h[j] * cpu::scalar_via8<cpu::gelu8>(g[j]);
            if (to_bf16) cpu::f32_to_bf16_n(o, static_cast<uint16_t*>(out.raw()) + r * F, F);
        }
    }
    return out;
}
Tensor gelu_tanh(const Tensor& a_in, DType out_dtype) {
    NUANCE_CHECK(out_dtype == DType::F32 || out_dtype == DType::BF16, "gelu_tanh: output dtype ", dtype_name(out_dtype));
    if (out_dtype == DType::F32) return unary_vec<cpu::gelu_tanh8>(a_in);
    OpTimer op_timer("elementwise_unary");
    const Tensor a = a_in.f32().contiguous();
    Tensor out = Tensor::empty(a.shape(), DType::BF16);
    const float* pa = a.data<float>();
    auto* po = static_cast<uint16_t*>(out.raw());
    const int64_t n = a.numel(), chunk = 16384;
#pragma omp parallel if (n > 65536)
    {
        std::vector<float> buf(chunk);  // the chunk in f32, then rounded: one pass over memory instead of two
#pragma omp for schedule(static)
        for (int64_t c = 0; c < (n + chunk - 1) / chunk; ++c) {
            const int64_t len = std::min(chunk, n - c * chunk);
            cpu::map_n<cpu::gelu_tanh8>(pa + c * chunk, buf.data(), len);
            cpu::f32_to_bf16_n(buf.data(), po + c * chunk, len);
        }
    }
    return out;
}
Tensor quick_gelu(const Tensor& a) { return unary(a, [](float x) { return x / (1.0f + std::exp(-1.702f * x)); }); }
Tensor clamp(const Tensor& a, float lo, float hi) { return unary(a, [lo, hi](float x) { return std::clamp(x, lo, hi); }); }

Tensor sum(const Tensor& a_in, int64_t dim, bool keepdim) {
    OpTimer op_timer("reduce");
    const Tensor a = a_in.f32().contiguous();
    dim = normalize_dim(dim, a.dim());
    int64_t outer = 1, inner = 1;
    const int64_t n = a.size(dim);
    for (int64_t i = 0; i < dim; ++i) outer *= a.size(i);
    for (int64_t i = dim + 1; i < a.dim(); ++i) inner *= a.size(i);
    Shape s = a.shape();
    if (keepdim) s[dim] = 1; else s.erase(s.begin() + dim);
    Tensor out = Tensor::empty(s, DType::F32);
    const float* p = a.data<float>();
    float* o = out.data<float>();
    for (int64_t i = 0; i < outer; ++i)
        for (int64_t k = 0; k < inner; ++k) {
            double acc = 0;
            for (int64_t j = 0; j < n; ++j) acc += p[(i * n + j) * inner + k];
            o[i * inner + k] = (float)acc;
        }
    return out;
}

double sum_all(const Tensor& a_in) {
    const Tensor a = a_in.f32().contiguous();
    const float* p = a.data<float>();
    double acc = 0;
    for (int64_t i = 0; i < a.numel(); ++i) acc += p[i];
    return acc;
}

float max_abs(const Tensor& a_in) {
    const Tensor a = a_in.f32().contiguous();
    const float* p = a.data<float>();
    float m = 0;
    for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(p[i]));
    return m;
}

float max_abs_diff(const Tensor& a, const Tensor& b) {
    NUANCE_CHECK(a.shape() == b.shape(), "max_abs_diff: shapes ", a.shape(), " and ", b.shape());
    const Tensor x = a.f32().contiguous(), y = b.f32().contiguous();
    const float* p = x.data<float>();
    const float* q = y.data<float>();
    float m = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
        const float d = std::fabs(p[i] - q[i]);
        if (std::isnan(d)) return NAN;
        m = std::max(m, d);
    }
    return m;
}

}  // namespace cpu

Tensor CpuBackend::unary(UnaryOp op, const Tensor& a, float p0, float p1, DType out) {
    NUANCE_CHECK(out == DType::F32 || op == UnaryOp::GeluTanh, unary_op_name(op), ": output dtype ", dtype_name(out));
    switch (op) {
        case UnaryOp::AddScalar: return cpu::add(a, p0);
        case UnaryOp::MulScalar: return cpu::mul(a, p0);
        case UnaryOp::RSubScalar: return cpu::rsub(p0, a);
        case UnaryOp::RDivScalar: return cpu::rdiv(p0, a);
        case UnaryOp::Exp: return cpu::exp(a);
        case UnaryOp::Log: return cpu::log(a);
        case UnaryOp::Sqrt: return cpu::sqrt(a);
        case UnaryOp::Abs: return cpu::abs(a);
        case UnaryOp::Square: return cpu::square(a);
        case UnaryOp::Pow: return cpu::pow(a, p0);
        case UnaryOp::Cos: return cpu::cos(a);
        case UnaryOp::Sin: return cpu::sin(a);
        case UnaryOp::Tanh: return cpu::tanh(a);
        case UnaryOp::Sigmoid: return cpu::sigmoid(a);
        case UnaryOp::Relu: return cpu::relu(a);
        case UnaryOp::Silu: return cpu::silu(a);
        case UnaryOp::Gelu: return cpu::gelu(a);
        case UnaryOp::GeluTanh: return cpu::gelu_tanh(a, out);
        case UnaryOp::QuickGelu: return cpu::quick_gelu(a);
        case UnaryOp::Clamp: return cpu::clamp(a, p0, p1);
    }
    fail(ErrorCode::Internal, "unary: unknown op ", (int)op);
}

namespace {

// d/dx of the activations, 8 lanes (vec_math.h's exp8/erf8, the forward kernels' own approximations; SiLU's is
// vec_math.h's silu_grad8).
__m256 gelu_grad8(__m256 x) {  // Φ(x) + x·φ(x)
    const __m256 cdf = _mm256_mul_ps(
        _mm256_set1_ps(0.5f),
        _mm256_add_ps(_mm256_set1_ps(1.0f), cpu::erf8(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)))));
    const __m256 pdf = _mm256_mul_ps(_mm256_set1_ps(0.3989422804014327f),
                                     cpu::exp8(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(x, x))));
    return _mm256_fmadd_ps(x, pdf, cdf);
}
__m256 quick_gelu_grad8(__m256 x) {  // s + 1.702·x·s·(1 − s), s = σ(1.702x)
    const __m256 one = _mm256_set1_ps(1.0f), k = _mm256_set1_ps(1.702f);
    const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, cpu::exp8(_mm256_mul_ps(_mm256_set1_ps(-1.702f), x))));
    return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(k, x), s), _mm256_sub_ps(one, s), s);
}
__m256 gelu_tanh_grad8(__m256 x) {  // ½(1 + t) + ½x(1 − t²)·k(1 + 3·0.044715x²), t = tanh(k(x + 0.044715x³))
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f), k = _mm256_set1_ps(0.7978845608028654f);
    const __m256 x2 = _mm256_mul_ps(x, x);
    const __m256 u = _mm256_mul_ps(k, _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), x2), x, x));
    // tanh u = 2 / (1 + exp(-2u)) - 1 (exp8 clamps its argument: both tails stay finite)
    const __m256 t = _mm256_sub_ps(
        _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(one, cpu::exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u)))),
        one);
    const __m256 du = _mm256_mul_ps(k, _mm256_fmadd_ps(_mm256_set1_ps(3.0f * 0.044715f), x2, one));
    const __m256 a = _mm256_mul_ps(half, _mm256_add_ps(one, t));
    return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_fnmadd_ps(t, t, one)), du, a);
}

template <__m256 (*D)(__m256)>
void grad_times_n(const float* x, const float* g, float* out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), D(_mm256_loadu_ps(x + i))));
    if (i < n) {  // the tail through the same 8-lane formula
        float xs[8] = {0}, gs[8] = {0}, os[8];
        for (int64_t j = i; j < n; ++j) xs[j - i] = x[j], gs[j - i] = g[j];
        _mm256_storeu_ps(os, _mm256_mul_ps(_mm256_loadu_ps(gs), D(_mm256_loadu_ps(xs))));
        for (int64_t j = i; j < n; ++j) out[j] = os[j - i];
    }
}

}  // namespace

Tensor CpuBackend::activation_backward(UnaryOp op, const Tensor& x_in, const Tensor& g_in) {
    NUANCE_CHECK(x_in.shape() == g_in.shape(), unary_op_name(op), " backward: input ", x_in.shape(), " and gradient ",
                 g_in.shape(), " differ");
    void (*f)(const float*, const float*, float*, int64_t) = nullptr;
    switch (op) {
        case UnaryOp::Silu: f = grad_times_n<cpu::silu_grad8>; break;
        case UnaryOp::Gelu: f = grad_times_n<gelu_grad8>; break;
        case UnaryOp::GeluTanh: f = grad_times_n<gelu_tanh_grad8>; break;
        case UnaryOp::QuickGelu: f = grad_times_n<quick_gelu_grad8>; break;
        default: fail(ErrorCode::InvalidArgument, "activation_backward: ", unary_op_name(op), " is not an activation");
    }
    const Tensor x = x_in.f32().contiguous(), g = g_in.f32().contiguous();
    Tensor out = Tensor::empty(x.shape(), DType::F32);
    const float* px = x.data<float>();
    const float* pg = g.data<float>();
    float* po = out.data<float>();
    const int64_t n = x.numel(), chunk = 1 << 14;
#pragma omp parallel for schedule(static) if (n > 2 * chunk)
    for (int64_t c = 0; c < (n + chunk - 1) / chunk; ++c)
        f(px + c * chunk, pg + c * chunk, po + c * chunk, std::min(chunk, n - c * chunk));
    return out;
}

Tensor CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b) {
    switch (op) {
        case BinaryOp::Add: return cpu::add(a, b);
        case BinaryOp::Sub: return cpu::sub(a, b);
        case BinaryOp::Mul: return cpu::mul(a, b);
        case BinaryOp::Div: return cpu::div(a, b);
        case BinaryOp::Maximum: return cpu::maximum(a, b);
        case BinaryOp::Minimum: return cpu::minimum(a, b);
    }
    fail(ErrorCode::Internal, "binary: unknown op ", (int)op);
}

Tensor CpuBackend::geglu(const Tensor& x, DType out) { return cpu::geglu(x, out); }
void CpuBackend::add_(Tensor& a, const Tensor& b) { cpu::add_(a, b); }
void CpuBackend::mul_(Tensor& a, float s) { cpu::mul_(a, s); }
void CpuBackend::axpy_(Tensor& a, float alpha, const Tensor& b) { cpu::axpy_(a, alpha, b); }
Tensor CpuBackend::sum(const Tensor& a, int64_t dim, bool keepdim) { return cpu::sum(a, dim, keepdim); }
double CpuBackend::sum_all(const Tensor& a) { return cpu::sum_all(a); }
float CpuBackend::max_abs(const Tensor& a) { return cpu::max_abs(a); }
float CpuBackend::max_abs_diff(const Tensor& a, const Tensor& b) { return cpu::max_abs_diff(a, b); }

}  // namespace nuance
