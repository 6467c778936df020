// The speed paths of the ops (issue 5) against plain references: channels-last layouts, bf16 products, packed
// weights, tiled and fused attention, vectorised math, the caching allocator.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "../test_util.h"
#include "backends/cpu/dnnl_cache.h"
#include "backends/cpu/flash_attention.h"
#include "backends/cpu/vec_math.h"
#include "core/allocator.h"
#include "core/op_stats.h"
#include "ops/ops.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;

Tensor randn(const Shape& s, uint32_t seed, float scale = 1.0f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v((size_t)shape_numel(s));
    for (float& x : v) x = d(g);
    return Tensor::from_vector(v, s);
}

// Round every element to the nearest bf16 (what a bf16 product sees).
Tensor round_bf16(const Tensor& t) { return t.to(DType::BF16).f32(); }

TEST(Layout, ChannelsLastViewsAndCopies) {
    const Tensor x = randn({2, 3, 4, 5}, 1);
    const Tensor cl = x.channels_last();
    EXPECT_TRUE(cl.is_channels_last());
    EXPECT_FALSE(cl.is_contiguous());
    EXPECT_TRUE(cl.is_dense());
    EXPECT_EQ(cl.strides(), (Shape{60, 1, 15, 3}));
    EXPECT_EQ(cl.memory_order(), (std::vector<int64_t>{0, 2, 3, 1}));
    EXPECT_EQ(max_abs_diff(cl, x), 0.0f);
    EXPECT_EQ(cl.contiguous().to_vector(), x.to_vector());
    // empty_like and to() keep a dense layout; a slice is not dense
    EXPECT_EQ(Tensor::empty_like(cl, DType::F32).strides(), cl.strides());
    EXPECT_EQ(cl.to(DType::BF16).strides(), cl.strides());
    EXPECT_FALSE(x.slice(1, 0, 2).is_dense());
    // f16 -> bf16 (weight files packed for bf16 products) equals the conversion through f32
    const Tensor h = randn({3, 5000}, 99).to(DType::F16);
    EXPECT_EQ(h.to(DType::BF16).to_vector(), h.f32().to(DType::BF16).to_vector());
    EXPECT_THAT(test::error_of([&] { Tensor::empty_channels_last({2, 3}); }), HasSubstr("need [N, C, H, W]"));
}

TEST(Layout, ElementwiseKeepsChannelsLastAndBroadcasts) {
    const Tensor a = randn({2, 8, 3, 5}, 2), b = randn({2, 8, 3, 5}, 3), t = randn({2, 8, 1, 1}, 4);
    const Tensor acl = a.channels_last(), bcl = b.channels_last();
    const Tensor s = acl + bcl;
    EXPECT_TRUE(s.is_channels_last());
    EXPECT_EQ(max_abs_diff(s, a + b), 0.0f);
    const Tensor m = acl * b;  // mixed layouts: result follows the first dense operand
    EXPECT_TRUE(m.is_channels_last());
    EXPECT_EQ(max_abs_diff(m, a * b), 0.0f);
    const Tensor bt = acl + t;  // per-(n, c) broadcast walked in memory order
    EXPECT_TRUE(bt.is_channels_last());
    EXPECT_EQ(max_abs_diff(bt, a + t), 0.0f);
    Tensor target = Tensor::empty_channels_last(a.shape());
    target.copy_(a);
    add_(target, t);
    EXPECT_EQ(max_abs_diff(target, a + t), 0.0f);
    EXPECT_TRUE(silu(acl).is_channels_last());
    EXPECT_LT(max_abs_diff(silu(acl), silu(a)), 1e-7f);
}

