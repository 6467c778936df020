// Winograd F(4x4, 3x3) convolution (see winograd.h). Shape letters: N batch, C in channels, K out channels, H/W
// input size, Ho/Wo output size, P tiles (N x th x tw), e one of the 36 transformed positions; C8/K8: the channel
// counts rounded up to the 8 lanes of the AVX2 transforms (the padding lanes are zeros in V and U).
#include "backends/cpu/winograd.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backends/cpu/dnnl_cache.h"
#include "core/dtype.h"
#include "backends/cpu/dnnl_context.h"
#include "core/checked.h"
#include "core/op_stats.h"

namespace nuance::cpu {

using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

namespace {

constexpr int64_t kScratchBytes = 48 << 20;  // V and M of one chunk of tiles (both): big products run best
constexpr int64_t kMinTiles = 64;  // fewer tiles: the per-call kernel transform is not worth it (direct kernel)
// Fewer input channels: the transforms (memory-bound, per channel) cost more than the 4x fewer products save. FID
// Inception's stem, batch 16, AMD Zen 5: 32 -> 32 at 149² 57 ms Winograd vs 43 ms direct, 32 -> 64 at 147² 86 vs
// 67 ms; from 64 channels on Winograd wins (64 -> 96 at 35² 9.5 vs 11 ms, 80 -> 192 at 73² 85 vs 101 ms).
constexpr int64_t kMinInChannels = 64;
// In place of a bf16 direct convolution (winograd_applies with bf16): C K / (C + K) >= 120 and >= 128 tiles. SD1.5
// shapes, AMD Zen 5, 2 threads (Winograd / bf16 direct, bench/bench_conv.cpp): 320 -> 320 at 64² batch 2 31.9 /
// 39.3 ms, 640 at 32² batch 2 (128 tiles) 36.4 / 40.4, 512 at 64² 35.7 / 46.3, 512 at 128² 157 / 215, 256 at 256²
// 156 / 177; losing: 128 -> 128 at 512² 205 / 186 (C K / (C + K) = 64), 1280 at 16² batch 2 (32 tiles).
constexpr int64_t kMinBf16Intensity = 120;
constexpr int64_t kMinBf16Tiles = 128;

inline int64_t round8(int64_t v) { return (v + 7) / 8 * 8; }

// Lanes 0..n-1 on (n in 0..8), for masked loads and stores of a channel tail.
inline __m256i lane_mask(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

// out = B^T d for 6 values (Lavin & Gray's F(4, 3) input transform).
inline void input_1d(const __m256 d[6], __m256 o[6]) {
    const __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f), two = _mm256_set1_ps(2.0f);
    // o0 = 4 d0 - 5 d2 + d4
    o[0] = _mm256_add_ps(_mm256_fnmadd_ps(five, d[2], _mm256_mul_ps(four, d[0])), d[4]);
    // o1 = -4 (d1 + d2) + d3 + d4;  o2 = 4 (d1 - d2) - d3 + d4
    const __m256 d34 = _mm256_add_ps(d[3], d[4]), d4m3 = _mm256_sub_ps(d[4], d[3]);
    o[1] = _mm256_fnmadd_ps(four, _mm256_add_ps(d[1], d[2]), d34);
    o[2] = _mm256_fmadd_ps(four, _mm256_sub_ps(d[1], d[2]), d4m3);
    // o3 = 2 (d3 - d1) + d4 - d2;  o4 = 2 (d1 - d3) + d4 - d2
    const __m256 d4m2 = _mm256_sub_ps(d[4], d[2]), d31 = _mm256_sub_ps(d[3], d[1]);
    o[3] = _mm256_fmadd_ps(two, d31, d4m2);
    o[4] = _mm256_fnmadd_ps(two, d31, d4m2);
    // o5 = 4 d1 - 5 d3 + d5
    o[5] = _mm256_add_ps(_mm256_fnmadd_ps(five, d[3], _mm256_mul_ps(four, d[1])), d[5]);
}

// out = A^T m for 6 values (the output transform): 4 values.
inline void output_1d(const __m256 m[6], __m256 o[4]) {
    const __m256 a12 = _mm256_add_ps(m[1], m[2]), s12 = _mm256_sub_ps(m[1], m[2]);
    const __m256 a34 = _mm256_add_ps(m[3], m[4]), s34 = _mm256_sub_ps(m[3], m[4]);
    o[0] = _mm256_add_ps(_mm256_add_ps(m[0], a12), a34);
    o[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), s34, s12);
    o[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), a34, a12);
    o[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), s34, s12), m[5]);
}

