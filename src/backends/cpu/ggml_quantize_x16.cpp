// The K-quant / IQ4 scale searches of ggml_quantize.cpp, 16 sub-blocks per call, one per AVX-512 lane. Built with
// -ffp-contract=off (CMakeLists.txt) like the scalar code: every product and sum is its own rounding, in the scalar
// loops' order, so each lane's float32 results are the scalar search's exactly (ggml_quantize.cpp's test compares the
// two on every type). The searches run 16-21 trial scales over each sub-block; the scalar code spent ~95% of a
// K-quant's time there.
//
// Legend as in ggml_quantize.cpp: X[i] the i-th value of each lane's sub-block, W[i] its weight, L / Laux quants,
// mn / mx the sub-block's extremes, D the least-squares determinant.
#include "backends/cpu/ggml_quantize_x16.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's own _mm512_undefined_* placeholders

namespace nuance::ggml_x16 {

namespace {

#define NUANCE_X16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

constexpr int kMaxN = 32;
constexpr float kGroupMaxEps = 1e-15f;
constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// ggml's nearest_int on 16 lanes: the float mantissa trick, ties to even.
NUANCE_X16 inline __m512i nearest_int(__m512 v) {
    const __m512i i = _mm512_castps_si512(_mm512_add_ps(v, _mm512_set1_ps(12582912.0f)));
    return _mm512_sub_epi32(_mm512_and_si512(i, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x00400000));
}

NUANCE_X16 inline __m512i clamp(__m512i v, int lo, int hi) {
    return _mm512_min_epi32(_mm512_max_epi32(v, _mm512_set1_epi32(lo)), _mm512_set1_epi32(hi));
}

NUANCE_X16 inline __m512 neg(__m512 v) { return _mm512_xor_ps(v, _mm512_set1_ps(-0.0f)); }

// X[i] = value i of sub-block j in lane j (lanes >= count repeat lanes 0..count-1; their results are dropped). False
// when a value of the `count` sub-blocks is NaN or infinite.
NUANCE_X16 bool load_transposed(const float* x, int n, int count, __m512* X) {
    alignas(64) int32_t idx[16];
    for (int j = 0; j < 16; ++j) idx[j] = (j % count) * n;
    const __m512i base = _mm512_load_si512(idx);
    constexpr int kNanOrInf = 0x01 | 0x08 | 0x10 | 0x80;
    __mmask16 bad = 0;
    for (int i = 0; i < n; ++i) {
        X[i] = _mm512_i32gather_ps(_mm512_add_epi32(base, _mm512_set1_epi32(i)), x, 4);
        bad |= _mm512_fpclass_ps_mask(X[i], kNanOrInf);
    }
    return bad == 0;
}

NUANCE_X16 void store_lanes(__m512 v, int count, float* out) {
    alignas(64) float t[16];
    _mm512_store_ps(t, v);
    std::memcpy(out, t, sizeof(float) * (size_t)count);
}

template <typename T>
NUANCE_X16 void store_quants(const __m512i* L, int n, int count, T* out) {
    alignas(64) int32_t t[16];
    for (int i = 0; i < n; ++i) {
        _mm512_store_si512(t, L[i]);
        for (int j = 0; j < count; ++j) out[j * n + i] = (T)t[j];
    }
}

// The weighted error term: |diff| (Q2_K's mean absolute deviation) or diff^2.
NUANCE_X16 inline __m512 error_term(__m512 diff, bool use_mad) {
    return use_mad ? _mm512_abs_ps(diff) : _mm512_mul_ps(diff, diff);
}

// The signed value of largest magnitude per lane (the first one on ties) and that magnitude.
NUANCE_X16 void signed_absmax(const __m512* X, int n, __m512& amax, __m512& max) {
    amax = _mm512_setzero_ps();
    max = _mm512_setzero_ps();
    for (int i = 0; i < n; ++i) {
        const __m512 a = _mm512_abs_ps(X[i]);
        const __mmask16 gt = _mm512_cmp_ps_mask(a, amax, _CMP_GT_OQ);
        amax = _mm512_mask_mov_ps(amax, gt, a);
        max = _mm512_mask_mov_ps(max, gt, X[i]);
    }
}

// ggml's best_index_int8 on 16 lanes: the largest k with kIq4Values[k] <= v by bisection, then the nearer of k and
// k + 1 (ties to the upper one), as the scalar iq4_index.
NUANCE_X16 inline __m512i iq4_index(__m512 v, __m512 table) {
    __m512i lo = _mm512_setzero_si512();
    for (int step : {8, 4, 2, 1}) {
        const __m512i cand = _mm512_add_epi32(lo, _mm512_set1_epi32(step));
        const __mmask16 ge = _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(cand, table), _CMP_GE_OQ);
        lo = _mm512_mask_mov_epi32(lo, ge, cand);
    }
    lo = _mm512_min_epi32(lo, _mm512_set1_epi32(14));
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(1));
    const __m512 below = _mm512_sub_ps(v, _mm512_permutexvar_ps(lo, table));
    const __m512 above = _mm512_sub_ps(_mm512_permutexvar_ps(hi, table), v);
    return _mm512_mask_mov_epi32(hi, _mm512_cmp_ps_mask(below, above, _CMP_LT_OQ), lo);
}

}  // namespace

