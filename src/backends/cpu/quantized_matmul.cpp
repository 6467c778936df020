// Products with quantized weights: see quantized_matmul.h for the two paths and the shape letters.
#include "backends/cpu/quantized_matmul.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/dnnl_cache.h"
#include "backends/cpu/dnnl_context.h"
#include "backends/cpu/ggml_quants.h"
#include "backends/cpu/int8_tiles.h"
#include "backends/cpu/vec_math.h"
#include "core/op_stats.h"

namespace nuance::cpu {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

constexpr int64_t QK = 32;
constexpr int64_t kQ8Bytes = 34;  // block_q8_0: f16 d, int8 qs[32]

// ---- activations quantized to Q8_0 blocks: xq [M, K] int8, xd [M, KB] f32 (ggml's quantize_row_q8_0, with the
// rounding of the conversion instruction: nearest, ties to even)
struct QuantizedRows {
    std::unique_ptr<int8_t[]> q;   // [M, K] (not zero-filled: every value is written)
    std::unique_ptr<float[]> d;    // [M, KB]
    std::unique_ptr<int32_t[]> s;  // [M, 2 * KB]: the sums of each block's two halves of 16 quants (the VNNI
                                   // kernel's zero-point and min terms)
    void allocate(int64_t M, int64_t K) {
        q.reset(new int8_t[(size_t)(M * K)]);
        d.reset(new float[(size_t)(M * (K / QK))]);
        s.reset(new int32_t[(size_t)(M * (K / QK) * 2)]);
    }
};

void quantize_block(const float* x, int8_t* q, float* d) {
    float amax = 0.0f;
    for (int64_t i = 0; i < QK; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float s = amax / 127.0f, id = s != 0.0f ? 1.0f / s : 0.0f;
    for (int64_t i = 0; i < QK; ++i) q[i] = (int8_t)std::nearbyint(x[i] * id);
    *d = s;
}

#define NUANCE_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

// quantize_block on AVX-512 for one block of 32 f32 values, the same arithmetic (amax / 127, x * (1 / d) rounded by
// the conversion instruction: nearest, ties to even), plus the quant sums of its two halves into s[0], s[1].
NUANCE_VNNI_TARGET void quantize_block_avx512(const float* x, int8_t* q, float* d, int32_t* s) {
    // The masked (maskz) forms throughout: GCC 12's unmasked ones read an "undefined" vector and warn.
    constexpr __mmask16 all = 0xFFFF;
    const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    alignas(64) float m[16];
    _mm512_store_ps(m, _mm512_maskz_max_ps(all, _mm512_abs_ps(a), _mm512_abs_ps(b)));
    float amax = 0.0f;
    for (float v : m) amax = std::max(amax, v);
    const float sc = amax / 127.0f, id = sc != 0.0f ? 1.0f / sc : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i qa = _mm512_maskz_cvtps_epi32(all, _mm512_mul_ps(a, vid));
    const __m512i qb = _mm512_maskz_cvtps_epi32(all, _mm512_mul_ps(b, vid));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_maskz_cvtsepi32_epi8(all, qa));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_maskz_cvtsepi32_epi8(all, qb));
    *d = sc;
    alignas(64) int32_t t[32];
    _mm512_store_si512(t, qa);
    _mm512_store_si512(t + 16, qb);
    int32_t s0 = 0, s1 = 0;
    for (int i = 0; i < 16; ++i) s0 += t[i], s1 += t[16 + i];
    s[0] = s0;
    s[1] = s1;
}

QuantizedRows quantize_rows(const Tensor& x, int64_t M, int64_t K) {
    QuantizedRows r;
    const int64_t KB = K / QK;
    r.allocate(M, K);
    const bool bf16 = x.dtype() == DType::BF16;
    const float* xf = bf16 ? nullptr : x.data<float>();
    const uint16_t* xb = bf16 ? x.data<uint16_t>() : nullptr;
    const bool vec = has_vnni_kernel();
#pragma omp parallel for schedule(static) if (M * K > (1 << 15))
    for (int64_t m = 0; m < M; ++m) {
        float tmp[QK];
        for (int64_t b = 0; b < KB; ++b) {
            const float* src = xf ? xf + m * K + b * QK : tmp;
            if (xb)
                for (int64_t i = 0; i < QK; ++i) tmp[i] = bf16_to_f32(xb[m * K + b * QK + i]);
            int8_t* q = &r.q[(size_t)(m * K + b * QK)];
            float* d = &r.d[(size_t)(m * KB + b)];
            int32_t* sums = &r.s[(size_t)((m * KB + b) * 2)];
            if (vec) {
                quantize_block_avx512(src, q, d, sums);
                continue;
            }
            quantize_block(src, q, d);
            sums[0] = sums[1] = 0;
            for (int64_t i = 0; i < QK; ++i) sums[i / 16] += q[i];
        }
    }
    return r;
}

