// Internal to the block quantizers (ggml_quantize.cpp, ggml_quantize_k.cpp): helpers both use, and the K-quant / IQ4
// block quantizers of ggml_quantize_k.cpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "backends/cpu/ggml_quants.h"

namespace nuance::ggml_q {

constexpr int QK = 32;

inline void put_f16(uint8_t* p, float v) {
    const uint16_t h = f32_to_f16(v);
    std::memcpy(p, &h, 2);
}

// The value of largest magnitude among n (first one on ties), sign kept: numpy's abs(x).argmax then take; ggml's
// make_q*_quants search the same way.
inline float signed_absmax(const float* x, int n = QK) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; ++j)
        if (std::fabs(x[j]) > amax) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    return max;
}

inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// One block of x (256 values; IQ4_NL: 32) to its bytes y, ggml's reference quantizers (scalar).
void q2_k(const float* x, uint8_t* y);
void q3_k(const float* x, uint8_t* y);
void q4_k(const float* x, uint8_t* y);
void q5_k(const float* x, uint8_t* y);
void q6_k(const float* x, uint8_t* y);
void iq4_nl(const float* x, uint8_t* y);
void iq4_xs(const float* x, uint8_t* y);

// `nblocks` blocks of type t (Q2_K .. Q6_K, IQ4_NL, IQ4_XS) with the scale searches on AVX-512, the scalar code's
// bytes; false for another type or a CPU without AVX-512 (nothing written).
bool quantize_blocks_x16(GgmlType t, const float* x, uint8_t* y, int64_t nblocks);

}  // namespace nuance::ggml_q
