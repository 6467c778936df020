// Winograd F(2x2, 3x3) with bf16 products (see winograd.h). Shape letters: N batch, C in channels, K out channels,
// H/W input size, Ho/Wo output size, P tiles (N x th x tw), e one of the 16 transformed positions.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backends/cpu/dnnl_cache.h"
#include "backends/cpu/dnnl_context.h"
#include "backends/cpu/winograd.h"
#include "core/checked.h"
#include "core/dtype.h"
#include "core/op_stats.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's own _mm512_undefined_* placeholders
#endif

#define NUANCE_WINO_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

namespace nuance::cpu {

using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

namespace {

// Where F(2x2) bf16 runs in place of oneDNN's direct bf16 kernel (when F(4x4) f32 does not: winograd_applies).
// SD1.5 shapes, AMD Zen 5, 2 threads (bench/bench_conv.cpp, direct bf16 / F(2x2) bf16): see winograd.h.
// Direct bf16 / F(4x4) f32 / F(2x2) bf16, ms: 320 -> 320 at 64², batch 2: 33.8 / 26.2 / 19.6-20.0; 640 at 32²,
// batch 2: 35.3 / 30.9 / 18.8-20.0; 1280 at 16², batch 2 (128 tiles): 32.6-37.5 / - / 21.8-22.1; 1280 at 16², batch 1
// (64 tiles): 17.8 / - / 11.7-12.5; 640 at 16², batch 2: 8.4 / - / 5.0; VAE decoder 512 at 64²: - / 31.2 / 26.4-29.7,
// 512 at 128²: - / 138 / 106-113, 256 at 256²: - / 152 / 108-125, 128 at 512²: 179 / - / 104-113. Losing: 1280 at 8²,
// batch 2 (32 tiles) 8.2 / - / 9.4; 128 at 16², batch 32 5.2 / - / 5.7 (a small map: the direct kernel's input
// conversion stays in cache); 160 at 8², batch 32 at parity.
constexpr int64_t kMinChannels = 256;       // C and K: the transforms cost per channel, the products per channel pair
constexpr int64_t kMinChannelsLarge = 128;  // ... or this many on a map of at least kLargeMap outputs
constexpr int64_t kLargeMap = 256 * 256;
constexpr int64_t kMinTiles2 = 64;          // 2x2 output tiles: fewer and reading U (16/9 of the weight) dominates
// V (bf16) and M (f32) of one chunk of tiles: 4 MB chunks (in cache between the transforms and the product) while U
// is small enough to stay in the L3 cache across chunks; a larger U (SD's 640 and 1280 channels) is read once per
// chunk, so those take 48 MB chunks (one chunk for every SD shape): 640 at 32² batch 2 in 4 chunks 23.4 ms, in one 18.9.
constexpr int64_t kSmallChunkBytes = 4 << 20, kLargeChunkBytes = 48 << 20, kSmallU = 8 << 20;

struct Geometry2 {
    int64_t N, C, H, W, K, Ho, Wo, th, tw, P, pt, pl;
    int64_t rows = 0, vstride = 0, mstride = 0;  // tiles per product; elements between the e-blocks of V and of M
};

// Lanes 0..live-1 of 16.
inline __mmask16 mask16(int64_t live) { return live >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << live) - 1u); }