// (G g G^T)[e] for 8 kernels, one per lane: gl[i][lane] holds the 3x3 kernels' values i = 0..8.
inline void kernel_transform8(const float gl[9][8], __m256 u[36]) {
    const __m256 q4 = _mm256_set1_ps(1.0f / 4), m6 = _mm256_set1_ps(-1.0f / 6), q6 = _mm256_set1_ps(1.0f / 6),
                 q12 = _mm256_set1_ps(1.0f / 12), q24 = _mm256_set1_ps(1.0f / 24);
    // One 1-D transform of (a0, a1, a2) by G: 6 values.
    auto g1d = [&](__m256 a0, __m256 a1, __m256 a2, __m256 o[6]) {
        const __m256 s02 = _mm256_add_ps(a0, a2), m = _mm256_fmadd_ps(a2, q6, _mm256_mul_ps(a0, q24));
        o[0] = _mm256_mul_ps(a0, q4);
        o[1] = _mm256_mul_ps(_mm256_add_ps(s02, a1), m6);
        o[2] = _mm256_mul_ps(_mm256_sub_ps(s02, a1), m6);
        o[3] = _mm256_fmadd_ps(a1, q12, m);
        o[4] = _mm256_fnmadd_ps(a1, q12, m);
        o[5] = a2;
    };
    __m256 t[3][6];  // column j of G g
    for (int j = 0; j < 3; ++j) g1d(_mm256_load_ps(gl[j]), _mm256_load_ps(gl[3 + j]), _mm256_load_ps(gl[6 + j]), t[j]);
    for (int i = 0; i < 6; ++i) g1d(t[0][i], t[1][i], t[2][i], u + i * 6);  // row i of (G g) G^T
}

// U[e][c][k] = (G g_kc G^T)[e] for every kernel (zeros in the padding lanes); w: [K][C][3][3] F32, U rows
// `estride` floats apart per e (C8 x K8 plus a pad, so that the 36 rows written together do not share cache sets).
// Blocks of 16 kernels (parallel, two AVX2 vectors), walking c: the weight rows are read in order and each U row
// gets 64 contiguous bytes at a time.
void kernel_transform(const float* w, int64_t K, int64_t C, int64_t K8, int64_t estride, float* U) {
#pragma omp parallel for schedule(static)
    for (int64_t k0 = 0; k0 < K8; k0 += 16)
        for (int64_t c = 0; c < C; ++c) {
            const int blocks = k0 + 8 < K8 ? 2 : 1;
            __m256 u[2][36];
            for (int b = 0; b < blocks; ++b) {
                alignas(32) float gl[9][8];
                for (int l = 0; l < 8; ++l) {
                    const int64_t k = k0 + b * 8 + l;
                    for (int i = 0; i < 9; ++i) gl[i][l] = k < K ? w[(k * C + c) * 9 + i] : 0.0f;
                }
                kernel_transform8(gl, u[b]);
            }
            for (int e = 0; e < 36; ++e)
                for (int b = 0; b < blocks; ++b) _mm256_storeu_ps(U + (int64_t)e * estride + c * K8 + k0 + b * 8, u[b][e]);
        }
}

struct Geometry {
    int64_t N, C, H, W, K, Ho, Wo, th, tw, P, C8, K8, pt, pl;
    int64_t vstride = 0, mstride = 0;  // floats between the e-blocks of V and of M (padded: no shared cache sets)
};

