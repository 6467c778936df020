// ggml block dequantization: scalar reference (ggml-quants.c's dequantize_row_*, straight) and AVX2 kernels for the
// common types. Built with -ffp-contract=off (CMakeLists.txt): ggml's reference and gguf-py compute d * q - m as a
// rounded product then a rounded difference, and a fused multiply-add would differ in the last bit.
//
// Legend: n values per row, QK = 32 (legacy blocks), QK_K = 256 (K-quant super-blocks), d / dmin block scales (f16),
// qs / ql the low bits, qh / hmask the high bits, sc the 6- or 8-bit sub-block scales.
#include "backends/cpu/ggml_quants.h"
#include "backends/cpu/cpu_backend.h"
#include "core/checked.h"
#include "core/quantized_weight.h"

#include <array>
#include <cctype>
#include <cstring>
#include <immintrin.h>

namespace nuance {

namespace {

constexpr int64_t QK = 32;
constexpr int64_t QK_K = 256;

const GgmlTypeInfo kTypes[] = {
    {GgmlType::F32, "F32", 1, 4, true},        {GgmlType::F16, "F16", 1, 2, true},
    {GgmlType::Q4_0, "Q4_0", 32, 18, true},    {GgmlType::Q4_1, "Q4_1", 32, 20, true},
    {GgmlType::Q5_0, "Q5_0", 32, 22, true},    {GgmlType::Q5_1, "Q5_1", 32, 24, true},
    {GgmlType::Q8_0, "Q8_0", 32, 34, true},    {GgmlType::Q8_1, "Q8_1", 32, 36, false},
    {GgmlType::Q2_K, "Q2_K", 256, 84, true},   {GgmlType::Q3_K, "Q3_K", 256, 110, true},
    {GgmlType::Q4_K, "Q4_K", 256, 144, true},  {GgmlType::Q5_K, "Q5_K", 256, 176, true},
    {GgmlType::Q6_K, "Q6_K", 256, 210, true},  {GgmlType::Q8_K, "Q8_K", 256, 292, false},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 18, true}, {GgmlType::IQ4_XS, "IQ4_XS", 256, 136, true},
    {GgmlType::I8, "I8", 1, 1, false},         {GgmlType::I16, "I16", 1, 2, false},
    {GgmlType::I32, "I32", 1, 4, false},       {GgmlType::I64, "I64", 1, 8, false},
    {GgmlType::F64, "F64", 1, 8, false},       {GgmlType::BF16, "BF16", 1, 2, true},
    {GgmlType::F8_E4M3, "F8_E4M3", 1, 1, true}, {GgmlType::F8_E5M2, "F8_E5M2", 1, 1, true},
};

const int8_t kIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

inline float h2f(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return f16_to_f32(h);
}

// ggml's get_scale_min_k4: the j-th 6-bit scale and min of a Q4_K / Q5_K super-block.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

void deq_q4_0(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 18, y += QK) {
        const float d = h2f(x);
        for (int j = 0; j < 16; ++j) {
            y[j] = ((x[2 + j] & 0x0F) - 8) * d;
            y[j + 16] = ((x[2 + j] >> 4) - 8) * d;
        }
    }
}

void deq_q4_1(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 20, y += QK) {
        const float d = h2f(x), m = h2f(x + 2);
        for (int j = 0; j < 16; ++j) {
            y[j] = (x[4 + j] & 0x0F) * d + m;
            y[j + 16] = (x[4 + j] >> 4) * d + m;
        }
    }
}

void deq_q5_0(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 22, y += QK) {
        const float d = h2f(x);
        uint32_t qh;
        std::memcpy(&qh, x + 2, 4);
        const uint8_t* qs = x + 6;
        for (int j = 0; j < 16; ++j) {
            const uint8_t xh0 = ((qh >> j) << 4) & 0x10;
            const uint8_t xh1 = (qh >> (j + 12)) & 0x10;
            y[j] = (((qs[j] & 0x0F) | xh0) - 16) * d;
            y[j + 16] = (((qs[j] >> 4) | xh1) - 16) * d;
        }
    }
}

void deq_q5_1(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 24, y += QK) {
        const float d = h2f(x), m = h2f(x + 2);
        uint32_t qh;
        std::memcpy(&qh, x + 4, 4);
        const uint8_t* qs = x + 8;
        for (int j = 0; j < 16; ++j) {
            const uint8_t xh0 = ((qh >> j) << 4) & 0x10;
            const uint8_t xh1 = (qh >> (j + 12)) & 0x10;
            y[j] = ((qs[j] & 0x0F) | xh0) * d + m;
            y[j + 16] = ((qs[j] >> 4) | xh1) * d + m;
        }
    }
}

