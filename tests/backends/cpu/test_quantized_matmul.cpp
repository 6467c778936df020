// Products with quantized weights kept as ggml blocks (core/quantized_weight.h, backends/cpu/quantized_matmul.h):
// every block type against dequantize-then-f64-matmul, W8A8 (Q8_0) against its exact integer math and a hand case,
// convolutions against oneDNN with the dequantized weight, and the handle's error paths.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

#include "../../test_util.h"
#include "quantized_test_util.h"
#include "backends/backend.h"
#include "backends/cpu/ggml_quants.h"
#include "backends/cpu/int8_tiles.h"
#include "backends/cpu/quantized_matmul.h"
#include "core/quantized_weight.h"
#include "nn/layers.h"
#include "ops/ops.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;
using nuance::test::random_input;
using nuance::test::random_weight;

namespace {

// y = x · wᵀ + b in f64 from f32 operands; also the sum of |x_k w_k| per output (scale of the rounding error).
void reference(const Tensor& x, const Tensor& wd, const Tensor& b, std::vector<double>& y, std::vector<double>& mag) {
    const int64_t M = x.size(0), K = x.size(1), N = wd.size(0);
    const float* xp = x.data<float>();
    const float* wp = wd.data<float>();
    y.assign((size_t)(M * N), 0.0);
    mag.assign((size_t)(M * N), 0.0);
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            double s = b.defined() ? b.data<float>()[n] : 0.0, a = 0.0;
            for (int64_t k = 0; k < K; ++k) {
                s += (double)xp[m * K + k] * wp[n * K + k];
                a += std::fabs((double)xp[m * K + k] * wp[n * K + k]);
            }
            y[(size_t)(m * N + n)] = s;
            mag[(size_t)(m * N + n)] = a;
        }
}

const GgmlType kAllTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                              GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                              GgmlType::IQ4_NL, GgmlType::IQ4_XS};

}  // namespace

TEST(QuantizedWeight, HandleKeepsRowsAndRefusesCopies) {
    const Tensor w = random_weight(GgmlType::Q4_0, {5, 64}, 1);
    EXPECT_EQ(w.shape(), (Shape{5, 64}));
    EXPECT_EQ(w.dtype(), DType::U8);
    const auto v = quantized_weight_view(w);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->rows, 5);
    EXPECT_EQ(v->row_length, 64);
    EXPECT_EQ(v->row_bytes, 2 * 18);
    EXPECT_EQ(quantized_weight_str(w), "Q4_0[5, 64]");
    // Whole rows stay a handle of those rows, with the same values as the full weight's rows.
    const Tensor rows = w.narrow(0, 2, 3);
    const auto rv = quantized_weight_view(rows);
    ASSERT_TRUE(rv.has_value());
    EXPECT_EQ(rv->rows, 3);
    EXPECT_EQ(rv->data, v->data + 2 * v->row_bytes);
    const std::vector<float> all = dequantize_weight(w).to_vector(), part = dequantize_weight(rows).to_vector();
    for (size_t i = 0; i < part.size(); ++i) ASSERT_EQ(part[i], all[2 * 64 + i]);
    // Seen as a 1x1 conv and back.
    const Tensor conv = quantized_weight_reshape(w, {5, 64, 1, 1});
    EXPECT_EQ(conv.shape(), (Shape{5, 64, 1, 1}));
    EXPECT_EQ(dequantize_weight(conv).to_vector(), all);
    EXPECT_THAT(error_of([&] { quantized_weight_reshape(w, {10, 32}); }), HasSubstr("rows of blocks must stay rows"));
    // Never read as bytes: copies and conversions fail naming the weight.
    EXPECT_THAT(error_of([&] { w.contiguous(); }), HasSubstr("Q4_0[5, 64] is a quantized weight"));
    EXPECT_THAT(error_of([&] { w.f32(); }), HasSubstr("cannot be copied or converted"));
    EXPECT_THAT(error_of([&] { w.clone(); }), HasSubstr("dequantize it first"));
    // A view that breaks the rows (a transpose) is no longer a handle, and the products say so.
    const Tensor t = w.transpose(0, 1);
    EXPECT_FALSE(quantized_weight_view(t).has_value());
    EXPECT_TRUE(is_quantized_storage(t));
    EXPECT_THAT(error_of([&] { linear(random_input({2, 5}, 2), t); }), HasSubstr("no longer holds whole rows"));
    EXPECT_THAT(error_of([&] { dequantize_weight(t); }), HasSubstr("no longer holds whole rows"));
}