// The f32 scales of a Q8_0 weight: wd [N, KB].
std::vector<float> q8_scales(const QuantizedWeightView& w) {
    const int64_t KB = w.row_length / QK;
    std::vector<float> d((size_t)(w.rows * KB));
#pragma omp parallel for schedule(static) if (w.rows * KB > (1 << 14))
    for (int64_t n = 0; n < w.rows; ++n)
        for (int64_t b = 0; b < KB; ++b) {
            uint16_t h;
            std::memcpy(&h, w.data + n * w.row_bytes + b * kQ8Bytes, 2);
            d[(size_t)(n * KB + b)] = f16_to_f32(h);
        }
    return d;
}

void store_row(Tensor& y, int64_t m, int64_t n, float v) {
    if (y.dtype() == DType::BF16) y.data<uint16_t>()[m * y.size(1) + n] = f32_to_bf16(v);
    else y.data<float>()[m * y.size(1) + n] = v;
}

// ---- W8A8, portable: per block an exact int32 dot, then acc += (d_x * d_w) * dot in block order.
void w8a8_portable(const QuantizedRows& xq, int64_t M, const QuantizedWeightView& w, const std::vector<float>& wd,
                   const float* bias, Tensor& y) {
    const int64_t K = w.row_length, KB = K / QK, N = w.rows;
#pragma omp parallel for collapse(2) schedule(static) if (M * N * K > (1 << 18))
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            const int8_t* xr = &xq.q[(size_t)(m * K)];
            const uint8_t* wr = w.data + n * w.row_bytes;
            float acc = 0.0f;
            for (int64_t b = 0; b < KB; ++b) {
                const int8_t* wq = reinterpret_cast<const int8_t*>(wr + b * kQ8Bytes + 2);
                int32_t s = 0;
                for (int64_t i = 0; i < QK; ++i) s += (int32_t)wq[i] * (int32_t)xr[b * QK + i];
                acc += (xq.d[(size_t)(m * KB + b)] * wd[(size_t)(n * KB + b)]) * (float)s;
            }
            store_row(y, m, n, acc + (bias ? bias[n] : 0.0f));
        }
}

// ---- W8A8, AVX-512 VNNI, outer-product form. The weight is repacked per call into tiles of 32 output columns:
// for each 32-block of K and each group of 4 k, two 64-byte vectors hold the unsigned quants u[n][k..k+3]
// (ggml_quants.h: int8_block; value = d * (u - zero) + m) for 16 columns each (vpdpbusd's u8 operand), with the
// tile's f32 scales d (and mins m) beside them. One x row's 4 int8 of a group are broadcast (the s8 operand), so each
// vpdpbusd adds 64 products into 16 columns' int32 sums. A scale group's sum starts at -zero * (sum of x's quants),
// which removes the zero point exactly; it is then added in f32 as acc += s * (d_x * d) (+ m * d_x * sum of x's
// quants): for Q8_0 the same per-block products as the portable loop.

