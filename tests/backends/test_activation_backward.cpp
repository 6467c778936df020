// The activations' backward rule on the CPU backend (Backend::activation_backward, backends/cpu/elementwise.cpp):
// g · f'(x) for SiLU, GELU (erf), GELU (tanh) and QuickGELU against float64 derivatives, on lengths that run the
// 8-lane path, the tail and the parallel chunks; the ops it is not for are refused.
#include <cmath>
#include <functional>
#include <gtest/gtest.h>

#include "backends/backend.h"
#include "core/error.h"
#include "core/rng.h"

namespace nuance {
namespace {

Tensor randn(const Shape& s, uint64_t seed, float scale) {
    Tensor t = make_rng(RngKind::Cpu, seed)->randn(s).contiguous();
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] *= scale;
    return t;
}

double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

struct Case {
    UnaryOp op;
    std::function<double(double)> d;  // f'(x) in float64
};

const std::vector<Case>& cases() {
    static const std::vector<Case> c = {
        {UnaryOp::Silu, [](double x) { return sig(x) * (1.0 + x * (1.0 - sig(x))); }},
        {UnaryOp::Gelu,
         [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI); }},
        {UnaryOp::GeluTanh,
         [](double x) {
             const double k = std::sqrt(2.0 / M_PI), t = std::tanh(k * (x + 0.044715 * x * x * x));
             return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
         }},
        {UnaryOp::QuickGelu, [](double x) { return sig(1.702 * x) + 1.702 * x * sig(1.702 * x) * (1.0 - sig(1.702 * x)); }},
    };
    return c;
}

TEST(ActivationBackward, MatchesFloat64OnEveryPath) {
    Backend& be = backend_for(Device::cpu());
    for (const Case& c : cases())
        for (int64_t n : {1, 7, 8, 13, 1000, 40000}) {  // tail only, one vector, vector + tail, the parallel chunks
            const Tensor x = randn({n}, 1 + (uint64_t)n, 4.0f), g = randn({n}, 2 + (uint64_t)n, 1.0f);
            const Tensor got = be.activation_backward(c.op, x, g);
            ASSERT_EQ(got.shape(), x.shape());
            const float *px = x.data<float>(), *pg = g.data<float>(), *po = got.data<float>();
            double worst = 0;
            for (int64_t i = 0; i < n; ++i) {
                const double want = (double)pg[i] * c.d(px[i]);
                worst = std::max(worst, std::fabs(po[i] - want) / std::max(1.0, std::fabs(want)));
            }
            EXPECT_LT(worst, 2e-6) << unary_op_name(c.op) << " n=" << n;
        }
}

TEST(ActivationBackward, LargeInputsStayFinite) {
    // (beyond |x| ~ 1e13 GELU-tanh's x³ overflows, in torch's formula as here)
    const Tensor x = Tensor::from_vector({-200.0f, -90.0f, -20.0f, 0.0f, 20.0f, 90.0f, 200.0f, 1e6f, -1e6f}, {9});
    const Tensor g = Tensor::full({9}, 1.0f);
    for (const Case& c : cases()) {
        const Tensor got = backend_for(Device::cpu()).activation_backward(c.op, x, g);
        const float* p = got.data<float>();
        for (int64_t i = 0; i < 9; ++i) EXPECT_TRUE(std::isfinite(p[i])) << unary_op_name(c.op) << " at " << i;
        EXPECT_NEAR(p[6], 1.0f, 1e-6) << unary_op_name(c.op);  // f'(200) = 1
        EXPECT_NEAR(p[0], 0.0f, 1e-6) << unary_op_name(c.op);  // f'(-200) = 0
    }
}

TEST(ActivationBackward, OtherOpsAndMismatchedShapesAreRefused) {
    Backend& be = backend_for(Device::cpu());
    const Tensor x = randn({4}, 1, 1.0f);
    EXPECT_THROW(be.activation_backward(UnaryOp::Exp, x, x), Error);
    EXPECT_THROW(be.activation_backward(UnaryOp::Gelu, x, randn({5}, 2, 1.0f)), Error);
}

}  // namespace
}  // namespace nuance