void deq_q8_0(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 34, y += QK) {
        const float d = h2f(x);
        for (int j = 0; j < QK; ++j) y[j] = (int8_t)x[2 + j] * d;
    }
}

// block_q2_K: scales[16], qs[64], d, dmin
void deq_q2_k(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 84) {
        const uint8_t* scales = x;
        const uint8_t* q = x + 16;
        const float d = h2f(x + 80), min = h2f(x + 82);
        int is = 0;
        for (int n = 0; n < QK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                uint8_t sc = scales[is++];
                float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;
                sc = scales[is++];
                dl = d * (sc & 0xF);
                ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3)) - ml;
                shift += 2;
            }
            q += 32;
        }
    }
}

// block_q3_K's 16 6-bit scales (12 bytes at offset 96), unpacked as ggml's dequantize_row_q3_K does (still offset by
// 32: the value's scale is scales[j] - 32).
void q3_k_scales(const uint8_t* x, int8_t scales[16]) {
    constexpr uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    std::memcpy(aux, x + 96, 12);
    const uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    std::memcpy(scales, aux, 16);
}

// block_q3_K: hmask[32], qs[64], scales[12], d
void deq_q3_k(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 110) {
        const uint8_t* hm = x;
        const uint8_t* q = x + 32;
        const float d_all = h2f(x + 108);
        int8_t scales[16];
        q3_k_scales(x, scales);
        int is = 0;
        uint8_t m = 1;
        for (int n = 0; n < QK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                float dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }
}

// block_q4_K: d, dmin, scales[12], qs[128]
void deq_q4_k(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 144) {
        const float d = h2f(x), min = h2f(x + 2);
        const uint8_t* scales = x + 4;
        const uint8_t* q = x + 16;
        int is = 0;
        uint8_t sc, m;
        for (int j = 0; j < QK_K; j += 64) {
            scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

// block_q5_K: d, dmin, scales[12], qh[32], qs[128]
void deq_q5_k(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 176) {
        const float d = h2f(x), min = h2f(x + 2);
        const uint8_t* scales = x + 4;
        const uint8_t* qh = x + 16;
        const uint8_t* ql = x + 48;
        int is = 0;
        uint8_t sc, m, u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K; j += 64) {
            scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

// block_q6_K: ql[128], qh[64], scales[16] (int8), d
void deq_q6_k(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 210) {
        const float d = h2f(x + 208);
        const uint8_t* ql = x;
        const uint8_t* qh = x + 128;
        const int8_t* sc = reinterpret_cast<const int8_t*>(x + 192);
        for (int n = 0; n < QK_K; n += 128) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

void deq_iq4_nl(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 18, y += QK) {
        const float d = h2f(x);
        for (int j = 0; j < 16; ++j) {
            y[j] = d * kIq4nl[x[2 + j] & 0xf];
            y[j + 16] = d * kIq4nl[x[2 + j] >> 4];
        }
    }
}

// block_iq4_xs: d, scales_h (u16), scales_l[4], qs[128]
void deq_iq4_xs(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 136) {
        const float d = h2f(x);
        uint16_t scales_h;
        std::memcpy(&scales_h, x + 2, 2);
        const uint8_t* scales_l = x + 4;
        const uint8_t* qs = x + 8;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int ls = ((scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((scales_h >> 2 * ib) & 3) << 4);
            const float dl = d * (ls - 32);
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * kIq4nl[qs[j] & 0xf];
                y[j + 16] = dl * kIq4nl[qs[j] >> 4];
            }
            y += 32;
            qs += 16;
        }
    }
}

#ifdef __AVX2__
inline void store_i8x16(float* y, __m128i q, __m256 d) {  // 16 int8 -> 16 floats * d
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8))), d));
}
inline void store_u8x16_dm(float* y, __m128i q, __m256 d, __m256 m) {  // 16 uint8 -> d * q - m
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q))), m));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                                                              _mm_srli_si128(q, 8)))), m));
}

void vdeq_q8_0(const uint8_t* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 34, y += QK) {
        const __m256 d = _mm256_set1_ps(h2f(x));
        store_i8x16(y, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 2)), d);
        store_i8x16(y + 16, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 18)), d);
    }
}