bool available() {
    static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    return ok;
}

NUANCE_X16 bool make_qkx2_quants(int n, int count, int nmax, const float* x, QkxWeights weights, float rmin,
                                 float rdelta, int nstep, bool use_mad, uint8_t* Lout, float* scales, float* mins) {
    if (n < 1 || n > kMaxN || count < 1 || count > 16) return false;
    __m512 X[kMaxN], W[kMaxN];
    __m512i L[kMaxN], Laux[kMaxN];
    if (!load_transposed(x, n, count, X)) return false;
    if (weights == QkxWeights::RmsPlusAbs) {
        __m512 sum_x2 = _mm512_setzero_ps();
        for (int i = 0; i < n; ++i) sum_x2 = _mm512_add_ps(sum_x2, _mm512_mul_ps(X[i], X[i]));
        const __m512 av_x = _mm512_sqrt_ps(_mm512_div_ps(sum_x2, _mm512_set1_ps((float)n)));
        for (int i = 0; i < n; ++i) W[i] = _mm512_add_ps(av_x, _mm512_abs_ps(X[i]));
    } else {
        for (int i = 0; i < n; ++i) W[i] = _mm512_abs_ps(X[i]);
    }
    __m512 mn = X[0], mx = X[0], sum_w = W[0], sum_x = _mm512_mul_ps(W[0], X[0]);
    for (int i = 1; i < n; ++i) {
        mn = _mm512_min_ps(X[i], mn);  // x < min ? x : min
        mx = _mm512_max_ps(X[i], mx);
        sum_w = _mm512_add_ps(sum_w, W[i]);
        sum_x = _mm512_add_ps(sum_x, _mm512_mul_ps(W[i], X[i]));
    }
    const __m512 zero = _mm512_setzero_ps();
    mn = _mm512_mask_mov_ps(mn, _mm512_cmp_ps_mask(mn, zero, _CMP_GT_OQ), zero);
    const __mmask16 flat = _mm512_cmp_ps_mask(mx, mn, _CMP_EQ_OQ);
    const __m512 mn_flat = mn;
    __m512 iscale = _mm512_div_ps(_mm512_set1_ps((float)nmax), _mm512_sub_ps(mx, mn));
    __m512 scale = _mm512_div_ps(_mm512_set1_ps(1.0f), iscale), best = zero;
    for (int i = 0; i < n; ++i) {
        L[i] = clamp(nearest_int(_mm512_mul_ps(iscale, _mm512_sub_ps(X[i], mn))), 0, nmax);
        const __m512 diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale, _mm512_cvtepi32_ps(L[i])), mn), X[i]);
        best = _mm512_add_ps(best, _mm512_mul_ps(W[i], error_term(diff, use_mad)));
    }
    for (int is = 0; is <= nstep; ++is) {
        const float num = rmin + rdelta * (float)is + (float)nmax;
        iscale = _mm512_div_ps(_mm512_set1_ps(num), _mm512_sub_ps(mx, mn));  // mn: the best trial's minimum so far
        __m512 sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; ++i) {
            Laux[i] = clamp(nearest_int(_mm512_mul_ps(iscale, _mm512_sub_ps(X[i], mn))), 0, nmax);
            const __m512 l = _mm512_cvtepi32_ps(Laux[i]);
            const __m512 wl = _mm512_mul_ps(W[i], l);
            sum_l = _mm512_add_ps(sum_l, wl);
            sum_l2 = _mm512_add_ps(sum_l2, _mm512_mul_ps(wl, l));
            sum_xl = _mm512_add_ps(sum_xl, _mm512_mul_ps(wl, X[i]));
        }
        const __m512 D = _mm512_sub_ps(_mm512_mul_ps(sum_w, sum_l2), _mm512_mul_ps(sum_l, sum_l));
        const __mmask16 ok = _mm512_cmp_ps_mask(D, zero, _CMP_NLE_UQ);  // the scalar `if (D <= 0) continue`
        if (!ok) continue;
        __m512 this_scale = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sum_w, sum_xl), _mm512_mul_ps(sum_x, sum_l)), D);
        __m512 this_min = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sum_l2, sum_x), _mm512_mul_ps(sum_l, sum_xl)), D);
        const __mmask16 pos = _mm512_cmp_ps_mask(this_min, zero, _CMP_GT_OQ);
        this_min = _mm512_mask_mov_ps(this_min, pos, zero);
        this_scale = _mm512_mask_mov_ps(this_scale, pos, _mm512_div_ps(sum_xl, sum_l2));
        __m512 err = zero;
        for (int i = 0; i < n; ++i) {
            const __m512 diff = _mm512_sub_ps(
                _mm512_add_ps(_mm512_mul_ps(this_scale, _mm512_cvtepi32_ps(Laux[i])), this_min), X[i]);
            err = _mm512_add_ps(err, _mm512_mul_ps(W[i], error_term(diff, use_mad)));
        }
        const __mmask16 better = ok & _mm512_cmp_ps_mask(err, best, _CMP_LT_OQ);
        if (!better) continue;
        for (int i = 0; i < n; ++i) L[i] = _mm512_mask_mov_epi32(L[i], better, Laux[i]);
        best = _mm512_mask_mov_ps(best, better, err);
        scale = _mm512_mask_mov_ps(scale, better, this_scale);
        mn = _mm512_mask_mov_ps(mn, better, this_min);
    }
    // A constant sub-block: all quants 0, scale 0, its (clamped) minimum.
    for (int i = 0; i < n; ++i) L[i] = _mm512_mask_mov_epi32(L[i], flat, _mm512_setzero_si512());
    scale = _mm512_mask_mov_ps(scale, flat, zero);
    mn = _mm512_mask_mov_ps(mn, flat, mn_flat);
    store_quants(L, n, count, Lout);
    store_lanes(scale, count, scales);
    store_lanes(neg(mn), count, mins);
    return true;
}