// MR rows of x by one packed tile (32 columns), over all of K, plus the bias: stored into y (f32 rows of ldy floats,
// the tile's first `nn` columns) or, for a bf16 output, into out[i * 32 + c] for the caller to round. Per scale group
// (the whole 32-block, or each half of it for G = 2): s = sum u * x_q - zero * sum x_q (exact int32), then
// acc += s * (d_x * d) (+ m * d_x * sum x_q for the types with a min).
template <int MR, bool MIN, int G>
NUANCE_VNNI_TARGET void vnni_rows_tile(const int8_t* xq, const float* xd, const int32_t* xs, int64_t K, int64_t KB,
                                       const uint8_t* wq, const float* wd, const float* wm, int zero, const float* bias,
                                       int64_t nn, float* y, int64_t ldy) {
    constexpr int kGroupsOf4 = 8 / G;  // groups of 4 k per scale group
    __m512 acc[MR][2];
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < KB; ++b) {
        const uint8_t* wb = wq + b * kTileBlockBytes;
        for (int h = 0; h < G; ++h) {
            __m512i s[MR][2];
            int32_t sx[MR];  // sum of x's quants over this scale group
            for (int i = 0; i < MR; ++i) {
                const int32_t* p = xs + (i * KB + b) * 2;
                sx[i] = G == 1 ? p[0] + p[1] : p[h];
                s[i][0] = s[i][1] = _mm512_set1_epi32(-zero * sx[i]);
            }
#pragma GCC unroll 8
            for (int g = h * kGroupsOf4; g < (h + 1) * kGroupsOf4; ++g) {
                const __m512i w0 = _mm512_loadu_si512(wb + g * 128), w1 = _mm512_loadu_si512(wb + g * 128 + 64);
                for (int i = 0; i < MR; ++i) {
                    int32_t x4;
                    std::memcpy(&x4, xq + i * K + b * QK + g * 4, 4);
                    const __m512i xv = _mm512_set1_epi32(x4);
                    s[i][0] = _mm512_dpbusd_epi32(s[i][0], w0, xv);
                    s[i][1] = _mm512_dpbusd_epi32(s[i][1], w1, xv);
                }
            }
            const float* dg = wd + (b * G + h) * kTileN;
            const __m512 d0 = _mm512_loadu_ps(dg), d1 = _mm512_loadu_ps(dg + 16);
            for (int i = 0; i < MR; ++i) {
                const __m512 dx = _mm512_set1_ps(xd[i * KB + b]);
                acc[i][0] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, s[i][0]), _mm512_mul_ps(d0, dx), acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, s[i][1]), _mm512_mul_ps(d1, dx), acc[i][1]);
            }
            if constexpr (MIN) {
                const float* mg = wm + (b * G + h) * kTileN;
                const __m512 m0 = _mm512_loadu_ps(mg), m1 = _mm512_loadu_ps(mg + 16);
                for (int i = 0; i < MR; ++i) {
                    const __m512 v = _mm512_set1_ps(xd[i * KB + b] * (float)sx[i]);
                    acc[i][0] = _mm512_fmadd_ps(m0, v, acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(m1, v, acc[i][1]);
                }
            }
        }
    }
    const __mmask16 m0 = nn >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nn) - 1u);
    const __mmask16 m1 = nn >= 32 ? (__mmask16)0xFFFF : nn <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nn - 16)) - 1u);
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < MR; ++i) {
        _mm512_mask_storeu_ps(y + i * ldy, m0, _mm512_add_ps(acc[i][0], b0));
        _mm512_mask_storeu_ps(y + i * ldy + 16, m1, _mm512_add_ps(acc[i][1], b1));
    }
}

using RowsTileFn = void (*)(const int8_t*, const float*, const int32_t*, int64_t, int64_t, const uint8_t*, const float*,
                            const float*, int, const float*, int64_t, float*, int64_t);
constexpr int kMR = 6;
template <bool MIN, int G>
RowsTileFn rows_tile_mr(int mr) {
    switch (mr) {
        case 1: return vnni_rows_tile<1, MIN, G>;
        case 2: return vnni_rows_tile<2, MIN, G>;
        case 3: return vnni_rows_tile<3, MIN, G>;
        case 4: return vnni_rows_tile<4, MIN, G>;
        case 5: return vnni_rows_tile<5, MIN, G>;
        default: return vnni_rows_tile<6, MIN, G>;
    }
}
RowsTileFn rows_tile_for(const PackedInt8& p, int mr) {
    if (p.groups == 2) return p.has_min ? rows_tile_mr<true, 2>(mr) : rows_tile_mr<false, 2>(mr);
    return p.has_min ? rows_tile_mr<true, 1>(mr) : rows_tile_mr<false, 1>(mr);
}