TEST(Layout, ConvGroupNormCatUpsampleMatchNchw) {
    const Tensor x = randn({2, 16, 9, 7}, 5), w = randn({8, 16, 3, 3}, 6, 0.1f), b = randn({8}, 7);
    const Conv2dParams p = Conv2dParams::same(1);
    const Tensor ref = conv2d(x, w, b, p);
    const Tensor y = conv2d(x.channels_last(), w, b, p);
    EXPECT_TRUE(y.is_channels_last());
    EXPECT_TRUE(ref.is_contiguous());
    EXPECT_LT(max_abs_diff(y, ref), 1e-5f);
    const Tensor strided = conv2d(x.channels_last(), w, b, Conv2dParams::same(1, 2));
    EXPECT_LT(max_abs_diff(strided, conv2d(x, w, b, Conv2dParams::same(1, 2))), 1e-5f);

    const Tensor gw = randn({16}, 8), gb = randn({16}, 9);
    for (bool fuse : {false, true}) {
        const Tensor g = group_norm(x.channels_last(), 4, gw, gb, 1e-5f, fuse);
        EXPECT_TRUE(g.is_channels_last());
        EXPECT_LT(max_abs_diff(g, group_norm(x, 4, gw, gb, 1e-5f, fuse)), 2e-6f);
    }
    const Tensor c = cat({x.channels_last(), x.channels_last()}, 1);
    EXPECT_TRUE(c.is_channels_last());
    EXPECT_EQ(max_abs_diff(c, cat({x, x}, 1)), 0.0f);
    const Tensor u = interpolate_nearest(x.channels_last(), 18, 14);
    EXPECT_TRUE(u.is_channels_last());
    EXPECT_EQ(max_abs_diff(u, interpolate_nearest(x, 18, 14)), 0.0f);
}

TEST(Bf16, ProductsEqualF32ProductsOfRoundedOperands) {
    const Tensor x = randn({37, 64}, 10), w = randn({48, 64}, 11, 0.2f), b = randn({48}, 12);
    const Tensor y = linear(x, w, b, Precision::BF16);
    const Tensor ref = linear(round_bf16(x), round_bf16(w), b, Precision::FP32);
    EXPECT_LT(max_abs_diff(y, ref), 1e-5f * max_abs(ref));
    EXPECT_GT(max_abs_diff(y, linear(x, w, b, Precision::FP32)), 0.0f);  // really rounded
    // Auto follows the weight's dtype
    EXPECT_EQ(max_abs_diff(linear(x, w.to(DType::BF16), b), y), 0.0f);

    const Tensor xi = randn({1, 32, 6, 6}, 13), wc = randn({16, 32, 3, 3}, 14, 0.1f);
    const Tensor yc = conv2d(xi, wc, Tensor(), Conv2dParams::same(1), Precision::BF16);
    EXPECT_TRUE(yc.is_contiguous());  // NCHW in, NCHW out, even though bf16 runs channels-last inside
    const Tensor rc = conv2d(round_bf16(xi), round_bf16(wc), Tensor(), Conv2dParams::same(1), Precision::FP32);
    EXPECT_LT(max_abs_diff(yc, rc), 1e-5f * max_abs(rc));
}

// Ops whose output feeds only bf16 products round it themselves (one pass less); the values must be exactly those
// the product would have rounded, and the products must take such bf16 inputs as they are.
TEST(Bf16Handoff, RoundingInTheProducerEqualsRoundingInTheConsumer) {
    auto same_bits = [](const Tensor& a, const Tensor& b) {
        ASSERT_EQ(a.dtype(), DType::BF16);
        ASSERT_EQ(a.shape(), b.shape());
        const Tensor ac = a.contiguous(), bc = b.to(DType::BF16).contiguous();
        EXPECT_EQ(std::memcmp(ac.raw(), bc.raw(), ac.nbytes()), 0);
    };
    const Tensor x = randn({2, 64, 9, 7}, 50).channels_last(), gw = randn({64}, 51), gb = randn({64}, 52);
    for (bool silu : {false, true}) {
        const Tensor g16 = group_norm(x, 32, gw, gb, 1e-5f, silu, DType::BF16);
        EXPECT_TRUE(g16.is_channels_last());
        same_bits(g16, group_norm(x, 32, gw, gb, 1e-5f, silu));
    }
    same_bits(group_norm(x.contiguous(), 32, gw, gb, 1e-5f, true, DType::BF16), group_norm(x.contiguous(), 32, gw, gb, 1e-5f, true));
    const Tensor t = randn({3, 50, 96}, 53), lw = randn({96}, 54), lb = randn({96}, 55);
    same_bits(layer_norm(t, lw, lb, 1e-5f, DType::BF16), layer_norm(t, lw, lb, 1e-5f));
    same_bits(geglu(t, DType::BF16), geglu(t));
    const Tensor w = randn({40, 96}, 56), b = randn({40}, 57);
    same_bits(linear(t, w, b, Precision::BF16, DType::BF16), linear(t, w, b, Precision::BF16));
    // bf16 inputs: the same result as the f32 input the product rounds to the same values
    EXPECT_EQ(max_abs_diff(linear(t.to(DType::BF16), w, b, Precision::BF16), linear(t, w, b, Precision::BF16)), 0.0f);
    const Tensor cw = randn({16, 64, 3, 3}, 58), cb = randn({16}, 59);
    const Conv2dParams cp = Conv2dParams::same(1);
    EXPECT_EQ(max_abs_diff(conv2d(x.to(DType::BF16), cw, cb, cp, Precision::BF16), conv2d(x, cw, cb, cp, Precision::BF16)),
              0.0f);
    same_bits(interpolate_nearest(x, 18, 14, DType::BF16), interpolate_nearest(x, 18, 14));
    EXPECT_TRUE(interpolate_nearest(x, 18, 14, DType::BF16).is_channels_last());
    EXPECT_THAT(test::error_of([&] { layer_norm(t, lw, lb, 1e-5f, DType::F16); }), HasSubstr("output dtype F16"));
    EXPECT_THAT(test::error_of([&] { linear(t, w, b, Precision::BF16, DType::I64); }), HasSubstr("output dtype"));
}