NUANCE_X16 bool make_qx_quants(int n, int count, int nmax, const float* x, int8_t* Lout, float* scales) {
    if (n < 1 || n > kMaxN || count < 1 || count > 16) return false;
    __m512 X[kMaxN], W[kMaxN];
    __m512i L[kMaxN], Laux[kMaxN];
    if (!load_transposed(x, n, count, X)) return false;
    __m512 amax, max;
    signed_absmax(X, n, amax, max);
    const __m512 zero = _mm512_setzero_ps();
    const __mmask16 flat = _mm512_cmp_ps_mask(_mm512_abs_ps(max), _mm512_set1_ps(kGroupMaxEps), _CMP_LT_OQ);
    const __m512i offset = _mm512_set1_epi32(nmax);
    __m512 iscale = _mm512_div_ps(_mm512_set1_ps((float)-nmax), max), sumlx = zero, suml2 = zero;
    for (int i = 0; i < n; ++i) {
        const __m512i l = clamp(nearest_int(_mm512_mul_ps(iscale, X[i])), -nmax, nmax - 1);
        L[i] = _mm512_add_epi32(l, offset);
        const __m512 lf = _mm512_cvtepi32_ps(l);
        W[i] = _mm512_mul_ps(X[i], X[i]);
        sumlx = _mm512_add_ps(sumlx, _mm512_mul_ps(_mm512_mul_ps(W[i], X[i]), lf));
        suml2 = _mm512_add_ps(suml2, _mm512_mul_ps(_mm512_mul_ps(W[i], lf), lf));
    }
    __m512 scale = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(suml2, zero, _CMP_NEQ_UQ), sumlx, suml2);
    __m512 best = _mm512_mul_ps(scale, sumlx);
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        const float num = -((float)nmax + 0.1f * (float)is);
        iscale = _mm512_div_ps(_mm512_set1_ps(num), max);
        sumlx = suml2 = zero;
        for (int i = 0; i < n; ++i) {
            Laux[i] = clamp(nearest_int(_mm512_mul_ps(iscale, X[i])), -nmax, nmax - 1);
            const __m512 lf = _mm512_cvtepi32_ps(Laux[i]);
            sumlx = _mm512_add_ps(sumlx, _mm512_mul_ps(_mm512_mul_ps(W[i], X[i]), lf));
            suml2 = _mm512_add_ps(suml2, _mm512_mul_ps(_mm512_mul_ps(W[i], lf), lf));
        }
        const __mmask16 better = _mm512_cmp_ps_mask(suml2, zero, _CMP_GT_OQ) &
                                 _mm512_cmp_ps_mask(_mm512_mul_ps(sumlx, sumlx), _mm512_mul_ps(best, suml2), _CMP_GT_OQ);
        if (!better) continue;
        for (int i = 0; i < n; ++i) L[i] = _mm512_mask_mov_epi32(L[i], better, _mm512_add_epi32(Laux[i], offset));
        const __m512 s = _mm512_div_ps(sumlx, suml2);
        scale = _mm512_mask_mov_ps(scale, better, s);
        best = _mm512_mask_mov_ps(best, better, _mm512_mul_ps(s, sumlx));
    }
    for (int i = 0; i < n; ++i) L[i] = _mm512_mask_mov_epi32(L[i], flat, _mm512_setzero_si512());
    scale = _mm512_mask_mov_ps(scale, flat, zero);
    store_quants(L, n, count, Lout);
    store_lanes(scale, count, scales);
    return true;
}

