// Scaled dot-product attention on Var. Shape letters: B batch, H heads, Lq/Lk query/key tokens, d head dim,
// dv value head dim.
//
// Backward recomputes the probabilities P a chunk of batch elements at a time (P and dS of a chunk under ~64 MB):
//   S = scale·Q·Kᵀ (+ causal mask), P = softmax(S), O = P·V
//   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ∘ (dP − rowsum(dP ∘ P)),  dQ = scale·dS·K,  dK = scale·dSᵀ·Q
#include <algorithm>
#include <cmath>

#include "autograd/functions.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"

namespace nuance {

namespace {

// In place over s [H, Lq, Lk]: s = softmax(scale·s) with keys after the query position masked when causal.
void scaled_masked_softmax(Tensor& s, float scale, bool causal) {
    const int64_t Lk = s.size(-1), rows = s.numel() / std::max<int64_t>(Lk, 1), Lq = s.size(-2);
    float* p = s.data<float>();
#pragma omp parallel for schedule(static) if (rows * Lk > 16384)
    for (int64_t r = 0; r < rows; ++r) {
        float* row = p + r * Lk;
        const int64_t limit = causal ? std::min(Lk, r % Lq + 1) : Lk;
        float m = -INFINITY;
        for (int64_t j = 0; j < limit; ++j) { row[j] *= scale; m = std::max(m, row[j]); }
        double sum = 0;
        for (int64_t j = 0; j < limit; ++j) { row[j] = std::exp(row[j] - m); sum += row[j]; }
        const float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < limit; ++j) row[j] *= inv;
        for (int64_t j = limit; j < Lk; ++j) row[j] = 0.0f;
    }
}

// In place over dp [H, Lq, Lk]: dp = scale · P ∘ (dP − rowsum(dP ∘ P)).
void softmax_backward_(Tensor& dp, const Tensor& pr, float scale) {
    const int64_t Lk = dp.size(-1), rows = dp.numel() / std::max<int64_t>(Lk, 1);
    float* d = dp.data<float>();
    const float* p = pr.data<float>();
#pragma omp parallel for schedule(static) if (rows * Lk > 16384)
    for (int64_t r = 0; r < rows; ++r) {
        double dot = 0;
        for (int64_t j = 0; j < Lk; ++j) dot += (double)d[r * Lk + j] * p[r * Lk + j];
        for (int64_t j = 0; j < Lk; ++j) d[r * Lk + j] = scale * p[r * Lk + j] * (d[r * Lk + j] - (float)dot);
    }
}

}  // namespace

Var scaled_dot_product_attention(const Var& q, const Var& k, const Var& v, bool causal, float scale) {
    NUANCE_CHECK(q.defined() && k.defined() && v.defined(), "attention: undefined q, k or v");
    const Precision prec = compute_precision() == Precision::BF16 ? Precision::BF16 : Precision::FP32;
    // Mixed precision (BF16): q, k, v are rounded to bf16 once (one pass from the heads' strided views), for the
    // forward's products (as torch.autocast runs Q·Kᵀ and P·V; the softmax stays f32) and for the backward's, and
    // the tape keeps those copies.
    const DType cd = prec == Precision::BF16 ? DType::BF16 : DType::F32;
    const auto operand = [cd](const Tensor& t) {
        if (t.dtype() == cd && t.is_contiguous()) return t;
        Tensor c = Tensor::empty(t.shape(), cd);
        c.copy_(t);
        return c;
    };
    const Tensor qv = operand(q.value()), kv = operand(k.value()), vv = operand(v.value());
    Tensor o = scaled_dot_product_attention(qv, kv, vv, causal, scale);  // checks the shapes
    if (scale <= 0) scale = 1.0f / std::sqrt((float)q.size(3));
    return record("attention", std::move(o), {q, k, v},
                  [qv, kv, vv, causal, scale, prec, operand](const Tensor& g_in, const std::vector<bool>& need) {
        const Tensor g = operand(g_in);  // rounded once for the two products that use it
        const int64_t B = qv.size(0);
        Tensor dq = need[0] ? Tensor::empty(qv.shape(), DType::F32) : Tensor();
        Tensor dk = need[1] ? Tensor::empty(kv.shape(), DType::F32) : Tensor();
        Tensor dv = need[2] ? Tensor::empty(vv.shape(), DType::F32) : Tensor();
        // As many batch elements at once as keep P and dS under ~64 MB: one batched product per term instead of
        // one per batch element (the tiny per-element products ran at a fraction of the matrix units' speed).
        const int64_t H = qv.size(1), Lq = qv.size(2), Lk = kv.size(2);
        const int64_t per_elem = std::max<int64_t>(1, 2 * H * Lq * Lk * (int64_t)sizeof(float));
        const int64_t chunk = std::clamp<int64_t>((int64_t(64) << 20) / per_elem, 1, std::max<int64_t>(B, 1));
        const auto put = [chunk, B](Tensor& dst, int64_t b0, int64_t b1, Tensor v) {
            if (chunk >= B) dst = std::move(v);
            else dst.slice(0, b0, b1).copy_(v);
        };
        for (int64_t b0 = 0; b0 < B; b0 += chunk) {
            const int64_t b1 = std::min(B, b0 + chunk);
            const Tensor qb = qv.slice(0, b0, b1), kb = kv.slice(0, b0, b1), vb = vv.slice(0, b0, b1),
                         gb = g.slice(0, b0, b1);                        // [b, H, L, d]
            Tensor p = matmul(qb, kb.transpose(-1, -2), prec);                  // [b, H, Lq, Lk]
            scaled_masked_softmax(p, scale, causal);
            if (need[2]) put(dv, b0, b1, matmul(p.transpose(-1, -2), gb, prec));
            if (!need[0] && !need[1]) continue;
            Tensor ds = matmul(gb, vb.transpose(-1, -2), prec);  // dP
            softmax_backward_(ds, p, scale);                // -> scale·dS
            if (need[0]) put(dq, b0, b1, matmul(ds, kb, prec));
            if (need[1]) put(dk, b0, b1, matmul(ds.transpose(-1, -2), qb, prec));
        }
        return std::vector<Tensor>{dq, dk, dv};
    });
}

Var multi_head_attention(const Var& q, const Var& k, const Var& v, int64_t heads, bool causal, float scale) {
    NUANCE_CHECK(q.defined() && k.defined() && v.defined(), "attention: undefined q, k or v");
    NUANCE_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, "attention: expected [B, L, C] inputs, got q ",
                 q.shape(), ", k ", k.shape(), ", v ", v.shape());
    const int64_t B = q.size(0), Lq = q.size(1), C = q.size(2), Lk = k.size(1), Cv = v.size(2);
    NUANCE_CHECK(heads > 0 && C % heads == 0 && Cv % heads == 0 && k.size(2) == C,
                 "attention: q ", q.shape(), ", k ", k.shape(), ", v ", v.shape(), " do not split into ", heads,
                 " heads");
    auto split = [&](const Var& t, int64_t L, int64_t Ct) {  // [B, L, H*d] -> [B, H, L, d]
        return t.reshape({B, L, heads, Ct / heads}).permute({0, 2, 1, 3});
    };
    const Var o = scaled_dot_product_attention(split(q, Lq, C), split(k, Lk, C), split(v, Lk, Cv), causal, scale);
    return o.permute({0, 2, 1, 3}).reshape({B, Lq, Cv});
}

}  // namespace nuance
