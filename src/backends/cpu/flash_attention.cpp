// Fused attention kernel (see flash_attention.h). The project's baseline ISA is AVX2; this file's kernels are compiled
// for AVX-512 (+BF16) through a target pragma that starts after the includes, so no inline function from a shared
// header is ever instantiated with AVX-512 code, and they only run after the CPU check.
//
// Per (b, h): K and V are packed once into the layouts the products stream (in parallel over (b, h)):
//   K: blocks of 16 keys, [d/P][16 keys][P] (P = 2 for bf16 pairs, 1 for f32): one 64-byte row per (block, pair).
//   V: [Lk/P][dv rounded up to 16][P]: one 64-byte row per (key pair, 16 value channels).
// Per task (b, h, 64 query rows), for each block of 128 keys:
//   S = Q Kᵀ                                     register tiles of 4 rows × 64 keys (16 accumulators)
//   m' = max(m, scale·max S);  α = e^(m − m')    per row, f32
//   P = e^(scale·S − m') (bf16 or f32),  l = α l + Σ P
//   O = α O + P V                                register tiles of up to 8 rows × 64 channels
// and finally out = O / l. Memory per thread: ~80 KiB (S, P, O, the Q rows), in L1/L2.
#include "backends/cpu/flash_attention.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace nuance::cpu {

namespace {

constexpr int64_t kRq = 64;   // query rows per task
constexpr int64_t kBk = 128;  // keys per block (a multiple of 64)

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// 64-byte aligned scratch, freed on scope exit (plain code: nothing here is compiled for AVX-512).
struct Scratch {
    void* p = nullptr;
    explicit Scratch(size_t bytes) {
        p = std::aligned_alloc(64, (size_t)round_up((int64_t)bytes + 64, 64));
        if (!p) throw std::bad_alloc();
    }
    ~Scratch() { std::free(p); }
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

// 2^x for x <= 0 (softmax arguments): x = k + f, |f| <= 1/2, 2^f by a degree-5 polynomial (minimax relative fit,
// 2.4e-7 in f32), times 2^k by vscalefps (which also gives 0 for x below the f32 range). 8 instructions.
inline __m512 exp2_16(__m512 x) {
    const __m512 k = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, k);
    __m512 p = _mm512_set1_ps(1.3276468962e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6755409613e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5507134646e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022120237e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314694405e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192f));
    return _mm512_scalef_ps(p, k);
}

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }

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
    static void store_p(T* dst, __m512 v) {  // round to nearest even
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), (__m256i)_mm512_cvtneps_pbh(v));
    }
};

template <>
struct Elem<false> {
    using T = float;
    static constexpr int64_t P = 1;
    static __m512 bcast(const T* p) { return _mm512_set1_ps(*p); }
    static __m512 madd(__m512 acc, __m512 a, __m512 b) { return _mm512_fmadd_ps(a, b, acc); }
    static void store_p(T* dst, __m512 v) { _mm512_storeu_ps(dst, v); }
};

// S[MR rows, NR·16 keys] = Q rows (qb, row stride dk) · K blocks (kp: NR blocks of 16 keys, kstride apart).
template <bool BF, int MR, int NR>
void s_tile(const typename Elem<BF>::T* qb, int64_t dk, const typename Elem<BF>::T* kp, int64_t kstride, int64_t dp,
            float* s, int64_t s_rs) {
    using E = Elem<BF>;
    __m512 acc[MR][NR];
    for (int r = 0; r < MR; ++r)
        for (int n = 0; n < NR; ++n) acc[r][n] = _mm512_setzero_ps();
    for (int64_t p = 0; p < dp; ++p) {
        __m512 kv[NR];
        for (int n = 0; n < NR; ++n) kv[n] = _mm512_loadu_ps(reinterpret_cast<const float*>(kp + n * kstride + p * 16 * E::P));
        for (int r = 0; r < MR; ++r) {
            const __m512 qv = E::bcast(qb + r * dk + p * E::P);
            for (int n = 0; n < NR; ++n) acc[r][n] = E::madd(acc[r][n], qv, kv[n]);
        }
    }
    for (int r = 0; r < MR; ++r)
        for (int n = 0; n < NR; ++n) _mm512_storeu_ps(s + r * s_rs + n * 16, acc[r][n]);
}