NUANCE_X16 bool make_q3_quants(int n, int count, int nmax, const float* x, int8_t* Lout, float* scales) {
    if (n < 1 || n > kMaxN || count < 1 || count > 16) return false;
    __m512 X[kMaxN], W[kMaxN];
    __m512i L[kMaxN];
    if (!load_transposed(x, n, count, X)) return false;
    __m512 amax, max;
    signed_absmax(X, n, amax, max);
    const __m512 zero = _mm512_setzero_ps();
    const __mmask16 flat = _mm512_cmp_ps_mask(_mm512_abs_ps(max), _mm512_set1_ps(kGroupMaxEps), _CMP_LT_OQ);
    const __m512 iscale = _mm512_div_ps(_mm512_set1_ps((float)-nmax), max);
    __m512 sumlx = zero, suml2 = zero;
    for (int i = 0; i < n; ++i) {
        L[i] = clamp(nearest_int(_mm512_mul_ps(iscale, X[i])), -nmax, nmax - 1);
        const __m512 l = _mm512_cvtepi32_ps(L[i]);
        W[i] = _mm512_mul_ps(X[i], X[i]);
        sumlx = _mm512_add_ps(sumlx, _mm512_mul_ps(_mm512_mul_ps(W[i], X[i]), l));
        suml2 = _mm512_add_ps(suml2, _mm512_mul_ps(_mm512_mul_ps(W[i], l), l));
    }
    // A lane whose pass changes nothing would change nothing in a later pass either (its state is the same): the
    // passes run while any lane changes, as the scalar loop's `break` per sub-block.
    for (int itry = 0; itry < 5; ++itry) {
        __mmask16 changed = 0;
        for (int i = 0; i < n; ++i) {
            const __m512 li = _mm512_cvtepi32_ps(L[i]);
            const __m512 wx = _mm512_mul_ps(W[i], X[i]);
            __m512 slx = _mm512_sub_ps(sumlx, _mm512_mul_ps(wx, li));
            const __mmask16 pos = _mm512_cmp_ps_mask(slx, zero, _CMP_GT_OQ);
            if (!pos) continue;
            __m512 sl2 = _mm512_sub_ps(suml2, _mm512_mul_ps(_mm512_mul_ps(W[i], li), li));
            const __m512i nl = clamp(nearest_int(_mm512_div_ps(_mm512_mul_ps(X[i], sl2), slx)), -nmax, nmax - 1);
            const __mmask16 differ = pos & _mm512_cmp_epi32_mask(nl, L[i], _MM_CMPINT_NE);
            if (!differ) continue;
            const __m512 nlf = _mm512_cvtepi32_ps(nl);
            slx = _mm512_add_ps(slx, _mm512_mul_ps(wx, nlf));
            sl2 = _mm512_add_ps(sl2, _mm512_mul_ps(_mm512_mul_ps(W[i], nlf), nlf));
            const __m512 lhs = _mm512_mul_ps(_mm512_mul_ps(slx, slx), suml2);
            const __m512 rhs = _mm512_mul_ps(_mm512_mul_ps(sumlx, sumlx), sl2);
            const __mmask16 take = differ & _mm512_cmp_ps_mask(sl2, zero, _CMP_GT_OQ) &
                                   _mm512_cmp_ps_mask(lhs, rhs, _CMP_GT_OQ);
            L[i] = _mm512_mask_mov_epi32(L[i], take, nl);
            sumlx = _mm512_mask_mov_ps(sumlx, take, slx);
            suml2 = _mm512_mask_mov_ps(suml2, take, sl2);
            changed |= take;
        }
        if (!changed) break;
    }
    const __m512i offset = _mm512_set1_epi32(nmax);
    for (int i = 0; i < n; ++i)
        L[i] = _mm512_mask_mov_epi32(_mm512_add_epi32(L[i], offset), flat, _mm512_setzero_si512());
    __m512 scale = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(suml2, zero, _CMP_GT_OQ), sumlx, suml2);
    scale = _mm512_mask_mov_ps(scale, flat, zero);
    store_quants(L, n, count, Lout);
    store_lanes(scale, count, scales);
    return true;
}