// 8 channels of one input pixel as floats (lanes >= live are zero): F32 or BF16 (the rounded hand-off of a GroupNorm
// that feeds a bf16 convolution; widening is exact).
inline __m256 load8(const float* src, int64_t live, __m256i mask) {
    return live == 8 ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, mask);
}
inline __m256 load8(const uint16_t* src, int64_t live, __m256i) {
    __m128i h;
    if (live == 8) {
        h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    } else {
        alignas(16) uint16_t tmp[8] = {};
        std::memcpy(tmp, src, (size_t)live * sizeof(uint16_t));
        h = _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
    }
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// V[e][t][c] (t = tile - p0 within the chunk) for tiles p0 .. p0 + n - 1; x F32 or BF16 (uint16_t) channels-last.
template <class T>
void input_transform(const Geometry& g, const T* x, float* V, int64_t p0, int64_t n) {
    const int64_t tiles = g.th * g.tw;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n; ++t) {
        const int64_t p = p0 + t, img = p / tiles, r = p % tiles;
        const int64_t iy0 = (r / g.tw) * 4 - g.pt, ix0 = (r % g.tw) * 4 - g.pl;
        const T* xn = x + img * g.H * g.W * g.C;
        for (int64_t c = 0; c < g.C8; c += 8) {
            const int64_t live = std::min<int64_t>(8, g.C - c);
            const __m256i mask = lane_mask(live);
            __m256 d[6][6];
            for (int i = 0; i < 6; ++i) {
                const int64_t iy = iy0 + i;
                for (int j = 0; j < 6; ++j) {
                    const int64_t ix = ix0 + j;
                    if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) {
                        d[i][j] = _mm256_setzero_ps();
                    } else {
                        d[i][j] = load8(xn + (iy * g.W + ix) * g.C + c, live, mask);
                    }
                }
            }
            __m256 col[6], tcol[6], t6[6][6];
            for (int j = 0; j < 6; ++j) {  // columns: t = B^T d
                for (int i = 0; i < 6; ++i) col[i] = d[i][j];
                input_1d(col, tcol);
                for (int i = 0; i < 6; ++i) t6[i][j] = tcol[i];
            }
            for (int i = 0; i < 6; ++i) {  // rows: V = t B
                __m256 v[6];
                input_1d(t6[i], v);
                for (int j = 0; j < 6; ++j) _mm256_storeu_ps(V + (int64_t)(i * 6 + j) * g.vstride + t * g.C8 + c, v[j]);
            }
        }
    }
}

// y (channels-last) from M[e][t][k] for tiles p0 .. p0 + n - 1, plus the bias.
void output_transform(const Geometry& g, const float* M, const float* bias, float* y, int64_t p0, int64_t n) {
    const int64_t tiles = g.th * g.tw;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n; ++t) {
        const int64_t p = p0 + t, img = p / tiles, r = p % tiles;
        const int64_t oy0 = (r / g.tw) * 4, ox0 = (r % g.tw) * 4;
        float* yn = y + img * g.Ho * g.Wo * g.K;
        for (int64_t k = 0; k < g.K; k += 8) {
            const int64_t live = std::min<int64_t>(8, g.K - k);
            const __m256i mask = lane_mask(live);
            __m256 m[6][6];
            for (int e = 0; e < 36; ++e) m[e / 6][e % 6] = _mm256_loadu_ps(M + (int64_t)e * g.mstride + t * g.K8 + k);
            __m256 col[6], ocol[4], t4[4][6];
            for (int j = 0; j < 6; ++j) {  // columns: t = A^T m
                for (int i = 0; i < 6; ++i) col[i] = m[i][j];
                output_1d(col, ocol);
                for (int i = 0; i < 4; ++i) t4[i][j] = ocol[i];
            }
            const __m256 b = bias ? (live == 8 ? _mm256_loadu_ps(bias + k) : _mm256_maskload_ps(bias + k, mask))
                                  : _mm256_setzero_ps();
            for (int i = 0; i < 4; ++i) {  // rows: y = t A
                const int64_t oy = oy0 + i;
                if (oy >= g.Ho) break;
                __m256 o[4];
                output_1d(t4[i], o);
                for (int j = 0; j < 4; ++j) {
                    const int64_t ox = ox0 + j;
                    if (ox >= g.Wo) break;
                    float* dst = yn + (oy * g.Wo + ox) * g.K + k;
                    const __m256 v = _mm256_add_ps(o[j], b);
                    if (live == 8) _mm256_storeu_ps(dst, v);
                    else _mm256_maskstore_ps(dst, mask, v);
                }
            }
        }
    }
}

}  // namespace