TEST(QuantizedWeight, BadHandlesAreRefused) {
    uint8_t bytes[64] = {};
    auto ka = std::make_shared<int>(0);
    EXPECT_THAT(error_of([&] { make_quantized_weight(8, "Q8_0", 32, 34, bytes, 34, ka, {1, 48}); }),
                HasSubstr("not whole blocks of 32"));
    EXPECT_THAT(error_of([&] { make_quantized_weight(8, "Q8_0", 32, 34, bytes, 64, ka, {1, 32}); }),
                HasSubstr("payload of 64 bytes, expected 1 rows of 34 bytes"));
    EXPECT_THAT(error_of([&] { make_quantized_weight(8, "Q8_0", 32, 34, bytes, 34, ka, {32}); }),
                HasSubstr("rank >= 2"));
    EXPECT_THAT(error_of([&] { make_quantized_weight(8, "Q8_0", 32, 34, bytes, 34, ka, {INT64_MAX, 64}); }),
                HasSubstr("Q8_0"));
    // A logical shape whose rows split blocks gets no handle (the loader dequantizes such tensors).
    QuantizedTensor q;
    q.type = GgmlType::Q8_0;
    q.shape = {2, 32};
    q.packed = Tensor::zeros({2, 34}, DType::U8);
    EXPECT_FALSE(quantized_weight_tensor(q, {4, 16}).defined());
    EXPECT_FALSE(quantized_weight_tensor(q, {64}).defined());
    EXPECT_TRUE(quantized_weight_tensor(q, {1, 64}).defined());
}

// Weight-only path at FP32: dequantized weight (bit-exact ggml values) times f32 x, summed by oneDNN in f32.
TEST(QuantizedMatmul, EveryTypeMatchesDequantizedProductFp32) {
    for (const GgmlType t : kAllTypes) {
        const int64_t block = ggml_type_info(t).block;
        const int64_t M = 7, N = 13, K = block == 32 ? 96 : 512;
        const Tensor w = random_weight(t, {N, K}, 10 + (uint64_t)t);
        const Tensor x = random_input({M, K}, 3), b = random_input({N}, 4);
        std::vector<double> ref, mag;
        reference(x, dequantize_weight(w), b, ref, mag);
        const std::vector<float> y = linear(x, w, b, Precision::FP32).to_vector();
        ASSERT_EQ(y.size(), ref.size());
        for (size_t i = 0; i < y.size(); ++i)
            ASSERT_NEAR(y[i], ref[i], 1e-5 * mag[i] + 1e-6) << ggml_type_info(t).name << " at " << i;
    }
}

// Weight-only path at BF16 (every type but Q8_0): x and the dequantized weight rounded to bf16 (relative error
// 2^-9 each), products summed in f32.
TEST(QuantizedMatmul, EveryTypeMatchesDequantizedProductBf16) {
    for (const GgmlType t : kAllTypes) {
        if (t == GgmlType::Q8_0) continue;
        const int64_t block = ggml_type_info(t).block;
        const int64_t M = 5, N = 11, K = block == 32 ? 160 : 256;
        const Tensor w = random_weight(t, {N, K}, 20 + (uint64_t)t);
        const Tensor x = random_input({M, K}, 5);
        std::vector<double> ref, mag;
        reference(x, dequantize_weight(w), Tensor(), ref, mag);
        for (const DType out : {DType::F32, DType::BF16}) {
            const std::vector<float> y = linear(x, w, Tensor(), Precision::BF16, out).to_vector();
            const double out_round = out == DType::BF16 ? std::ldexp(1.0, -8) : 0.0;
            for (size_t i = 0; i < y.size(); ++i)
                ASSERT_NEAR(y[i], ref[i], 2.5 * std::ldexp(1.0, -9) * mag[i] + out_round * std::fabs(ref[i]) + 1e-6)
                    << ggml_type_info(t).name << " at " << i;
        }
    }
}

