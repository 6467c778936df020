// Products with quantized weights: see quantized_matmul.h for the two paths and the shape letters.
#include "backends/cpu/quantized_matmul.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/dnnl_cache.h"
#include "backends/cpu/dnnl_context.h"
#include "backends/cpu/ggml_quants.h"
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
    std::vector<int8_t> q;
    std::vector<float> d;
};

void quantize_block(const float* x, int8_t* q, float* d) {
    float amax = 0.0f;
    for (int64_t i = 0; i < QK; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float s = amax / 127.0f, id = s != 0.0f ? 1.0f / s : 0.0f;
    for (int64_t i = 0; i < QK; ++i) q[i] = (int8_t)std::nearbyint(x[i] * id);
    *d = s;
}

QuantizedRows quantize_rows(const Tensor& x, int64_t M, int64_t K) {
    QuantizedRows r;
    const int64_t KB = K / QK;
    r.q.resize((size_t)(M * K));
    r.d.resize((size_t)(M * KB));
    const bool bf16 = x.dtype() == DType::BF16;
    const float* xf = bf16 ? nullptr : x.data<float>();
    const uint16_t* xb = bf16 ? x.data<uint16_t>() : nullptr;
#pragma omp parallel for schedule(static) if (M * K > (1 << 15))
    for (int64_t m = 0; m < M; ++m) {
        float tmp[QK];
        for (int64_t b = 0; b < KB; ++b) {
            const float* src = xf ? xf + m * K + b * QK : tmp;
            if (xb)
                for (int64_t i = 0; i < QK; ++i) tmp[i] = bf16_to_f32(xb[m * K + b * QK + i]);
            quantize_block(src, &r.q[(size_t)(m * K + b * QK)], &r.d[(size_t)(m * KB + b)]);
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

// ---- W8A8, AVX-512 VNNI: an MR x NR tile of dot products, two blocks (64 int8) per step. Each 512-bit product
// holds block b in lanes 0..7 and block b+1 in lanes 8..15; lanes are scaled by their block's d_x * d_w in f32 and
// summed at the end.
#define NUANCE_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

template <int MR, int NR>
NUANCE_VNNI_TARGET void vnni_tile(const int8_t* xq, const float* xd, int64_t K, int64_t KB, const uint8_t* w,
                                  int64_t row_bytes, const float* wd, float* out) {
    __m512 acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    int64_t b = 0;
    for (; b < KB; b += 2) {
        const bool pair = b + 1 < KB;
        __m512i u[NR];
        __mmask64 neg[NR];
        __m512 sw[NR];
        // Lanes 0..31: block b's quants; lanes 32..63: block b+1's (masked loads: nothing is read past a block).
        const __mmask64 lo_lanes = 0xFFFFFFFFull, hi_lanes = pair ? ~0xFFFFFFFFull : 0;
        for (int j = 0; j < NR; ++j) {
            const uint8_t* p = w + j * row_bytes + b * kQ8Bytes + 2;
            const __m512i wv = _mm512_mask_loadu_epi8(_mm512_maskz_loadu_epi8(lo_lanes, p), hi_lanes, p + kQ8Bytes - 32);
            neg[j] = _mm512_movepi8_mask(wv);
            u[j] = _mm512_abs_epi8(wv);
            sw[j] = _mm512_insertf32x8(_mm512_set1_ps(wd[j * KB + b]),
                                       _mm256_set1_ps(pair ? wd[j * KB + b + 1] : 0.0f), 1);
        }
        for (int i = 0; i < MR; ++i) {
            const int8_t* xp = xq + i * K + b * QK;
            const __m512i xv = _mm512_maskz_loadu_epi8(lo_lanes | hi_lanes, xp);
            const __m512 sx = _mm512_insertf32x8(_mm512_set1_ps(xd[i * KB + b]),
                                                 _mm256_set1_ps(pair ? xd[i * KB + b + 1] : 0.0f), 1);
            for (int j = 0; j < NR; ++j) {
                const __m512i s = _mm512_mask_sub_epi8(xv, neg[j], zero, xv);
                const __m512i d = _mm512_dpbusd_epi32(zero, u[j], s);
                acc[i][j] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, d), _mm512_mul_ps(sx, sw[j]), acc[i][j]);
            }
        }
    }
    alignas(64) float lanes[16];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) {
            _mm512_store_ps(lanes, acc[i][j]);
            float t = 0.0f;
            for (float l : lanes) t += l;
            out[i * NR + j] = t;
        }
}

using TileFn = void (*)(const int8_t*, const float*, int64_t, int64_t, const uint8_t*, int64_t, const float*, float*);

template <int MR>
TileFn tile_for_nr(int nr) {
    switch (nr) {
        case 1: return vnni_tile<MR, 1>;
        case 2: return vnni_tile<MR, 2>;
        case 3: return vnni_tile<MR, 3>;
        default: return vnni_tile<MR, 4>;
    }
}
TileFn tile_for(int mr, int nr) {
    switch (mr) {
        case 1: return tile_for_nr<1>(nr);
        case 2: return tile_for_nr<2>(nr);
        case 3: return tile_for_nr<3>(nr);
        default: return tile_for_nr<4>(nr);
    }
}

void w8a8_vnni(const QuantizedRows& xq, int64_t M, const QuantizedWeightView& w, const std::vector<float>& wd,
               const float* bias, Tensor& y) {
    const int64_t K = w.row_length, KB = K / QK, N = w.rows;
    // Chunks of 64 x-rows by 64 weight rows (about 2 * 64 * K bytes: in L2 for K up to ~5k); 4 x 4 tiles inside.
    constexpr int64_t MC = 64, NC = 64;
    const int64_t mchunks = (M + MC - 1) / MC, nchunks = (N + NC - 1) / NC;
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int64_t nc = 0; nc < nchunks; ++nc)
        for (int64_t mc = 0; mc < mchunks; ++mc) {
            const int64_t m1 = std::min(M, (mc + 1) * MC), n1 = std::min(N, (nc + 1) * NC);
            for (int64_t m = mc * MC; m < m1; m += 4)
                for (int64_t n = nc * NC; n < n1; n += 4) {
                    const int mr = (int)std::min<int64_t>(4, m1 - m), nr = (int)std::min<int64_t>(4, n1 - n);
                    float out[16];
                    tile_for(mr, nr)(&xq.q[(size_t)(m * K)], &xq.d[(size_t)(m * KB)], K, KB,
                                     w.data + n * w.row_bytes, w.row_bytes, &wd[(size_t)(n * KB)], out);
                    for (int i = 0; i < mr; ++i)
                        for (int j = 0; j < nr; ++j) store_row(y, m + i, n + j, out[i * nr + j] + (bias ? bias[n + j] : 0.0f));
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
        const char* e = std::getenv("NUANCE_Q8_W8A8");
        return e != nullptr && std::string(e) == "1";
    }()};
    return on;
}
}  // namespace

