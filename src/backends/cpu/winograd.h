// Winograd F(4x4, 3x3) convolution, fp32, channels-last (Lavin & Gray 2016, "Fast Algorithms for Convolutional
// Neural Networks"): each 6x6 input tile and each 3x3 kernel are transformed so that a 4x4 block of outputs costs 36
// multiplies per (input, output) channel pair instead of 144. The products become 36 independent matrix products
// [tiles x C] x [C x K], run by oneDNN's matmul; the transforms are AVX2 loops across channels.
//
//   input transform   V[e][p][c] = (B^T d_p B)[e]          d_p: the 6x6 input tile of tile p (zeros outside)
//   weight transform  U[e][c][k] = (G g_kc G^T)[e]         per call (U is 4x the weight: not kept)
//   products          M[e] = V[e] U[e]                     36 matmuls, tiles in chunks (bounded scratch)
//   output transform  y_p[k] = A^T M_p[k] A + bias[k]      the 4x4 outputs of tile p, clipped at the edges
//
// Used by CpuBackend::conv2d for fp32 3x3 convolutions with stride 1, dilation 1, groups 1 on channels-last inputs
// (any padding) of at least 64 tiles (e.g. 32x32 outputs, or 16x16 with batch 4): below that the per-call kernel
// transform costs more than the products save. Also in place of bf16 convolutions with many channels and tiles
// where F(2x2) bf16 (below) does not apply (the products still run in f32: more accurate than the bf16 direct kernel;
// the bf16 input of a rounded hand-off is read as it is). F(4x4, 3x3) with V and U rounded to bf16 was measured to be
// too inexact: ~10x the direct bf16 kernel's error (2.5e-2 vs 2.3e-3 RMS relative, C = 256).
// NUANCE_CONV_WINOGRAD=0 turns both off (oneDNN's direct kernels then run every convolution); =f32 keeps F(4x4) only.
// Accuracy: the transforms' constants (up to 8 and 1/24) cost a few bits: outputs agree with a float64 convolution
// to ~1e-6 of the output's scale (tests/backends/test_winograd.cpp), against ~1e-7 for the direct kernels.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "ops/conv.h"

namespace nuance::cpu {

// Whether conv2d takes the Winograd path for this convolution: 3x3, stride 1, dilation 1, groups 1, channels-last
// F32 or BF16 input, at least 64 input and 8 output channels, at least 64 4x4 output tiles, and not turned off; in
// place of a bf16 convolution (bf16 = true) also C K / (C + K) >= 120 and at least 128 tiles.
bool winograd_applies(const Tensor& x, const Tensor& w, const Conv2dParams& p, bool bf16);

// The shape of a 3x3, stride 1, dilation 1, groups 1 convolution of x [N, C, H, W] by w [K, C, 3, 3] (padding top
// pt, left pl): checked for the Winograd kernels, with errors naming the problem.
struct Conv3x3Shape {
    int64_t N, C, H, W, K, Ho, Wo, pt, pl;
};
Conv3x3Shape winograd_shape(const Tensor& x, const Tensor& w, const Conv2dParams& p);
bool winograd_enabled();  // NUANCE_CONV_WINOGRAD unset or not "0"

// y = conv2d(x, w, b, p) for x [N, C, H, W] channels-last F32 or BF16 (others are widened), w [K, C, 3, 3] (any float dtype), b [K] F32 or
// undefined; returns [N, K, Ho, Wo] channels-last F32. chunk_tiles > 0 caps the tiles of one product (tests: many
// chunks on small inputs); 0 sizes the chunks to a 12 MB scratch.
Tensor winograd_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, int64_t chunk_tiles = 0);

// Winograd F(2x2, 3x3) with bf16 products, in place of oneDNN's direct bf16 kernel where F(4x4) f32 does not apply
// (fewer tiles: the smaller feature maps of a UNet): 16 multiplies per 2x2 outputs instead of 36, and its transforms
// are additions only (B, A: 0 and +-1; G: halves), so rounding V and U to bf16 costs about one more bf16 rounding:
// 1.7x the direct bf16 kernel's RMS error (4.0e-3 against 2.4e-3 relative, C = K = 256 at 16², in float64
// emulation), where F(4x4) in bf16 is ~10x. The transformed kernels are kept like packed weights
// (dnnl_cache.h: derived_weights; 16/9 of the weight in bf16, in place of oneDNN's packed copy). Needs AVX512_BF16.
// Applies: bf16, 3x3, stride 1, dilation 1, groups 1, channels-last F32/BF16 input, C and K >= 256, >= 64 2x2 tiles.
bool winograd2_bf16_supported();  // the CPU has the AVX-512 (F, BW, VL, DQ, BF16) the kernel needs
bool winograd2_bf16_applies(const Tensor& x, const Tensor& w, const Conv2dParams& p);
Tensor winograd2_bf16_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p,
                             int64_t chunk_tiles = 0);

}  // namespace nuance::cpu