// W8A8's error bound for y[m, n]: x quantized per 32-block (d_x = amax / 127, |x - d_x q| <= d_x / 2), so the sum
// over blocks of (sum of |w_k|) * amax / 254.
double w8a8_bound(const float* xp, const float* wp, int64_t m, int64_t n, int64_t K) {
    double bound = 0;
    for (int64_t blk = 0; blk < K / 32; ++blk) {
        double amax = 0, wsum = 0;
        for (int64_t i = 0; i < 32; ++i) {
            amax = std::max(amax, (double)std::fabs(xp[m * K + blk * 32 + i]));
            wsum += std::fabs(wp[n * K + blk * 32 + i]);
        }
        bound += wsum * amax / 127.0 / 2.0;
    }
    return bound;
}

// W8A8: x quantized per 32-block (d_x = amax / 127, |x - d_x q| <= d_x / 2), exact int32 block dots. Bound: sum over
// k of |w_k| d_x / 2 (+ f32 summation).
TEST(QuantizedMatmul, Q8W8A8WithinActivationQuantizationBound) {
    struct W8A8On {  // on for this test (also where the CPU lacks VNNI: then the portable loop runs), then as before
        bool was = cpu::q8_w8a8();
        W8A8On() { cpu::set_q8_w8a8(true); }
        ~W8A8On() { cpu::set_q8_w8a8(was); }
    } on;
    ASSERT_TRUE(cpu::q8_w8a8());
    for (const auto& [M, N, K] : {std::array<int64_t, 3>{1, 1, 32}, {3, 5, 96}, {9, 7, 320}, {17, 19, 64}}) {
        const Tensor w = random_weight(GgmlType::Q8_0, {N, K}, 30 + (uint64_t)K);
        const Tensor x = random_input({M, K}, 6 + (uint64_t)M), b = random_input({N}, 7);
        const Tensor wd = dequantize_weight(w);
        std::vector<double> ref, mag;
        reference(x, wd, b, ref, mag);
        const float* xp = x.data<float>();
        const float* wp = wd.data<float>();
        Tensor y_fast = Tensor::empty({M, N}), y_port = Tensor::empty({M, N});
        const auto v = *quantized_weight_view(w);
        cpu::quantized_gemm(x, v, b, Precision::BF16, y_fast);
        cpu::quantized_gemm_w8a8_portable(x, v, b, y_port);
        for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
                const double bound = w8a8_bound(xp, wp, m, n, K);
                const size_t i = (size_t)(m * N + n);
                const double tol = bound * 1.0001 + 1e-5 * mag[i] + 1e-6;
                EXPECT_NEAR(y_fast.data<float>()[i], ref[i], tol) << M << "x" << N << "x" << K;
                EXPECT_NEAR(y_port.data<float>()[i], ref[i], tol) << M << "x" << N << "x" << K;
                // VNNI and the portable loop compute the same block sums; only the f32 summation order differs.
                EXPECT_NEAR(y_fast.data<float>()[i], y_port.data<float>()[i], 1e-5 * mag[i] + 1e-6);
            }
    }
}

struct W8A8Scope {  // W8A8 on for one test (it is on by default where the CPU has VNNI), then as before
    bool was = cpu::q8_w8a8();
    W8A8Scope() { cpu::set_q8_w8a8(true); }
    ~W8A8Scope() { cpu::set_q8_w8a8(was); }
};