NUANCE_X16 bool iq4_scales(int count, const float* x, float* scales) {
    constexpr int n = 32, ntry = 7;
    if (count < 1 || count > 16) return false;
    __m512 X[n], W[n];
    if (!load_transposed(x, n, count, X)) return false;
    alignas(64) float tv[16];
    for (int k = 0; k < 16; ++k) tv[k] = (float)kIq4Values[k];
    const __m512 table = _mm512_load_ps(tv), zero = _mm512_setzero_ps();
    for (int i = 0; i < n; ++i) W[i] = _mm512_mul_ps(X[i], X[i]);
    __m512 amax, max;
    signed_absmax(X, n, amax, max);
    const __mmask16 flat = _mm512_cmp_ps_mask(amax, _mm512_set1_ps(kGroupMaxEps), _CMP_LT_OQ);
    __m512 d = _mm512_div_ps(neg(max), _mm512_set1_ps((float)kIq4Values[0]));
    __m512 id = _mm512_div_ps(_mm512_set1_ps(1.0f), d);
    __m512 sumqx = zero, sumq2 = zero;
    for (int i = 0; i < n; ++i) {
        const __m512 q = _mm512_permutexvar_ps(iq4_index(_mm512_mul_ps(id, X[i]), table), table);
        const __m512 wq = _mm512_mul_ps(W[i], q);
        sumqx = _mm512_add_ps(sumqx, _mm512_mul_ps(wq, X[i]));
        sumq2 = _mm512_add_ps(sumq2, _mm512_mul_ps(wq, q));
    }
    d = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(sumq2, zero, _CMP_GT_OQ), sumqx, sumq2);
    __m512 best = _mm512_mul_ps(d, sumqx);
    for (int itry = -ntry; itry <= ntry; ++itry) {
        id = _mm512_div_ps(_mm512_set1_ps((float)(itry + kIq4Values[0])), max);
        sumqx = sumq2 = zero;
        for (int i = 0; i < n; ++i) {
            const __m512 q = _mm512_permutexvar_ps(iq4_index(_mm512_mul_ps(id, X[i]), table), table);
            const __m512 wq = _mm512_mul_ps(W[i], q);
            sumqx = _mm512_add_ps(sumqx, _mm512_mul_ps(wq, X[i]));
            sumq2 = _mm512_add_ps(sumq2, _mm512_mul_ps(wq, q));
        }
        const __mmask16 better = _mm512_cmp_ps_mask(sumq2, zero, _CMP_GT_OQ) &
                                 _mm512_cmp_ps_mask(_mm512_mul_ps(sumqx, sumqx), _mm512_mul_ps(best, sumq2), _CMP_GT_OQ);
        const __m512 s = _mm512_div_ps(sumqx, sumq2);
        d = _mm512_mask_mov_ps(d, better, s);
        best = _mm512_mask_mov_ps(best, better, _mm512_mul_ps(s, sumqx));
    }
    store_lanes(_mm512_mask_mov_ps(d, flat, zero), count, scales);
    return true;
}

}  // namespace nuance::ggml_x16
