// gelu_tanh (GELU with the tanh approximation: DiT, SD3 and Flux MLPs): hand-computed values, the formula in double
// over the whole float range the kernel's exp clamp covers, torch's values, and the Tensor op on strided input.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backends/cpu/vec_math.h"
#include "ops/ops.h"

using namespace nuance;

namespace {
double gelu_tanh_ref(double x) {
    const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + std::tanh(u));
}
}  // namespace

TEST(GeluTanh, HandComputedAndTorchValues) {
    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) in double; torch.nn.functional.gelu(approximate="tanh") float32.
    const Tensor x = Tensor::from_vector({1.0f, -1.0f, 2.0f, -3.0f, 0.5f, 0.0f}, {6});
    const std::vector<double> want{0.8411919906082768, -0.15880800939172324, 1.954597694087775,
                                   -0.0036373920817729943, 0.34571400982514394, 0.0};
    const std::vector<float> torch_f32{0.8411920070648193f, -0.15880799293518066f, 1.9545977115631104f,
                                       -0.0036374330520629883f, 0.3457140028476715f, 0.0f};
    const auto got = gelu_tanh(x).to_vector();
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_NEAR(got[i], want[i], 3e-7) << i;
        EXPECT_NEAR(got[i], torch_f32[i], 5e-7) << i;
    }
}

TEST(GeluTanh, VectorKernelMatchesTheFormulaEverywhere) {
    std::vector<float> xs;
    for (float x = -100.0f; x <= 100.0f; x += 0.0071f) xs.push_back(x);
    for (float x : {1e10f, -1e10f, 1e30f, -1e30f, 1e-30f, -1e-30f}) xs.push_back(x);
    std::vector<float> g(xs.size());
    cpu::map_n<cpu::gelu_tanh8>(xs.data(), g.data(), (int64_t)xs.size());
    for (size_t i = 0; i < xs.size(); ++i) {
        const double x = xs[i], ref = std::fabs(x) > 1e9 ? (x > 0 ? x : 0.0) : gelu_tanh_ref(x);
        ASSERT_TRUE(std::isfinite(g[i])) << x;
        EXPECT_LE(std::fabs(g[i] - ref), 4e-7 * std::max(1.0, std::fabs(x))) << x;
    }
}

TEST(GeluTanh, TensorOpOnStridedInput) {
    std::vector<float> v(6 * 7);
    for (size_t i = 0; i < v.size(); ++i) v[i] = (float)i * 0.25f - 5.0f;
    const Tensor x = Tensor::from_vector(v, {6, 7}).transpose(0, 1);  // [7, 6], not contiguous
    const Tensor y = gelu_tanh(x);
    ASSERT_EQ(y.shape(), (Shape{7, 6}));
    const auto got = y.contiguous().to_vector();
    for (int64_t r = 0; r < 7; ++r)
        for (int64_t c = 0; c < 6; ++c)
            EXPECT_NEAR(got[r * 6 + c], gelu_tanh_ref(v[c * 7 + r]), 3e-6) << r << "," << c;
}
