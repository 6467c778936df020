// ggml block quantization (gguf-py's quants.quantize, ggml's quantize_row_*_ref): the f32 -> block direction of
// ggml_quants.cpp, the 32-value types here; the K-quants Q2_K .. Q6_K and IQ4 in ggml_quantize_k.cpp. Built with -ffp-contract=off: the scale and the quants are computed in float32 with one rounding
// per operation, as numpy does, so the bytes match gguf-py's exactly.
//
// Legend: x one block of QK = 32 values, amax / max / min its extremes, d the scale (stored f16), id = 1 / d, q the
// integer quants, qs the packed nibbles (q[j] low, q[j + 16] high), qh the fifth bits (bit j of a u32 = bit 4 of q[j]).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/ggml_quantize_k.h"
#include "backends/cpu/ggml_quants.h"
#include "core/checked.h"

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's own _mm512_undefined_* placeholders

namespace nuance {

namespace {

using namespace ggml_q;  // QK, put_f16, signed_absmax, clampi; the K-quant and IQ4 block quantizers

// gguf-py's np_roundf: round half away from zero, computed in float32.
inline float roundf_ggml(float n) {
    const float a = std::fabs(n);
    const float fl = std::floor(a);
    const float b = fl + std::floor(2.0f * (a - fl));
    return n < 0 ? -b : (n > 0 ? b : 0.0f * b);
}

inline float inverse(float d) { return d == 0 ? 0.0f : 1.0f / d; }

void q8_0(const float* x, uint8_t* y) {
    float amax = 0;
    for (int j = 0; j < QK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = inverse(d);
    put_f16(y, d);
    for (int j = 0; j < QK; ++j) y[2 + j] = (uint8_t)(int8_t)roundf_ggml(x[j] * id);
}

// q8_0 on AVX-512, the same float32 operations lane by lane (|x| max, d = amax / 127, id = 1 / d, x * id rounded half
// away from zero as floor(a) + floor(2 (a - floor(a)))), so the same bytes; false (nothing written) for a block
// with a NaN or an infinity, which the scalar code handles.
#define NUANCE_AVX512_QUANT __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

// round_ggml(v * id) for 16 lanes, as int32.
NUANCE_AVX512_QUANT inline __m512i q8_0_round(__m512 v, __m512 vid) {
    const __m512 n = _mm512_mul_ps(v, vid);
    const __m512 m = _mm512_abs_ps(n);
    const __m512 fl = _mm512_roundscale_ps(m, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512 half = _mm512_mul_ps(_mm512_set1_ps(2.0f), _mm512_sub_ps(m, fl));
    const __m512 r = _mm512_add_ps(fl, _mm512_roundscale_ps(half, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
    const __mmask16 neg = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512i q = _mm512_cvttps_epi32(r);
    return _mm512_mask_sub_epi32(q, neg, _mm512_setzero_si512(), q);
}

NUANCE_AVX512_QUANT bool q8_0_avx512(const float* x, uint8_t* y) {
    const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    constexpr int kNanOrInf = 0x01 | 0x08 | 0x10 | 0x80;  // QNaN, +Inf, -Inf, SNaN
    if (_mm512_fpclass_ps_mask(a, kNanOrInf) | _mm512_fpclass_ps_mask(b, kNanOrInf)) return false;
    const __m512 aa = _mm512_abs_ps(a), ab = _mm512_abs_ps(b);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(aa, ab));
    const float d = amax / 127.0f, id = inverse(d);
    put_f16(y, d);
    const __m512 vid = _mm512_set1_ps(id);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 2), _mm512_cvtepi32_epi8(q8_0_round(a, vid)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 18), _mm512_cvtepi32_epi8(q8_0_round(b, vid)));
    return true;
}

bool has_avx512_quantizer() {
    static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    return ok;
}

void q4_0(const float* x, uint8_t* y) {
    const float d = signed_absmax(x) / -8.0f, id = inverse(d);
    put_f16(y, d);
    for (int j = 0; j < 16; ++j) {
        const int a = clampi((int)std::trunc(x[j] * id + 8.5f), 0, 15);
        const int b = clampi((int)std::trunc(x[j + 16] * id + 8.5f), 0, 15);
        y[2 + j] = (uint8_t)(a | (b << 4));
    }
}

void q4_1(const float* x, uint8_t* y) {
    float max = x[0], min = x[0];
    for (int j = 1; j < QK; ++j) {
        max = std::fmax(max, x[j]);
        min = std::fmin(min, x[j]);
    }
    const float d = (max - min) / 15.0f, id = inverse(d);
    put_f16(y, d);
    put_f16(y + 2, min);
    for (int j = 0; j < 16; ++j) {
        const int a = clampi((int)std::trunc((x[j] - min) * id + 0.5f), 0, 15);
        const int b = clampi((int)std::trunc((x[j + 16] - min) * id + 0.5f), 0, 15);
        y[4 + j] = (uint8_t)(a | (b << 4));
    }
}

void pack5(const int* q, uint8_t* qh_out, uint8_t* qs) {
    uint32_t qh = 0;
    for (int j = 0; j < QK; ++j) qh |= (uint32_t)((q[j] >> 4) & 1) << j;
    std::memcpy(qh_out, &qh, 4);
    for (int j = 0; j < 16; ++j) qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
}

void q5_0(const float* x, uint8_t* y) {
    const float d = signed_absmax(x) / -16.0f, id = inverse(d);
    put_f16(y, d);
    int q[QK];
    for (int j = 0; j < QK; ++j) q[j] = clampi((int)std::trunc(x[j] * id + 16.5f), 0, 31);
    pack5(q, y + 2, y + 6);
}

void q5_1(const float* x, uint8_t* y) {
    float max = x[0], min = x[0];
    for (int j = 1; j < QK; ++j) {
        max = std::fmax(max, x[j]);
        min = std::fmin(min, x[j]);
    }
    const float d = (max - min) / 31.0f, id = inverse(d);
    put_f16(y, d);
    put_f16(y + 2, min);
    int q[QK];
    for (int j = 0; j < QK; ++j) q[j] = clampi((int)std::trunc((x[j] - min) * id + 0.5f), 0, 31);
    pack5(q, y + 4, y + 8);
}


}  // namespace

bool can_quantize(GgmlType t) {
    switch (t) {
        case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q8_0: case GgmlType::Q4_0:
        case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q2_K: case GgmlType::Q3_K:
        case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K: case GgmlType::IQ4_NL: case GgmlType::IQ4_XS:
            return true;
        default: return false;
    }
}

namespace {

void quantize_row_impl(GgmlType t, const float* x, void* dst, int64_t n, bool vector) {
    const GgmlTypeInfo& ti = ggml_type_info(t);
    NUANCE_CHECK(can_quantize(t), "quantize: ggml type ", ti.name, " has no quantizer yet");
    NUANCE_CHECK(n >= 0 && n % ti.block == 0, "quantize: a ", ti.name, " row of ", n,
                 " values is not a whole number of ", ti.block, "-value blocks");
    auto* y = static_cast<uint8_t*>(dst);
    switch (t) {
        case GgmlType::F32: std::memcpy(y, x, (size_t)n * 4); return;
        case GgmlType::F16:
            for (int64_t i = 0; i < n; ++i) put_f16(y + 2 * i, x[i]);
            return;
        case GgmlType::BF16:
            for (int64_t i = 0; i < n; ++i) {
                const uint16_t h = f32_to_bf16(x[i]);
                std::memcpy(y + 2 * i, &h, 2);
            }
            return;
        default: break;
    }
    if (vector && t == GgmlType::Q8_0 && has_avx512_quantizer()) {
        for (int64_t b = 0; b < n / QK; ++b)
            if (!q8_0_avx512(x + b * QK, y + b * ti.bytes)) q8_0(x + b * QK, y + b * ti.bytes);
        return;
    }
    if (vector && quantize_blocks_x16(t, x, y, n / ti.block)) return;
    void (*f)(const float*, uint8_t*) = t == GgmlType::Q8_0   ? q8_0
                                        : t == GgmlType::Q4_0 ? q4_0
                                        : t == GgmlType::Q4_1 ? q4_1
                                        : t == GgmlType::Q5_0 ? q5_0
                                        : t == GgmlType::Q5_1 ? q5_1
                                        : t == GgmlType::Q2_K ? q2_k
                                        : t == GgmlType::Q3_K ? q3_k
                                        : t == GgmlType::Q4_K ? q4_k
                                        : t == GgmlType::Q5_K ? q5_k
                                        : t == GgmlType::Q6_K ? q6_k
                                        : t == GgmlType::IQ4_NL ? iq4_nl
                                                                : iq4_xs;
    for (int64_t b = 0; b < n / ti.block; ++b) f(x + b * ti.block, y + b * ti.bytes);
}

}  // namespace

void quantize_row(GgmlType t, const float* x, void* dst, int64_t n) { quantize_row_impl(t, x, dst, n, true); }
void quantize_row_scalar(GgmlType t, const float* x, void* dst, int64_t n) { quantize_row_impl(t, x, dst, n, false); }

QuantizedTensor quantize(const Tensor& x, GgmlType t) {
    const GgmlTypeInfo& ti = ggml_type_info(t);
    const Tensor f = x.f32().contiguous();
    QuantizedTensor q;
    q.type = t;
    q.shape = x.shape();
    const int64_t n = q.row_length();
    NUANCE_CHECK(n % ti.block == 0, "quantize: tensor ", x.str(), ": the last dimension ", n,
                 " is not a multiple of the ", ti.name, " block size ", ti.block);
    const int64_t rows = n == 0 ? 0 : f.numel() / n;
    const int64_t row_bytes = n / ti.block * ti.bytes;
    q.packed = Tensor::empty({rows, row_bytes}, DType::U8);
    const float* src = f.data<float>();
    uint8_t* dst = q.packed.data<uint8_t>();
#pragma omp parallel for schedule(static) if (rows * n > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, src + r * n, dst + r * row_bytes, n);
    return q;
}

}  // namespace nuance