NUANCE_WINO_BF16_TARGET inline __m512 load16(const float* src, __mmask16 m) { return _mm512_maskz_loadu_ps(m, src); }
NUANCE_WINO_BF16_TARGET inline __m512 load16(const uint16_t* src, __mmask16 m) {
    const __m256i h = _mm256_maskz_loadu_epi16(m, src);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Round to bf16 (nearest even, as f32_to_bf16) and store the live lanes.
NUANCE_WINO_BF16_TARGET inline void store_bf16(uint16_t* dst, __m512 v, __mmask16 m) {
    const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
    _mm256_mask_storeu_epi16(dst, m, h);
}

// V[e][t][c] for tile t = p - p0 and the 16 channels from c (live of them): (B^T d B)[e] of the 4x4 input tile,
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
template <class T>
NUANCE_WINO_BF16_TARGET void input_tile(const Geometry2& g, const T* x, uint16_t* V, int64_t p0, int64_t p) {
    const int64_t tiles = g.th * g.tw, img = p / tiles, r = p % tiles, t = p - p0;
    const int64_t iy0 = (r / g.tw) * 2 - g.pt, ix0 = (r % g.tw) * 2 - g.pl;
    const T* xn = x + img * g.H * g.W * g.C;
    for (int64_t c = 0; c < g.C; c += 16) {
        const __mmask16 m = mask16(g.C - c);
        __m512 d[4][4];
        for (int i = 0; i < 4; ++i) {
            const int64_t iy = iy0 + i;
            for (int j = 0; j < 4; ++j) {
                const int64_t ix = ix0 + j;
                d[i][j] = (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) ? _mm512_setzero_ps()
                                                                         : load16(xn + (iy * g.W + ix) * g.C + c, m);
            }
        }
        __m512 s[4][4];  // s = B^T d (columns)
        for (int j = 0; j < 4; ++j) {
            s[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
            s[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
            s[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
            s[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
        }
        uint16_t* v = V + t * g.C + c;
        for (int i = 0; i < 4; ++i) {  // V = s B (rows)
            store_bf16(v + (int64_t)(i * 4 + 0) * g.vstride, _mm512_sub_ps(s[i][0], s[i][2]), m);
            store_bf16(v + (int64_t)(i * 4 + 1) * g.vstride, _mm512_add_ps(s[i][1], s[i][2]), m);
            store_bf16(v + (int64_t)(i * 4 + 2) * g.vstride, _mm512_sub_ps(s[i][2], s[i][1]), m);
            store_bf16(v + (int64_t)(i * 4 + 3) * g.vstride, _mm512_sub_ps(s[i][1], s[i][3]), m);
        }
    }
}

// The 2x2 outputs of tile p (clipped at the edges) from M[e][t][k], plus the bias: y = A^T m A,
//   A^T = [1 1 1 0; 0 1 -1 -1].
NUANCE_WINO_BF16_TARGET void output_tile(const Geometry2& g, const float* M, const float* bias, float* y, int64_t p0,
                                         int64_t p) {
    const int64_t tiles = g.th * g.tw, img = p / tiles, r = p % tiles, t = p - p0;
    const int64_t oy0 = (r / g.tw) * 2, ox0 = (r % g.tw) * 2;
    float* yn = y + img * g.Ho * g.Wo * g.K;
    for (int64_t k = 0; k < g.K; k += 16) {
        const __mmask16 mk = mask16(g.K - k);
        __m512 m[4][4];
        for (int e = 0; e < 16; ++e) m[e / 4][e % 4] = _mm512_maskz_loadu_ps(mk, M + (int64_t)e * g.mstride + t * g.K + k);
        __m512 s[2][4];  // s = A^T m (columns)
        for (int j = 0; j < 4; ++j) {
            s[0][j] = _mm512_add_ps(_mm512_add_ps(m[0][j], m[1][j]), m[2][j]);
            s[1][j] = _mm512_sub_ps(_mm512_sub_ps(m[1][j], m[2][j]), m[3][j]);
        }
        const __m512 b = bias ? _mm512_maskz_loadu_ps(mk, bias + k) : _mm512_setzero_ps();
        for (int i = 0; i < 2; ++i) {
            const int64_t oy = oy0 + i;
            if (oy >= g.Ho) break;
            const __m512 o0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]), b);
            const __m512 o1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3]), b);
            _mm512_mask_storeu_ps(yn + (oy * g.Wo + ox0) * g.K + k, mk, o0);
            if (ox0 + 1 < g.Wo) _mm512_mask_storeu_ps(yn + (oy * g.Wo + ox0 + 1) * g.K + k, mk, o1);
        }
    }
}

// U[e][c][k] = (G g G^T)[e] rounded to bf16 for the kernels g = w[k][c] (f32, [K][C][3][3]) of input channel c,
//   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] (the halves are exact: U is g's sums rounded once).
void kernel_row(const float* w, int64_t K, int64_t C, int64_t c, uint16_t* U) {
    for (int64_t k = 0; k < K; ++k) {
        const float* gk = w + (k * C + c) * 9;
        float t[4][3];  // t = G g
        for (int j = 0; j < 3; ++j) {
            const float a = gk[j], b = gk[3 + j], d = gk[6 + j];
            t[0][j] = a;
            t[1][j] = 0.5f * (a + b + d);
            t[2][j] = 0.5f * (a - b + d);
            t[3][j] = d;
        }
        for (int i = 0; i < 4; ++i) {  // U = t G^T
            const float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]),
                                t[i][2]};
            for (int j = 0; j < 4; ++j) U[((int64_t)(i * 4 + j) * C + c) * K + k] = f32_to_bf16(u[j]);
        }
    }
}

// NUANCE_CONV_WINOGRAD=f32: F(4x4) f32 only (the bf16 F(2x2) off, for A/B runs); =0: both off.
bool enabled2() {
    static const bool on = [] {
        const char* e = std::getenv("NUANCE_CONV_WINOGRAD");
        return winograd_enabled() && !(e && std::strcmp(e, "f32") == 0);
    }();
    return on;
}

}  // namespace

bool winograd2_bf16_supported() {
    static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                           __builtin_cpu_supports("avx512bf16");
    return ok;
}

bool winograd2_bf16_applies(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
    if (!enabled2() || !winograd2_bf16_supported() || x.dim() != 4 || w.dim() != 4) return false;
    if (w.size(2) != 3 || w.size(3) != 3 || p.stride != 1 || p.dilation != 1 || p.groups != 1) return false;
    if (!(x.is_channels_last() && !x.is_contiguous())) return false;
    if (x.dtype() != DType::F32 && x.dtype() != DType::BF16) return false;
    const int64_t Ho = x.size(2) + p.padding[0] + p.padding[2] - 2, Wo = x.size(3) + p.padding[1] + p.padding[3] - 2;
    if (Ho < 2 || Wo < 2) return false;
    const int64_t tiles = x.size(0) * ((Ho + 1) / 2) * ((Wo + 1) / 2);
    const int64_t C = x.size(1), K = w.size(0);
    if (tiles < kMinTiles2 || std::min(C, K) < kMinChannelsLarge) return false;
    return std::min(C, K) >= kMinChannels || Ho * Wo >= kLargeMap;
}