template <bool BF, int NR>
void s_rows(int64_t rows, const typename Elem<BF>::T* qb, int64_t dk, const typename Elem<BF>::T* kp, int64_t kstride,
            int64_t dp, float* s, int64_t s_rs) {
    constexpr int MR = 4;
    int64_t r = 0;
    for (; r + MR <= rows; r += MR) s_tile<BF, MR, NR>(qb + r * dk, dk, kp, kstride, dp, s + r * s_rs, s_rs);
    switch (rows - r) {
        case 1: s_tile<BF, 1, NR>(qb + r * dk, dk, kp, kstride, dp, s + r * s_rs, s_rs); break;
        case 2: s_tile<BF, 2, NR>(qb + r * dk, dk, kp, kstride, dp, s + r * s_rs, s_rs); break;
        case 3: s_tile<BF, 3, NR>(qb + r * dk, dk, kp, kstride, dp, s + r * s_rs, s_rs); break;
        default: break;
    }
}

// O[MR rows, NV·16 channels] = α O + P rows (p, row stride p_rs) · V (vp: key pairs dvp·P elements apart).
template <bool BF, int MR, int NV>
void pv_tile(const typename Elem<BF>::T* p, int64_t p_rs, const typename Elem<BF>::T* vp, int64_t dvp, int64_t npairs,
             float* o, int64_t o_rs, const float* alpha) {
    using E = Elem<BF>;
    __m512 acc[MR][NV];
    for (int r = 0; r < MR; ++r) {
        const __m512 a = _mm512_set1_ps(alpha[r]);
        for (int n = 0; n < NV; ++n) acc[r][n] = _mm512_mul_ps(_mm512_loadu_ps(o + r * o_rs + n * 16), a);
    }
    for (int64_t q = 0; q < npairs; ++q) {
        __m512 vv[NV];
        for (int n = 0; n < NV; ++n) vv[n] = _mm512_loadu_ps(reinterpret_cast<const float*>(vp + (q * dvp + n * 16) * E::P));
        for (int r = 0; r < MR; ++r) {
            const __m512 pv = E::bcast(p + r * p_rs + q * E::P);
            for (int n = 0; n < NV; ++n) acc[r][n] = E::madd(acc[r][n], pv, vv[n]);
        }
    }
    for (int r = 0; r < MR; ++r)
        for (int n = 0; n < NV; ++n) _mm512_storeu_ps(o + r * o_rs + n * 16, acc[r][n]);
}

template <bool BF, int NV>
void pv_rows(int64_t rows, const typename Elem<BF>::T* p, int64_t p_rs, const typename Elem<BF>::T* vp, int64_t dvp,
             int64_t npairs, float* o, int64_t o_rs, const float* alpha) {
    constexpr int MR = NV == 4 ? 6 : 8;  // 24 accumulators at most
    int64_t r = 0;
    for (; r + MR <= rows; r += MR) pv_tile<BF, MR, NV>(p + r * p_rs, p_rs, vp, dvp, npairs, o + r * o_rs, o_rs, alpha + r);
#define NUANCE_PV_CASE(k) \
    case k: pv_tile<BF, k, NV>(p + r * p_rs, p_rs, vp, dvp, npairs, o + r * o_rs, o_rs, alpha + r); break;
    switch (rows - r) {
        NUANCE_PV_CASE(1)
        NUANCE_PV_CASE(2)
        NUANCE_PV_CASE(3)
        NUANCE_PV_CASE(4)
        NUANCE_PV_CASE(5)
        NUANCE_PV_CASE(6)
        NUANCE_PV_CASE(7)
        default: break;
    }
#undef NUANCE_PV_CASE
}

// One score row of a key block: updates the running max m (of scale2 · s, base-2 units) and sum l, returns the
// factor α for the row's earlier output, writes P[0, nkw) (zero past limit).
template <bool BF>
float softmax_block_row(const float* s, int64_t limit, int64_t nkw, float scale2, float& m, float& l,
                        typename Elem<BF>::T* p) {
    using E = Elem<BF>;
    const int64_t full = limit & ~(int64_t)15;
    if (limit <= 0) {
        for (int64_t i = 0; i < nkw; i += 16) E::store_p(p + i, _mm512_setzero_ps());
        return 1.0f;
    }
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < full; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(s + i));
    if (full < limit) vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(vm, tail_mask(limit - full), s + full));
    const float m_new = std::fmax(m, _mm512_reduce_max_ps(vm) * scale2);
    // (one lane of the vector exp2: a libm call per row and block cost 6% of the kernel)
    const float alpha = m == -INFINITY ? 0.0f : _mm512_cvtss_f32(exp2_16(_mm512_set1_ps(m - m_new)));
    const __m512 vs = _mm512_set1_ps(scale2), vneg = _mm512_set1_ps(-m_new);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < full; i += 16) {
        const __m512 e = exp2_16(_mm512_fmadd_ps(_mm512_loadu_ps(s + i), vs, vneg));
        sum = _mm512_add_ps(sum, e);
        E::store_p(p + i, e);
    }
    int64_t i = full;
    if (full < limit) {
        const __m512 e =
            _mm512_maskz_mov_ps(tail_mask(limit - full), exp2_16(_mm512_fmadd_ps(_mm512_loadu_ps(s + full), vs, vneg)));
        sum = _mm512_add_ps(sum, e);
        E::store_p(p + full, e);
        i += 16;
    }
    for (; i < nkw; i += 16) E::store_p(p + i, _mm512_setzero_ps());
    l = l * alpha + _mm512_reduce_add_ps(sum);
    m = m_new;
    return alpha;
}