// The channels-last GroupNorm takes its statistics in one pass about a per-channel shift: values far from zero with
// a small spread (where a plain sum of squares loses everything) match the two-pass planar path.
TEST(GroupNorm, OnePassStatisticsHoldForLargeOffsets) {
    const Tensor noise = randn({1, 64, 33, 31}, 60, 1e-2f);
    const Tensor x = add(noise, 1000.0f);
    const Tensor planar = group_norm(x, 32, Tensor(), Tensor(), 1e-6f);
    const Tensor cl = group_norm(x.channels_last(), 32, Tensor(), Tensor(), 1e-6f);
    // reference in double from the same f32 inputs
    const auto xv = x.to_vector(), yv = cl.contiguous().to_vector();
    const int64_t per_group = 2 * 33 * 31;
    double worst = 0;
    for (int64_t g = 0; g < 32; ++g) {
        double mu = 0, var = 0;
        for (int64_t i = 0; i < per_group; ++i) mu += xv[g * per_group + i];
        mu /= per_group;
        for (int64_t i = 0; i < per_group; ++i) var += (xv[g * per_group + i] - mu) * (xv[g * per_group + i] - mu);
        const double rstd = 1.0 / std::sqrt(var / per_group + 1e-6);
        for (int64_t i = 0; i < per_group; ++i)
            worst = std::max(worst, std::fabs((xv[g * per_group + i] - mu) * rstd - yv[g * per_group + i]));
    }
    // outputs of size ~1; the affine x·a + b at x ~ 1000, a ~ 100 costs ~1e-2 in f32 on either path
    EXPECT_LT(worst, 0.03);
    EXPECT_LT(max_abs_diff(cl, planar), 0.03f);
    EXPECT_GT(max_abs_diff(planar, Tensor::zeros(planar.shape())), 1.0f);  // normalised, not collapsed
}

