// Shape letters: B batch, H heads, Lq/Lk query/key tokens, d head dim.
// Scores are computed a block of queries at a time so memory stays O(block * Lk) rather than O(Lq * Lk).
#include "ops/attention.h"

#include <algorithm>
#include <cmath>

#include "ops/elementwise.h"
#include "ops/matmul.h"

namespace nuance {

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, bool causal,
                                    float scale, const Tensor& bias_in) {
    NUANCE_CHECK(q_in.dim() == 4 && k_in.dim() == 4 && v_in.dim() == 4, "attention: q/k/v must be [B, H, L, d], got ",
                 q_in.shape(), ", ", k_in.shape(), ", ", v_in.shape());
    const int64_t B = q_in.size(0), H = q_in.size(1), Lq = q_in.size(2), d = q_in.size(3);
    const int64_t Lk = k_in.size(2), dv = v_in.size(3);
    NUANCE_CHECK(k_in.size(0) == B && k_in.size(1) == H && k_in.size(3) == d && v_in.size(0) == B &&
                     v_in.size(1) == H && v_in.size(2) == Lk,
                 "attention: incompatible q ", q_in.shape(), ", k ", k_in.shape(), ", v ", v_in.shape());
    if (scale <= 0) scale = 1.0f / std::sqrt((float)d);
    const Tensor q = q_in.f32().contiguous(), k = k_in.f32().contiguous(), v = v_in.f32().contiguous();
    Tensor bias;
    if (bias_in.defined()) bias = bias_in.f32().expand({B, H, Lq, Lk});
    Tensor out = Tensor::empty({B, H, Lq, dv}, DType::F32);
    const int64_t block = std::max<int64_t>(64, std::min<int64_t>(Lq, (int64_t)(16 << 20) / std::max<int64_t>(Lk, 1)));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
            const Tensor kt = k[b][h].transpose(0, 1);  // [d, Lk]
            const Tensor vh = v[b][h];
            for (int64_t q0 = 0; q0 < Lq; q0 += block) {
                const int64_t q1 = std::min(Lq, q0 + block);
                Tensor s = matmul(q[b][h].slice(0, q0, q1), kt);  // [rows, Lk]
                float* ps = s.data<float>();
                const Tensor bb = bias.defined() ? bias[b][h].slice(0, q0, q1).contiguous() : Tensor();
                const float* pb = bb.defined() ? bb.data<float>() : nullptr;
                const int64_t rows = q1 - q0;
#pragma omp parallel for schedule(static) if (rows * Lk > 16384)
                for (int64_t r = 0; r < rows; ++r) {
                    float* row = ps + r * Lk;
                    const int64_t limit = causal ? std::min(Lk, q0 + r + 1) : Lk;
                    float m = -INFINITY;
                    for (int64_t j = 0; j < limit; ++j) {
                        row[j] = row[j] * scale + (pb ? pb[r * Lk + j] : 0.0f);
                        m = std::max(m, row[j]);
                    }
                    double sum = 0;
                    for (int64_t j = 0; j < limit; ++j) { row[j] = std::exp(row[j] - m); sum += row[j]; }
                    const float inv = (float)(1.0 / sum);
                    for (int64_t j = 0; j < limit; ++j) row[j] *= inv;
                    for (int64_t j = limit; j < Lk; ++j) row[j] = 0.0f;
                }
                Tensor o = matmul(s, vh);  // [rows, dv]
                out[b][h].slice(0, q0, q1).copy_(o);
            }
        }
    return out;
}

Tensor multi_head_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads, bool causal,
                            float scale) {
    NUANCE_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, "attention: expected [B, L, C] inputs, got ", q.shape());
    const int64_t B = q.size(0), Lq = q.size(1), C = q.size(2), Lk = k.size(1), Cv = v.size(2);
    NUANCE_CHECK(heads > 0 && C % heads == 0 && Cv % heads == 0 && k.size(2) == C,
                 "attention: ", C, " channels not divisible into ", heads, " heads");
    auto split = [&](const Tensor& t, int64_t L, int64_t Ct) {  // [B, L, H*d] -> [B, H, L, d]
        return t.reshape({B, L, heads, Ct / heads}).permute({0, 2, 1, 3});
    };
    Tensor o = scaled_dot_product_attention(split(q, Lq, C), split(k, Lk, C), split(v, Lk, Cv), causal, scale);
    return o.permute({0, 2, 1, 3}).reshape({B, Lq, Cv});
}

}  // namespace nuance
