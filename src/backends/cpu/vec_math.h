// Vectorised float math for the elementwise and norm kernels (AVX2 + FMA, the project's baseline ISA).
// exp: Cephes-style range reduction (x = k ln2 + r) and a degree-6 polynomial, within 2 ulp of std::exp on
// [-87, 88]; erf: Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), enough for GELU's 0.5 x (1 + erf(x / sqrt 2)).
// Shape letters: n element count.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace nuance::cpu {

inline __m256 exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447505531f);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline __m256 silu8(__m256 x) {  // x / (1 + exp(-x))
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// d/dx SiLU = σ(x)·(1 + x·(1 − σ(x))) (the activation backward and GroupNorm+SiLU's backward)
inline __m256 silu_grad8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
    return _mm256_mul_ps(s, _mm256_fmadd_ps(x, _mm256_sub_ps(one, s), one));
}

inline __m256 erf8(__m256 x) {
    const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a, _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
    const __m256 y = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f));
    return _mm256_or_ps(y, sign);
}

inline __m256 gelu8(__m256 x) {  // 0.5 x (1 + erf(x / sqrt 2))
    const __m256 e = erf8(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// GELU, tanh approximation: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), computed as the identical
// x / (1 + exp(-2u)) (0.5 (1 + tanh u) = sigmoid(2u)); exp8's clamp keeps both tails finite.
inline __m256 gelu_tanh8(__m256 x) {
    const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    const __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
    const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// Scalar tails use the same formulas through a one-lane vector, so every element gets identical rounding.
template <__m256 (*F)(__m256)>
inline float scalar_via8(float v) {
    float o[8];
    _mm256_storeu_ps(o, F(_mm256_set1_ps(v)));
    return o[0];
}

template <__m256 (*F)(__m256)>
inline void map_n(const float* in, float* out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, F(_mm256_loadu_ps(in + i)));
    for (; i < n; ++i) out[i] = scalar_via8<F>(in[i]);
}

// row <- softmax(row * scale) over n floats; sum in double for rows of thousands.
inline void softmax_row(float* row, int64_t n, float scale) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(row + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, vm);
    float m = -INFINITY;
    for (float v : lanes) m = v > m ? v : m;
    for (; i < n; ++i) m = row[i] > m ? row[i] : m;
    if (m == -INFINITY) m = 0;  // an all-masked row gives zeros, not NaN
    const __m256 vs = _mm256_set1_ps(scale), vms = _mm256_set1_ps(-m * scale);
    __m256 acc = _mm256_setzero_ps();
    i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_fmadd_ps(_mm256_loadu_ps(row + i), vs, vms));
        acc = _mm256_add_ps(acc, e);
        _mm256_storeu_ps(row + i, e);
    }
    _mm256_storeu_ps(lanes, acc);
    double sum = 0;
    for (float v : lanes) sum += v;
    for (; i < n; ++i) {
        row[i] = scalar_via8<exp8>(row[i] * scale - m * scale);
        sum += row[i];
    }
    const __m256 inv = _mm256_set1_ps(sum > 0 ? (float)(1.0 / sum) : 0.0f);
    i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), inv));
    for (; i < n; ++i) row[i] *= sum > 0 ? (float)(1.0 / sum) : 0.0f;
}

// f32 -> bf16 with round-to-nearest-even (NaN kept quiet), as torch and oneDNN convert.
inline void f32_to_bf16_n(const float* in, uint16_t* out, int64_t n) {
    int64_t i = 0;
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(in + i);
        const __m256i b = _mm256_castps_si256(v);
        __m256i r = _mm256_add_epi32(b, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(b, 16), one)));
        const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        r = _mm256_blendv_epi8(r, _mm256_or_si256(b, _mm256_set1_epi32(0x400000)), _mm256_castps_si256(nan));
        r = _mm256_srli_epi32(r, 16);
        const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), packed);
    }
    for (; i < n; ++i) {
        uint32_t b;
        __builtin_memcpy(&b, in + i, 4);
        if (std::isnan(in[i])) { out[i] = (uint16_t)((b | 0x400000) >> 16); continue; }
        out[i] = (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
    }
}

}  // namespace nuance::cpu
