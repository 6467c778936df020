#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "core/rng.h"
#include "core/tensor.h"
#include "ops/ops.h"

using namespace nuance;

TEST(Tensor, ViewsAndCopies) {
    Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {2, 3});
    EXPECT_EQ(t.transpose(0, 1).contiguous().to_vector(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
    EXPECT_EQ(t.slice(1, 1, 3).contiguous().to_vector(), (std::vector<float>{1, 2, 4, 5}));
    EXPECT_EQ(t.select(0, 1).to_vector(), (std::vector<float>{3, 4, 5}));
    EXPECT_EQ(t.unsqueeze(1).shape(), (Shape{2, 1, 3}));
    EXPECT_EQ(t.view({-1}).shape(), (Shape{6}));
    EXPECT_FALSE(t.transpose(0, 1).is_contiguous());
    EXPECT_EQ(t.to(DType::F16).to(DType::F32).to_vector(), t.to_vector());
    EXPECT_EQ(t.expand({4, 2, 3}).contiguous().numel(), 24);
}

TEST(Tensor, Errors) {
    Tensor t = Tensor::zeros({2, 3});
    EXPECT_THROW(t.view({4}), Error);
    EXPECT_THROW(t.select(0, 5), Error);
    EXPECT_THROW(t.transpose(0, 1).view({6}), Error);
    try {
        t.permute({0, 0});
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("repeated"), std::string::npos);
    }
    EXPECT_THROW(Tensor::from_vector({1, 2}, {3}), Error);
}

TEST(Half, RoundTrip) {
    EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
    EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
    EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
    EXPECT_EQ(f32_to_f16(5.96046448e-08f), 0x0001);  // smallest subnormal
    EXPECT_FLOAT_EQ(f16_to_f32(0x0001), 5.96046448e-08f);
    EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);  // tie to even
    EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
    for (uint32_t h = 0; h < 0x7c00; ++h) ASSERT_EQ(f32_to_f16(f16_to_f32((uint16_t)h)), h);
}

TEST(Ops, Broadcasting) {
    Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
    Tensor b = Tensor::from_vector({10, 20, 30}, {3});
    EXPECT_EQ((a + b).to_vector(), (std::vector<float>{11, 22, 33, 14, 25, 36}));
    Tensor c = Tensor::from_vector({2, 3}, {2, 1});
    EXPECT_EQ((a * c).to_vector(), (std::vector<float>{2, 4, 6, 12, 15, 18}));
    EXPECT_EQ((1.0f - a).to_vector()[0], 0.0f);
    EXPECT_THROW(a + Tensor::zeros({4}), Error);
}

TEST(Ops, LinearAndMatmul) {
    Tensor x = Tensor::from_vector({1, 2, 3, 4}, {2, 2});
    Tensor w = Tensor::from_vector({1, 0, 1, 1, 2, -1}, {3, 2});
    Tensor b = Tensor::from_vector({0, 1, 2}, {3});
    // rows: [1,2]·w^T = [1, 3, 0] + b = [1, 4, 2]; [3,4] -> [3, 7, 2] + b = [3, 8, 4]
    EXPECT_EQ(linear(x, w, b).to_vector(), (std::vector<float>{1, 4, 2, 3, 8, 4}));
    Tensor m = matmul(x, x.transpose(0, 1));  // [[5, 11], [11, 25]]
    EXPECT_EQ(m.to_vector(), (std::vector<float>{5, 11, 11, 25}));
    Tensor bx = Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
    EXPECT_EQ(matmul(bx, x).to_vector(), (std::vector<float>{7, 10, 15, 22, 23, 34, 31, 46}));
    EXPECT_THROW(linear(x, Tensor::zeros({3, 3})), Error);
}

