// Element types and the f16/bf16 <-> f32 conversions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace nuance {

enum class DType : uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, Bool };

// Precision of the dense products (matmul/conv): Auto picks BF16 for BF16 weights and FP32 otherwise at the op
// level; front ends resolve Auto with resolve_precision() (backends/backend.h: the backend's default, on the CPU
// BF16 where it has native bf16 dot products).
enum class Precision : uint8_t { Auto, FP32, BF16 };
Precision parse_precision(const std::string& s);  // "auto" | "fp32" | "bf16"; throws InvalidArgument naming s
const char* precision_name(Precision p);

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // safetensors spelling: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL
bool dtype_is_float(DType t);

inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            int e = -1;
            do { ++e; mant <<= 1; } while (!(mant & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// Round-to-nearest-even, as torch's .half() does.
inline uint16_t f32_to_f16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));
    if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00);  // overflow -> inf
    if (absx < 0x38800000) {  // subnormal or zero in f16
        if (absx < 0x33000000) return (uint16_t)sign;
        const uint32_t e = absx >> 23;
        const uint32_t m = (absx & 0x7fffff) | 0x800000;
        const uint32_t shift = 126 - e;  // 14 + (112 - e) + 1 ... (113 - e) + 13
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) ++r;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absx - 0x38000000;  // rebias exponent 127 -> 15
    const uint32_t rem = r & 0x1fff;
    r >>= 13;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
    return (uint16_t)(sign | r);
}

inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline uint16_t f32_to_bf16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);  // quiet NaN
    const uint32_t lsb = (x >> 16) & 1;
    x += 0x7fff + lsb;
    return (uint16_t)(x >> 16);
}

// FP8 (Micikevicius et al. 2022), as safetensors stores it: F8_E4M3 is torch's float8_e4m3fn (exponent bias 7, no
// infinities, S.1111.111 is NaN, max 448, subnormals m * 2^-9) and F8_E5M2 is float8_e5m2 (bias 15, IEEE inf/NaN:
// the high byte of an f16). Every value of both is exactly representable in f16; nuance converts them at load.
inline uint16_t f8e4m3fn_to_f16(uint8_t v) {
    const uint16_t sign = (uint16_t)((v & 0x80) << 8);
    const uint32_t e = (v >> 3) & 0xf, m = v & 0x7;
    if (e == 0xf && m == 0x7) return (uint16_t)(sign | 0x7e00);  // NaN
    if (e == 0) {
        if (m == 0) return sign;
        const uint32_t p = m >= 4 ? 2 : m >= 2 ? 1 : 0;  // leading bit: value = 2^(p-9) * m / 2^p
        return (uint16_t)(sign | (p + 6) << 10 | (m - (1u << p)) << (10 - p));
    }
    return (uint16_t)(sign | (e + 8) << 10 | m << 7);
}
inline uint16_t f8e5m2_to_f16(uint8_t v) { return (uint16_t)(v << 8); }

// n values, vectorised (F16C) and parallel for large n.
void f16_to_f32_n(const uint16_t* src, float* dst, int64_t n);

}  // namespace nuance
