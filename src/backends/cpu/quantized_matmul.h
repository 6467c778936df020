// Products with quantized weights (ggml block formats kept as stored, core/quantized_weight.h): CpuBackend::linear
// and ::conv2d send a quantized-weight handle here.
//
// Shape letters: M rows of x (tokens, or output pixels of a convolution), K reduction (a weight row: in features, or
// C * kh * kw in OIHW order), N output features (weight rows), KB = K / 32 blocks of a row.
//
// Two paths:
// * W8A8 (Q8_0 weights, compute BF16/Auto): each row of x is quantized on the fly to Q8_0 blocks (per-32 scale
//   amax / 127, round to nearest), and y[m, n] = sum over blocks of d_x * d_w * (int8 dot of the 32 pairs): int8
//   products on AVX-512 VNNI (vpdpbusd; |w| as the unsigned operand, x with w's sign as the signed one), exact in
//   int32 per block; a portable scalar loop computes the same where the CPU lacks VNNI.
// * Weight-only (every other block type, and Q8_0 at compute FP32): the weight's rows are dequantized (ggml's
//   dequantize_row_*, bit-exact) into a scratch of one layer's weight in the compute precision (bf16, or f32), and
//   oneDNN multiplies with it as a plain (unpacked) weight; the scratch lives only for the call, so memory holds
//   the packed blocks plus at most one layer's dequantized copy at a time.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/quantized_weight.h"
#include "core/tensor.h"

namespace nuance::cpu {

enum class QuantizedPath { W8A8, WeightOnly };

// The path a product over `w` takes at precision `compute` (Auto resolved by the caller): W8A8 for Q8_0 weights at
// bf16 when it is on (by default where the CPU has AVX-512 VNNI; set_q8_w8a8, or NUANCE_Q8_W8A8=0/1 in the
// environment), weight-only otherwise. On VNNI the weight is repacked per call into 32-column tiles of unsigned int8
// (w + 128) for an outer-product kernel (6 rows x 32 columns of int32 block sums per register tile); measured on a
// full-size SD1.5 512² step (AMD Zen 5, 2 cores): W8A8 4.3-4.9 s, weight-only 5.2-5.6 s, bf16 weights 4.3-5.1 s.
QuantizedPath quantized_path(const QuantizedWeightView& w, Precision compute);
void set_q8_w8a8(bool on);
bool q8_w8a8();

// Whether a weight's repacked VNNI tiles are kept across calls instead of rebuilt by every product: Auto (the default)
// keeps them for Q8_0 weights mapped from a file and gives the file's pages back once packed, so memory holds 36 bytes
// per 32 values (the tiles) instead of the file's 34; On keeps every type's (a Q4_0 weight's tiles are twice its
// blocks); Off never keeps any. NUANCE_INT8_PACK_CACHE=auto|on|off in the environment sets the start value. A kept
// copy lives while the storage of its blocks lives (and until clear/release below).
enum class Int8PackCache { Auto, On, Off };
void set_int8_pack_cache(Int8PackCache mode);
Int8PackCache int8_pack_cache();
size_t int8_pack_cache_bytes();
void clear_int8_pack_cache();
size_t prune_int8_pack_cache();  // frees the kept tiles of weights that are gone; the bytes freed
size_t release_int8_pack(const Tensor& w);  // the kept tiles over w's blocks (bytes dropped; 0 when none)

// y = x · wᵀ (+ b): x [M, K] contiguous F32 or BF16, b [N] F32 or undefined; y [M, N] contiguous F32 or BF16.
void quantized_gemm(const Tensor& x, const QuantizedWeightView& w, const Tensor& b, Precision compute, Tensor& y);

// Convolution with a quantized OIHW weight (groups 1): x [N, C, H, W] (any layout, F32/BF16) -> F32 [N, O, Ho, Wo]
// channels-last, through im2col in row chunks (K ordered (c, i, j) as the weight's rows are).
Tensor quantized_conv2d(const Tensor& x, const QuantizedWeightView& w, const Shape& w_shape, const Tensor& b,
                        int64_t stride, const int64_t padding[4], int64_t dilation, Precision compute);

// Exposed for tests: whether the VNNI kernel runs on this CPU, and the portable W8A8 path forced.
bool has_vnni_kernel();
void quantized_gemm_w8a8_portable(const Tensor& x, const QuantizedWeightView& w, const Tensor& b, Tensor& y);

}  // namespace nuance::cpu