TEST(PackedWeights, PackedOnceAndDroppedWithTheWeight) {
    cpu::clear_packed_weights();
    const Tensor x = randn({3, 32, 8, 8}, 15).channels_last();
    {
        const Tensor w = randn({32, 32, 3, 3}, 16, 0.1f).to(DType::F16);  // stored dtype != compute dtype
        const Tensor y1 = conv2d(x, w, Tensor(), Conv2dParams::same(1), Precision::FP32);
        const size_t packed = cpu::packed_weights_bytes();
        EXPECT_GT(packed, 0u);
        const Tensor y2 = conv2d(x, w, Tensor(), Conv2dParams::same(1), Precision::FP32);
        EXPECT_EQ(cpu::packed_weights_bytes(), packed);  // reused, not packed again
        EXPECT_EQ(max_abs_diff(y1, y2), 0.0f);
        EXPECT_LT(max_abs_diff(y1, conv2d(x, w.f32(), Tensor(), Conv2dParams::same(1))), 1e-5f);
    }
    // the weight is gone: its entry is dropped on the next packing
    const Tensor w2 = randn({32, 32, 3, 3}, 17, 0.1f).to(DType::F16);
    conv2d(x, w2, Tensor(), Conv2dParams::same(1), Precision::FP32);
    EXPECT_LE(cpu::packed_weights_bytes(), (size_t)32 * 32 * 9 * 4 + 4096);
    EXPECT_THAT(test::error_of([&] { linear(x, Tensor::from_ids({1, 2}, {1, 2})); }), HasSubstr("linear"));
    EXPECT_THAT(test::error_of([&] { parse_precision("fp8"); }), HasSubstr("unknown precision 'fp8'"));
}

// Attention by the book: softmax(q kᵀ * scale + bias, masked) v, in double.
std::vector<double> naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, float scale,
                                    const Tensor& bias) {
    const int64_t B = q.size(0), H = q.size(1), Lq = q.size(2), d = q.size(3), Lk = k.size(2), dv = v.size(3);
    const auto Q = q.contiguous().to_vector(), K = k.contiguous().to_vector(), V = v.contiguous().to_vector();
    const auto Bi = bias.defined() ? bias.expand({B, H, Lq, Lk}).contiguous().to_vector() : std::vector<float>();
    std::vector<double> out((size_t)(B * H * Lq * dv), 0.0);
    for (int64_t bh = 0; bh < B * H; ++bh)
        for (int64_t i = 0; i < Lq; ++i) {
            std::vector<double> s((size_t)Lk, -INFINITY);
            double m = -INFINITY;
            for (int64_t j = 0; j < (causal ? std::min(Lk, i + 1) : Lk); ++j) {
                double acc = 0;
                for (int64_t c = 0; c < d; ++c) acc += (double)Q[(bh * Lq + i) * d + c] * K[(bh * Lk + j) * d + c];
                s[j] = acc * scale + (Bi.empty() ? 0.0 : Bi[(bh * Lq + i) * Lk + j]);
                m = std::max(m, s[j]);
            }
            double z = 0;
            for (double& e : s) z += (e = std::exp(e - m));
            for (int64_t j = 0; j < Lk; ++j)
                for (int64_t c = 0; c < dv; ++c) out[(bh * Lq + i) * dv + c] += s[j] / z * V[(bh * Lk + j) * dv + c];
        }
    return out;
}

TEST(Attention, TiledKernelMatchesTheDefinition) {
    // Lk large enough for several query tiles; odd sizes; causal; an additive bias
    const Tensor q = randn({2, 3, 300, 24}, 20), k = randn({2, 3, 300, 24}, 21), v = randn({2, 3, 300, 16}, 22);
    const Tensor bias = randn({1, 3, 300, 300}, 23);
    for (bool causal : {false, true})
        for (bool with_bias : {false, true}) {
            const Tensor bb = with_bias ? bias : Tensor();
            const Tensor o = scaled_dot_product_attention(q, k, v, causal, 0.0f, bb);
            const auto ref = naive_attention(q, k, v, causal, 1.0f / std::sqrt(24.0f), bb);
            const auto got = o.to_vector();
            double worst = 0;
            for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(ref[i] - got[i]));
            EXPECT_LT(worst, 2e-5) << "causal " << causal << " bias " << with_bias;
        }
    // bf16 operands: error of bf16 rounding (~2^-8 relative), far below the values' scale
    const Tensor ob = scaled_dot_product_attention(q.to(DType::BF16), k.to(DType::BF16), v.to(DType::BF16));
    EXPECT_LT(max_abs_diff(ob, scaled_dot_product_attention(q, k, v)), 0.05f);
    // token-major multi-head wrapper = the per-head kernel
    const Tensor qt = q.permute({0, 2, 1, 3}).reshape({2, 300, 72});
    const Tensor kt = k.permute({0, 2, 1, 3}).reshape({2, 300, 72});
    const Tensor vt = v.permute({0, 2, 1, 3}).reshape({2, 300, 48});
    const Tensor mh = multi_head_attention(qt, kt, vt, 3);
    EXPECT_LT(max_abs_diff(mh, scaled_dot_product_attention(q, k, v).permute({0, 2, 1, 3}).reshape({2, 300, 48})),
              1e-6f);
    EXPECT_THAT(test::error_of([&] { multi_head_attention(qt, kt, vt, 5); }), HasSubstr("do not split into 5 heads"));
}

