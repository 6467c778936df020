// Winograd F(4x4, 3x3) convolutions (backends/cpu/winograd.h) against a float64 direct convolution: edge tiles,
// channel tails (C, K not multiples of 8), every padding, chunked products, bias, f16/bf16 weights; and conv2d
// choosing it only where it applies.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/dnnl_cache.h"
#include "backends/cpu/winograd.h"
#include "backends/backend.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "ops/conv.h"

namespace nuance {
namespace {

Tensor randn(const Shape& s, uint64_t seed) { return make_rng(RngKind::Cpu, seed)->randn(s).contiguous(); }

// y[n][k][oy][ox] = b[k] + sum_c,i,j x[n][c][oy - pt + i][ox - pl + j] w[k][c][i][j] in float64.
std::vector<double> reference(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, int64_t Ho,
                              int64_t Wo) {
    const Tensor xc = x.contiguous(), wc = w.contiguous();
    const float* xd = xc.data<float>();
    const float* wd = wc.data<float>();
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = w.size(0);
    std::vector<double> y((size_t)(N * K * Ho * Wo));
    for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k)
            for (int64_t oy = 0; oy < Ho; ++oy)
                for (int64_t ox = 0; ox < Wo; ++ox) {
                    double s = b.defined() ? (double)b.data<float>()[k] : 0.0;
                    for (int64_t c = 0; c < C; ++c)
                        for (int64_t i = 0; i < 3; ++i)
                            for (int64_t j = 0; j < 3; ++j) {
                                const int64_t iy = oy - p.padding[0] + i, ix = ox - p.padding[1] + j;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                s += (double)xd[((n * C + c) * H + iy) * W + ix] * (double)wd[((k * C + c) * 3 + i) * 3 + j];
                            }
                    y[(size_t)(((n * K + k) * Ho + oy) * Wo + ox)] = s;
                }
    return y;
}

// max |got - ref| / max |ref|
double rel_err(const Tensor& got, const std::vector<double>& ref) {
    const Tensor g = got.contiguous();
    const float* gd = g.data<float>();
    EXPECT_EQ((size_t)g.numel(), ref.size());
    double err = 0, scale = 0;
    for (size_t i = 0; i < ref.size() && i < (size_t)g.numel(); ++i) {
        err = std::max(err, std::abs((double)gd[i] - ref[i]));
        scale = std::max(scale, std::abs(ref[i]));
    }
    return err / scale;
}

struct Case {
    int64_t N, C, H, W, K;
    std::array<int64_t, 4> pad;  // top, left, bottom, right
    bool bias;
};

void PrintTo(const Case& c, std::ostream* os) {
    *os << "x [" << c.N << ", " << c.C << ", " << c.H << ", " << c.W << "] -> " << c.K << " ch, pad " << c.pad[0] << "/"
        << c.pad[1] << "/" << c.pad[2] << "/" << c.pad[3] << (c.bias ? ", bias" : "");
}

class Winograd : public ::testing::TestWithParam<Case> {};

TEST_P(Winograd, MatchesFloat64InOneChunkAndInMany) {
    const Case c = GetParam();
    Conv2dParams p;
    p.padding = c.pad;
    const Tensor x = randn({c.N, c.C, c.H, c.W}, 1).channels_last();
    const Tensor w = randn({c.K, c.C, 3, 3}, 2);
    const Tensor b = c.bias ? randn({c.K}, 3) : Tensor();
    const int64_t Ho = c.H + c.pad[0] + c.pad[2] - 2, Wo = c.W + c.pad[1] + c.pad[3] - 2;
    const std::vector<double> ref = reference(x, w, b, p, Ho, Wo);
    const int64_t tiles = c.N * ((Ho + 3) / 4) * ((Wo + 3) / 4);
    const bool applies = tiles >= 64 && c.C >= 64;  // few-channel convolutions stay direct (transforms dominate)
    EXPECT_EQ(cpu::winograd_applies(x, w, p, false), applies) << tiles << " tiles, " << c.C << " channels";
    const Tensor y = cpu::winograd_conv2d(x, w, b, p);
    ASSERT_EQ(y.shape(), (Shape{c.N, c.K, Ho, Wo}));
    EXPECT_TRUE(y.is_channels_last());
    // F(4, 3)'s transforms cost a few bits, growing with the sum's length: 2-5e-6 of the output's scale at 8-64
    // channels (oneDNN's direct kernel: under 1e-6); a wrong transform or edge is off by O(1).
    const double e = rel_err(y, ref);
    EXPECT_LT(e, 1e-5 * std::sqrt((double)std::max<int64_t>(c.C, 8) / 8.0)) << "one chunk";
    // Chunks of 3 tiles (the last one short): the same numbers, bit for bit.
    const Tensor y3 = cpu::winograd_conv2d(x, w, b, p, 3);
    EXPECT_EQ(y3.contiguous().to_vector(), y.contiguous().to_vector());
    // conv2d takes this path for the channels-last fp32 input of 64 tiles and 64 channels or more; the plain NCHW
    // input (and smaller ones) run oneDNN's direct kernel.
    if (applies) EXPECT_EQ(conv2d(x, w, b, p, Precision::FP32).contiguous().to_vector(), y.contiguous().to_vector());
    // F16 / BF16 weights: the same as their f32 widening.
    for (DType t : {DType::F16, DType::BF16}) {
        const Tensor wt = w.to(t);
        EXPECT_EQ(cpu::winograd_conv2d(x, wt, b, p).contiguous().to_vector(),
                  cpu::winograd_conv2d(x, wt.f32(), b, p).contiguous().to_vector()) << dtype_name(t);
    }
    EXPECT_LT(rel_err(conv2d(x.contiguous(), w, b, p, Precision::FP32), ref), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Winograd,
                         ::testing::Values(Case{2, 16, 13, 13, 24, {1, 1, 1, 1}, true},    // edge tiles (13 = 3x4 + 1)
                                           Case{4, 16, 17, 15, 8, {1, 1, 1, 1}, true},     // 80 tiles: conv2d's path
                                           Case{1, 12, 9, 7, 10, {1, 1, 1, 1}, true},      // channel tails
                                           Case{1, 8, 6, 6, 8, {0, 0, 0, 0}, false},        // valid: one 4x4 tile
                                           Case{3, 9, 11, 10, 17, {0, 1, 1, 0}, true},      // asymmetric padding
                                           Case{1, 32, 16, 16, 40, {2, 2, 2, 2}, false},    // wider padding
                                           Case{2, 64, 8, 8, 64, {1, 1, 1, 1}, true},       // SD-like level
                                           Case{4, 64, 17, 15, 24, {1, 1, 1, 1}, true},     // 80 tiles, 64 ch: conv2d's path
                                           Case{1, 24, 32, 32, 16, {1, 1, 1, 1}, true}),    // 64 tiles
                         [](const auto& info) { return "case" + std::to_string(info.index); });

// In place of a bf16 convolution: only with many channels (C K / (C + K) >= 120) and at least 128 tiles.
TEST(WinogradChoice, Bf16ComputeOnlyWithManyChannelsAndTiles) {
    const Conv2dParams p = Conv2dParams::same(1);
    auto applies = [&](int64_t N, int64_t C, int64_t K, int64_t S) {
        return cpu::winograd_applies(randn({N, C, S, S}, 1).to(DType::BF16).channels_last(), randn({K, C, 3, 3}, 2), p,
                                     true);
    };
    EXPECT_TRUE(applies(1, 256, 256, 48));    // C K / (C + K) = 128, 144 tiles
    EXPECT_FALSE(applies(1, 256, 128, 48));   // 85
    EXPECT_FALSE(applies(1, 128, 128, 64));   // 64 (the VAE's full-resolution level loses)
    EXPECT_FALSE(applies(1, 256, 256, 40));   // 100 tiles
    EXPECT_TRUE(applies(2, 320, 320, 64));    // SD1.5's UNet at 512²
    EXPECT_FALSE(applies(2, 1280, 1280, 16)); // 32 tiles
    EXPECT_TRUE(applies(1, 512, 512, 64));    // the VAE decoder's mid level
    EXPECT_TRUE(cpu::winograd_applies(randn({1, 256, 48, 48}, 1).channels_last(), randn({256, 256, 3, 3}, 2), p, true));
    EXPECT_FALSE(cpu::winograd_applies(randn({1, 256, 48, 48}, 1).to(DType::F16).channels_last(),
                                       randn({256, 256, 3, 3}, 2), p, true));  // F16 input: oneDNN's path
}

// A bf16 channels-last input (the hand-off of a GroupNorm that rounds for a bf16 convolution) is read as it is: the
// result is bit for bit that of its exact f32 widening; and conv2d at bf16 compute takes this path where it applies,
// closer to a float64 convolution of the same rounded values than oneDNN's bf16 kernel (which also rounds the weight).
TEST(WinogradBf16, Bf16InputIsReadExactlyAndConv2dUsesIt) {
    const Conv2dParams p = Conv2dParams::same(1);
    const Tensor xb = randn({1, 256, 19, 21}, 3).to(DType::BF16).channels_last();  // 30 tiles, edge ones
    const Tensor w = randn({248, 256, 3, 3}, 4), b = randn({248}, 5);
    const Tensor x32 = xb.f32();
    ASSERT_TRUE(x32.is_channels_last());
    EXPECT_EQ(cpu::winograd_conv2d(xb, w, b, p).contiguous().to_vector(),
              cpu::winograd_conv2d(x32, w, b, p).contiguous().to_vector());
    EXPECT_EQ(cpu::winograd_conv2d(xb, w, b, p, 5).contiguous().to_vector(),
              cpu::winograd_conv2d(x32, w, b, p).contiguous().to_vector());  // chunks of 5 tiles: the same

    // 144 tiles, C K / (C + K) = 120: applies at bf16 (240 channels: under F(2x2) bf16's 256, which conv2d prefers)
    const Tensor xl = randn({1, 240, 48, 48}, 6).to(DType::BF16).channels_last();
    const Tensor wl = randn({240, 240, 3, 3}, 7), bl = randn({240}, 8);
    ASSERT_TRUE(cpu::winograd_applies(xl, wl, p, true));
    ASSERT_FALSE(cpu::winograd2_bf16_applies(xl, wl, p));
    const Tensor y = conv2d(xl, wl, bl, p, Precision::BF16);
    EXPECT_EQ(y.contiguous().to_vector(), cpu::winograd_conv2d(xl, wl, bl, p).contiguous().to_vector());
    const std::vector<double> ref = reference(xl.f32(), wl, bl, p, 48, 48);
    const double e = rel_err(y, ref);
    EXPECT_LT(e, 1e-5 * std::sqrt(240.0 / 8.0));
    // oneDNN's bf16 direct kernel on the same input (Winograd off for this call's shape is not switchable per call:
    // a 1x1-padded shape of 100 tiles takes the direct kernel) rounds the weight to bf16: ~1e-3.
    const Tensor xs = xl.slice(2, 0, 40).slice(3, 0, 40).contiguous().to(DType::BF16).channels_last();  // 100 tiles
    ASSERT_FALSE(cpu::winograd_applies(xs, wl, p, true));
    ASSERT_FALSE(cpu::winograd2_bf16_applies(xs, wl, p));
    const double e_direct = rel_err(conv2d(xs, wl, bl, p, Precision::BF16), reference(xs.f32(), wl, bl, p, 40, 40));
    EXPECT_GT(e_direct, 10 * e);
}

TEST(WinogradChoice, OnlyFp32Stride1Dilation1Groups1ChannelsLast3x3) {
    const Tensor x = randn({1, 64, 32, 32}, 4).channels_last();
    const Tensor w = randn({16, 64, 3, 3}, 5);
    Conv2dParams p = Conv2dParams::same(1);
    EXPECT_TRUE(cpu::winograd_applies(x, w, p, false));
    EXPECT_FALSE(cpu::winograd_applies(randn({1, 32, 32, 32}, 4).channels_last(), randn({16, 32, 3, 3}, 5), p, false));
    EXPECT_FALSE(cpu::winograd_applies(x, w, p, true));                // bf16 compute: 64 -> 16 channels
    EXPECT_FALSE(cpu::winograd_applies(x.contiguous(), w, p, false));   // NCHW
    EXPECT_FALSE(cpu::winograd_applies(x, randn({16, 64, 1, 1}, 6), Conv2dParams{}, false));  // 1x1
    EXPECT_FALSE(cpu::winograd_applies(x, w, Conv2dParams::same(1, 2), false));               // stride 2
    Conv2dParams d = Conv2dParams::same(2);
    d.dilation = 2;
    EXPECT_FALSE(cpu::winograd_applies(x, w, d, false));
    EXPECT_FALSE(cpu::winograd_applies(randn({1, 4, 32, 32}, 7).channels_last(), randn({16, 4, 3, 3}, 8), p, false));
    EXPECT_FALSE(cpu::winograd_applies(randn({1, 64, 2, 2}, 9).channels_last(), w, p, false));  // output under 4x4
    EXPECT_FALSE(cpu::winograd_applies(randn({3, 64, 16, 16}, 9).channels_last(), w, p, false));  // 48 tiles
    EXPECT_TRUE(cpu::winograd_applies(randn({4, 64, 16, 16}, 9).channels_last(), w, p, false));   // 64 tiles
}

// The kernels are transformed on every call (nothing kept): a weight edited in place takes effect at once.
TEST(WinogradChoice, WeightsEditedInPlaceTakeEffect) {
    const Tensor x = randn({1, 16, 12, 12}, 10).channels_last();
    Tensor w = randn({16, 16, 3, 3}, 11);
    const Conv2dParams p = Conv2dParams::same(1);
    const std::vector<float> y1 = cpu::winograd_conv2d(x, w, Tensor(), p).contiguous().to_vector();
    float* wd = w.data<float>();
    for (int64_t i = 0; i < w.numel(); ++i) wd[i] *= 2.0f;
    const std::vector<float> y2 = cpu::winograd_conv2d(x, w, Tensor(), p).contiguous().to_vector();
    for (size_t i = 0; i < y1.size(); ++i) EXPECT_EQ(y2[i], 2.0f * y1[i]) << i;  // powers of 2 commute with rounding
}


// ---- F(2x2, 3x3) with bf16 products (winograd2_bf16_conv2d).

float round_bf16(float v) { return bf16_to_f32(f32_to_bf16(v)); }

// The algorithm emulated: V = B^T d B and U = G g G^T in f32 as the kernel forms them (same operations, same order),
// each rounded to bf16, then the products and the output transform in float64. The kernel's only other rounding is
// its f32 accumulation.
std::vector<double> f2_emulated(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, int64_t Ho,
                                int64_t Wo) {
    const Tensor xc = x.f32().contiguous(), wc = w.f32().contiguous();
    const float* xd = xc.data<float>();
    const float* wd = wc.data<float>();
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = w.size(0);
    std::vector<float> U((size_t)(16 * C * K));
    for (int64_t k = 0; k < K; ++k)
        for (int64_t c = 0; c < C; ++c) {
            const float* g = wd + (k * C + c) * 9;
            float t[4][3];
            for (int j = 0; j < 3; ++j) {
                t[0][j] = g[j], t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]), t[3][j] = g[6 + j];
            }
            for (int i = 0; i < 4; ++i) {
                const float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]),
                                    t[i][2]};
                for (int j = 0; j < 4; ++j) U[(size_t)(((i * 4 + j) * C + c) * K + k)] = round_bf16(u[j]);
            }
        }
    std::vector<double> y((size_t)(N * K * Ho * Wo));
    std::vector<float> V((size_t)(16 * C));
    for (int64_t n = 0; n < N; ++n)
        for (int64_t ty = 0; ty < (Ho + 1) / 2; ++ty)
            for (int64_t tx = 0; tx < (Wo + 1) / 2; ++tx) {
                for (int64_t c = 0; c < C; ++c) {
                    float d[4][4], s[4][4];
                    for (int i = 0; i < 4; ++i)
                        for (int j = 0; j < 4; ++j) {
                            const int64_t iy = ty * 2 - p.padding[0] + i, ix = tx * 2 - p.padding[1] + j;
                            d[i][j] = iy < 0 || iy >= H || ix < 0 || ix >= W ? 0.0f : xd[((n * C + c) * H + iy) * W + ix];
                        }
                    for (int j = 0; j < 4; ++j) {
                        s[0][j] = d[0][j] - d[2][j], s[1][j] = d[1][j] + d[2][j];
                        s[2][j] = d[2][j] - d[1][j], s[3][j] = d[1][j] - d[3][j];
                    }
                    for (int i = 0; i < 4; ++i) {
                        V[(size_t)((i * 4 + 0) * C + c)] = round_bf16(s[i][0] - s[i][2]);
                        V[(size_t)((i * 4 + 1) * C + c)] = round_bf16(s[i][1] + s[i][2]);
                        V[(size_t)((i * 4 + 2) * C + c)] = round_bf16(s[i][2] - s[i][1]);
                        V[(size_t)((i * 4 + 3) * C + c)] = round_bf16(s[i][1] - s[i][3]);
                    }
                }
                for (int64_t k = 0; k < K; ++k) {
                    double m[4][4];
                    for (int e = 0; e < 16; ++e) {
                        double acc = 0;
                        for (int64_t c = 0; c < C; ++c)
                            acc += (double)V[(size_t)(e * C + c)] * (double)U[(size_t)((e * C + c) * K + k)];
                        m[e / 4][e % 4] = acc;
                    }
                    for (int i = 0; i < 2; ++i) {
                        double sj[4];
                        for (int j = 0; j < 4; ++j) sj[j] = i == 0 ? m[0][j] + m[1][j] + m[2][j] : m[1][j] - m[2][j] - m[3][j];
                        const double o[2] = {sj[0] + sj[1] + sj[2], sj[1] - sj[2] - sj[3]};
                        for (int j = 0; j < 2; ++j) {
                            const int64_t oy = ty * 2 + i, ox = tx * 2 + j;
                            if (oy >= Ho || ox >= Wo) continue;
                            y[(size_t)(((n * K + k) * Ho + oy) * Wo + ox)] =
                                o[j] + (b.defined() ? (double)b.data<float>()[k] : 0.0);
                        }
                    }
                }
            }
    return y;
}