Tensor winograd2_bf16_conv2d(const Tensor& x_in, const Tensor& w, const Tensor& b, const Conv2dParams& p,
                             int64_t chunk_tiles) {
    NUANCE_CHECK(winograd2_bf16_supported(), "winograd F(2x2) bf16 conv2d: the CPU has no AVX512_BF16");
    const Conv3x3Shape sh = winograd_shape(x_in, w, p);
    Geometry2 g{};
    g.N = sh.N, g.C = sh.C, g.H = sh.H, g.W = sh.W, g.K = sh.K, g.Ho = sh.Ho, g.Wo = sh.Wo, g.pt = sh.pt, g.pl = sh.pl;
    g.th = (g.Ho + 1) / 2, g.tw = (g.Wo + 1) / 2;
    g.P = mul_or_throw(g.N, mul_or_throw(g.th, g.tw, "winograd tiles"), "winograd tiles");
    const Tensor x = x_in.dtype() == DType::BF16 ? x_in : x_in.f32();  // channels-last stays
    NUANCE_CHECK(x.is_channels_last(), "winograd conv2d: input must be channels-last");
    Tensor y = Tensor::empty_channels_last({g.N, g.K, g.Ho, g.Wo});
    if (g.P == 0) return y;

    const int64_t per_tile = 16 * (g.C * 2 + g.K * 4);
    const int64_t ubytes = 16 * g.C * g.K * 2;
    const int64_t scratch = ubytes > kSmallU ? kLargeChunkBytes : kSmallChunkBytes;
    g.rows = chunk_tiles > 0 ? std::min(chunk_tiles, g.P) : std::clamp<int64_t>(scratch / per_tile, 32, g.P);
    g.vstride = g.rows * g.C + 32, g.mstride = g.rows * g.K + 16;  // + a pad: the 16 blocks in different cache sets
    auto& eng = engine();
    const memory::desc v_md({16, g.rows, g.C}, dt::bf16, memory::dims{g.vstride, g.C, 1});
    const memory::desc m_md({16, g.rows, g.K}, dt::f32, memory::dims{g.mstride, g.K, 1});
    const memory::desc u_plain({16, g.C, g.K}, dt::bf16, tag::abc);
    MatmulPrimitive& mm = cached_matmul(v_md, memory::desc({16, g.C, g.K}, dt::bf16, tag::any), memory::desc(), m_md);
    // The transformed kernels (16/9 of the weight, bf16) in oneDNN's layout, kept like any packed weight.
    const PackedWeight U = derived_weights(w, "winograd2", u_plain, mm.pd.weights_desc(), [&](void* dst) {
        const Tensor w32 = w.dtype() == DType::F32 ? w.contiguous() : w.f32().contiguous();
        const float* wd = w32.data<float>();
        uint16_t* u = static_cast<uint16_t*>(dst);
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < g.C; ++c) kernel_row(wd, g.K, g.C, c, u);
    });
    Tensor V = Tensor::empty({16 * g.vstride}, DType::BF16), M = Tensor::empty({16 * g.mstride}, DType::F32);
    uint16_t* v = V.data<uint16_t>();
    const float* bias = b.defined() ? b.data<float>() : nullptr;
    for (int64_t p0 = 0; p0 < g.P; p0 += g.rows) {
        const int64_t n = std::min(g.rows, g.P - p0);
        if (n < g.rows)  // the last chunk: rows n.. of every e are stale (or never written): zeros
            for (int64_t e = 0; e < 16; ++e)
                std::memset(v + e * g.vstride + n * g.C, 0, (size_t)((g.rows - n) * g.C) * sizeof(uint16_t));
        if (x.dtype() == DType::BF16) {
            const uint16_t* xd = x.data<uint16_t>();
#pragma omp parallel for schedule(static)
            for (int64_t t = 0; t < n; ++t) input_tile(g, xd, v, p0, p0 + t);
        } else {
            const float* xd = x.data<float>();
#pragma omp parallel for schedule(static)
            for (int64_t t = 0; t < n; ++t) input_tile(g, xd, v, p0, p0 + t);
        }
        mm.prim.execute(stream(), {{DNNL_ARG_SRC, memory(v_md, eng, v)},
                                   {DNNL_ARG_WEIGHTS, U.mem},
                                   {DNNL_ARG_DST, memory(m_md, eng, M.data<float>())}});
        stream().wait();
        const float* md = M.data<float>();
        float* yd = y.data<float>();
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n; ++t) output_tile(g, md, bias, yd, p0, p0 + t);
    }
    // Counted as the direct convolution's work (the figure GFLOP/s compare), not the 2.25x smaller product.
    count_flops(2.0 * (double)g.N * (double)g.K * (double)g.Ho * (double)g.Wo * (double)g.C * 9.0);
    return y;
}

}  // namespace nuance::cpu
