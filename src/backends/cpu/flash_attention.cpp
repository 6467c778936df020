// Fused attention kernel (see flash_attention.h). The project's baseline ISA is AVX2; this file's kernels are compiled
// for AVX-512 (+BF16) through a target pragma that starts after the includes, so no inline function from a shared
// header is ever instantiated with AVX-512 code, and they only run after the CPU check.
//
// Per (b, h): K and V are packed once (in parallel over (b, h)):
//   K: rows [Lk][d rounded up to P] (P = 2 for bf16 pairs, 1 for f32), broadcast one 32-bit word at a time.
//   V: [Lk/P][dv][P]: key pairs interleaved channel by channel, broadcast one word per channel.
// Per task (b, h, 64 query rows; the rows are the vector lanes, 4 registers of 16), Qᵀ packed [d/P][64][P], and for
// each block of 128 keys:
//   Sᵀ = K Qᵀ                                   register tiles of 6 keys × 64 rows (24 accumulators), with the
//                                               block's max per row folded in
//   m' = max(m, scale₂·max S);  α = 2^(m − m')  per row lane (base 2: scale₂ = scale · log2 e)
//   Pᵀ = 2^(scale₂·Sᵀ − m'),  l = α l + Σ P     bf16 pairs or f32
//   Oᵀ = α Oᵀ + V Pᵀ                            register tiles of 6 channels × 64 rows
// and finally out = Oᵀ / l, transposed back. Memory per thread: Sᵀ 32 KiB, Pᵀ 16 KiB (bf16), Qᵀ and Oᵀ d·256 bytes each.
#include "backends/cpu/flash_attention.h"

#include "core/allocator.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace nuance::cpu {

namespace {

constexpr int64_t kRq = 64;   // query rows per task
constexpr int64_t kBk = 128;  // keys per block (a multiple of 64)

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// 64-byte aligned scratch from the caching allocator, given back on scope exit (plain code: nothing here is compiled
// for AVX-512). Fresh pages cost a fault each on first touch (10 MiB of packed K/V per SDXL call: ~20 ms on this VM),
// so the blocks are reused from call to call.
struct Scratch {
    void* p = nullptr;
    size_t bytes = 0;
    explicit Scratch(size_t n) : bytes(n + 64) { p = cached_alloc(bytes); }
    ~Scratch() { cached_free(p, bytes); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
};

bool env_enabled() {
    const char* e = std::getenv("NUANCE_FLASH_ATTENTION");
    return !(e && std::strcmp(e, "0") == 0);
}

std::atomic<bool>& enabled_flag() {
    static std::atomic<bool> on{env_enabled()};
    return on;
}

}  // namespace

void set_flash_attention_enabled(bool on) { enabled_flag() = on; }

bool flash_attention_available(bool bf16) {
    const bool enabled = enabled_flag();
    static const bool f32_ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    static const bool bf16_ok = f32_ok && __builtin_cpu_supports("avx512bf16");
    return enabled && (bf16 ? bf16_ok : f32_ok);
}

#pragma GCC push_options
// GCC 12 reports its own AVX-512 intrinsics' _mm512_undefined_* placeholders as maybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")

namespace {

// 2^x for x <= 0 (softmax arguments): x = k + f, |f| <= 1/2, 2^f by a polynomial (minimax relative fits: degree 5,
// 2.4e-7 in f32; degree 3, 7.5e-5, for weights that are rounded to bf16 (2^-9) next), times 2^k by vscalefps (which
// also gives 0 for x below the f32 range). 6 or 8 instructions.
template <bool Coarse>
inline __m512 exp2_16(__m512 x) {
    const __m512 k = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, k);
    __m512 p;
    if constexpr (Coarse) {
        p = _mm512_set1_ps(5.5171657354e-2f);
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4261112511e-1f));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9326096773e-1f));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.9992805719e-1f));
    } else {
        p = _mm512_set1_ps(1.3276468962e-3f);
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6755409613e-3f));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5507134646e-2f));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022120237e-1f));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314694405e-1f));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192f));
    }
    return _mm512_scalef_ps(p, k);
}

