// Encoding float8_e4m3fn (F8_E4M3 in safetensors; decoding is in core/dtype.h): for writing FP8 files (make-random,
// tests).
#pragma once
#include <cmath>
#include <cstdint>

namespace nuance {

// float -> float8_e4m3fn, round to nearest, ties to even (torch's .to(torch.float8_e4m3fn) for values in range);
// magnitudes beyond 448 saturate to ±448 (as ComfyUI clamps before casting), NaN gives the NaN code.
inline uint8_t f32_to_f8e4m3fn(float x) {
    if (std::isnan(x)) return 0x7f;
    const uint8_t sign = std::signbit(x) ? 0x80 : 0;
    float a = std::fabs(x);
    if (a >= 448.0f) return (uint8_t)(sign | 0x7e);
    // The spacing of the codes near a: 2^-9 below 2^-6 (subnormals), else 2^(floor(log2 a) - 3).
    int e = 0;
    (void)std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1): floor(log2 a) = e - 1
    const int step_exp = a < 0.015625f ? -9 : e - 1 - 3;
    const float q = std::nearbyint(std::ldexp(a, -step_exp));  // round half to even (default rounding mode)
    const float v = std::ldexp(q, step_exp);
    if (v == 0.0f) return sign;
    if (v < 0.015625f) return (uint8_t)(sign | (uint8_t)q);  // subnormal: m * 2^-9
    int ve = 0;
    const float f = std::frexp(v, &ve);  // v = f * 2^ve: exponent field ve - 1 + 7, mantissa (2f - 1) * 8
    return (uint8_t)(sign | (uint8_t)((ve + 6) << 3) | (uint8_t)((2.0f * f - 1.0f) * 8.0f));
}

}  // namespace nuance