void w8a8_vnni(const QuantizedRows& xq, int64_t M, const PackedInt8& pw, const float* bias, Tensor& y) {
    const int64_t K = pw.K, KB = pw.KB, N = pw.N;
    // Chunks of MC x-rows (MC * K int8, in L2 with the tile's 32 * K) by one tile of 32 columns.
    const int64_t MC = std::max<int64_t>(kMR, std::min<int64_t>(128, (256 << 10) / std::max<int64_t>(1, K)) / kMR * kMR);
    const int64_t mchunks = (M + MC - 1) / MC;
    const bool bf16_out = y.dtype() == DType::BF16;
    float* yf = bf16_out ? nullptr : y.data<float>();
    uint16_t* yh = bf16_out ? y.data<uint16_t>() : nullptr;
    const int8_t* xqq = xq.q.get();
    const float* xqd = xq.d.get();
    const int32_t* xqs = xq.s.get();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t mc = 0; mc < mchunks; ++mc)
        for (int64_t t = 0; t < pw.tiles; ++t) {
            const int64_t m1 = std::min(M, (mc + 1) * MC), n0 = t * kTileN, nn = std::min(kTileN, N - n0);
            const uint8_t* wq = pw.q + t * KB * kTileBlockBytes;
            const float* wd = &pw.d[(size_t)(t * KB * pw.groups * kTileN)];
            const float* wm = pw.has_min ? &pw.m[(size_t)(t * KB * pw.groups * kTileN)] : nullptr;
            alignas(64) float out[kMR * kTileN];
            for (int64_t m = mc * MC; m < m1; m += kMR) {
                const int mr = (int)std::min<int64_t>(kMR, m1 - m);
                const float* bt = bias ? bias + n0 : nullptr;
                const RowsTileFn tile = rows_tile_for(pw, mr);
                if (yf) {  // straight into y's rows
                    tile(xqq + m * K, xqd + m * KB, xqs + m * KB * 2, K, KB, wq, wd, wm, pw.zero, bt, nn, yf + m * N + n0, N);
                    continue;
                }
                tile(xqq + m * K, xqd + m * KB, xqs + m * KB * 2, K, KB, wq, wd, wm, pw.zero, bt, nn, out, kTileN);
                for (int i = 0; i < mr; ++i) f32_to_bf16_n(out + i * kTileN, yh + (m + i) * N + n0, nn);
            }
        }
}

// ---- weight-only: the whole weight dequantized into a scratch in the compute dtype, then oneDNN with it plain.
Tensor dequantize_scratch(const QuantizedWeightView& w, bool bf16) {
    const int64_t N = w.rows, K = w.row_length;
    Tensor s = Tensor::empty({N, K}, bf16 ? DType::BF16 : DType::F32);
    const GgmlType t = (GgmlType)w.ggml_type;
    const float scale = w.scale;  // 1 except for scaled FP8 files: each value times it, before any rounding to bf16
    if (!bf16) {
        float* d = s.data<float>();
#pragma omp parallel for schedule(static) if (N * K > (1 << 16))
        for (int64_t n = 0; n < N; ++n) {
            dequantize_row(t, w.data + n * w.row_bytes, d + n * K, K);
            if (scale != 1.0f)
                for (int64_t k = 0; k < K; ++k) d[n * K + k] *= scale;
        }
        return s;
    }
    uint16_t* d = s.data<uint16_t>();
    if (is_float8(t)) {  // FP8 -> bf16 is exact: one table of the 256 codes' bf16 bits, no f32 row in between
        uint16_t table[256];
        float f[256];
        for (int i = 0; i < 256; ++i) {
            const uint8_t code = (uint8_t)i;
            dequantize_row(t, &code, &f[i], 1);
            f[i] *= scale;
        }
        f32_to_bf16_n(f, table, 256);
#pragma omp parallel for schedule(static) if (N * K > (1 << 16))
        for (int64_t n = 0; n < N; ++n) {
            const uint8_t* src = w.data + n * w.row_bytes;
            uint16_t* dst = d + n * K;
            for (int64_t k = 0; k < K; ++k) dst[k] = table[src[k]];
        }
        return s;
    }
#pragma omp parallel if (N * K > (1 << 16))
    {
        std::vector<float> row((size_t)K);
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; ++n) {
            dequantize_row(t, w.data + n * w.row_bytes, row.data(), K);
            if (scale != 1.0f)
                for (float& v : row) v *= scale;
            f32_to_bf16_n(row.data(), d + n * K, K);
        }
    }
    return s;
}