// Operand element policy. P: elements reduced per multiply-add lane (bf16 pairs or single floats).
template <bool BF>
struct Elem;

template <>
struct Elem<true> {
    using T = uint16_t;
    static constexpr int64_t P = 2;
    static __m512 bcast(const T* p) {  // one bf16 pair to every lane
        int32_t v;
        std::memcpy(&v, p, 4);
        return _mm512_castsi512_ps(_mm512_set1_epi32(v));
    }
    static __m512 madd(__m512 acc, __m512 a, __m512 b) {
        return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_castps_si512(a), (__m512bh)_mm512_castps_si512(b));
    }
    // 16 lanes of keys j and j+1 as 16 bf16 pairs (round to nearest even): e0[0], e1[0], e0[1], e1[1], ...
    static void store_pairs(T* dst, __m512 e0, __m512 e1) {
        const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(e1, e0);  // e0 in the low 16 elements, e1 in the high
        const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                             6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        _mm512_storeu_si512(dst, _mm512_permutexvar_epi16(idx, both));
    }
};

template <>
struct Elem<false> {
    using T = float;
    static constexpr int64_t P = 1;
    static __m512 bcast(const T* p) { return _mm512_set1_ps(*p); }
    static __m512 madd(__m512 acc, __m512 a, __m512 b) { return _mm512_fmadd_ps(a, b, acc); }
};

constexpr int NQ = kRq / 16;  // query rows are the vector lanes: 4 registers of 16 rows

// Sᵀ[MR keys, 64 rows] = K rows (kp, row stride dk) · Qᵀ (qt: [dp][64 rows][P]); bmax (when given) <- max(bmax,
// the tile's max per row).
template <bool BF, int MR>
void s_tile(const typename Elem<BF>::T* kp, int64_t dk, const typename Elem<BF>::T* qt, int64_t dp, float* st,
            float* bmax) {
    using E = Elem<BF>;
    __m512 acc[MR][NQ];
    for (int j = 0; j < MR; ++j)
        for (int n = 0; n < NQ; ++n) acc[j][n] = _mm512_setzero_ps();
    for (int64_t p = 0; p < dp; ++p) {
        __m512 qv[NQ];
        for (int n = 0; n < NQ; ++n) qv[n] = _mm512_loadu_ps(reinterpret_cast<const float*>(qt + (p * kRq + n * 16) * E::P));
        for (int j = 0; j < MR; ++j) {
            const __m512 kv = E::bcast(kp + j * dk + p * E::P);
            for (int n = 0; n < NQ; ++n) acc[j][n] = E::madd(acc[j][n], kv, qv[n]);
        }
    }
    for (int j = 0; j < MR; ++j)
        for (int n = 0; n < NQ; ++n) _mm512_storeu_ps(st + j * kRq + n * 16, acc[j][n]);
    if (bmax)
        for (int n = 0; n < NQ; ++n) {
            __m512 mx = _mm512_load_ps(bmax + n * 16);
            for (int j = 0; j < MR; ++j) mx = _mm512_max_ps(mx, acc[j][n]);
            _mm512_store_ps(bmax + n * 16, mx);
        }
}