template <bool BF>
void pack_k(const typename Elem<BF>::T* k, int64_t sl, int64_t Lk, int64_t d, int64_t dp,
            typename Elem<BF>::T* out) {  // [Lk/16][dp][16][P]
    constexpr int64_t P = Elem<BF>::P;
    for (int64_t kb = 0; kb < (Lk + 15) / 16; ++kb)
        for (int64_t p = 0; p < dp; ++p)
            for (int64_t j = 0; j < 16; ++j)
                for (int64_t e = 0; e < P; ++e) {
                    const int64_t key = kb * 16 + j, c = p * P + e;
                    out[((kb * dp + p) * 16 + j) * P + e] = key < Lk && c < d ? k[key * sl + c] : 0;
                }
}

template <bool BF>
void pack_v(const typename Elem<BF>::T* v, int64_t sl, int64_t Lk, int64_t dv, int64_t Lkp, int64_t dvp,
            typename Elem<BF>::T* out) {  // [Lkp/P][dvp][P]
    constexpr int64_t P = Elem<BF>::P;
    for (int64_t q = 0; q < Lkp / P; ++q)
        for (int64_t e = 0; e < P; ++e) {
            const int64_t key = q * P + e;
            for (int64_t c = 0; c < dvp; ++c) out[(q * dvp + c) * P + e] = key < Lk && c < dv ? v[key * sl + c] : 0;
        }
}

struct Dims {
    int64_t B, H, Lq, Lk, d, dv, dp, dk, dvp, Lkp;
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
    const int64_t kp_sz = z.Lkp * z.dk, vp_sz = z.Lkp * z.dvp, BH = z.B * z.H;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t bh = 0; bh < BH; ++bh) {
        const int64_t b = bh / z.H, h = bh % z.H;
        pack_k<BF>(k + b * ko.sb + h * ko.sh, ko.sl, z.Lk, z.d, z.dp, kpack + bh * kp_sz);
        pack_v<BF>(v + b * vo.sb + h * vo.sh, vo.sl, z.Lk, z.dv, z.Lkp, z.dvp, vpack + bh * vp_sz);
    }
    const int64_t nqb = (z.Lq + kRq - 1) / kRq;
    const float scale2 = scale * 1.44269504088896341f;  // softmax in base 2: e^(scale s) = 2^(scale2 s)
