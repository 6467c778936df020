// Differentiable ops on Var. Each forward calls the nuance op of the same name (src/ops) and records its backward
// rule beside it (src/autograd/ops_*.cpp). Names and broadcasting follow PyTorch; results are F32.
#pragma once
#include <array>
#include <vector>

#include "autograd/var.h"
#include "ops/conv.h"

namespace nuance {

// ---- elementwise (ops_elementwise.cpp); binary ops broadcast, gradients are summed back over broadcast dims ----
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);
Var add(const Var& a, float s);
Var mul(const Var& a, float s);
Var rsub(float s, const Var& a);  // s - a

inline Var operator+(const Var& a, const Var& b) { return add(a, b); }
inline Var operator-(const Var& a, const Var& b) { return sub(a, b); }
inline Var operator*(const Var& a, const Var& b) { return mul(a, b); }
inline Var operator/(const Var& a, const Var& b) { return div(a, b); }
inline Var operator+(const Var& a, float s) { return add(a, s); }
inline Var operator-(const Var& a, float s) { return add(a, -s); }
inline Var operator*(const Var& a, float s) { return mul(a, s); }
inline Var operator/(const Var& a, float s) { return mul(a, 1.0f / s); }
inline Var operator+(float s, const Var& a) { return add(a, s); }
inline Var operator-(float s, const Var& a) { return rsub(s, a); }
inline Var operator*(float s, const Var& a) { return mul(a, s); }
inline Var operator-(const Var& a) { return mul(a, -1.0f); }

Var exp(const Var& a);
Var log(const Var& a);
Var sqrt(const Var& a);
Var square(const Var& a);
Var abs(const Var& a);
Var tanh(const Var& a);
Var sigmoid(const Var& a);
Var relu(const Var& a);
Var silu(const Var& a);
Var gelu(const Var& a);        // exact erf GELU
Var gelu_tanh(const Var& a);   // tanh approximation
Var quick_gelu(const Var& a);  // x * sigmoid(1.702 x) (CLIP)
Var clamp(const Var& a, float lo, float hi);  // gradient 0 outside [lo, hi]

// ---- reductions and losses (ops_reduce.cpp) ----
Var sum(const Var& a);  // all elements -> shape []
Var mean(const Var& a);
Var sum(const Var& a, int64_t dim, bool keepdim = false);
Var mean(const Var& a, int64_t dim, bool keepdim = false);
Var mse_loss(const Var& pred, const Var& target);  // mean((pred - target)^2), shapes must match
Var l1_loss(const Var& pred, const Var& target);   // mean(|pred - target|)

// ---- dense products (ops_matmul.cpp) ----
// y = x · wᵀ + b.  x: [..., K], w: [N, K], b: [N] or undefined.
Var linear(const Var& x, const Var& w, const Var& b = Var());
// a [..., M, K] · b [..., K, N] with broadcasting over the leading dims.
Var matmul(const Var& a, const Var& b);
// The Cayley transform (I + Q)(I - Q)^-1 of each b x b block of q [..., b, b] (ops/cayley.h; OFT's rotations).
// Backward: dL/dQ = (I + R)^T G A^T with A = (I - Q)^-1 (from dR = (I + R) dQ A).
Var cayley(const Var& q);

// ---- convolution (ops_conv.cpp) ----
// x: [N, C, H, W], w: [O, C/groups, kh, kw], b: [O] or undefined. Backward through oneDNN.
Var conv2d(const Var& x, const Var& w, const Var& b, const Conv2dParams& p);

// ---- normalisation (ops_norm.cpp) ----
Var group_norm(const Var& x, int64_t groups, const Var& weight, const Var& bias, float eps, bool silu = false);
Var layer_norm(const Var& x, const Var& weight, const Var& bias, float eps);
Var softmax(const Var& x);  // over the last dim

// ---- attention (ops_attention.cpp) ----
// q: [B, H, Lq, d], k: [B, H, Lk, d], v: [B, H, Lk, dv] -> [B, H, Lq, dv]. scale <= 0: 1/sqrt(d).
Var scaled_dot_product_attention(const Var& q, const Var& k, const Var& v, bool causal = false, float scale = 0.0f);
// q [B, Lq, H*d], k/v [B, Lk, H*d] -> [B, Lq, H*dv].
Var multi_head_attention(const Var& q, const Var& k, const Var& v, int64_t heads, bool causal = false,
                         float scale = 0.0f);

// ---- moving data (ops_shape.cpp); Var's own view methods are there too ----
Var cat(const std::vector<Var>& vs, int64_t dim);
std::vector<Var> chunk(const Var& v, int64_t n, int64_t dim);
template <size_t K>
std::array<Var, K> chunk(const Var& v, int64_t dim) {
    auto parts = chunk(v, (int64_t)K, dim);
    std::array<Var, K> out;
    for (size_t i = 0; i < K; ++i) out[i] = parts[i];
    return out;
}
// Nearest-neighbour resize of [N, C, H, W] (torch's 'nearest' index rule); the gradient sums over the copies.
Var interpolate_nearest(const Var& x, int64_t oh, int64_t ow);
Var pad2d(const Var& x, int64_t left, int64_t right, int64_t top, int64_t bottom, float value = 0.0f);
// ids: integer tensor [...] (no gradient); weight [V, D] -> [..., D]. The gradient scatter-adds into weight's rows.
Var embedding(const Tensor& ids, const Var& weight);

}  // namespace nuance