// Oᵀ[MR channels, 64 rows] = α Oᵀ + V channels (vp: [key pair][dv][P]) · Pᵀ (pt: [key pair][64 rows][P]).
template <bool BF, int MR>
void pv_tile(const typename Elem<BF>::T* vp, int64_t dv, const typename Elem<BF>::T* pt, int64_t npairs, float* ot,
             const __m512* alpha) {
    using E = Elem<BF>;
    __m512 acc[MR][NQ];
    for (int c = 0; c < MR; ++c)
        for (int n = 0; n < NQ; ++n) acc[c][n] = _mm512_mul_ps(_mm512_loadu_ps(ot + c * kRq + n * 16), alpha[n]);
    for (int64_t q = 0; q < npairs; ++q) {
        __m512 pv[NQ];
        for (int n = 0; n < NQ; ++n) pv[n] = _mm512_loadu_ps(reinterpret_cast<const float*>(pt + (q * kRq + n * 16) * E::P));
        for (int c = 0; c < MR; ++c) {
            const __m512 vv = E::bcast(vp + (q * dv + c) * E::P);
            for (int n = 0; n < NQ; ++n) acc[c][n] = E::madd(acc[c][n], vv, pv[n]);
        }
    }
    for (int c = 0; c < MR; ++c)
        for (int n = 0; n < NQ; ++n) _mm512_storeu_ps(ot + c * kRq + n * 16, acc[c][n]);
}

constexpr int kMR = 6;  // 6 × 4 = 24 accumulators

// Runs tile<MR> over `count` rows of 6 and one remainder of 1..5.
template <template <int> class Tile, class... A>
void tiles(int64_t count, A... a) {
    int64_t i = 0;
    for (; i + kMR <= count; i += kMR) Tile<kMR>::run(i, a...);
    switch (count - i) {
        case 1: Tile<1>::run(i, a...); break;
        case 2: Tile<2>::run(i, a...); break;
        case 3: Tile<3>::run(i, a...); break;
        case 4: Tile<4>::run(i, a...); break;
        case 5: Tile<5>::run(i, a...); break;
        default: break;
    }
}

template <bool BF>
struct STiles {
    template <int MR>
    struct At {
        static void run(int64_t j, const typename Elem<BF>::T* kp, int64_t dk, const typename Elem<BF>::T* qt,
                        int64_t dp, float* st, float* bmax) {
            s_tile<BF, MR>(kp + j * dk, dk, qt, dp, st + j * kRq, bmax);
        }
    };
};

template <bool BF>
struct PVTiles {
    template <int MR>
    struct At {
        static void run(int64_t c, const typename Elem<BF>::T* vp, int64_t dv, const typename Elem<BF>::T* pt,
                        int64_t npairs, float* ot, const __m512* alpha) {
            pv_tile<BF, MR>(vp + c * Elem<BF>::P, dv, pt, npairs, ot + c * kRq, alpha);
        }
    };
};