void weight_only(const Tensor& x, const QuantizedWeightView& w, const Tensor& wd, const Tensor& b, bool bf16,
                 Tensor& y) {
    const int64_t M = x.size(0), K = w.row_length, N = w.rows;
    const Tensor xc = bf16 ? x.to(DType::BF16) : x.f32();
    const dt wdt = bf16 ? dt::bf16 : dt::f32;
    auto& eng = engine();
    const memory::desc a_md({M, K}, wdt, tag::ab);
    const memory::desc w_md({K, N}, wdt, tag::ba);  // [N, K] seen transposed
    const memory::desc c_md({M, N}, y.dtype() == DType::BF16 ? dt::bf16 : dt::f32, tag::ab);
    const memory::desc bias_md = b.defined() ? memory::desc({1, N}, dt::f32, tag::ab) : memory::desc();
    MatmulPrimitive& mm = cached_matmul(a_md, w_md, bias_md, c_md);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(a_md, eng, xc.raw())},
                                         {DNNL_ARG_WEIGHTS, memory(w_md, eng, wd.raw())},
                                         {DNNL_ARG_DST, memory(c_md, eng, y.raw())}};
    if (b.defined()) args.emplace(DNNL_ARG_BIAS, memory(bias_md, eng, b.raw()));
    mm.prim.execute(stream(), args);
    stream().wait();
}

void check_gemm(const Tensor& x, const QuantizedWeightView& w, const Tensor& b, const Tensor& y) {
    const GgmlTypeInfo* ti = ggml_type_info(w.ggml_type);
    NUANCE_CHECK(ti && (ti->block > 1 || is_float8(ti->type)) && ti->dequantizable && ti->block == w.block && ti->bytes == w.block_bytes,
                 "quantized matmul: weight type ", w.ggml_type, " cannot be used");
    NUANCE_CHECK(w.row_length > 0 && w.row_length % w.block == 0 && w.row_bytes == w.row_length / w.block * w.block_bytes,
                 "quantized matmul: ", ti->name, " rows of ", w.row_length, " values are not whole blocks of ",
                 w.block);
    NUANCE_CHECK(x.dim() == 2 && x.is_contiguous() && (x.dtype() == DType::F32 || x.dtype() == DType::BF16),
                 "quantized matmul: input must be a contiguous F32/BF16 [M, K], got ", x.str());
    NUANCE_CHECK(x.size(1) == w.row_length, "quantized matmul: input ", x.shape(), " does not match the ", ti->name,
                 " weight's rows of ", w.row_length);
    NUANCE_CHECK(y.dim() == 2 && y.is_contiguous() && y.size(0) == x.size(0) && y.size(1) == w.rows &&
                     (y.dtype() == DType::F32 || y.dtype() == DType::BF16),
                 "quantized matmul: output ", y.str(), " for ", x.size(0), " x ", w.rows);
    NUANCE_CHECK(!b.defined() || (b.dtype() == DType::F32 && b.is_contiguous() && b.numel() == w.rows),
                 "quantized matmul: bias ", b.str(), " for ", w.rows, " outputs");
}

}  // namespace

bool has_vnni_kernel() {
    static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                           __builtin_cpu_supports("avx512vnni");
    return ok;
}

namespace {
std::atomic<bool>& w8a8_flag() {
    static std::atomic<bool> on{[] {
        // Default: on where the VNNI kernel runs (it measured faster than weight-only); NUANCE_Q8_W8A8=0 or 1 decides.
        const char* e = std::getenv("NUANCE_Q8_W8A8");
        if (e != nullptr && std::string(e) == "0") return false;
        if (e != nullptr && std::string(e) == "1") return true;
        return has_vnni_kernel();
    }()};
    return on;
}
}  // namespace

void set_q8_w8a8(bool on) { w8a8_flag() = on; }
bool q8_w8a8() { return w8a8_flag().load(); }