TEST(Ops, MatmulBf16) {
    // Small integers are exact in bf16 and their products sum exactly in f32: the same bits as f32.
    Tensor x = Tensor::from_vector({1, 2, 3, 4}, {2, 2});
    EXPECT_EQ(matmul(x, x.transpose(0, 1), Precision::BF16).to_vector(), (std::vector<float>{5, 11, 11, 25}));
    Tensor bx = Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
    EXPECT_EQ(matmul(bx, x, Precision::BF16).to_vector(), (std::vector<float>{7, 10, 15, 22, 23, 34, 31, 46}));
    // Random operands: batched with a transposed view, and a broadcast operand (the per-batch loop path): within
    // bf16 rounding (8 significant bits) of the f32 product.
    auto rnd = [](const Shape& s, uint64_t seed) { return make_rng(RngKind::Cpu, seed)->randn(s); };
    const Tensor a = rnd({3, 5, 40}, 1), b = rnd({3, 7, 40}, 2), c = rnd({40, 6}, 3);
    for (const auto& [p, q] : {std::pair{a, b.transpose(-1, -2)}, std::pair{a, c}}) {
        const std::vector<float> r32 = matmul(p, q).to_vector(), r16 = matmul(p, q, Precision::BF16).to_vector();
        ASSERT_EQ(r32.size(), r16.size());
        double worst = 0;
        for (size_t i = 0; i < r32.size(); ++i) worst = std::max(worst, (double)std::fabs(r32[i] - r16[i]));
        EXPECT_GT(worst, 0.0);   // bf16 really ran
        EXPECT_LT(worst, 0.25);  // |sum| ~ sqrt(40) ~ 6; 40 roundings of 2^-9 relative
    }
    EXPECT_THROW(matmul(x, Tensor::zeros({3, 3}), Precision::BF16), Error);
}

TEST(Ops, Conv2dHand) {
    // 1x1x3x3 input, 1x1x2x2 kernel of ones, stride 1, no pad -> sums of 2x2 windows
    Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
    Tensor w = Tensor::full({1, 1, 2, 2}, 1.0f);
    EXPECT_EQ(conv2d(x, w, Tensor(), {}).to_vector(), (std::vector<float>{12, 16, 24, 28}));
    Conv2dParams p = Conv2dParams::same(1, 2);
    Tensor y = conv2d(x, Tensor::full({1, 1, 3, 3}, 1.0f), Tensor::from_vector({1}, {1}), p);
    EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
    EXPECT_EQ(y.to_vector(), (std::vector<float>{13, 17, 25, 29}));
    EXPECT_THROW(conv2d(x, Tensor::zeros({1, 2, 3, 3}), Tensor(), {}), Error);
}

TEST(Ops, NormsAndSoftmax) {
    Tensor x = Tensor::from_vector({1, 2, 3, 4}, {1, 4});
    Tensor ln = layer_norm(x, Tensor(), Tensor(), 0.0f);
    const float s = 1.0f / std::sqrt(1.25f);
    EXPECT_NEAR(ln.to_vector()[0], -1.5f * s, 1e-6);
    Tensor sm = softmax(Tensor::from_vector({0, 0, std::log(2.0f)}, {3}));
    EXPECT_NEAR(sm.to_vector()[2], 0.5f, 1e-6);
    Tensor g = group_norm(Tensor::from_vector({1, 3, 5, 7}, {1, 2, 2}), 2, Tensor(), Tensor(), 0.0f);
    EXPECT_EQ(g.to_vector(), (std::vector<float>{-1, 1, -1, 1}));
    EXPECT_THROW(group_norm(Tensor::zeros({1, 3, 2}), 2, Tensor(), Tensor(), 1e-5f), Error);
}

TEST(Ops, AttentionMatchesNaive) {
    Tensor q = Tensor::from_vector({1, 0, 0, 1}, {1, 1, 2, 2});
    Tensor k = Tensor::from_vector({1, 0, 0, 1}, {1, 1, 2, 2});
    Tensor v = Tensor::from_vector({1, 2, 3, 4}, {1, 1, 2, 2});
    Tensor o = scaled_dot_product_attention(q, k, v, false, 1.0f);
    const float e = std::exp(1.0f), p0 = e / (e + 1);
    EXPECT_NEAR(o.to_vector()[0], p0 * 1 + (1 - p0) * 3, 1e-5);
    Tensor oc = scaled_dot_product_attention(q, k, v, true, 1.0f);
    EXPECT_NEAR(oc.to_vector()[0], 1.0f, 1e-6);  // first query sees only the first key
}