// Lanes of n-th row register that may see key `key` under the causal mask (row q0 + 16 n + lane >= key).
inline __mmask16 causal_mask(int64_t q0, int n, int64_t key) {
    const __m512i rows = _mm512_add_epi32(_mm512_set1_epi32((int32_t)(q0 + 16 * n)),
                                          _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
    return _mm512_cmp_epi32_mask(rows, _mm512_set1_epi32((int32_t)key), _MM_CMPINT_NLT);
}

// Softmax of one key block of Sᵀ [nk keys][64 rows]: updates the running max m (of scale2 · s, base 2) and sum l of
// every row lane, sets α (the factor for the rows' earlier output) and writes Pᵀ [nk/P pairs][64 rows][P].
// bmax: the block's max per row from the products (without the causal mask), recomputed here under the mask.
template <bool BF>
void softmax_block(const float* st, const float* bmax, int64_t nk, int64_t kb0, int64_t q0, bool causal, float scale2,
                   __m512* m, __m512* l, __m512* alpha, typename Elem<BF>::T* pt) {
    using E = Elem<BF>;
    const __m512 ninf = _mm512_set1_ps(-INFINITY), vs = _mm512_set1_ps(scale2);
    __m512 bm[NQ], mneg[NQ], sum[NQ];
    for (int n = 0; n < NQ; ++n) bm[n] = causal ? ninf : _mm512_load_ps(bmax + n * 16), sum[n] = _mm512_setzero_ps();
    if (causal)
        for (int64_t j = 0; j < nk; ++j)
            for (int n = 0; n < NQ; ++n)
                bm[n] = _mm512_mask_max_ps(bm[n], causal_mask(q0, n, kb0 + j), bm[n], _mm512_loadu_ps(st + j * kRq + n * 16));
    for (int n = 0; n < NQ; ++n) {
        const __m512 m_new = _mm512_max_ps(m[n], _mm512_mul_ps(bm[n], vs));
        // α = 2^(m − m'): 0 where nothing was seen before (m = −∞), 1 where nothing is seen yet (m' = −∞)
        const __mmask16 seen = _mm512_cmp_ps_mask(m[n], ninf, _CMP_NEQ_OQ);
        alpha[n] = _mm512_mask_blend_ps(seen, _mm512_setzero_ps(), exp2_16<false>(_mm512_sub_ps(m[n], m_new)));
        alpha[n] = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(m_new, ninf, _CMP_EQ_OQ), alpha[n], _mm512_set1_ps(1.0f));
        m[n] = m_new;
        mneg[n] = _mm512_sub_ps(_mm512_setzero_ps(), m_new);
    }
    auto weight = [&](int64_t j, int n) {  // e^(scale s − m) of key j, 0 where masked or past the block
        if (j >= nk) return _mm512_setzero_ps();
        const __m512 e = exp2_16<BF>(_mm512_fmadd_ps(_mm512_loadu_ps(st + j * kRq + n * 16), vs, mneg[n]));
        return causal ? _mm512_maskz_mov_ps(causal_mask(q0, n, kb0 + j), e) : e;
    };
    for (int64_t j = 0; j < nk; j += E::P)
        for (int n = 0; n < NQ; ++n) {
            if constexpr (BF) {
                const __m512 e0 = weight(j, n), e1 = weight(j + 1, n);
                sum[n] = _mm512_add_ps(sum[n], _mm512_add_ps(e0, e1));
                E::store_pairs(pt + ((j / 2) * kRq + n * 16) * 2, e0, e1);
            } else {
                const __m512 e = weight(j, n);
                sum[n] = _mm512_add_ps(sum[n], e);
                _mm512_storeu_ps(pt + j * kRq + n * 16, e);
            }
        }
    for (int n = 0; n < NQ; ++n) l[n] = _mm512_fmadd_ps(l[n], alpha[n], sum[n]);
}

template <bool BF>
void pack_rows(const typename Elem<BF>::T* src, int64_t sl, int64_t L, int64_t d, int64_t dk,
               typename Elem<BF>::T* out) {  // [L][dk], zero past d
    for (int64_t i = 0; i < L; ++i) {
        std::memcpy(out + i * dk, src + i * sl, (size_t)d * sizeof(typename Elem<BF>::T));
        for (int64_t c = d; c < dk; ++c) out[i * dk + c] = 0;
    }
}

template <bool BF>
void pack_v(const typename Elem<BF>::T* v, int64_t sl, int64_t Lk, int64_t dv, int64_t Lkp,
            typename Elem<BF>::T* out) {  // [Lkp/P][dv][P], zero past Lk
    using T = typename Elem<BF>::T;
    if constexpr (!BF) {
        for (int64_t key = 0; key < Lkp; ++key) {
            if (key < Lk)
                std::memcpy(out + key * dv, v + key * sl, (size_t)dv * sizeof(T));
            else
                std::memset(out + key * dv, 0, (size_t)dv * sizeof(T));
        }
    } else {
        // pairs of keys interleaved channel by channel: one 32-bit word (key 2q in the low half) per channel
        uint32_t* o32 = reinterpret_cast<uint32_t*>(out);
        for (int64_t q = 0; q < Lkp / 2; ++q) {
            const int64_t k0 = 2 * q, k1 = 2 * q + 1;
            uint32_t* dst = o32 + q * dv;
            if (k1 < Lk) {
                const T* a = v + k0 * sl;
                const T* b = v + k1 * sl;
                for (int64_t c = 0; c < dv; ++c) dst[c] = (uint32_t)a[c] | ((uint32_t)b[c] << 16);
            } else if (k0 < Lk) {
                const T* a = v + k0 * sl;
                for (int64_t c = 0; c < dv; ++c) dst[c] = (uint32_t)a[c];
            } else {
                std::memset(dst, 0, (size_t)dv * 4);
            }
        }
    }
}

