// Shape letters: B batch, H heads, Lq/Lk query/key tokens, d head dim, dv value head dim, R rows of a query block.
// Without a score bias, on AVX-512 CPUs, attention runs the fused kernel of backends/cpu/flash_attention.h (online
// softmax over key blocks, products in registers). Otherwise (bias, older CPUs, NUANCE_FLASH_ATTENTION=0) it runs
// tiled on oneDNN: the work is split into (b, h, query block) tiles run in parallel, one per thread at a time. A
// tile computes S = q_blk · kᵀ [R, Lk] in a thread-local buffer (a few MiB at most), applies scale/bias/causal mask
// and a vectorised softmax in place, then o_blk = P · v straight into the output view. So no L×L matrix is ever
// held: memory is O(threads · R · Lk). q/k/v in BF16 run both products in bf16 with f32 accumulation (P is rounded
// to bf16 for the second product, as fused bf16 attention kernels do).
#include "ops/attention.h"
#include "backends/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/dnnl_cache.h"
#include "backends/cpu/dnnl_context.h"
#include "backends/cpu/flash_attention.h"
#include "backends/cpu/vec_math.h"
#include "core/op_stats.h"

namespace nuance {

using dnnl::memory;
using dt = memory::data_type;

namespace {

// c [M, N] (row stride c_rs, f32) = a [M, K] (strides a_s) · b [K, N] (strides b_s), single-threaded.
void small_matmul(dt t, const void* a, const memory::dims& a_s, const void* b, const memory::dims& b_s, float* c,
                  int64_t c_rs, int64_t M, int64_t K, int64_t N) {
    const memory::desc a_md({M, K}, t, a_s), b_md({K, N}, t, b_s), c_md({M, N}, dt::f32, {c_rs, 1});
    cpu::MatmulPrimitive& mm = cpu::cached_matmul(a_md, b_md, memory::desc(), c_md);
    auto& eng = cpu::engine();
    mm.prim.execute(cpu::stream(), {{DNNL_ARG_SRC, memory(a_md, eng, const_cast<void*>(a))},
                                    {DNNL_ARG_WEIGHTS, memory(b_md, eng, const_cast<void*>(b))},
                                    {DNNL_ARG_DST, memory(c_md, eng, c)}});
    cpu::stream().wait();
}

// Same-dtype q/k/v with unit inner stride; others are copied to contiguous.
Tensor attention_operand(const Tensor& t, DType want) {
    Tensor r = t.to(want);
    return r.strides().back() == 1 ? r : r.contiguous();
}

// out [B, H, Lq, dv] (any strides, unit inner stride, F32).
void attention_into(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, bool causal, float scale,
                    const Tensor& bias) {
    const int64_t B = q.size(0), H = q.size(1), Lq = q.size(2), d = q.size(3), Lk = k.size(2), dv = v.size(3);
    const bool bf16 = q.dtype() == DType::BF16;
    const dt t = bf16 ? dt::bf16 : dt::f32;
    const size_t es = dtype_size(q.dtype());
    // S tile <= 2 MiB, 64..256 rows. Measured at 512² (4,096 keys): 16-row tiles (256 KiB) made 95,000 tiny
    // products per step and took 3.15 s/step; 64 rows 2.81 s, 128 rows (this) 2.75 s, 256 rows 2.73 s.
    const int64_t R = std::clamp<int64_t>((2 << 20) / std::max<int64_t>(Lk * 4, 1), 64, 256);
    const int64_t blocks = (Lq + R - 1) / R;
    const auto& qs = q.strides();
    const auto& ks = k.strides();
    const auto& vs = v.strides();
    const auto& os = out.strides();
    const uint8_t* pq = static_cast<const uint8_t*>(q.raw());
    const uint8_t* pk = static_cast<const uint8_t*>(k.raw());
    const uint8_t* pv = static_cast<const uint8_t*>(v.raw());
    float* po = out.data<float>();
    const float* pbias = bias.defined() ? bias.data<float>() : nullptr;  // expanded view [B, H, Lq, Lk]
    const Shape bst = bias.defined() ? bias.strides() : Shape(4, 0);
    count_flops(2.0 * (double)B * (double)H * (double)Lq * (double)Lk * (double)(d + dv));
    if (!pbias && cpu::flash_attention_available(bf16)) {
        cpu::flash_attention(bf16, {pq, qs[0], qs[1], qs[2]}, {pk, ks[0], ks[1], ks[2]}, {pv, vs[0], vs[1], vs[2]}, po,
                             os[0], os[1], os[2], B, H, Lq, Lk, d, dv, scale, causal);
        return;
    }
#pragma omp parallel
    {
        std::vector<float> s((size_t)(R * Lk));
        std::vector<uint16_t> p16(bf16 ? (size_t)(R * Lk) : 0);
#pragma omp for schedule(dynamic, 1) collapse(3)
        for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < H; ++h)
                for (int64_t blk = 0; blk < blocks; ++blk) {
                    const int64_t q0 = blk * R, rows = std::min(R, Lq - q0);
                    const uint8_t* qb = pq + (size_t)(b * qs[0] + h * qs[1] + q0 * qs[2]) * es;
                    const uint8_t* kb = pk + (size_t)(b * ks[0] + h * ks[1]) * es;
                    const uint8_t* vb = pv + (size_t)(b * vs[0] + h * vs[1]) * es;
                    small_matmul(t, qb, {qs[2], 1}, kb, {1, ks[2]}, s.data(), Lk, rows, d, Lk);  // q · kᵀ
                    for (int64_t r = 0; r < rows; ++r) {
                        float* row = s.data() + r * Lk;
                        const int64_t limit = causal ? std::min(Lk, q0 + r + 1) : Lk;
                        float row_scale = scale;
                        if (pbias) {
                            const float* br = pbias + b * bst[0] + h * bst[1] + (q0 + r) * bst[2];
                            for (int64_t j = 0; j < limit; ++j) row[j] = row[j] * scale + br[j * bst[3]];
                            row_scale = 1.0f;
                        }
                        cpu::softmax_row(row, limit, row_scale);
                        std::fill(row + limit, row + Lk, 0.0f);
                    }
                    float* ob = po + b * os[0] + h * os[1] + q0 * os[2];
                    if (bf16) {
                        cpu::f32_to_bf16_n(s.data(), p16.data(), rows * Lk);
                        small_matmul(t, p16.data(), {Lk, 1}, vb, {vs[2], 1}, ob, os[2], rows, Lk, dv);
                    } else {
                        small_matmul(t, s.data(), {Lk, 1}, vb, {vs[2], 1}, ob, os[2], rows, Lk, dv);
                    }
                }
    }
}

}  // namespace

