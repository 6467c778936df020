// The ops' entry points: each finds the device its operands live on (op_device: the one non-CPU device among them,
// else the CPU) and calls that device's backend (backends/backend.h). No kernel code here: the CPU kernels are in
// backends/cpu/, one file per op family. The op's name is kept for the call (OpNameScope) so that a kernel that
// reaches for host memory of a device tensor fails naming the op.
#include "backends/backend.h"
#include "ops/attention.h"
#include "ops/conv.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/modulate.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "ops/shape_ops.h"

namespace nuance {

#define NUANCE_BACKEND(op, ...)          \
    OpNameScope op_name_scope_(op);      \
    Backend& be = backend_for(op_device(op, {__VA_ARGS__}))

// ---- matmul.h
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, Precision compute, DType out) {
    NUANCE_BACKEND("linear", &x, &w, &b);
    return be.linear(x, w, b, compute, out);
}
Tensor matmul(const Tensor& a, const Tensor& b, Precision compute) {
    NUANCE_BACKEND("matmul", &a, &b);
    return be.matmul(a, b, compute);
}

// ---- conv.h
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, Precision compute) {
    NUANCE_BACKEND("conv2d", &x, &w, &b);
    return be.conv2d(x, w, b, p, compute);
}

// ---- attention.h
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, float scale,
                                    const Tensor& bias) {
    NUANCE_BACKEND("attention", &q, &k, &v, &bias);
    return be.scaled_dot_product_attention(q, k, v, causal, scale, bias);
}
Tensor multi_head_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads, bool causal, float scale,
                            Precision compute) {
    NUANCE_BACKEND("attention", &q, &k, &v);
    return be.multi_head_attention(q, k, v, heads, causal, scale, compute);
}

// ---- norm.h, modulate.h
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& w, const Tensor& b, float eps, bool silu, DType out) {
    NUANCE_BACKEND("group_norm", &x, &w, &b);
    return be.group_norm(x, groups, w, b, eps, silu, out);
}
Tensor layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, DType out) {
    NUANCE_BACKEND("layer_norm", &x, &w, &b);
    return be.layer_norm(x, w, b, eps, out);
}
Tensor rms_norm(const Tensor& x, const Tensor& w, float eps) {
    NUANCE_BACKEND("rms_norm", &x, &w);
    return be.rms_norm(x, w, eps);
}
Tensor softmax(const Tensor& x) {
    NUANCE_BACKEND("softmax", &x);
    return be.softmax(x);
}
Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps, DType out) {
    NUANCE_BACKEND("layer_norm_modulate", &x, &shift, &scale);
    return be.layer_norm_modulate(x, shift, scale, eps, out);
}
Tensor gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y) {
    NUANCE_BACKEND("gated_residual", &x, &gate, &y);
    return be.gated_residual(x, gate, y);
}

// ---- rope.h
Tensor rope_frequencies(const Tensor& ids, const std::vector<int64_t>& axes_dims, double theta) {
    NUANCE_BACKEND("rope_frequencies", &ids);
    return be.rope_frequencies(ids, axes_dims, theta);
}
Tensor apply_rope(const Tensor& x, const Tensor& freqs, int64_t heads, DType out) {
    NUANCE_BACKEND("apply_rope", &x, &freqs);
    return be.apply_rope(x, freqs, heads, out);
}
Tensor rms_norm_rope(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& freqs, int64_t heads,
                     DType out) {
    NUANCE_BACKEND("rms_norm_rope", &x, &norm_weight, &freqs);
    return be.rms_norm_rope(x, norm_weight, eps, freqs, heads, out);
}

// ---- elementwise.h
namespace {
Tensor unary_op(UnaryOp op, const Tensor& a, float p0 = 0, float p1 = 0, DType out = DType::F32) {
    NUANCE_BACKEND(unary_op_name(op), &a);
    return be.unary(op, a, p0, p1, out);
}
Tensor binary_op(BinaryOp op, const Tensor& a, const Tensor& b) {
    NUANCE_BACKEND(binary_op_name(op), &a, &b);
    return be.binary(op, a, b);
}
}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Div, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Minimum, a, b); }
Tensor add(const Tensor& a, float s) { return unary_op(UnaryOp::AddScalar, a, s); }
Tensor mul(const Tensor& a, float s) { return unary_op(UnaryOp::MulScalar, a, s); }
Tensor rsub(float s, const Tensor& a) { return unary_op(UnaryOp::RSubScalar, a, s); }
Tensor rdiv(float s, const Tensor& a) { return unary_op(UnaryOp::RDivScalar, a, s); }
Tensor exp(const Tensor& a) { return unary_op(UnaryOp::Exp, a); }
Tensor log(const Tensor& a) { return unary_op(UnaryOp::Log, a); }
Tensor sqrt(const Tensor& a) { return unary_op(UnaryOp::Sqrt, a); }
Tensor abs(const Tensor& a) { return unary_op(UnaryOp::Abs, a); }
Tensor square(const Tensor& a) { return unary_op(UnaryOp::Square, a); }
Tensor pow(const Tensor& a, float p) { return unary_op(UnaryOp::Pow, a, p); }
Tensor cos(const Tensor& a) { return unary_op(UnaryOp::Cos, a); }
Tensor sin(const Tensor& a) { return unary_op(UnaryOp::Sin, a); }
Tensor tanh(const Tensor& a) { return unary_op(UnaryOp::Tanh, a); }
Tensor sigmoid(const Tensor& a) { return unary_op(UnaryOp::Sigmoid, a); }
Tensor relu(const Tensor& a) { return unary_op(UnaryOp::Relu, a); }
Tensor silu(const Tensor& a) { return unary_op(UnaryOp::Silu, a); }
Tensor gelu(const Tensor& a) { return unary_op(UnaryOp::Gelu, a); }
Tensor gelu_tanh(const Tensor& a, DType out) { return unary_op(UnaryOp::GeluTanh, a, 0, 0, out); }
Tensor quick_gelu(const Tensor& a) { return unary_op(UnaryOp::QuickGelu, a); }
Tensor clamp(const Tensor& a, float lo, float hi) { return unary_op(UnaryOp::Clamp, a, lo, hi); }