// Qᵀ of a query tile: [dp][64 rows][P], i.e. one 32-bit word (a bf16 pair or one f32) per (channel pair, row);
// rows past `rows` and channels past d are zero.
template <bool BF>
void pack_qt(const typename Elem<BF>::T* q, int64_t sl, int64_t rows, int64_t d, int64_t dp,
             typename Elem<BF>::T* qt) {
    using T = typename Elem<BF>::T;
    constexpr int64_t P = Elem<BF>::P;
    uint32_t* q32 = reinterpret_cast<uint32_t*>(qt);
    const int64_t full = d / P;  // whole words per row
    for (int64_t r = 0; r < rows; ++r) {
        const T* row = q + r * sl;
        for (int64_t p = 0; p < full; ++p) {
            uint32_t w;
            std::memcpy(&w, row + p * P, 4);
            q32[p * kRq + r] = w;
        }
        if (full < dp) q32[full * kRq + r] = (uint32_t)(uint16_t)row[full * P];  // odd bf16 d: a half word
    }
    if (rows < kRq)
        for (int64_t p = 0; p < dp; ++p) std::memset(q32 + p * kRq + rows, 0, (size_t)(kRq - rows) * 4);
}

struct Dims {
    int64_t B, H, Lq, Lk, d, dv, dp, dk, Lkp;
};

template <bool BF>
void run(const AttnOperand& qo, const AttnOperand& ko, const AttnOperand& vo, float* out, int64_t ob, int64_t oh,
         int64_t ol, const Dims& z, float scale, bool causal, void* kpack_raw, void* vpack_raw, void* thread_raw,
         int64_t thread_bytes, int nthreads) {
    using E = Elem<BF>;
    using T = typename E::T;
    const T* q = static_cast<const T*>(qo.data);
    const T* k = static_cast<const T*>(ko.data);
    const T* v = static_cast<const T*>(vo.data);
    T* kpack = static_cast<T*>(kpack_raw);
    T* vpack = static_cast<T*>(vpack_raw);
    const int64_t kp_sz = z.Lkp * z.dk, vp_sz = z.Lkp * z.dv, BH = z.B * z.H;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t bh = 0; bh < BH; ++bh) {
        const int64_t b = bh / z.H, h = bh % z.H;
        pack_rows<BF>(k + b * ko.sb + h * ko.sh, ko.sl, z.Lk, z.d, z.dk, kpack + bh * kp_sz);
        pack_v<BF>(v + b * vo.sb + h * vo.sh, vo.sl, z.Lk, z.dv, z.Lkp, vpack + bh * vp_sz);
    }
    const int64_t nqb = (z.Lq + kRq - 1) / kRq;
    const float scale2 = scale * 1.44269504088896341f;  // softmax in base 2: e^(scale s) = 2^(scale2 s)