// The VNNI kernel (weights repacked into 32-column tiles, 6-row register tiles, output straight into y) against the
// portable loop, which computes the same per-block int32 sums: shapes that leave tails in every direction (rows not a
// multiple of 6 or of the row chunk, columns not a multiple of 32 or 16, one block or many), with and without bias,
// f32 and bf16 outputs.
TEST(QuantizedMatmul, Q8W8A8VnniMatchesPortableAcrossTiles) {
    if (!cpu::has_vnni_kernel()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU: the portable loop is the only W8A8 path";
    W8A8Scope on;
    const std::array<int64_t, 3> shapes[] = {{1, 1, 32},   {1, 33, 32},   {5, 16, 64},   {6, 32, 96},   {7, 17, 2880},
                                             {13, 100, 320}, {200, 45, 128}, {131, 64, 1280}, {40, 320, 640}};
    for (const auto& [M, N, K] : shapes)
        for (const bool with_bias : {true, false})
            for (const DType out : {DType::F32, DType::BF16}) {
                const Tensor w = random_weight(GgmlType::Q8_0, {N, K}, 80 + (uint64_t)(N + K));
                const Tensor x = random_input({M, K}, 81 + (uint64_t)M), b = with_bias ? random_input({N}, 82) : Tensor();
                std::vector<double> ref, mag;
                reference(x, dequantize_weight(w), b, ref, mag);
                const auto v = *quantized_weight_view(w);
                Tensor y = Tensor::empty({M, N}, out), yp = Tensor::empty({M, N});
                cpu::quantized_gemm(x, v, b, Precision::BF16, y);
                cpu::quantized_gemm_w8a8_portable(x, v, b, yp);
                const std::vector<float> yv = y.to(DType::F32).to_vector(), pv = yp.to_vector();
                for (size_t i = 0; i < yv.size(); ++i) {
                    // f32: the same block sums in another f32 order; bf16: one rounding of the f32 value (2^-9).
                    const double tol = (out == DType::BF16 ? std::ldexp(1.0, -8) * std::fabs(pv[i]) : 0.0) +
                                       1e-5 * mag[i] + 1e-6;
                    ASSERT_NEAR(yv[i], pv[i], tol) << M << "x" << N << "x" << K << " bias " << with_bias << " "
                                                   << dtype_name(out) << " at " << i;
                }
            }
}

// Convolutions on the VNNI path gather each output pixel's patch and quantize it at once (no patch matrix); the
// portable W8A8 product of the explicit im2col matrix (K in the weight's (c, i, j) order) is the reference. f32 and
// bf16 inputs, padding, stride 2, dilation 2; K = C * 9, so every 32-block of a patch row spans 3-4 channels' taps.
TEST(QuantizedConv, W8A8VnniMatchesPortableOnIm2col) {
    if (!cpu::has_vnni_kernel()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU: the portable loop is the only W8A8 path";
    W8A8Scope on;
    struct Case { int64_t C, O, k, stride, pad, dil; DType xdt; };
    const Case cases[] = {{64, 40, 3, 1, 1, 1, DType::F32}, {32, 33, 3, 2, 1, 1, DType::F32},
                          {32, 7, 3, 1, 2, 2, DType::BF16}, {96, 64, 3, 1, 0, 1, DType::BF16}};
    for (const Case& c : cases) {
        const int64_t N = 2, H = 7, W = 6;
        const Tensor w = random_weight(GgmlType::Q8_0, {c.O, c.C, c.k, c.k}, 90 + (uint64_t)c.C);
        const Tensor x = random_input({N, c.C, H, W}, 91).to(c.xdt), b = random_input({c.O}, 92);
        const Conv2dParams p{c.stride, {c.pad, c.pad, c.pad, c.pad}, c.dil, 1};
        const Tensor y = conv2d(x, w, b, p, Precision::BF16);
        const int64_t Ho = y.size(2), Wo = y.size(3), K = c.C * c.k * c.k, M = N * Ho * Wo;
        const std::vector<float> xv = x.to(DType::F32).to_vector();  // NCHW
        Tensor patches = Tensor::zeros({M, K});
        float* pp = patches.data<float>();
        for (int64_t n = 0; n < N; ++n)
            for (int64_t oy = 0; oy < Ho; ++oy)
                for (int64_t ox = 0; ox < Wo; ++ox)
                    for (int64_t ch = 0; ch < c.C; ++ch)
                        for (int64_t i = 0; i < c.k; ++i)
                            for (int64_t j = 0; j < c.k; ++j) {
                                const int64_t iy = oy * c.stride + i * c.dil - c.pad, ix = ox * c.stride + j * c.dil - c.pad;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                pp[((n * Ho + oy) * Wo + ox) * K + (ch * c.k + i) * c.k + j] =
                                    xv[(size_t)(((n * c.C + ch) * H + iy) * W + ix)];
                            }
        Tensor ref = Tensor::empty({M, c.O});
        cpu::quantized_gemm_w8a8_portable(patches, *quantized_weight_view(w), b, ref);
        const std::vector<float> yv = y.contiguous().to_vector(), rv = ref.to_vector();  // y NCHW, ref [M, O]
        double scale = 0;
        for (float v : rv) scale = std::max(scale, (double)std::fabs(v));
        for (int64_t m = 0; m < M; ++m)
            for (int64_t o = 0; o < c.O; ++o) {
                const int64_t n = m / (Ho * Wo), r = m % (Ho * Wo);
                ASSERT_NEAR(yv[(size_t)((n * c.O + o) * Ho * Wo + r)], rv[(size_t)(m * c.O + o)], 1e-5 * scale)
                    << "C" << c.C << " O" << c.O << " s" << c.stride << " d" << c.dil << " at " << m << "," << o;
            }
    }
}

// The integer form of a block (value = d * (u - zero) + m per scale group) gives the dequantized values bit for bit,
// for every type the int8 kernel takes (groups of 32, or of 16 for Q2_K / Q3_K / Q6_K).
TEST(QuantizedMatmul, Int8BlocksAreTheDequantizedValues) {
    for (const GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_1, GgmlType::Q5_1,
                             GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                             GgmlType::IQ4_NL, GgmlType::IQ4_XS}) {
        ASSERT_TRUE(has_int8_blocks(t));
        const GgmlTypeInfo& ti = ggml_type_info(t);
        const int64_t K = 512, group = int8_scale_group(t);
        const Tensor w = random_weight(t, {3, K}, 100 + (uint64_t)t);
        const std::vector<float> ref = dequantize_weight(w).to_vector();
        const auto v = *quantized_weight_view(w);
        const int zero = int8_block_zero(t);
        std::vector<uint8_t> u((size_t)ti.block);
        std::vector<float> d((size_t)(ti.block / group)), m(d.size());
        for (int64_t n = 0; n < 3; ++n)
            for (int64_t sb = 0; sb < K / ti.block; ++sb) {
                int8_block(t, v.data + n * v.row_bytes + sb * ti.bytes, u.data(), d.data(), m.data());
                for (int64_t k = 0; k < ti.block; ++k)
                    ASSERT_EQ(d[(size_t)(k / group)] * (float)((int)u[(size_t)k] - zero) + m[(size_t)(k / group)],
                              ref[(size_t)(n * K + sb * ti.block + k)])
                        << ti.name << " row " << n << " block " << sb << " value " << k;
            }
    }
    EXPECT_FALSE(has_int8_blocks(GgmlType::F16));
    EXPECT_FALSE(has_int8_blocks(GgmlType::BF16));
    uint8_t u[32];
    float d, m;
    const uint8_t blk[64] = {};
    EXPECT_THAT(error_of([&] { int8_block(GgmlType::F16, blk, u, &d, &m); }), HasSubstr("F16 has no integer"));
}

// The repacked tiles, byte for byte and scale for scale, are int8_block's values in the kernel's layout (tile t,
// 32-block b, group g of 4 k, half h of the 32 columns, lane): for Q8_0's direct byte path and the generic one
// (Q4_0, Q5_0, Q4_K), with a partial last tile (padding columns: zero point, d = 0).
TEST(QuantizedMatmul, RepackedTilesAreTheBlocksIntegerValues) {
    for (const GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_K}) {
        const GgmlTypeInfo& ti = ggml_type_info(t);
        const int64_t N = 70, K = 512, group = int8_scale_group(t);
        const Tensor w = random_weight(t, {N, K}, 300 + (uint64_t)t);
        const auto v = *quantized_weight_view(w);
        const cpu::PackedInt8 p = cpu::pack_int8(v, false);
        ASSERT_EQ(p.tiles, 3);
        const int zero = int8_block_zero(t);
        std::vector<uint8_t> u((size_t)ti.block);
        std::vector<float> d((size_t)(ti.block / group)), m(d.size());
        for (int64_t n = 0; n < p.tiles * 32; ++n) {
            const int64_t tl = n / 32, c = n % 32, half = c / 16, lane = c % 16;
            for (int64_t sb = 0; sb < K / ti.block; ++sb) {
                if (n < N) int8_block(t, v.data + n * v.row_bytes + sb * ti.bytes, u.data(), d.data(), m.data());
                for (int64_t j = 0; j < ti.block / 32; ++j) {
                    const int64_t b = sb * (ti.block / 32) + j;
                    const uint8_t* dst = p.q + (tl * p.KB + b) * 1024;
                    for (int64_t g = 0; g < 8; ++g)
                        for (int64_t e = 0; e < 4; ++e)
                            ASSERT_EQ(dst[(g * 2 + half) * 64 + lane * 4 + e], n < N ? u[(size_t)(j * 32 + g * 4 + e)] : zero)
                                << ti.name << " column " << n << " block " << b << " value " << g * 4 + e;
                    for (int h = 0; h < p.groups; ++h)
                        ASSERT_EQ(p.d[(size_t)((tl * p.KB + b) * p.groups * 32 + h * 32 + c)],
                                  n < N ? d[(size_t)(j * p.groups + h)] : 0.0f)
                            << ti.name << " column " << n << " block " << b;
                }
            }
        }
    }
}