Tensor geglu(const Tensor& x, DType out) {
    NUANCE_BACKEND("geglu", &x);
    return be.geglu(x, out);
}
Tensor& add_(Tensor& a, const Tensor& b) {
    NUANCE_BACKEND("add_", &a, &b);
    be.add_(a, b);
    return a;
}
Tensor& mul_(Tensor& a, float s) {
    NUANCE_BACKEND("mul_", &a);
    be.mul_(a, s);
    return a;
}
Tensor& axpy_(Tensor& a, float alpha, const Tensor& b) {
    NUANCE_BACKEND("axpy_", &a, &b);
    be.axpy_(a, alpha, b);
    return a;
}

Tensor sum(const Tensor& a, int64_t dim, bool keepdim) {
    NUANCE_BACKEND("sum", &a);
    return be.sum(a, dim, keepdim);
}
Tensor mean(const Tensor& a, int64_t dim, bool keepdim) {
    const int64_t n = a.size(dim);
    return mul(sum(a, dim, keepdim), n ? 1.0f / (float)n : 0.0f);
}
double sum_all(const Tensor& a) {
    NUANCE_BACKEND("sum_all", &a);
    return be.sum_all(a);
}
double mean_all(const Tensor& a) { return a.numel() ? sum_all(a) / (double)a.numel() : 0.0; }
float max_abs(const Tensor& a) {
    NUANCE_BACKEND("max_abs", &a);
    return be.max_abs(a);
}
float max_abs_diff(const Tensor& a, const Tensor& b) {
    NUANCE_BACKEND("max_abs_diff", &a, &b);
    return be.max_abs_diff(a, b);
}

// ---- shape_ops.h
Tensor cat(const std::vector<Tensor>& ts, int64_t dim) {
    OpNameScope op_name_scope_("cat");
    Device dev = Device::cpu();
    for (const Tensor& t : ts) {
        if (!t.defined() || t.device().is_cpu() || t.device() == dev) continue;
        NUANCE_CHECK(dev.is_cpu(), "cat: operands on two devices, ", dev.str(), " and ", t.device().str());
        dev = t.device();
    }
    return backend_for(dev).cat(ts, dim);
}
std::vector<Tensor> chunk(const Tensor& t, int64_t n, int64_t dim) {  // views: no kernel
    dim = normalize_dim(dim, t.dim());
    NUANCE_CHECK(n > 0 && t.size(dim) % n == 0, "chunk: dim ", dim, " of ", t.shape(), " not divisible by ", n);
    const int64_t step = t.size(dim) / n;
    std::vector<Tensor> out;
    for (int64_t i = 0; i < n; ++i) out.push_back(t.slice(dim, i * step, (i + 1) * step));
    return out;
}
Tensor pad2d(const Tensor& x, int64_t left, int64_t right, int64_t top, int64_t bottom, float value) {
    NUANCE_BACKEND("pad2d", &x);
    return be.pad2d(x, left, right, top, bottom, value);
}
Tensor interpolate_nearest(const Tensor& x, int64_t oh, int64_t ow, DType out) {
    NUANCE_BACKEND("interpolate_nearest", &x);
    return be.interpolate_nearest(x, oh, ow, out);
}
Tensor embedding(const Tensor& ids, const Tensor& weight) {
    NUANCE_BACKEND("embedding", &ids, &weight);
    return be.embedding(ids, weight);
}
Tensor timestep_embedding(const Tensor& t, int64_t dim, bool flip_sin_to_cos, float shift, float scale,
                          int64_t max_period) {
    NUANCE_BACKEND("timestep_embedding", &t);
    return be.timestep_embedding(t, dim, flip_sin_to_cos, shift, scale, max_period);
}

#undef NUANCE_BACKEND

}  // namespace nuance