bool winograd_enabled() {
    static const bool on = [] {
        const char* e = std::getenv("NUANCE_CONV_WINOGRAD");
        return !(e && std::strcmp(e, "0") == 0);
    }();
    return on;
}

Conv3x3Shape winograd_shape(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
    NUANCE_CHECK(x.dim() == 4 && w.dim() == 4 && w.size(1) == x.size(1) && w.size(2) == 3 && w.size(3) == 3,
                 "winograd conv2d: weight ", w.shape(), " for input ", x.shape());
    NUANCE_CHECK(p.stride == 1 && p.dilation == 1 && p.groups == 1, "winograd conv2d: stride/dilation/groups must be 1");
    Conv3x3Shape s{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), 0, 0, p.padding[0], p.padding[1]};
    s.Ho = s.H + p.padding[0] + p.padding[2] - 2, s.Wo = s.W + p.padding[1] + p.padding[3] - 2;
    NUANCE_CHECK(s.Ho > 0 && s.Wo > 0, "winograd conv2d: input ", x.shape(), " too small");
    return s;
}

bool winograd_applies(const Tensor& x, const Tensor& w, const Conv2dParams& p, bool bf16) {
    if (!winograd_enabled() || x.dim() != 4 || w.dim() != 4) return false;
    if (w.size(2) != 3 || w.size(3) != 3 || p.stride != 1 || p.dilation != 1 || p.groups != 1) return false;
    if (!(x.is_channels_last() && !x.is_contiguous())) return false;
    if (x.dtype() != DType::F32 && x.dtype() != DType::BF16) return false;
    const int64_t Ho = x.size(2) + p.padding[0] + p.padding[2] - 2, Wo = x.size(3) + p.padding[1] + p.padding[3] - 2;
    const int64_t tiles = x.size(0) * ((Ho + 3) / 4) * ((Wo + 3) / 4);
    const int64_t C = x.size(1), K = w.size(0);
    if (!(C >= kMinInChannels && K >= 8 && Ho >= 4 && Wo >= 4 && tiles >= kMinTiles)) return false;
    if (!bf16) return true;
    // Against oneDNN's bf16 direct kernel (2x the fp32 rate) only the products with many channels win: the
    // transforms cost per channel, the products per channel pair (C K / (C + K) is the work per transformed value).
    return C * K >= kMinBf16Intensity * (C + K) && tiles >= kMinBf16Tiles;
}

