// Elementwise ops with numpy/torch broadcasting. Inputs of any float dtype; compute and results in F32.
#pragma once
#include "core/tensor.h"

namespace nuance {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, float s);
Tensor mul(const Tensor& a, float s);
Tensor rsub(float s, const Tensor& a);  // s - a
Tensor rdiv(float s, const Tensor& a);  // s / a
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, float s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, float s) { return add(a, -s); }
inline Tensor operator*(const Tensor& a, float s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, float s) { return mul(a, 1.0f / s); }
inline Tensor operator+(float s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(float s, const Tensor& a) { return rsub(s, a); }
inline Tensor operator*(float s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(float s, const Tensor& a) { return rdiv(s, a); }
inline Tensor operator-(const Tensor& a) { return mul(a, -1.0f); }

// In place on a dense F32 tensor (b broadcast to a's shape). Returns a.
Tensor& add_(Tensor& a, const Tensor& b);
Tensor& mul_(Tensor& a, float s);
// a += alpha * b   (same shape)
Tensor& axpy_(Tensor& a, float alpha, const Tensor& b);

Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor square(const Tensor& a);
Tensor pow(const Tensor& a, float p);
Tensor cos(const Tensor& a);
Tensor sin(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor silu(const Tensor& a);        // x * sigmoid(x)
Tensor gelu(const Tensor& a);        // exact erf GELU
// x = [..., 2F] -> hidden * gelu(gate), hidden/gate the two halves (GEGLU); out F32, or BF16 for a bf16 consumer.
Tensor geglu(const Tensor& x, DType out = DType::F32);
// tanh approximation (vectorised: x / (1 + exp(-2u)), the same function); out F32, or BF16 for a bf16 consumer.
Tensor gelu_tanh(const Tensor& a, DType out = DType::F32);
Tensor quick_gelu(const Tensor& a);  // x * sigmoid(1.702 x)
Tensor clamp(const Tensor& a, float lo, float hi);

// Reductions (F32 result). dim may be negative.
Tensor sum(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& a, int64_t dim, bool keepdim = false);
double sum_all(const Tensor& a);
double mean_all(const Tensor& a);
float max_abs(const Tensor& a);
float max_abs_diff(const Tensor& a, const Tensor& b);  // same shape

}  // namespace nuance
