// Winograd F(4x4, 3x3) convolutions (backends/cpu/winograd.h) against a float64 direct convolution: edge tiles,
// channel tails (C, K not multiples of 8), every padding, chunked products, bias, f16/bf16 weights; and conv2d
// choosing it only where it applies.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/winograd.h"
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

    const Tensor xl = randn({1, 256, 48, 48}, 6).to(DType::BF16).channels_last();  // 144 tiles: applies at bf16
    const Tensor wl = randn({256, 256, 3, 3}, 7), bl = randn({256}, 8);
    ASSERT_TRUE(cpu::winograd_applies(xl, wl, p, true));
    const Tensor y = conv2d(xl, wl, bl, p, Precision::BF16);
    EXPECT_EQ(y.contiguous().to_vector(), cpu::winograd_conv2d(xl, wl, bl, p).contiguous().to_vector());
    const std::vector<double> ref = reference(xl.f32(), wl, bl, p, 48, 48);
    const double e = rel_err(y, ref);
    EXPECT_LT(e, 1e-5 * std::sqrt(256.0 / 8.0));
    // oneDNN's bf16 direct kernel on the same input (Winograd off for this call's shape is not switchable per call:
    // a 1x1-padded shape of 100 tiles takes the direct kernel) rounds the weight to bf16: ~1e-3.
    const Tensor xs = xl.slice(2, 0, 40).slice(3, 0, 40).contiguous().to(DType::BF16).channels_last();  // 100 tiles
    ASSERT_FALSE(cpu::winograd_applies(xs, wl, p, true));
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

}  // namespace
}  // namespace nuance