#pragma omp parallel num_threads(nthreads)
    {
        uint8_t* ws = static_cast<uint8_t*>(thread_raw) + (size_t)omp_get_thread_num() * (size_t)thread_bytes;
        T* qb = reinterpret_cast<T*>(ws);
        float* s = reinterpret_cast<float*>(ws + round_up(kRq * z.dk * (int64_t)sizeof(T), 64));
        T* pbuf = reinterpret_cast<T*>(s + kRq * kBk);
        float* o = reinterpret_cast<float*>(pbuf + kRq * kBk);
        float* m = o + kRq * z.dvp;
        float* l = m + kRq;
        float* alpha = l + kRq;
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < BH * nqb; ++task) {
            const int64_t bh = task / nqb, b = bh / z.H, h = bh % z.H;
            const int64_t q0 = (task % nqb) * kRq, rows = std::min(kRq, z.Lq - q0);
            const T* qsrc = q + b * qo.sb + h * qo.sh + q0 * qo.sl;
            for (int64_t r = 0; r < rows; ++r) {
                std::memcpy(qb + r * z.dk, qsrc + r * qo.sl, (size_t)z.d * sizeof(T));
                for (int64_t c = z.d; c < z.dk; ++c) qb[r * z.dk + c] = 0;
            }
            std::memset(o, 0, (size_t)(rows * z.dvp) * sizeof(float));
            for (int64_t r = 0; r < rows; ++r) m[r] = -INFINITY, l[r] = 0.0f;
            const T* kp_bh = kpack + bh * kp_sz;
            const T* vp_bh = vpack + bh * vp_sz;
            const int64_t kend = causal ? std::min(z.Lk, q0 + rows) : z.Lk;
            for (int64_t kb0 = 0; kb0 < kend; kb0 += kBk) {
                const int64_t nk = std::min(kBk, z.Lk - kb0), nkw = round_up(nk, 16);
                const int64_t kstride = z.dp * 16 * E::P;  // elements between 16-key blocks
                const T* kp = kp_bh + (kb0 / 16) * kstride;
                int64_t j = 0;
                for (; j + 64 <= nkw; j += 64) s_rows<BF, 4>(rows, qb, z.dk, kp + (j / 16) * kstride, kstride, z.dp, s + j, kBk);
                switch ((nkw - j) / 16) {
                    case 1: s_rows<BF, 1>(rows, qb, z.dk, kp + (j / 16) * kstride, kstride, z.dp, s + j, kBk); break;
                    case 2: s_rows<BF, 2>(rows, qb, z.dk, kp + (j / 16) * kstride, kstride, z.dp, s + j, kBk); break;
                    case 3: s_rows<BF, 3>(rows, qb, z.dk, kp + (j / 16) * kstride, kstride, z.dp, s + j, kBk); break;
                    default: break;
                }
                for (int64_t r = 0; r < rows; ++r) {
                    const int64_t limit = causal ? std::min(nk, q0 + r + 1 - kb0) : nk;
                    alpha[r] = softmax_block_row<BF>(s + r * kBk, limit, nkw, scale2, m[r], l[r], pbuf + r * kBk);
                }
                const int64_t npairs = (nk + E::P - 1) / E::P;
                const T* vp = vp_bh + (kb0 / E::P) * z.dvp * E::P;
                int64_t c = 0;
                for (; c + 64 <= z.dvp; c += 64) pv_rows<BF, 4>(rows, pbuf, kBk, vp + c * E::P, z.dvp, npairs, o + c, z.dvp, alpha);
                switch ((z.dvp - c) / 16) {
                    case 1: pv_rows<BF, 1>(rows, pbuf, kBk, vp + c * E::P, z.dvp, npairs, o + c, z.dvp, alpha); break;
                    case 2: pv_rows<BF, 2>(rows, pbuf, kBk, vp + c * E::P, z.dvp, npairs, o + c, z.dvp, alpha); break;
                    case 3: pv_rows<BF, 3>(rows, pbuf, kBk, vp + c * E::P, z.dvp, npairs, o + c, z.dvp, alpha); break;
                    default: break;
                }
            }
            for (int64_t r = 0; r < rows; ++r) {
                const float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
                float* dst = out + b * ob + h * oh + (q0 + r) * ol;
                const float* src = o + r * z.dvp;
                for (int64_t c = 0; c < z.dv; c += 16) {
                    const __mmask16 mk = tail_mask(z.dv - c);
                    _mm512_mask_storeu_ps(dst + c, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, src + c), _mm512_set1_ps(inv)));
                }
            }
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
    Dims z{B, H, Lq, Lk, d, dv, (d + P - 1) / P, 0, round_up(dv, 16), round_up(Lk, 16)};
    z.dk = z.dp * P;
    const int nthreads = omp_get_max_threads();
    const int64_t thread_bytes = round_up(kRq * z.dk * es, 64) + kRq * kBk * (4 + es) + kRq * z.dvp * 4 + 3 * kRq * 4 + 64;
    Scratch kpack((size_t)(B * H * z.Lkp * z.dk * es)), vpack((size_t)(B * H * z.Lkp * z.dvp * es));
    Scratch threads((size_t)(nthreads * round_up(thread_bytes, 64)));
    if (bf16)
        run<true>(q, k, v, out, ob, oh, ol, z, scale, causal, kpack.p, vpack.p, threads.p, round_up(thread_bytes, 64), nthreads);
    else
        run<false>(q, k, v, out, ob, oh, ol, z, scale, causal, kpack.p, vpack.p, threads.p, round_up(thread_bytes, 64), nthreads);
}

}  // namespace nuance::cpu