#pragma omp parallel num_threads(nthreads)
    {
        uint8_t* ws = static_cast<uint8_t*>(thread_raw) + (size_t)omp_get_thread_num() * (size_t)thread_bytes;
        T* qt = reinterpret_cast<T*>(ws);                                           // [dp][64][P]
        float* st = reinterpret_cast<float*>(ws + round_up(kRq * z.dk * (int64_t)sizeof(T), 64));  // [kBk][64]
        T* pt = reinterpret_cast<T*>(st + kBk * kRq);                               // [kBk/P][64][P]
        float* ot = reinterpret_cast<float*>(pt + kBk * kRq);                       // [dv][64]
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < BH * nqb; ++task) {
            const int64_t bh = task / nqb, b = bh / z.H, h = bh % z.H;
            const int64_t q0 = (task % nqb) * kRq, rows = std::min(kRq, z.Lq - q0);
            pack_qt<BF>(q + b * qo.sb + h * qo.sh + q0 * qo.sl, qo.sl, rows, z.d, z.dp, qt);
            std::memset(ot, 0, (size_t)(z.dv * kRq) * sizeof(float));
            __m512 m[NQ], l[NQ], alpha[NQ];
            alignas(64) float bmax[kRq];
            for (int n = 0; n < NQ; ++n) m[n] = _mm512_set1_ps(-INFINITY), l[n] = _mm512_setzero_ps();
            const T* kp_bh = kpack + bh * kp_sz;
            const T* vp_bh = vpack + bh * vp_sz;
            const int64_t kend = causal ? std::min(z.Lk, q0 + rows) : z.Lk;
            for (int64_t kb0 = 0; kb0 < kend; kb0 += kBk) {
                const int64_t nk = std::min(kBk, kend - kb0);
                for (int64_t i = 0; i < kRq; ++i) bmax[i] = -INFINITY;
                tiles<STiles<BF>::template At>(nk, kp_bh + kb0 * z.dk, z.dk, (const T*)qt, z.dp, st, bmax);
                softmax_block<BF>(st, bmax, nk, kb0, q0, causal, scale2, m, l, alpha, pt);
                tiles<PVTiles<BF>::template At>(z.dv, vp_bh + (kb0 / E::P) * z.dv * E::P, z.dv, (const T*)pt,
                                               (nk + E::P - 1) / E::P, ot, (const __m512*)alpha);
            }
            alignas(64) float inv[kRq];
            for (int n = 0; n < NQ; ++n) {
                const __m512 lv = l[n];
                const __mmask16 pos = _mm512_cmp_ps_mask(lv, _mm512_setzero_ps(), _CMP_GT_OQ);
                _mm512_store_ps(inv + n * 16, _mm512_maskz_div_ps(pos, _mm512_set1_ps(1.0f), lv));
            }
            float* dst = out + b * ob + h * oh + q0 * ol;
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t c = 0; c < z.dv; ++c) dst[r * ol + c] = ot[c * kRq + r] * inv[r];
        }
    }
}

}  // namespace

#pragma GCC diagnostic pop
#pragma GCC pop_options

void flash_attention(bool bf16, const AttnOperand& q, const AttnOperand& k, const AttnOperand& v, float* out,
                     int64_t ob, int64_t oh, int64_t ol, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t d,
                     int64_t dv, float scale, bool causal) {
    if (B * H * Lq * dv == 0 || Lk == 0) return;
    const int64_t P = bf16 ? 2 : 1, es = bf16 ? 2 : 4;
    Dims z{B, H, Lq, Lk, d, dv, (d + P - 1) / P, 0, round_up(Lk, kBk)};
    z.dk = z.dp * P;
    const int nthreads = omp_get_max_threads();
    const int64_t thread_bytes = round_up(round_up(kRq * z.dk * es, 64) + kBk * kRq * (4 + es) + dv * kRq * 4 + 64, 64);
    Scratch kpack((size_t)(B * H * z.Lkp * z.dk * es)), vpack((size_t)(B * H * z.Lkp * dv * es));
    Scratch threads((size_t)(nthreads * thread_bytes));
    if (bf16)
        run<true>(q, k, v, out, ob, oh, ol, z, scale, causal, kpack.p, vpack.p, threads.p, thread_bytes, nthreads);
    else
        run<false>(q, k, v, out, ob, oh, ol, z, scale, causal, kpack.p, vpack.p, threads.p, thread_bytes, nthreads);
}

}  // namespace nuance::cpu