void vdeq_q4_0(const uint8_t* x, float* y, int64_t nb) {
    const __m128i lo = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t i = 0; i < nb; ++i, x += 18, y += QK) {
        const __m256 d = _mm256_set1_ps(h2f(x));
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 2));
        store_i8x16(y, _mm_sub_epi8(_mm_and_si128(q, lo), eight), d);
        store_i8x16(y + 16, _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), lo), eight), d);
    }
}

void vdeq_q4_k(const uint8_t* x, float* y, int64_t nb) {
    const __m128i lo = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; ++i, x += 144) {
        const float d = h2f(x), min = h2f(x + 2);
        const uint8_t* scales = x + 4;
        const uint8_t* q = x + 16;
        uint8_t sc, m;
        for (int is = 0; is < 8; is += 2, q += 32, y += 64) {
            scale_min_k4(is + 0, scales, &sc, &m);
            const __m256 d1 = _mm256_set1_ps(d * sc), m1 = _mm256_set1_ps(min * m);
            scale_min_k4(is + 1, scales, &sc, &m);
            const __m256 d2 = _mm256_set1_ps(d * sc), m2 = _mm256_set1_ps(min * m);
            for (int h = 0; h < 32; h += 16) {
                const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + h));
                store_u8x16_dm(y + h, _mm_and_si128(v, lo), d1, m1);
                store_u8x16_dm(y + 32 + h, _mm_and_si128(_mm_srli_epi16(v, 4), lo), d2, m2);
            }
        }
    }
}

void vdeq_q6_k(const uint8_t* x, float* y, int64_t nb) {
    const __m128i m0f = _mm_set1_epi8(0x0F), m03 = _mm_set1_epi8(0x03), m0c = _mm_set1_epi8(0x0C),
                  m30 = _mm_set1_epi8(0x30), k32 = _mm_set1_epi8(32);
    for (int64_t i = 0; i < nb; ++i, x += 210) {
        const float d = h2f(x + 208);
        const uint8_t* ql = x;
        const uint8_t* qh = x + 128;
        const int8_t* sc = reinterpret_cast<const int8_t*>(x + 192);
        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int h = 0; h < 2; ++h) {  // l in [16h, 16h + 16): sub-block scale index is = h
                const int l = 16 * h;
                const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ql + l));
                const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ql + l + 32));
                const __m128i hb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qh + l));
                const __m128i q1 = _mm_or_si128(_mm_and_si128(a, m0f), _mm_slli_epi16(_mm_and_si128(hb, m03), 4));
                const __m128i q2 = _mm_or_si128(_mm_and_si128(b, m0f), _mm_slli_epi16(_mm_and_si128(hb, m0c), 2));
                const __m128i q3 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(a, 4), m0f), _mm_and_si128(hb, m30));
                const __m128i q4 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(b, 4), m0f),
                                                _mm_and_si128(_mm_srli_epi16(hb, 2), m30));
                store_i8x16(y + l + 0, _mm_sub_epi8(q1, k32), _mm256_set1_ps(d * sc[h + 0]));
                store_i8x16(y + l + 32, _mm_sub_epi8(q2, k32), _mm256_set1_ps(d * sc[h + 2]));
                store_i8x16(y + l + 64, _mm_sub_epi8(q3, k32), _mm256_set1_ps(d * sc[h + 4]));
                store_i8x16(y + l + 96, _mm_sub_epi8(q4, k32), _mm256_set1_ps(d * sc[h + 6]));
            }
        }
    }
}
#endif

using DeqFn = void (*)(const uint8_t*, float*, int64_t);

DeqFn vector_kernel(GgmlType t) {
#ifdef __AVX2__
    switch (t) {
        case GgmlType::Q8_0: return vdeq_q8_0;
        case GgmlType::Q4_0: return vdeq_q4_0;
        case GgmlType::Q4_K: return vdeq_q4_k;
        case GgmlType::Q6_K: return vdeq_q6_k;
        default: break;
    }
#endif
    return nullptr;
}

void check_row(const GgmlTypeInfo& ti, int64_t n) {
    NUANCE_CHECK(ti.dequantizable, "dequantize: ggml type ", ti.name, " is not supported");
    NUANCE_CHECK(n >= 0 && n % ti.block == 0, "dequantize: a ", ti.name, " row of ", n,
                 " values is not a whole number of ", ti.block, "-value blocks");
}

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
    for (const auto& t : kTypes)
        if ((uint32_t)t.type == id) return &t;
    return nullptr;
}

const GgmlTypeInfo& ggml_type_info(GgmlType t) {
    const GgmlTypeInfo* ti = ggml_type_info((uint32_t)t);
    NUANCE_ASSERT(ti != nullptr);
    return *ti;
}