QuantizedPath quantized_path(const QuantizedWeightView& w, Precision compute) {
    const GgmlType t = (GgmlType)w.ggml_type;
    // Q8_0 has the portable loop too; the other integer block types run W8A8 on the VNNI kernel only.
    const bool kernel = t == GgmlType::Q8_0 || (has_int8_blocks(t) && has_vnni_kernel());
    return q8_w8a8() && kernel && w.scale == 1.0f && compute != Precision::FP32 ? QuantizedPath::W8A8
                                                                                  : QuantizedPath::WeightOnly;
}

// Run-time weight patches (LoRA on a quantized weight): y[:, rows] += scale * (x · aᵀ) · bᵀ in f32, for the rows of
// each patch that this view holds.
static void apply_patches(const Tensor& x, const QuantizedWeightView& w, Tensor& y) {
    const Tensor xf = x.f32();
    const int64_t M = x.size(0), N = w.rows;
    Backend& cpu = cpu_backend();
    for (const QuantizedWeightPatch& p : *w.patches) {
        const int64_t lo = std::max(w.first_row, p.row0), hi = std::min(w.first_row + w.rows, p.row0 + p.rows());
        if (lo >= hi) continue;
        const bool whole = lo == p.row0 && hi == p.row0 + p.rows();
        // A part of a patch (a handle narrowed after patching): its own copy of those rows.
        auto rows_of = [&](const Tensor& t) { return whole ? t : t.narrow(0, lo - p.row0, hi - lo).clone(); };
        const Tensor d = p.b.defined()
                             ? cpu.linear(cpu.linear(xf, p.a, Tensor(), Precision::FP32, DType::F32), rows_of(p.b),
                                          Tensor(), Precision::FP32, DType::F32)
                             : cpu.linear(xf, rows_of(p.a), Tensor(), Precision::FP32, DType::F32);
        const int64_t n = hi - lo, col0 = lo - w.first_row;
        const float* dp = d.data<float>();
        float* yp = y.data<float>();
        const float s = p.scale;
#pragma omp parallel for schedule(static) if (M * n > (1 << 16))
        for (int64_t m = 0; m < M; ++m)
            for (int64_t j = 0; j < n; ++j) yp[m * N + col0 + j] += s * dp[m * n + j];
    }
}

namespace {

// What one product (or the row chunks of one convolution) needs from the weight, computed once per call: the
// Q8_0 scales in f32 (W8A8), or the dequantized scratch (weight-only).
struct PreparedWeight {
    Precision p = Precision::FP32;
    QuantizedPath path = QuantizedPath::WeightOnly;
    std::vector<float> q8_scales;  // W8A8 without VNNI: d_w [N, KB]
    std::shared_ptr<const PackedInt8> packed;  // W8A8 with VNNI: the weight repacked into column tiles
    Tensor scratch;
};

PreparedWeight prepare(const QuantizedWeightView& w, Precision compute) {
    PreparedWeight pw;
    pw.p = cpu::resolve_precision(compute);
    pw.path = quantized_path(w, pw.p);
    if (pw.path == QuantizedPath::W8A8 && has_vnni_kernel()) pw.packed = packed_int8(w);
    else if (pw.path == QuantizedPath::W8A8) pw.q8_scales = q8_scales(w);
    else pw.scratch = dequantize_scratch(w, pw.p == Precision::BF16);
    return pw;
}

void run_gemm(const Tensor& x, const QuantizedWeightView& w, const PreparedWeight& pw, const Tensor& b, Tensor& y) {
    check_gemm(x, w, b, y);
    const int64_t M = x.size(0);
    if (M == 0) return;
    count_flops(2.0 * (double)M * (double)w.rows * (double)w.row_length);
    const bool patched = w.patches && !w.patches->empty();
    // Patches add in f32 before a bf16 output is rounded.
    Tensor acc = patched && y.dtype() == DType::BF16 ? Tensor::empty({M, w.rows}, DType::F32) : y;
    if (pw.path == QuantizedPath::W8A8) {
        const QuantizedRows xq = quantize_rows(x, M, w.row_length);
        const float* bias = b.defined() ? b.data<float>() : nullptr;
        if (has_vnni_kernel()) w8a8_vnni(xq, M, *pw.packed, bias, acc);
        else w8a8_portable(xq, M, w, pw.q8_scales, bias, acc);
    } else {
        weight_only(x, w, pw.scratch, b, pw.p == Precision::BF16, acc);
    }
    if (!patched) return;
    apply_patches(x, w, acc);
    if (acc.storage() != y.storage()) f32_to_bf16_n(acc.data<float>(), y.data<uint16_t>(), acc.numel());
}

}  // namespace