// Switches the fused kernel off for a scope (the oneDNN tiled path then runs), and back on after.
struct FlashOff {
    FlashOff() { cpu::set_flash_attention_enabled(false); }
    ~FlashOff() { cpu::set_flash_attention_enabled(true); }
};

double worst_vs_naive(const Tensor& o, const std::vector<double>& ref) {
    const auto got = o.contiguous().to_vector();
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(ref[i] - got[i]));
    return worst;
}

TEST(Attention, FusedKernelMatchesTheDefinition) {
    if (!cpu::flash_attention_available(false)) GTEST_SKIP() << "no AVX-512 on this CPU: the fused kernel never runs";
    // Shapes around every block edge: query tiles of 64, key blocks of 128 and 16, head dims that are odd, not a
    // multiple of 16 (40, the SD1 64x64 level) or above 64 channels (80, 100); 77 keys (a CLIP context); 1 token.
    struct Case {
        int64_t B, H, Lq, Lk, d, dv;
    };
    const Case cases[] = {{2, 3, 300, 300, 24, 16}, {1, 2, 130, 77, 40, 40}, {1, 1, 64, 129, 80, 80},
                          {2, 1, 65, 256, 7, 100},  {1, 1, 1, 1, 40, 40},    {1, 2, 200, 17, 160, 160}};
    uint32_t seed = 100;
    for (const Case& c : cases)
        for (bool causal : {false, true}) {
            const Tensor q = randn({c.B, c.H, c.Lq, c.d}, seed++), k = randn({c.B, c.H, c.Lk, c.d}, seed++);
            const Tensor v = randn({c.B, c.H, c.Lk, c.dv}, seed++);
            const float scale = 1.0f / std::sqrt((float)c.d);
            const std::string what = "B" + std::to_string(c.B) + " H" + std::to_string(c.H) + " Lq" + std::to_string(c.Lq) +
                                     " Lk" + std::to_string(c.Lk) + " d" + std::to_string(c.d) + " dv" +
                                     std::to_string(c.dv) + (causal ? " causal" : "");
            // f32: the same sums in another order, to f32 rounding
            EXPECT_LT(worst_vs_naive(scaled_dot_product_attention(q, k, v, causal), naive_attention(q, k, v, causal, scale, Tensor())),
                      2e-5)
                << what;
            // bf16 operands: the reference on the same rounded operands; the kernel also rounds the softmax weights
            // to bf16 (relative 2^-9), so the error is that rounding of a convex combination of |v| <~ 4
            if (cpu::flash_attention_available(true)) {
                const Tensor o = scaled_dot_product_attention(q.to(DType::BF16), k.to(DType::BF16), v.to(DType::BF16), causal);
                EXPECT_LT(worst_vs_naive(o, naive_attention(round_bf16(q), round_bf16(k), round_bf16(v), causal, scale, Tensor())),
                          0.02)
                    << what;
            }
        }
    // Strided operands (heads of token-major tensors, as multi_head_attention passes them) give the same result as
    // contiguous ones, and the fused kernel agrees with the oneDNN tiled path on both precisions.
    const Tensor qt = randn({2, 150, 96}, 7), kt = randn({2, 90, 96}, 8), vt = randn({2, 90, 64}, 9);
    for (DType t : {DType::F32, DType::BF16}) {
        if (t == DType::BF16 && !cpu::flash_attention_available(true)) continue;
        const Precision pr = t == DType::BF16 ? Precision::BF16 : Precision::FP32;
        const Tensor fused = multi_head_attention(qt, kt, vt, 2, false, 0.0f, pr);
        Tensor tiled;
        {
            FlashOff off;
            tiled = multi_head_attention(qt, kt, vt, 2, false, 0.0f, pr);
        }
        EXPECT_LT(max_abs_diff(fused, tiled), t == DType::BF16 ? 0.02f : 2e-5f) << dtype_name(t);
    }
}