// RMS |got - ref| / RMS |ref|
double rms_rel_err(const Tensor& got, const std::vector<double>& ref) {
    const Tensor g = got.contiguous();
    const float* gd = g.data<float>();
    double err = 0, scale = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        err += (gd[i] - ref[i]) * (gd[i] - ref[i]);
        scale += ref[i] * ref[i];
    }
    return std::sqrt(err / scale);
}

class Winograd2Bf16 : public ::testing::TestWithParam<Case> {};

TEST_P(Winograd2Bf16, IsTheF2AlgorithmAndWithinTwiceTheBf16Rounding) {
    if (!cpu::winograd2_bf16_supported()) GTEST_SKIP() << "the CPU has no AVX512_BF16";
    const Case c = GetParam();
    Conv2dParams p;
    p.padding = c.pad;
    const Tensor x = randn({c.N, c.C, c.H, c.W}, 21).channels_last();
    const Tensor w = randn({c.K, c.C, 3, 3}, 22);
    const Tensor b = c.bias ? randn({c.K}, 23) : Tensor();
    const int64_t Ho = c.H + c.pad[0] + c.pad[2] - 2, Wo = c.W + c.pad[1] + c.pad[3] - 2;
    const Tensor y = cpu::winograd2_bf16_conv2d(x, w, b, p);
    ASSERT_EQ(y.shape(), (Shape{c.N, c.K, Ho, Wo}));
    EXPECT_TRUE(y.is_channels_last());
    // The algorithm, element by element: only the f32 accumulation differs (a wrong transform, edge or tail is O(1)).
    EXPECT_LT(rel_err(y, f2_emulated(x, w, b, p, Ho, Wo)), 2e-6 * std::sqrt((double)c.C));
    // Against the exact convolution: V's and U's bf16 roundings, ~1.7x the direct bf16 kernel's (which rounds x and
    // w once each: RMS ~2.4e-3 of the output's scale).
    const std::vector<double> ref = reference(x, w, b, p, Ho, Wo);
    EXPECT_LT(rms_rel_err(y, ref), 8e-3);
    EXPECT_LT(rel_err(y, ref), 4e-2);
    // Chunks of 3 tiles (the last one short), and a bf16 input (read exactly): the same numbers.
    const std::vector<float> y1 = y.contiguous().to_vector();
    const std::vector<float> y3 = cpu::winograd2_bf16_conv2d(x, w, b, p, 3).contiguous().to_vector();
    ASSERT_EQ(y3.size(), y1.size());
    for (size_t i = 0; i < y1.size(); ++i) ASSERT_NEAR(y3[i], y1[i], 1e-5 * (1 + std::abs(y1[i]))) << i;
    const Tensor xb = x.to(DType::BF16);
    ASSERT_TRUE(xb.is_channels_last());
    EXPECT_LT(rel_err(cpu::winograd2_bf16_conv2d(xb, w, b, p), f2_emulated(xb, w, b, p, Ho, Wo)), 2e-6 * std::sqrt((double)c.C));
    // F16 / BF16 weights: as their f32 widening.
    for (DType t : {DType::F16, DType::BF16}) {
        const Tensor wt = w.to(t);
        EXPECT_EQ(cpu::winograd2_bf16_conv2d(x, wt, b, p).contiguous().to_vector(),
                  cpu::winograd2_bf16_conv2d(x, wt.f32(), b, p).contiguous().to_vector()) << dtype_name(t);
    }
    clear_packed_weights();
}