TEST(Ops, InterpolateNearestTorchRule) {
    Tensor x = Tensor::arange(9).reshape({1, 1, 3, 3});
    Tensor y = interpolate_nearest(x, 5, 5);  // scale 0.6: floor(i*0.6) = 0,0,1,1,2
    EXPECT_EQ(y.select(2, 0).select(1, 0).to_vector(), (std::vector<float>{0, 0, 1, 1, 2}));
    Tensor p = pad2d(Tensor::full({1, 1, 1, 1}, 1.0f), 0, 1, 0, 1);
    EXPECT_EQ(p.to_vector(), (std::vector<float>{1, 0, 0, 0}));
}

TEST(Half, BulkConversionEqualsScalarForEveryBitPattern) {
    std::vector<uint16_t> bits(65536);
    for (uint32_t i = 0; i < 65536; ++i) bits[i] = (uint16_t)i;
    const Tensor h = Tensor::from_bytes(bits.data(), {65536}, DType::F16);
    const Tensor f = h.to(DType::F32);  // vectorised F16C path
    const float* p = f.data<float>();
    for (uint32_t i = 0; i < 65536; ++i) {
        const float ref = f16_to_f32((uint16_t)i);
        uint32_t a, b;
        std::memcpy(&a, &p[i], 4);
        std::memcpy(&b, &ref, 4);
        if (std::isnan(ref)) ASSERT_TRUE(std::isnan(p[i])) << i;
        else ASSERT_EQ(a, b) << "f16 bits " << i;
    }
}

// Strided copies that convert (f32 -> bf16, bf16 -> f32, f16 -> f32: the products' operand conversions and the
// NCHW -> channels-last bf16 input of a convolution) give exactly the element-wise conversion of a contiguous copy.
TEST(Tensor, StridedConvertingCopiesEqualElementwiseConversion) {
    const Tensor base = make_rng(RngKind::Cpu, 7)->randn({3, 5, 7, 9}).contiguous();
    const Tensor bsrc = base.to(DType::BF16), hsrc = base.to(DType::F16);
    const std::vector<std::function<Tensor(const Tensor&)>> views = {
        [](const Tensor& t) { return t.transpose(1, 3); }, [](const Tensor& t) { return t.slice(2, 1, 6); },
        [](const Tensor& t) { return t.permute({0, 2, 3, 1}); },
        [](const Tensor& t) { return t.slice(3, 2, 9).transpose(0, 2); }};
    for (const auto& view : views) {
        const Tensor v = view(base);
        ASSERT_FALSE(v.is_contiguous());
        // f32 -> bf16, into a contiguous and into a channels-last destination
        const Tensor bc = v.contiguous().to(DType::BF16);
        Tensor b = Tensor::empty(v.shape(), DType::BF16);
        b.copy_(v);
        ASSERT_EQ(b.to_vector(), bc.to_vector()) << v.str();
        Tensor cl = Tensor::empty_channels_last(v.shape(), DType::BF16);
        cl.copy_(v);
        EXPECT_EQ(cl.contiguous().to_vector(), bc.to_vector()) << v.str();
        // bf16 -> f32 and f16 -> f32 from the same views of converted tensors
        Tensor d1 = Tensor::empty(v.shape(), DType::F32), d2 = Tensor::empty(v.shape(), DType::F32);
        d1.copy_(view(bsrc));
        d2.copy_(view(hsrc));
        EXPECT_EQ(d1.to_vector(), bc.to_vector()) << v.str();  // bf16 values are exact in f32
        const std::vector<float> want = v.contiguous().to_vector(), h = d2.to_vector();
        for (size_t i = 0; i < h.size(); ++i)
            ASSERT_EQ(h[i], f16_to_f32(f32_to_f16(want[i]))) << v.str() << " at " << i;
    }
}