TEST(Attention, TiledPathWithoutBiasMatchesTheDefinition) {
    FlashOff off;  // the path CPUs without AVX-512 take
    const Tensor q = randn({1, 2, 200, 40}, 30), k = randn({1, 2, 150, 40}, 31), v = randn({1, 2, 150, 24}, 32);
    for (bool causal : {false, true})
        EXPECT_LT(worst_vs_naive(scaled_dot_product_attention(q, k, v, causal),
                                 naive_attention(q, k, v, causal, 1.0f / std::sqrt(40.0f), Tensor())),
                  2e-5);
}

TEST(VecMath, ExpGeluSiluSoftmaxAndBf16Rounding) {
    std::vector<float> xs;
    for (float x = -90.0f; x <= 88.0f; x += 0.0137f) xs.push_back(x);
    std::vector<float> e(xs.size()), g(xs.size()), s(xs.size());
    cpu::map_n<cpu::exp8>(xs.data(), e.data(), (int64_t)xs.size());
    cpu::map_n<cpu::gelu8>(xs.data(), g.data(), (int64_t)xs.size());
    cpu::map_n<cpu::silu8>(xs.data(), s.data(), (int64_t)xs.size());
    for (size_t i = 0; i < xs.size(); ++i) {
        const double x = xs[i], ref = std::exp(x);
        if (x > -87.0) EXPECT_LE(std::fabs(e[i] - ref), 3e-7 * ref) << x;
        const double gref = 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
        EXPECT_LE(std::fabs(g[i] - gref), 2e-7 * std::max(1.0, std::fabs(x))) << x;
        const double sref = x / (1.0 + std::exp(-x));
        EXPECT_LE(std::fabs(s[i] - sref), 3e-7 * std::max(1.0, std::fabs(x))) << x;
    }
    std::vector<float> row{1.0f, 2.0f, 3.0f, -1.0f, 0.5f, 7.0f, 2.0f, 2.0f, -3.0f, 4.0f, 1.5f};
    std::vector<float> sm = row;
    cpu::softmax_row(sm.data(), (int64_t)sm.size(), 0.5f);
    double z = 0;
    for (float v : row) z += std::exp(0.5 * (v - 7.0));
    for (size_t i = 0; i < row.size(); ++i) EXPECT_NEAR(sm[i], std::exp(0.5 * (row[i] - 7.0)) / z, 1e-7);
    // bf16 rounding: round-to-nearest-even, like the scalar conversion, for normal, tie, inf and NaN inputs
    std::vector<float> vals{1.0f, 1.00390625f, 1.01171875f, -2.5e-3f, 3.4e38f, INFINITY, -INFINITY, NAN, 1e-40f};
    for (int i = 0; i < 4096; ++i) vals.push_back(std::ldexp((float)i / 4096.0f + 1.0f, (i % 40) - 20));
    std::vector<uint16_t> out(vals.size());
    cpu::f32_to_bf16_n(vals.data(), out.data(), (int64_t)vals.size());
    for (size_t i = 0; i < vals.size(); ++i) {
        if (std::isnan(vals[i])) {
            EXPECT_TRUE(std::isnan(bf16_to_f32(out[i])));
            continue;
        }
        EXPECT_EQ(out[i], f32_to_bf16(vals[i])) << vals[i];
    }
}

TEST(Allocator, ReusesFreedBlocksAndTrims) {
    allocator_trim();
    const AllocatorStats s0 = allocator_stats();
    void* p = cached_alloc(1 << 20);
    cached_free(p, 1 << 20);
    EXPECT_GE(allocator_stats().cached_bytes, (size_t)1 << 20);
    void* q = cached_alloc((1 << 20) - 100);  // same size class
    EXPECT_EQ(q, p);
    EXPECT_EQ(allocator_stats().hits, s0.hits + 1);
    cached_free(q, (1 << 20) - 100);
    allocator_trim();
    EXPECT_EQ(allocator_stats().cached_bytes, 0u);
    void* small = cached_alloc(100);  // small blocks bypass the cache
    EXPECT_NE(small, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(small) % 64, 0u);
    cached_free(small, 100);
    EXPECT_EQ(allocator_stats().cached_bytes, 0u);
}