INSTANTIATE_TEST_SUITE_P(Shapes, Winograd2Bf16,
                         ::testing::Values(Case{2, 40, 13, 13, 24, {1, 1, 1, 1}, true},   // odd size: clipped tiles
                                           Case{1, 17, 9, 7, 19, {1, 1, 1, 1}, true},     // channel tails (16 + 1)
                                           Case{1, 16, 4, 4, 16, {0, 0, 0, 0}, false},    // valid: one tile
                                           Case{3, 9, 11, 10, 33, {0, 1, 1, 0}, true},    // asymmetric padding
                                           Case{1, 32, 8, 8, 40, {2, 2, 2, 2}, false},    // wider padding
                                           Case{2, 64, 10, 10, 48, {1, 1, 1, 1}, true}),  // 50 tiles
                         [](const auto& info) { return "case" + std::to_string(info.index); });

// Where conv2d takes it (bf16 compute): C and K >= 256 (or >= 128 on a map of 256² outputs) and >= 64 2x2 tiles,
// ahead of F(4x4) f32; the transformed kernels are kept like a packed weight and dropped with it.
TEST(Winograd2Bf16Choice, Conv2dUsesItWhereItAppliesAndKeepsTheKernels) {
    if (!cpu::winograd2_bf16_supported()) GTEST_SKIP() << "the CPU has no AVX512_BF16";
    const Conv2dParams p = Conv2dParams::same(1);
    auto applies = [&](int64_t N, int64_t C, int64_t K, int64_t S) {
        return cpu::winograd2_bf16_applies(Tensor::empty_channels_last({N, C, S, S}), Tensor::empty({K, C, 3, 3}, DType::F32),
                                           p);  // shapes only
    };
    EXPECT_TRUE(applies(2, 320, 320, 64));     // SD1.5's UNet at 512²: 2048 tiles
    EXPECT_TRUE(applies(2, 1280, 1280, 16));   // 128 tiles
    EXPECT_TRUE(applies(1, 1280, 1280, 16));   // 64 tiles
    EXPECT_FALSE(applies(2, 1280, 1280, 8));   // 32 tiles: reading U dominates
    EXPECT_FALSE(applies(2, 256, 240, 32));    // K under 256
    EXPECT_FALSE(applies(32, 128, 128, 16));   // 128 channels on a small map
    EXPECT_TRUE(applies(1, 128, 128, 256));    // ... on a large one (the VAE decoder's last level)
    EXPECT_FALSE(applies(1, 96, 96, 256));
    EXPECT_FALSE(cpu::winograd2_bf16_applies(randn({1, 256, 16, 16}, 1), randn({256, 256, 3, 3}, 2), p));  // NCHW
    EXPECT_FALSE(cpu::winograd2_bf16_applies(randn({1, 256, 16, 16}, 1).to(DType::F16).channels_last(),
                                             randn({256, 256, 3, 3}, 2), p));  // F16 input
    EXPECT_FALSE(cpu::winograd2_bf16_applies(randn({1, 256, 16, 16}, 1).channels_last(), randn({256, 256, 3, 3}, 2),
                                             Conv2dParams::same(1, 2)));  // stride 2

    clear_packed_weights();
    const Tensor x = randn({1, 256, 16, 16}, 31).channels_last();
    const Tensor w = randn({256, 256, 3, 3}, 32).to(DType::BF16), b = randn({256}, 33);
    ASSERT_TRUE(cpu::winograd2_bf16_applies(x, w, p));
    const size_t before = cpu::packed_weights_bytes();
    const std::vector<float> y = conv2d(x, w, b, p, Precision::BF16).contiguous().to_vector();
    const size_t kept = cpu::packed_weights_bytes() - before;
    EXPECT_GE(kept, (size_t)(16 * 256 * 256 * 2));  // U: 16 x C x K bf16 (in oneDNN's layout, maybe padded)
    EXPECT_EQ(y, cpu::winograd2_bf16_conv2d(x, w, b, p).contiguous().to_vector());
    EXPECT_EQ(cpu::packed_weights_bytes() - before, kept);  // the second call used the kept copy
    EXPECT_EQ(cpu::release_packed_weight(w), kept);
    EXPECT_EQ(cpu::packed_weights_bytes(), before);
    // Released, then edited in place: the next call transforms the new values (the optimisers clear every packed copy
    // after a step, as for oneDNN's).
    uint16_t* wd = w.data<uint16_t>();
    for (int64_t i = 0; i < w.numel(); ++i) wd[i] = f32_to_bf16(2.0f * bf16_to_f32(wd[i]));
    const std::vector<float> y2 = conv2d(x, w, b, p, Precision::BF16).contiguous().to_vector();
    const std::vector<float> bv = b.to_vector();
    for (size_t i = 0; i < y.size(); i += 97) {
        const float bk = bv[(i / (16 * 16)) % 256];  // NCHW order
        EXPECT_NEAR(y2[i] - bk, 2.0f * (y[i] - bk), 1e-4f * (1 + std::abs(y[i]))) << i;
    }
    clear_packed_weights();
}

}  // namespace
}  // namespace nuance