Tensor CpuBackend::scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, bool causal,
                                    float scale, const Tensor& bias_in) {
    OpTimer op_timer("attention");
    NUANCE_CHECK(q_in.dim() == 4 && k_in.dim() == 4 && v_in.dim() == 4, "attention: q/k/v must be [B, H, L, d], got ",
                 q_in.shape(), ", ", k_in.shape(), ", ", v_in.shape());
    const int64_t B = q_in.size(0), H = q_in.size(1), Lq = q_in.size(2), d = q_in.size(3);
    const int64_t Lk = k_in.size(2), dv = v_in.size(3);
    NUANCE_CHECK(k_in.size(0) == B && k_in.size(1) == H && k_in.size(3) == d && v_in.size(0) == B &&
                     v_in.size(1) == H && v_in.size(2) == Lk,
                 "attention: incompatible q ", q_in.shape(), ", k ", k_in.shape(), ", v ", v_in.shape());
    if (scale <= 0) scale = 1.0f / std::sqrt((float)d);
    const DType cd = q_in.dtype() == DType::BF16 ? DType::BF16 : DType::F32;
    const Tensor q = attention_operand(q_in, cd), k = attention_operand(k_in, cd), v = attention_operand(v_in, cd);
    Tensor bias;
    if (bias_in.defined()) bias = bias_in.f32().expand({B, H, Lq, Lk});
    Tensor out = Tensor::empty({B, H, Lq, dv}, DType::F32);
    if (B * H * Lq * dv == 0) return out;
    NUANCE_CHECK(Lk > 0, "attention: no keys (k ", k_in.shape(), ")");
    attention_into(q, k, v, out, causal, scale, bias);
    return out;
}

// The heads are strided views of the token-major tensors, and the output is written token-major directly, so the
// only copies are the optional bf16 roundings.
Tensor CpuBackend::multi_head_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads, bool causal,
                            float scale, Precision compute) {
    OpTimer op_timer("attention");
    NUANCE_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, "attention: expected [B, L, C] inputs, got ", q.shape());
    const int64_t B = q.size(0), Lq = q.size(1), C = q.size(2), Lk = k.size(1), Cv = v.size(2);
    NUANCE_CHECK(heads > 0 && C % heads == 0 && Cv % heads == 0 && k.size(2) == C && v.size(1) == Lk &&
                     k.size(0) == B && v.size(0) == B,
                 "attention: q ", q.shape(), ", k ", k.shape(), ", v ", v.shape(), " do not split into ", heads, " heads");
    auto split = [&](const Tensor& t, int64_t L, int64_t Ct) {  // [B, L, H*d] -> [B, H, L, d]
        return t.reshape({B, L, heads, Ct / heads}).permute({0, 2, 1, 3});
    };
    Tensor out = Tensor::empty({B, Lq, Cv}, DType::F32);
    if (B * Lq * Cv == 0) return out;
    NUANCE_CHECK(Lk > 0, "attention: no keys (k ", k.shape(), ")");
    const float sc = scale > 0 ? scale : 1.0f / std::sqrt((float)(C / heads));
    const bool bf16 = compute == Precision::BF16 || (compute == Precision::Auto && q.dtype() == DType::BF16);
    const DType cd = bf16 ? DType::BF16 : DType::F32;
    Tensor ov = split(out, Lq, Cv);
    attention_into(split(attention_operand(q, cd), Lq, C), split(attention_operand(k, cd), Lk, C),
                   split(attention_operand(v, cd), Lk, Cv), ov, causal, sc, Tensor());
    return out;
}

}  // namespace nuance