GgmlType parse_ggml_type(const std::string& name) {
    std::string u;
    for (char c : name) u.push_back((char)std::toupper((unsigned char)c));
    for (const auto& t : kTypes)
        if (u == t.name) return t.type;
    fail(ErrorCode::InvalidArgument, "unknown ggml type '", name, "'");
}

void dequantize_row_scalar(GgmlType t, const void* src, float* dst, int64_t n) {
    const GgmlTypeInfo& ti = ggml_type_info(t);
    check_row(ti, n);
    const auto* x = static_cast<const uint8_t*>(src);
    const int64_t nb = n / ti.block;
    switch (t) {
        case GgmlType::F32: std::memcpy(dst, x, (size_t)n * 4); return;
        case GgmlType::F16:
            for (int64_t i = 0; i < n; ++i) dst[i] = h2f(x + 2 * i);
            return;
        case GgmlType::BF16:
            for (int64_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, x + 2 * i, 2);
                dst[i] = bf16_to_f32(h);
            }
            return;
        case GgmlType::Q4_0: return deq_q4_0(x, dst, nb);
        case GgmlType::Q4_1: return deq_q4_1(x, dst, nb);
        case GgmlType::Q5_0: return deq_q5_0(x, dst, nb);
        case GgmlType::Q5_1: return deq_q5_1(x, dst, nb);
        case GgmlType::Q8_0: return deq_q8_0(x, dst, nb);
        case GgmlType::Q2_K: return deq_q2_k(x, dst, nb);
        case GgmlType::Q3_K: return deq_q3_k(x, dst, nb);
        case GgmlType::Q4_K: return deq_q4_k(x, dst, nb);
        case GgmlType::Q5_K: return deq_q5_k(x, dst, nb);
        case GgmlType::Q6_K: return deq_q6_k(x, dst, nb);
        case GgmlType::IQ4_NL: return deq_iq4_nl(x, dst, nb);
        case GgmlType::IQ4_XS: return deq_iq4_xs(x, dst, nb);
        case GgmlType::F8_E4M3:
        case GgmlType::F8_E5M2: {
            // Every FP8 value is exact in f16, so in f32 (core/dtype.h); a table of the 256 codes.
            static const auto tables = [] {
                std::array<std::array<float, 256>, 2> t{};
                for (int i = 0; i < 256; ++i) {
                    const uint16_t a = f8e4m3fn_to_f16((uint8_t)i), b = f8e5m2_to_f16((uint8_t)i);
                    f16_to_f32_n(&a, &t[0][(size_t)i], 1);
                    f16_to_f32_n(&b, &t[1][(size_t)i], 1);
                }
                return t;
            }();
            const std::array<float, 256>& table = tables[t == GgmlType::F8_E4M3 ? 0 : 1];
            for (int64_t i = 0; i < n; ++i) dst[i] = table[x[i]];
            return;
        }
        default: break;
    }
    fail(ErrorCode::Unsupported, "dequantize: ggml type ", ti.name, " is not supported");
}

bool has_vector_dequantize(GgmlType t) { return vector_kernel(t) != nullptr; }

void dequantize_row_vector(GgmlType t, const void* src, float* dst, int64_t n) {
    const GgmlTypeInfo& ti = ggml_type_info(t);
    check_row(ti, n);
    if (t == GgmlType::F16) return f16_to_f32_n(static_cast<const uint16_t*>(src), dst, n);
    if (DeqFn f = vector_kernel(t)) return f(static_cast<const uint8_t*>(src), dst, n / ti.block);
    dequantize_row_scalar(t, src, dst, n);
}

void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n) { dequantize_row_vector(t, src, dst, n); }

bool has_int8_blocks(GgmlType t) {
    switch (t) {
        case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q4_1: case GgmlType::Q5_1:
        case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
        case GgmlType::IQ4_NL: case GgmlType::IQ4_XS:
            return true;
        default: return false;
    }
}

int int8_block_zero(GgmlType t) {
    switch (t) {
        case GgmlType::Q8_0: case GgmlType::IQ4_NL: case GgmlType::IQ4_XS: return 128;
        case GgmlType::Q4_0: return 8;
        case GgmlType::Q5_0: return 16;
        case GgmlType::Q3_K: return 4;
        case GgmlType::Q6_K: return 32;
        default: return 0;
    }
}