void quantized_gemm(const Tensor& x, const QuantizedWeightView& w, const Tensor& b, Precision compute, Tensor& y) {
    check_gemm(x, w, b, y);
    if (x.size(0) == 0) return;
    run_gemm(x, w, prepare(w, compute), b, y);
}

void quantized_gemm_w8a8_portable(const Tensor& x, const QuantizedWeightView& w, const Tensor& b, Tensor& y) {
    check_gemm(x, w, b, y);
    NUANCE_CHECK((GgmlType)w.ggml_type == GgmlType::Q8_0, "quantized matmul: W8A8 needs a Q8_0 weight");
    const int64_t M = x.size(0);
    if (M == 0) return;
    const QuantizedRows xq = quantize_rows(x, M, w.row_length);
    w8a8_portable(xq, M, w, q8_scales(w), b.defined() ? b.data<float>() : nullptr, y);
}

namespace {

// One output pixel's im2col row: out[c * kh * kw + i * kw + j] = x[n, c, oy * s + i * d - top, ox * s + j * d - left]
// (0 in the padding), x channels-last [N, H, W, C]; `cvt` turns an input element into an output one.
struct PatchGeometry {
    int64_t C, H, W, kh, kw, Ho, Wo, stride, dil, top, left;
};

template <class S, class D, class Cvt>
void gather_patch_row(const S* x, const PatchGeometry& g, int64_t pix, D* out, Cvt cvt) {
    const int64_t n = pix / (g.Ho * g.Wo), oy = pix / g.Wo % g.Ho, ox = pix % g.Wo, taps = g.kh * g.kw;
    for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t iy = oy * g.stride + i * g.dil - g.top, ix = ox * g.stride + j * g.dil - g.left;
            const int64_t kk = i * g.kw + j;
            if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) {
                for (int64_t c = 0; c < g.C; ++c) out[c * taps + kk] = D(0);
                continue;
            }
            const S* src = x + ((n * g.H + iy) * g.W + ix) * g.C;
            for (int64_t c = 0; c < g.C; ++c) out[c * taps + kk] = cvt(src[c]);
        }
}

}  // namespace