void set_q8_w8a8(bool on) { w8a8_flag() = on; }
bool q8_w8a8() { return w8a8_flag().load(); }

QuantizedPath quantized_path(const QuantizedWeightView& w, Precision compute) {
    return q8_w8a8() && (GgmlType)w.ggml_type == GgmlType::Q8_0 && w.scale == 1.0f && compute != Precision::FP32
               ? QuantizedPath::W8A8
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
    std::vector<float> q8_scales;
    Tensor scratch;
};

PreparedWeight prepare(const QuantizedWeightView& w, Precision compute) {
    PreparedWeight pw;
    pw.p = cpu::resolve_precision(compute);
    pw.path = quantized_path(w, pw.p);
    if (pw.path == QuantizedPath::W8A8) pw.q8_scales = q8_scales(w);
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
        if (has_vnni_kernel()) w8a8_vnni(xq, M, w, pw.q8_scales, bias, acc);
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
    if (pointwise) {
        const Tensor x2 = Tensor::from_storage(x.storage(), (size_t)x.offset() * dtype_size(adt), {M, C}, adt);
        run_gemm(x2, w, pw, b, y2);
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
            const int64_t pix = r0 + r, n = pix / (Ho * Wo), oy = pix / Wo % Ho, ox = pix % Wo;
            uint8_t* dst = pb + r * K * es;
            for (int64_t i = 0; i < kh; ++i)
                for (int64_t j = 0; j < kw; ++j) {
                    const int64_t iy = oy * stride + i * dil - pad[0], ix = ox * stride + j * dil - pad[1];
                    const int64_t kk = i * kw + j;
                    if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
                        for (int64_t c = 0; c < C; ++c) std::memset(dst + (c * kh * kw + kk) * es, 0, (size_t)es);
                        continue;
                    }
                    const uint8_t* src = xb + ((n * H + iy) * W + ix) * C * es;
                    if (es == 4) {
                        const float* s = reinterpret_cast<const float*>(src);
                        float* d = reinterpret_cast<float*>(dst);
                        for (int64_t c = 0; c < C; ++c) d[c * kh * kw + kk] = s[c];
                    } else {
                        const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
                        uint16_t* d = reinterpret_cast<uint16_t*>(dst);
                        for (int64_t c = 0; c < C; ++c) d[c * kh * kw + kk] = s[c];
                    }
                }
        }
        Tensor xr = rows == chunk ? patches : patches.narrow(0, 0, rows);
        Tensor yr = Tensor::from_storage(y.storage(), (size_t)(r0 * O) * 4, {rows, O}, DType::F32);
        run_gemm(xr, w, pw, b, yr);
    }
    return y;
}

}  // namespace nuance::cpu