bool int8_block_has_min(GgmlType t) {
    return t == GgmlType::Q4_1 || t == GgmlType::Q5_1 || t == GgmlType::Q2_K || t == GgmlType::Q4_K ||
           t == GgmlType::Q5_K;
}

int int8_scale_group(GgmlType t) {
    return t == GgmlType::Q2_K || t == GgmlType::Q3_K || t == GgmlType::Q6_K ? 16 : 32;
}

void int8_block(GgmlType t, const uint8_t* x, uint8_t* u, float* d, float* m) {
    switch (t) {
        case GgmlType::Q8_0:
            d[0] = h2f(x), m[0] = 0.0f;
            for (int j = 0; j < 32; ++j) u[j] = (uint8_t)(x[2 + j] ^ 0x80);
            return;
        case GgmlType::IQ4_NL:  // the non-linear table's int8 values, + 128
            d[0] = h2f(x), m[0] = 0.0f;
            for (int j = 0; j < 16; ++j) {
                u[j] = (uint8_t)(kIq4nl[x[2 + j] & 0xF] + 128);
                u[j + 16] = (uint8_t)(kIq4nl[x[2 + j] >> 4] + 128);
            }
            return;
        case GgmlType::IQ4_XS: {  // d, scales_h, scales_l[4], qs[128]; 8 groups of 32 with 6-bit scales - 32
            const float dd = h2f(x);
            uint16_t scales_h;
            std::memcpy(&scales_h, x + 2, 2);
            const uint8_t* scales_l = x + 4;
            const uint8_t* qs = x + 8;
            for (int g = 0; g < 8; ++g, qs += 16) {
                const int ls = ((scales_l[g / 2] >> 4 * (g % 2)) & 0xf) | (((scales_h >> 2 * g) & 3) << 4);
                d[g] = dd * (float)(ls - 32);
                m[g] = 0.0f;
                for (int j = 0; j < 16; ++j) {
                    u[g * 32 + j] = (uint8_t)(kIq4nl[qs[j] & 0xF] + 128);
                    u[g * 32 + j + 16] = (uint8_t)(kIq4nl[qs[j] >> 4] + 128);
                }
            }
            return;
        }
        case GgmlType::Q4_0: case GgmlType::Q4_1: {
            const bool min = t == GgmlType::Q4_1;
            d[0] = h2f(x), m[0] = min ? h2f(x + 2) : 0.0f;
            const uint8_t* qs = x + (min ? 4 : 2);
            for (int j = 0; j < 16; ++j) {
                u[j] = qs[j] & 0x0F;
                u[j + 16] = qs[j] >> 4;
            }
            return;
        }
        case GgmlType::Q5_0: case GgmlType::Q5_1: {
            const bool min = t == GgmlType::Q5_1;
            d[0] = h2f(x), m[0] = min ? h2f(x + 2) : 0.0f;
            uint32_t qh;
            std::memcpy(&qh, x + (min ? 4 : 2), 4);
            const uint8_t* qs = x + (min ? 8 : 6);
            for (int j = 0; j < 16; ++j) {
                u[j] = (uint8_t)((qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10));
                u[j + 16] = (uint8_t)((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
            }
            return;
        }
        case GgmlType::Q4_K: case GgmlType::Q5_K: {  // 8 groups of 32: low nibbles of 32 bytes, then their high ones
            const bool five = t == GgmlType::Q5_K;
            const float dd = h2f(x), dmin = h2f(x + 2);
            const uint8_t* qh = x + 16;
            const uint8_t* q = x + (five ? 48 : 16);
            for (int g = 0; g < 8; ++g) {
                uint8_t sc, mn;
                scale_min_k4(g, x + 4, &sc, &mn);
                d[g] = dd * sc;
                m[g] = -(dmin * mn);
                const int shift = g % 2 ? 4 : 0;
                const uint8_t hbit = (uint8_t)(1u << g);  // Q5_K: bit g of qh[l] is the fifth bit
                for (int l = 0; l < 32; ++l) {
                    uint8_t v = (uint8_t)((q[(g / 2) * 32 + l] >> shift) & 0x0F);
                    if (five && (qh[l] & hbit)) v = (uint8_t)(v + 16);
                    u[g * 32 + l] = v;
                }
            }
            return;
        }
        case GgmlType::Q2_K: {  // scales[16], qs[64], d, dmin; 16 groups of 16
            const uint8_t* sc = x;
            const uint8_t* q = x + 16;
            const float dd = h2f(x + 80), dmin = h2f(x + 82);
            int g = 0;
            for (int n = 0; n < 256; n += 128, q += 32)
                for (int shift = 0; shift < 8; shift += 2)
                    for (int half = 0; half < 2; ++half, ++g) {
                        d[g] = dd * (sc[g] & 0xF);
                        m[g] = -(dmin * (sc[g] >> 4));
                        for (int l = 0; l < 16; ++l) u[g * 16 + l] = (uint8_t)((q[half * 16 + l] >> shift) & 3);
                    }
            return;
        }
        case GgmlType::Q3_K: {  // hmask[32], qs[64], scales[12], d; 16 groups of 16, u = q + 4 where the high bit is set
            const uint8_t* hm = x;
            const uint8_t* q = x + 32;
            const float d_all = h2f(x + 108);
            int8_t scales[16];
            q3_k_scales(x, scales);
            int g = 0;
            uint8_t bit = 1;
            for (int n = 0; n < 256; n += 128, q += 32)
                for (int shift = 0; shift < 8; shift += 2, bit = (uint8_t)(bit << 1))
                    for (int half = 0; half < 2; ++half, ++g) {
                        d[g] = d_all * (scales[g] - 32);
                        m[g] = 0.0f;
                        for (int l = 0; l < 16; ++l) {
                            const int k = half * 16 + l;
                            u[g * 16 + l] = (uint8_t)(((q[k] >> shift) & 3) + ((hm[k] & bit) ? 4 : 0));
                        }
                    }
            return;
        }
        case GgmlType::Q6_K: {  // ql[128], qh[64], scales[16] (int8), d; 16 groups of 16
            const float dd = h2f(x + 208);
            const int8_t* sc = reinterpret_cast<const int8_t*>(x + 192);
            for (int n = 0; n < 2; ++n) {
                const uint8_t* ql = x + n * 64;
                const uint8_t* qh = x + 128 + n * 32;
                for (int l = 0; l < 32; ++l) {
                    uint8_t* o = u + n * 128;
                    o[l + 0] = (uint8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4));
                    o[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
                    o[l + 64] = (uint8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4));
                    o[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
                }
                for (int j = 0; j < 8; ++j) {  // group j of this half: values n*128 + 16*j ..
                    d[n * 8 + j] = dd * sc[n * 8 + j];
                    m[n * 8 + j] = 0.0f;
                }
            }
            return;
        }
        default:
            NUANCE_CHECK(false, "int8_block: type ", ggml_type_info(t).name, " has no integer block form");
    }
}

Tensor CpuBackend::dequantize(GgmlType type, const Tensor& packed, const Shape& shape) {
    return dequantize_on_host(type, packed, shape);
}

Tensor dequantize_on_host(GgmlType type, const Tensor& packed, const Shape& shape) {
    const GgmlTypeInfo& ti = ggml_type_info(type);
    const int64_t n = shape.empty() ? 1 : shape.back();
    check_row(ti, n);
    NUANCE_CHECK(packed.defined() && packed.dtype() == DType::U8 && packed.is_contiguous(),
                 "dequantize: packed payload must be a contiguous U8 tensor");
    const int64_t numel = shape_numel(shape);
    const int64_t rows = n == 0 ? 0 : numel / n;
    const int64_t row_bytes = n / ti.block * ti.bytes;
    NUANCE_CHECK((int64_t)packed.nbytes() == rows * row_bytes, "dequantize: ", ti.name, " payload of ",
                 packed.nbytes(), " bytes does not hold ", rows, " rows of ", row_bytes, " bytes for shape ",
                 shape_str(shape));
    Tensor out = Tensor::empty(shape, DType::F32);
    const uint8_t* src = packed.data<uint8_t>();
    float* dst = out.data<float>();
#pragma omp parallel for schedule(static) if (numel > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) dequantize_row(type, src + r * row_bytes, dst + r * n, n);
    return out;
}

Tensor quantized_weight_tensor(const QuantizedTensor& q, const Shape& logical) {
    const GgmlTypeInfo& ti = ggml_type_info(q.type);
    int64_t n = 0;
    if (ti.block <= 1 || logical.size() < 2 || !shape_numel_checked(logical, &n) || n != shape_numel(q.shape) ||
        logical[0] <= 0 || n == 0 || (n / logical[0]) % ti.block != 0 || !q.packed.is_contiguous())
        return Tensor();
    return make_quantized_weight((uint32_t)q.type, ti.name, ti.block, ti.bytes, q.packed.data<uint8_t>(),
                                 q.packed.nbytes(), q.packed.storage(), logical, q.packed.storage()->file_backed());
}

}  // namespace nuance