Tensor quantized_conv2d(const Tensor& x_in, const QuantizedWeightView& w, const Shape& ws, const Tensor& b,
                        int64_t stride, const int64_t pad[4], int64_t dil, Precision compute) {
    NUANCE_CHECK(x_in.dim() == 4 && ws.size() == 4, "conv2d: quantized weight ", ws, " for input ", x_in.shape());
    const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
    const int64_t O = ws[0], kh = ws[2], kw = ws[3], K = C * kh * kw;
    NUANCE_CHECK(ws[1] == C && w.rows == O && w.row_length == K, "conv2d: input ", x_in.shape(),
                 " does not match the quantized weight ", ws, " (groups are not supported for quantized weights)");
    const int64_t Ho = (H + pad[0] + pad[2] - ((kh - 1) * dil + 1)) / stride + 1;
    const int64_t Wo = (W + pad[1] + pad[3] - ((kw - 1) * dil + 1)) / stride + 1;
    NUANCE_CHECK(Ho > 0 && Wo > 0, "conv2d: input ", x_in.shape(), " too small for kernel ", kh, "x", kw);
    const Precision p = cpu::resolve_precision(compute);
    // Activations in NHWC, in bf16 when the product is (W8A8 reads either).
    const DType adt = p == Precision::BF16 && x_in.dtype() == DType::BF16 ? DType::BF16 : DType::F32;
    const Tensor x = x_in.to(adt).channels_last();
    Tensor y = Tensor::empty_channels_last({N, O, Ho, Wo});
    const int64_t M = N * Ho * Wo;
    if (M == 0) return y;
    // y's memory is NHWC: [M, O] row-major.
    Tensor y2 = Tensor::from_storage(y.storage(), 0, {M, O}, DType::F32);
    const PreparedWeight pw = prepare(w, p);
    const bool pointwise = kh == 1 && kw == 1 && stride == 1 && dil == 1 && !pad[0] && !pad[1] && !pad[2] && !pad[3];
    const PatchGeometry geo{C, H, W, kh, kw, Ho, Wo, stride, dil, pad[0], pad[1]};
    if (pointwise) {
        const Tensor x2 = Tensor::from_storage(x.storage(), (size_t)x.offset() * dtype_size(adt), {M, C}, adt);
        run_gemm(x2, w, pw, b, y2);
        return y;
    }
    // W8A8 on VNNI without weight patches: each output pixel's patch row is gathered into an f32 row on the stack
    // side and quantized at once (no f32 patch matrix in memory), then the int8 kernel runs on a chunk of rows.
    if (pw.path == QuantizedPath::W8A8 && has_vnni_kernel() && !(w.patches && !w.patches->empty())) {
        count_flops(2.0 * (double)M * (double)O * (double)K);
        const int64_t KB = K / QK;
        const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(M, (int64_t)(8 << 20) / K));
        QuantizedRows xq;
        xq.allocate(chunk, K);
        const bool xbf = adt == DType::BF16;
        const float* xf = xbf ? nullptr : x.data<float>();
        const uint16_t* xh = xbf ? x.data<uint16_t>() : nullptr;
        const float* bias = b.defined() ? b.data<float>() : nullptr;
        for (int64_t r0 = 0; r0 < M; r0 += chunk) {
            const int64_t rows = std::min(chunk, M - r0);
#pragma omp parallel
            {
                std::vector<float> row((size_t)K);
#pragma omp for schedule(static)
                for (int64_t r = 0; r < rows; ++r) {
                    float* d = row.data();
                    if (xf) gather_patch_row(xf, geo, r0 + r, d, [](float v) { return v; });
                    else gather_patch_row(xh, geo, r0 + r, d, [](uint16_t v) { return bf16_to_f32(v); });
                    for (int64_t blk = 0; blk < KB; ++blk)
                        quantize_block_avx512(d + blk * QK, &xq.q[(size_t)(r * K + blk * QK)],
                                              &xq.d[(size_t)(r * KB + blk)], &xq.s[(size_t)((r * KB + blk) * 2)]);
                }
            }
            Tensor yr = Tensor::from_storage(y.storage(), (size_t)(r0 * O) * 4, {rows, O}, DType::F32);
            w8a8_vnni(xq, rows, *pw.packed, bias, yr);
        }
        return y;
    }
    // im2col in chunks of output pixels: patch[r, c * kh * kw + i * kw + j] = x[n, c, oy * s + i * d - top, ...].
    const int64_t es = (int64_t)dtype_size(adt);
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(M, (int64_t)(32 << 20) / std::max<int64_t>(1, K * es)));
    const uint8_t* xb = static_cast<const uint8_t*>(x.raw());
    Tensor patches = Tensor::empty({chunk, K}, adt);
    for (int64_t r0 = 0; r0 < M; r0 += chunk) {
        const int64_t rows = std::min(chunk, M - r0);
        uint8_t* pb = static_cast<uint8_t*>(patches.raw());
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            uint8_t* dst = pb + r * K * es;
            if (es == 4)
                gather_patch_row(reinterpret_cast<const float*>(xb), geo, r0 + r, reinterpret_cast<float*>(dst),
                                 [](float v) { return v; });
            else  // bf16 bits copied as they are
                gather_patch_row(reinterpret_cast<const uint16_t*>(xb), geo, r0 + r, reinterpret_cast<uint16_t*>(dst),
                                 [](uint16_t v) { return v; });
        }
        Tensor xr = rows == chunk ? patches : patches.narrow(0, 0, rows);
        Tensor yr = Tensor::from_storage(y.storage(), (size_t)(r0 * O) * 4, {rows, O}, DType::F32);
        run_gemm(xr, w, pw, b, yr);
    }
    return y;
}

}  // namespace nuance::cpu
