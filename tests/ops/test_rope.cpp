#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "ops/ops.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

// Hand-computed: axes_dims [2, 4] -> 3 pairs: axis 0 pair 0 (inv freq 1), axis 1 pairs (1, theta^-1/2).
TEST(Rope, FrequenciesHandComputed) {
    const Tensor ids = Tensor::from_vector({0, 1, 2, 3, 5, 7}, {2, 3});  // 2 tokens, 3 axes
    const Tensor f = rope_frequencies(ids, {2, 2, 4}, 100.0);
    ASSERT_EQ(f.shape(), (Shape{2, 4, 2}));
    const auto v = f.to_vector();
    // token 1: axis0 pos 3 (1 pair, freq 1), axis1 pos 5 (1 pair, freq 1), axis2 pos 7 (freqs 1, 100^-0.5 = 0.1)
    const double angles[4] = {3.0, 5.0, 7.0, 0.7};
    for (int j = 0; j < 4; ++j) {
        EXPECT_FLOAT_EQ(v[(4 + j) * 2], (float)std::cos(angles[j])) << j;
        EXPECT_FLOAT_EQ(v[(4 + j) * 2 + 1], (float)std::sin(angles[j])) << j;
    }
    // token 0: angles 0, 1, 2, 0.2
    EXPECT_FLOAT_EQ(v[0], 1.0f);
    EXPECT_FLOAT_EQ(v[1], 0.0f);
    EXPECT_FLOAT_EQ(v[7], (float)std::sin(0.2));
    // integer ids give the same table
    const Tensor f64 = rope_frequencies(Tensor::from_ids({0, 1, 2, 3, 5, 7}, {2, 3}), {2, 2, 4}, 100.0);
    EXPECT_EQ(max_abs_diff(f, f64), 0.0f);
}

// y[2j] = x[2j] cos - x[2j+1] sin, y[2j+1] = x[2j+1] cos + x[2j] sin, per head, per token's position.
TEST(Rope, ApplyHandComputed) {
    const Tensor ids = Tensor::from_vector({0, 1}, {2, 1});  // 2 tokens, 1 axis of dim 2 (angle = pos)
    const Tensor f = rope_frequencies(ids, {2});
    // x [1, 2, 4]: 2 heads of d = 2
    const Tensor x = Tensor::from_vector({1, 2, 3, 4, 1, 0, 0, 1}, {1, 2, 4});
    const auto y = apply_rope(x, f, 2).to_vector();
    // token 0: angle 0 -> unchanged
    EXPECT_FLOAT_EQ(y[0], 1); EXPECT_FLOAT_EQ(y[1], 2); EXPECT_FLOAT_EQ(y[2], 3); EXPECT_FLOAT_EQ(y[3], 4);
    const float c = (float)std::cos(1.0), s = (float)std::sin(1.0);
    EXPECT_FLOAT_EQ(y[4], c);   // (1, 0) rotated by 1 rad
    EXPECT_FLOAT_EQ(y[5], s);
    EXPECT_FLOAT_EQ(y[6], -s);  // (0, 1)
    EXPECT_FLOAT_EQ(y[7], c);
    // BF16 output = the F32 result rounded
    const Tensor yb = apply_rope(x, f, 2, DType::BF16);
    EXPECT_EQ(yb.dtype(), DType::BF16);
    EXPECT_EQ(max_abs_diff(yb.f32(), apply_rope(x, f, 2).to(DType::BF16).f32()), 0.0f);
}

// rms_norm_rope == apply_rope(rms_norm per head) (the reference composition of the two ops).
TEST(Rope, FusedNormMatchesComposition) {
    std::vector<float> xv(2 * 3 * 12), wv(6);
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = std::sin(0.37f * (float)i) * 3.0f;
    for (size_t i = 0; i < wv.size(); ++i) wv[i] = 0.5f + 0.1f * (float)i;
    const Tensor x = Tensor::from_vector(xv, {2, 3, 12}), w = Tensor::from_vector(wv, {6});
    const Tensor ids = Tensor::from_vector({0, 0, 1, 0, 2, 3, 0, 1, 1}, {3, 3});
    const Tensor f = rope_frequencies(ids, {2, 2, 2});
    const Tensor ref = apply_rope(rms_norm(x.reshape({2, 3, 2, 6}), w, 1e-6f).reshape({2, 3, 12}), f, 2);
    EXPECT_LT(max_abs_diff(rms_norm_rope(x, w, 1e-6f, f, 2), ref), 1e-6f);
}

TEST(Rope, Errors) {
    const Tensor f = rope_frequencies(Tensor::zeros({3, 1}), {4});
    EXPECT_THAT(error_of([&] { rope_frequencies(Tensor::zeros({3}), {4}); }),
                HasSubstr("position ids must be [L, A], got [3]"));
    EXPECT_THAT(error_of([&] { rope_frequencies(Tensor::zeros({3, 2}), {4}); }),
                HasSubstr("have 2 axes but axes_dims [4] has 1"));
    EXPECT_THAT(error_of([&] { rope_frequencies(Tensor::zeros({3, 2}), {4, 3}); }),
                HasSubstr("every axis dim must be even and in [2, 65536], axes_dims [4, 3]"));
    EXPECT_THAT(error_of([&] { rope_frequencies(Tensor::full({1, 1}, NAN), {4}); }),
                HasSubstr("position id [0, 0] is not finite"));
    EXPECT_THAT(error_of([&] { apply_rope(Tensor::zeros({1, 3, 8}), f, 3); }),
                HasSubstr("x [1, 3, 8] does not split into 3 heads"));
    EXPECT_THAT(error_of([&] { apply_rope(Tensor::zeros({1, 4, 8}), f, 2); }),
                HasSubstr("apply_rope: freqs [3, 2, 2] do not match x [1, 4, 8] with 2 heads (expected [4, 2, 2])"));
    EXPECT_THAT(error_of([&] { rms_norm_rope(Tensor::zeros({1, 3, 8}), Tensor::zeros({3}), 1e-6f, f, 2); }),
                HasSubstr("rms_norm_rope: norm weight [3] for head dim 4"));
    EXPECT_THAT(error_of([&] { apply_rope(Tensor::zeros({1, 3, 8}), f, 2, DType::F16); }),
                HasSubstr("output dtype must be F32 or BF16, got F16"));
}