// The other integer block types on the VNNI kernel (weights as unsigned quants with the type's zero point, a min term
// for Q4_1/Q5_1/Q2_K/Q4_K/Q5_K, two scale groups per 32-block for Q2_K/Q3_K/Q6_K): within the activation
// quantization bound of the dequantized product.
TEST(QuantizedMatmul, Int8BlockTypesW8A8WithinActivationQuantizationBound) {
    if (!cpu::has_vnni_kernel()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU: these types run weight-only";
    W8A8Scope on;
    for (const GgmlType t : {GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_1, GgmlType::Q5_1, GgmlType::Q2_K,
                             GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_NL,
                             GgmlType::IQ4_XS})
        for (const auto& [M, N, K] : {std::array<int64_t, 3>{1, 1, 256}, {7, 33, 512}, {20, 70, 1280}}) {
            const Tensor w = random_weight(t, {N, K}, 110 + (uint64_t)t + (uint64_t)N);
            const Tensor x = random_input({M, K}, 111 + (uint64_t)M), b = random_input({N}, 112);
            const auto v = *quantized_weight_view(w);
            ASSERT_EQ(cpu::quantized_path(v, Precision::BF16), cpu::QuantizedPath::W8A8) << ggml_type_info(t).name;
            const Tensor wd = dequantize_weight(w);
            std::vector<double> ref, mag;
            reference(x, wd, b, ref, mag);
            Tensor y = Tensor::empty({M, N});
            cpu::quantized_gemm(x, v, b, Precision::BF16, y);
            const float* xp = x.data<float>();
            const float* wp = wd.data<float>();
            for (int64_t m = 0; m < M; ++m)
                for (int64_t n = 0; n < N; ++n) {
                    const double bound = w8a8_bound(xp, wp, m, n, K);
                    const size_t i = (size_t)(m * N + n);
                    ASSERT_NEAR(y.data<float>()[i], ref[i], bound * 1.0001 + 1e-5 * mag[i] + 1e-6)
                        << ggml_type_info(t).name << " " << M << "x" << N << "x" << K << " at " << i;
                }
        }
}

// The path: Q8_0 at bf16 runs W8A8 by default where the VNNI kernel runs (NUANCE_Q8_W8A8=0/1 overrides), and so do
// the other integer block types (Q4_0, Q4_K, Q6_K, IQ4_NL/XS ...) on that kernel; fp32 products stay weight-only.
TEST(QuantizedMatmul, Q8W8A8IsTheDefaultWithVnni) {
    const Tensor q8 = random_weight(GgmlType::Q8_0, {4, 64}, 1), q4 = random_weight(GgmlType::Q4_0, {4, 64}, 2);
    const auto v8 = *quantized_weight_view(q8), v4 = *quantized_weight_view(q4);
    const char* env = std::getenv("NUANCE_Q8_W8A8");
    if (env == nullptr) EXPECT_EQ(cpu::q8_w8a8(), cpu::has_vnni_kernel());
    const bool was = cpu::q8_w8a8();
    cpu::set_q8_w8a8(true);
    EXPECT_EQ(cpu::quantized_path(v8, Precision::BF16), cpu::QuantizedPath::W8A8);
    EXPECT_EQ(cpu::quantized_path(v8, Precision::FP32), cpu::QuantizedPath::WeightOnly);
    EXPECT_EQ(cpu::quantized_path(v4, Precision::BF16),
              cpu::has_vnni_kernel() ? cpu::QuantizedPath::W8A8 : cpu::QuantizedPath::WeightOnly);
    const Tensor iq = random_weight(GgmlType::IQ4_NL, {4, 256}, 3);
    EXPECT_EQ(cpu::quantized_path(*quantized_weight_view(iq), Precision::BF16),
              cpu::has_vnni_kernel() ? cpu::QuantizedPath::W8A8 : cpu::QuantizedPath::WeightOnly);
    EXPECT_EQ(cpu::quantized_path(*quantized_weight_view(iq), Precision::FP32), cpu::QuantizedPath::WeightOnly);
    cpu::set_q8_w8a8(false);
    EXPECT_EQ(cpu::quantized_path(v8, Precision::BF16), cpu::QuantizedPath::WeightOnly);
    cpu::set_q8_w8a8(was);
}

// By hand: one Q8_0 block with d = 0.5, q = 1..32; x = 1 everywhere -> x quantizes exactly (d_x = 1/127, q = 127),
// y = 0.5 * (1/127) * 127 * (1 + ... + 32) = 264, plus the bias.
TEST(QuantizedMatmul, Q8W8A8HandComputed) {
    QuantizedTensor q;
    q.type = GgmlType::Q8_0;
    q.shape = {1, 32};
    q.packed = Tensor::empty({1, 34}, DType::U8);
    uint8_t* p = q.packed.data<uint8_t>();
    const uint16_t h = f32_to_f16(0.5f);
    std::memcpy(p, &h, 2);
    for (int i = 0; i < 32; ++i) p[2 + i] = (uint8_t)(i + 1);
    const Tensor w = quantized_weight_tensor(q, {1, 32});
    const Tensor x = Tensor::full({2, 32}, 1.0f), b = Tensor::full({1}, 0.25f);
    const bool was = cpu::q8_w8a8();
    for (const bool w8a8 : {false, true})
    for (const Precision pr : {Precision::BF16, Precision::FP32}) {
        cpu::set_q8_w8a8(w8a8);
        const std::vector<float> y = linear(x, w, b, pr).to_vector();
        cpu::set_q8_w8a8(was);
        ASSERT_EQ(y.size(), 2u);
        EXPECT_NEAR(y[0], 264.25f, 1e-4f);
        EXPECT_NEAR(y[1], 264.25f, 1e-4f);
    }
    Tensor yp = Tensor::empty({2, 1});
    cpu::quantized_gemm_w8a8_portable(x, *quantized_weight_view(w), b, yp);
    EXPECT_NEAR(yp.data<float>()[0], 264.25f, 1e-4f);
}

TEST(QuantizedMatmul, ShapeErrorsNameTheProblem) {
    const Tensor w = random_weight(GgmlType::Q4_K, {4, 256}, 40);
    EXPECT_THAT(error_of([&] { linear(random_input({2, 288}, 1), w); }), HasSubstr("does not match weight"));
    EXPECT_THAT(error_of([&] { linear(random_input({2, 256}, 1), w, Tensor::zeros({5})); }),
                HasSubstr("bias [5] for 4 outputs"));
    const auto v = *quantized_weight_view(w);
    Tensor y = Tensor::empty({2, 3});
    EXPECT_THAT(error_of([&] { cpu::quantized_gemm(random_input({2, 256}, 1), v, Tensor(), Precision::FP32, y); }),
                HasSubstr("output F32[2, 3] for 2 x 4"));
    Tensor y8 = Tensor::empty({2, 4});
    EXPECT_THAT(error_of([&] { cpu::quantized_gemm_w8a8_portable(random_input({2, 256}, 1), v, Tensor(), y8); }),
                HasSubstr("W8A8 needs a Q8_0 weight"));
    // Batched inputs keep their leading dims; an empty batch gives an empty result.
    EXPECT_EQ(linear(random_input({2, 3, 256}, 1), w).shape(), (Shape{2, 3, 4}));
    EXPECT_EQ(linear(Tensor::zeros({0, 256}), w).shape(), (Shape{0, 4}));
}

// Convolutions through im2col: against oneDNN's convolution with the dequantized weight (f32), 3x3 with padding,
// stride 2, dilation, and 1x1 (no im2col); K = C * kh * kw with an odd number of 32-blocks (C = 32: K = 288).
TEST(QuantizedConv, MatchesConvolutionWithDequantizedWeight) {
    struct Case { GgmlType t; int64_t C, O, k, stride, pad, dil; Precision p; };
    const Case cases[] = {
        {GgmlType::Q8_0, 32, 5, 3, 1, 1, 1, Precision::FP32}, {GgmlType::Q8_0, 32, 6, 3, 2, 1, 1, Precision::BF16},
        {GgmlType::Q4_0, 32, 7, 3, 1, 2, 2, Precision::FP32}, {GgmlType::Q5_1, 64, 3, 1, 1, 0, 1, Precision::BF16},
        {GgmlType::Q4_K, 256, 3, 3, 1, 1, 1, Precision::FP32}, {GgmlType::Q6_K, 256, 2, 1, 1, 0, 1, Precision::FP32},
    };
    for (const Case& c : cases) {
        const Tensor w = random_weight(c.t, {c.O, c.C, c.k, c.k}, 50 + (uint64_t)c.C + (uint64_t)c.O);
        const Tensor x = random_input({2, c.C, 6, 5}, 9), b = random_input({c.O}, 10);
        const Conv2dParams p{c.stride, {c.pad, c.pad, c.pad, c.pad}, c.dil, 1};
        const Tensor wd = dequantize_weight(w);
        const Tensor ref = conv2d(x, wd, b, p, Precision::FP32);
        const Tensor y = conv2d(x, w, b, p, c.p);
        ASSERT_EQ(y.shape(), ref.shape());
        const std::vector<float> yv = y.to_vector(), rv = ref.to_vector();
        // Relative to the output's scale: f32 sums in another order (1e-5); bf16 rounding of x and w (2^-9 each) or
        // W8A8's per-32 activation quantization (amax / 254 per value) over K = C * kh * kw random-sign terms.
        double worst = 0, scale = 0;
        for (size_t i = 0; i < yv.size(); ++i) {
            worst = std::max(worst, std::fabs((double)yv[i] - rv[i]));
            scale = std::max(scale, std::fabs((double)rv[i]));
        }
        const double rel = c.p == Precision::FP32 ? 1e-5 : (c.t == GgmlType::Q8_0 ? 0.03 : 0.01);
        EXPECT_LT(worst, rel * scale) << ggml_type_info(c.t).name << " k" << c.k << " s" << c.stride;
    }
    const Tensor w = random_weight(GgmlType::Q8_0, {4, 32, 1, 1}, 60);
    EXPECT_THAT(error_of([&] { conv2d(random_input({1, 64, 4, 4}, 1), w, Tensor(), Conv2dParams{1, {0, 0, 0, 0}, 1, 2}); }),
                HasSubstr("only groups = 1"));
    EXPECT_THAT(error_of([&] { conv2d(random_input({1, 64, 4, 4}, 1), w, Tensor(), Conv2dParams{}); }),
                HasSubstr("does not match weight"));
}

// A module loaded from quantized tensors: matrix weights stay handles (products use them), other parameters and
// loads that convert every weight get values.
TEST(QuantizedWeight, LoadModuleKeepsMatricesPacked) {
    struct Net : Module {
        Linear fc{64, 3};
        Conv2d conv{32, 4, 1};
        Param table{{3, 64}};
        void visit(ParamVisitor& v) override { v("fc", fc); v("conv", conv); v("table", table); }
    };
    std::map<std::string, Tensor> t;
    t["fc.weight"] = random_weight(GgmlType::Q4_1, {3, 64}, 70);
    t["fc.bias"] = random_input({3}, 71);
    t["conv.weight"] = random_weight(GgmlType::Q8_0, {4, 32}, 72);  // stored as [O, C]: a 1x1 conv's [O, C, 1, 1]
    t["conv.bias"] = random_input({4}, 73);
    t["table"] = random_weight(GgmlType::Q5_0, {3, 64}, 74);
    LoadOptions o;
    o.matrices_as_stored = true;
    Net net;
    load_module(net, t, o);
    EXPECT_TRUE(quantized_weight_view(*net.fc.weight).has_value());
    EXPECT_EQ(net.conv.weight.value.shape(), (Shape{4, 32, 1, 1}));
    EXPECT_TRUE(quantized_weight_view(*net.conv.weight).has_value());
    EXPECT_EQ(net.table.value.dtype(), DType::F32);
    EXPECT_EQ(net.table.value.to_vector(), dequantize_weight(t["table"]).to_vector());
    const Tensor x = random_input({2, 64}, 75);
    std::vector<double> ref, mag;
    reference(x, dequantize_weight(t["fc.weight"]), t["fc.bias"], ref, mag);
    const std::vector<float> y = net.fc(x).to_vector();
    for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-5 * mag[i] + 1e-6);
    Net plain;
    load_module(plain, t, LoadOptions{});
    EXPECT_EQ(plain.fc.weight.value.dtype(), DType::F32);
    EXPECT_EQ(plain.fc.weight.value.to_vector(), dequantize_weight(t["fc.weight"]).to_vector());
    t["fc.weight"] = random_weight(GgmlType::Q4_1, {2, 96}, 76);
    Net bad;
    EXPECT_THAT(error_of([&] { load_module(bad, t, o); }), HasSubstr("'fc.weight': expected [3, 64], got [2, 96]"));
}
