// The scale searches of ggml's K-quant and IQ4 quantizers, 16 sub-blocks at once (one per AVX-512 lane): each lane
// runs the scalar search's float32 operations in the scalar order (no contraction, the same divisions and square
// roots), so the results are the scalar code's bit for bit. Internal to ggml_quantize.cpp.
#pragma once

#include <cstdint>

namespace nuance::ggml_x16 {

// True where the CPU has AVX-512 F/BW/DQ/VL.
bool available();

// How make_qkx2_quants weights each value: Q4_K/Q5_K's sqrt(mean x^2) + |x| (n = 32), Q2_K's |x|.
enum class QkxWeights { RmsPlusAbs, Abs };

// make_qkx2_quants on `count` (1..16) consecutive n-value sub-blocks (n <= 32; sub-block j at x + j n): quants in
// L[j n + i] (0..nmax), scales[j], mins[j] (the negated minimum, as the scalar search returns it). False, with nothing
// written, when a value is NaN or infinite (the scalar code handles such blocks).
bool make_qkx2_quants(int n, int count, int nmax, const float* x, QkxWeights weights, float rmin, float rdelta,
                      int nstep, bool use_mad, uint8_t* L, float* scales, float* mins);

// make_qx_quants (rmse_type 1, weights x^2): quants in L offset by nmax, scales[j]. Same contract.
bool make_qx_quants(int n, int count, int nmax, const float* x, int8_t* L, float* scales);

// make_q3_quants (Q3_K: the largest-magnitude scale, then up to 5 passes moving single quants while the weighted fit
// improves): quants in L offset by nmax, scales[j]. Same contract.
bool make_q3_quants(int n, int count, int nmax, const float* x, int8_t* L, float* scales);

// The IQ4 scale search on `count` 32-value sub-blocks: scales[j]. Same contract.
bool iq4_scales(int count, const float* x, float* scales);

}  // namespace nuance::ggml_x16