Tensor winograd_conv2d(const Tensor& x_in, const Tensor& w, const Tensor& b, const Conv2dParams& p, int64_t chunk_tiles) {
    const Conv3x3Shape sh = winograd_shape(x_in, w, p);
    Geometry g{};
    g.N = sh.N, g.C = sh.C, g.H = sh.H, g.W = sh.W, g.K = sh.K, g.Ho = sh.Ho, g.Wo = sh.Wo, g.pt = sh.pt, g.pl = sh.pl;
    g.th = (g.Ho + 3) / 4, g.tw = (g.Wo + 3) / 4;
    g.P = mul_or_throw(g.N, mul_or_throw(g.th, g.tw, "winograd tiles"), "winograd tiles");
    g.C8 = round8(g.C), g.K8 = round8(g.K);
    // F32 or BF16 read as they are (a bf16 input is widened exactly in the transform); others widened to f32 first.
    const Tensor x = x_in.dtype() == DType::BF16 ? x_in : x_in.f32();  // channels-last stays (f32() keeps the layout)
    NUANCE_CHECK(x.is_channels_last(), "winograd conv2d: input must be channels-last");
    Tensor y = Tensor::empty_channels_last({g.N, g.K, g.Ho, g.Wo});
    if (g.P == 0) return y;

    // Chunks of tiles whose V and M fit the scratch budget; every chunk runs one matmul of `rows` rows (the last,
    // shorter one with its unused rows zeroed), so one primitive serves the whole call.
    const int64_t per_tile = 36 * (g.C8 + g.K8) * (int64_t)sizeof(float);
    const int64_t rows =
        chunk_tiles > 0 ? std::min(chunk_tiles, g.P) : std::clamp<int64_t>(kScratchBytes / per_tile, 32, g.P);
    auto& eng = engine();
    g.vstride = rows * g.C8 + 16, g.mstride = rows * g.K8 + 16;
    const memory::desc v_md({36, rows, g.C8}, dt::f32, memory::dims{g.vstride, g.C8, 1});
    const memory::desc m_md({36, rows, g.K8}, dt::f32, memory::dims{g.mstride, g.K8, 1});
    const int64_t estride = g.C8 * g.K8 + 64;  // + 64 floats: the 36 rows fall into different cache sets
    const memory::desc u_md({36, g.C8, g.K8}, dt::f32, memory::dims{estride, g.K8, 1});
    MatmulPrimitive& mm = cached_matmul(v_md, u_md, memory::desc(), m_md);
    // The transformed kernels are made per call, not kept: they are 4x the weight (36 of 9 values), and a call that
    // passes winograd_applies has at least kMinTiles tiles, so they cost a few percent of its work.
    Tensor U = Tensor::empty({36 * estride}, DType::F32);
    if (g.C8 != g.C) std::memset(U.data<float>(), 0, (size_t)(36 * estride) * sizeof(float));  // rows c >= C
    // 16-bit weights are widened first (one vectorised pass, a temporary 2x the weight): reading them per element
    // inside the transform's gather measured 25-35% slower for the whole convolution (SD1.5 320 -> 320 at 64²,
    // batch 2: 35 ms against 26 ms).
    const Tensor w32 = w.dtype() == DType::F32 ? w.contiguous() : w.f32().contiguous();
    kernel_transform(w32.data<float>(), g.K, g.C, g.K8, estride, U.data<float>());
    Tensor V = Tensor::empty({36 * g.vstride}, DType::F32), M = Tensor::empty({36 * g.mstride}, DType::F32);
    float* v = V.data<float>();
    const float* bias = b.defined() ? b.data<float>() : nullptr;
    for (int64_t p0 = 0; p0 < g.P; p0 += rows) {
        const int64_t n = std::min(rows, g.P - p0);
        if (n < rows)  // the last chunk: rows n.. of every e are stale (or never written): zeros
            for (int64_t e = 0; e < 36; ++e)
                std::memset(v + e * g.vstride + n * g.C8, 0, (size_t)((rows - n) * g.C8) * sizeof(float));
        if (x.dtype() == DType::BF16) input_transform(g, x.data<uint16_t>(), v, p0, n);
        else input_transform(g, x.data<float>(), v, p0, n);
        mm.prim.execute(stream(), {{DNNL_ARG_SRC, memory(v_md, eng, v)},
                                   {DNNL_ARG_WEIGHTS, memory(u_md, eng, U.data<float>())},
                                   {DNNL_ARG_DST, memory(m_md, eng, M.data<float>())}});
        stream().wait();
        output_transform(g, M.data<float>(), bias, y.data<float>(), p0, n);
    }
    // Counted as the direct convolution's work (the figure GFLOP/s compare), not the 4x smaller product.
    count_flops(2.0 * (double)g.N * (double)g.K * (double)g.Ho * (double)g.Wo * (double)g.C * 9.0);
    return y;
}

}  // namespace nuance::cpu
