// adaLN ops (ops/modulate.h) and tanh-GELU's bf16 output: hand-computed values, the composed reference ops, the
// bf16 outputs, and the shape errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/rng.h"
#include "ops/modulate.h"
#include "ops/ops.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

TEST(Modulate, HandComputedLayerNormModulate) {
    // One token [1, 2, 3, 4]: mean 2.5, var 1.25 -> normalised [-1.3416, -0.4472, 0.4472, 1.3416] (eps 0).
    const Tensor x = Tensor::from_vector({1, 2, 3, 4}, {1, 1, 4});
    const Tensor shift = Tensor::from_vector({0, 1, 0, -1}, {1, 4});
    const Tensor scale = Tensor::from_vector({0, 1, -1, 0.5f}, {1, 4});
    const auto y = layer_norm_modulate(x, shift, scale, 0.0f).to_vector();
    const float k = 1.0f / std::sqrt(1.25f);
    const std::vector<float> want{-1.5f * k, -0.5f * k * 2 + 1, 0.0f, 1.5f * k * 1.5f - 1};
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], want[i], 1e-6f) << i;
}

TEST(Modulate, MatchesTheComposedOpsWithStridedChunks) {
    auto rng = make_rng(RngKind::Cpu, 3);
    const Tensor x = rng->randn({2, 37, 44}) * 3.0f + 1.5f;  // D = 44: a vector body and a scalar tail
    const Tensor emb = rng->randn({2, 3 * 44});
    const auto [shift, scale, gate] = chunk<3>(emb, 1);  // strided [2, 44] views, as an adaLN projection gives
    const Tensor ref = layer_norm(x, Tensor(), Tensor(), 1e-6f) * (scale.unsqueeze(1) + 1.0f) + shift.unsqueeze(1);
    const Tensor y = layer_norm_modulate(x, shift, scale, 1e-6f);
    EXPECT_LT(max_abs_diff(y, ref), 1e-5f);
    // BF16 output: the F32 result rounded, in the same pass.
    const Tensor yb = layer_norm_modulate(x, shift, scale, 1e-6f, DType::BF16);
    EXPECT_EQ(yb.dtype(), DType::BF16);
    EXPECT_EQ(max_abs_diff(yb.f32(), y.to(DType::BF16).f32()), 0.0f);

    const Tensor r = rng->randn({2, 37, 44});
    EXPECT_LT(max_abs_diff(gated_residual(x, gate, r), x + gate.unsqueeze(1) * r), 1e-6f);
}

TEST(Modulate, ShapeErrorsNameBothShapes) {
    const Tensor x = Tensor::zeros({2, 5, 8});
    EXPECT_THAT(error_of([&] { layer_norm_modulate(x, Tensor::zeros({2, 8}), Tensor::zeros({1, 8}), 1e-6f); }),
                HasSubstr("layer_norm_modulate: scale [1, 8] does not match input [2, 5, 8] (expected [N, D])"));
    EXPECT_THAT(error_of([&] { layer_norm_modulate(Tensor::zeros({2, 8}), Tensor::zeros({2, 8}),
                                                   Tensor::zeros({2, 8}), 1e-6f); }),
                HasSubstr("layer_norm_modulate: input [2, 8], expected [N, L, D]"));
    EXPECT_THAT(error_of([&] { gated_residual(x, Tensor::zeros({2, 8}), Tensor::zeros({2, 4, 8})); }),
                HasSubstr("gated_residual: x [2, 5, 8] and y [2, 4, 8] must be the same [N, L, D]"));
    EXPECT_THAT(error_of([&] { gated_residual(x, Tensor::zeros({2, 7}), x); }),
                HasSubstr("gated_residual: gate [2, 7] does not match input [2, 5, 8]"));
}

TEST(GeluTanh, Bf16OutputIsTheF32ResultRounded) {  // values: tests/ops/test_gelu_tanh.cpp
    std::vector<float> xs;
    for (int i = -4000; i <= 4000; ++i) xs.push_back((float)i * 0.01f);  // [-40, 40], vector body and tail
    const Tensor x = Tensor::from_vector(xs, {(int64_t)xs.size()});
    const Tensor yb = gelu_tanh(x, DType::BF16);
    EXPECT_EQ(yb.dtype(), DType::BF16);
    EXPECT_EQ(max_abs_diff(yb.f32(), gelu_tanh(x).to(DType::BF16).f32()), 0.0f);
    EXPECT_THAT(error_of([&] { gelu_tanh(x, DType::F16); }), HasSubstr("gelu_tanh: output dtype F16"));
}