// allocator_trim_stale keeps what was used since its previous call (a step's working set) and gives back the rest;
// blocks freed inside an UncachedScope go straight back to the system.
TEST(Allocator, TrimStaleKeepsOnePeriodsBlocksAndUncachedScopeBypasses) {
    allocator_trim();
    allocator_trim_stale();  // a fresh period
    void* a = cached_alloc(3 << 20);
    void* b = cached_alloc(5 << 20);
    std::memset(a, 1, 3 << 20);  // mapped blocks are writable whole
    std::memset(b, 2, 5 << 20);
    cached_free(a, 3 << 20);
    cached_free(b, 5 << 20);
    const size_t both = allocator_stats().cached_bytes;
    EXPECT_GE(both, (size_t)8 << 20);
    EXPECT_EQ(allocator_trim_stale(), 0u);  // both were freed in this period: kept
    EXPECT_EQ(allocator_stats().cached_bytes, both);
    void* a2 = cached_alloc(3 << 20);  // the next period uses only the first
    EXPECT_EQ(a2, a);
    cached_free(a2, 3 << 20);
    const size_t freed = allocator_trim_stale();
    EXPECT_GE(freed, (size_t)5 << 20);      // the unused block
    EXPECT_LT(freed, (size_t)6 << 20);
    EXPECT_EQ(allocator_stats().cached_bytes, both - freed);
    EXPECT_EQ(cached_alloc(3 << 20), a);    // the used one is still there
    cached_free(a, 3 << 20);
    {
        const UncachedScope one_off;
        void* c = cached_alloc(7 << 20);
        const size_t before = allocator_stats().cached_bytes;
        cached_free(c, 7 << 20);
        EXPECT_EQ(allocator_stats().cached_bytes, before);  // not cached
    }
    void* d = cached_alloc(7 << 20);
    const size_t before = allocator_stats().cached_bytes;
    cached_free(d, 7 << 20);
    EXPECT_GT(allocator_stats().cached_bytes, before);  // the scope has ended: cached again
    allocator_trim();
    EXPECT_EQ(allocator_stats().cached_bytes, 0u);
    // sizes no machine has fail as out of memory (no size-class overflow, no hang)
    for (size_t huge : {SIZE_MAX, SIZE_MAX / 2 + 1, size_t(1) << 57}) {
        try {
            cached_alloc(huge);
            ADD_FAILURE() << huge;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::OutOfMemory) << huge;
        }
    }
}

TEST(OpProfile, TimesOpsExclusivelyAndCountsTheirWork) {
    const Tensor x = randn({1, 8, 16, 16}, 40).channels_last(), w = randn({8, 8, 3, 3}, 41);
    conv2d(x, w, Tensor(), Conv2dParams{1, {1, 1, 1, 1}, 1, 1}, Precision::BF16);  // primitive built, weight packed
    OpProfile prof;
    {
        OpProfileScope scope(prof);
        const Tensor y = conv2d(x, w, Tensor(), Conv2dParams{1, {1, 1, 1, 1}, 1, 1}, Precision::BF16);
        add(y, y);
        add(y, y);
    }
    ASSERT_EQ(prof.count("conv2d"), 1u);
    EXPECT_EQ(prof["conv2d"].calls, 1);
    EXPECT_DOUBLE_EQ(prof["conv2d"].flops, 2.0 * 8 * 16 * 16 * 8 * 9);
    EXPECT_EQ(prof["elementwise_binary"].calls, 2);
    // the bf16 rounding of the input, inside conv2d: counted apart from it, and charged to the op that made it
    EXPECT_EQ(prof.count("copy"), 0u);
    EXPECT_EQ(prof["copy in conv2d"].calls, 1);
    for (const auto& [name, e] : prof) EXPECT_GE(e.seconds, 0.0) << name;
    // nothing is recorded without a profile installed
    add(x, x);
    EXPECT_EQ(prof["elementwise_binary"].calls, 2);
}

}  // namespace
}  // namespace nuance
