// Finite-difference gradchecks of the elementwise, reduction and loss ops, plus gradcheck itself catching a bad rule.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "autograd/autograd.h"
#include "core/rng.h"
#include "ops/elementwise.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;

Tensor randn(const Shape& s, uint64_t seed, float scale = 1.0f) {
    return mul(make_rng(RngKind::Cpu, seed)->randn(s), scale);
}

// Values kept at least `gap` away from the kinks at `points` (so a central difference never straddles one).
Tensor away_from(const Tensor& t, std::vector<float> points, float gap) {
    std::vector<float> v = t.to_vector();
    for (float& x : v)
        for (float p : points)
            if (std::fabs(x - p) < gap) x = x < p ? p - gap : p + gap;
    return Tensor::from_vector(v, t.shape());
}

#define EXPECT_GRADCHECK(f, inputs, ...)                            \
    do {                                                            \
        const GradcheckResult r_ = gradcheck(f, inputs, ##__VA_ARGS__); \
        EXPECT_TRUE(r_.ok) << r_.message;                           \
        EXPECT_GT(r_.checked, 0);                                   \
    } while (0)

using Fn = std::function<Var(const std::vector<Var>&)>;

TEST(AutogradGradcheck, BinaryOpsWithBroadcasting) {
    const std::vector<Tensor> in{randn({2, 3, 4}, 1), randn({3, 1}, 2)};
    EXPECT_GRADCHECK(Fn([](auto& x) { return x[0] + x[1]; }), in);
    EXPECT_GRADCHECK(Fn([](auto& x) { return x[0] - x[1]; }), in);
    EXPECT_GRADCHECK(Fn([](auto& x) { return x[0] * x[1]; }), in);
    EXPECT_GRADCHECK(Fn([](auto& x) { return x[1] - x[0]; }), in);
    const std::vector<Tensor> pos{randn({2, 3, 4}, 3), add(abs(randn({4}, 4)), 0.5f)};
    EXPECT_GRADCHECK(Fn([](auto& x) { return x[0] / x[1]; }), pos);
    // leading-dim broadcast on the left operand too
    const std::vector<Tensor> lead{randn({1, 4}, 5), randn({3, 1}, 6)};
    EXPECT_GRADCHECK(Fn([](auto& x) { return x[0] * x[1] + x[0]; }), lead);
}

TEST(AutogradGradcheck, ScalarOps) {
    const std::vector<Tensor> in{randn({5}, 7)};
    EXPECT_GRADCHECK(Fn([](auto& x) { return x[0] * 2.5f + 1.0f; }), in);
    EXPECT_GRADCHECK(Fn([](auto& x) { return 3.0f - x[0]; }), in);
    EXPECT_GRADCHECK(Fn([](auto& x) { return -(x[0] / 4.0f); }), in);
}

TEST(AutogradGradcheck, SmoothUnaryOps) {
    const std::vector<Tensor> in{randn({3, 5}, 8, 1.5f)};
    const std::vector<std::pair<const char*, Fn>> ops{
        {"exp", [](auto& x) { return exp(x[0]); }},
        {"square", [](auto& x) { return square(x[0]); }},
        {"tanh", [](auto& x) { return tanh(x[0]); }},
        {"sigmoid", [](auto& x) { return sigmoid(x[0]); }},
        {"silu", [](auto& x) { return silu(x[0]); }},
        {"gelu", [](auto& x) { return gelu(x[0]); }},
        {"gelu_tanh", [](auto& x) { return gelu_tanh(x[0]); }},
        {"quick_gelu", [](auto& x) { return quick_gelu(x[0]); }},
    };
    for (const auto& [name, f] : ops) {
        const GradcheckResult r = gradcheck(f, in);
        EXPECT_TRUE(r.ok) << name << ": " << r.message;
    }
    const std::vector<Tensor> pos{add(abs(randn({3, 5}, 9)), 0.5f)};
    EXPECT_GRADCHECK(Fn([](auto& x) { return log(x[0]); }), pos);
    EXPECT_GRADCHECK(Fn([](auto& x) { return sqrt(x[0]); }), pos);
}

TEST(AutogradGradcheck, KinkedUnaryOpsAwayFromTheKinks) {
    const std::vector<Tensor> in{away_from(randn({4, 4}, 10), {-0.5f, 0.0f, 0.5f}, 0.05f)};
    EXPECT_GRADCHECK(Fn([](auto& x) { return relu(x[0]); }), in);
    EXPECT_GRADCHECK(Fn([](auto& x) { return abs(x[0]); }), in);
    EXPECT_GRADCHECK(Fn([](auto& x) { return clamp(x[0], -0.5f, 0.5f); }), in);
}

TEST(AutogradGradcheck, Reductions) {
    const std::vector<Tensor> in{randn({2, 3, 4}, 11)};
    EXPECT_GRADCHECK(Fn([](auto& x) { return sum(x[0]); }), in);
    EXPECT_GRADCHECK(Fn([](auto& x) { return mean(x[0]); }), in);
    for (int64_t d : {0, 1, -1})
        for (bool keep : {false, true}) {
            EXPECT_GRADCHECK(Fn([d, keep](auto& x) { return sum(x[0], d, keep); }), in);
            EXPECT_GRADCHECK(Fn([d, keep](auto& x) { return mean(x[0], d, keep); }), in);
        }
}

TEST(AutogradGradcheck, Losses) {
    const std::vector<Tensor> in{randn({2, 6}, 12), randn({2, 6}, 13)};
    EXPECT_GRADCHECK(Fn([](auto& x) { return mse_loss(x[0], x[1]); }), in);
    EXPECT_GRADCHECK(Fn([](auto& x) { return l1_loss(x[0], x[1]); }), in);
    // KL of a diagonal Gaussian against N(0, 1), as the VAE objective writes it
    EXPECT_GRADCHECK(Fn([](auto& x) {
        return mean(square(x[0]) + exp(x[1]) - x[1] - 1.0f) * 0.5f;
    }), in);
}

TEST(AutogradGradcheck, HandComputedLossGradients) {
    Var p(Tensor::from_vector({1, 2, 3, 4}, {4}), true);
    const Var t(Tensor::from_vector({0, 2, 5, 3}, {4}));
    const Var l = mse_loss(p, t);
    EXPECT_FLOAT_EQ(l.item(), (1 + 0 + 4 + 1) / 4.0f);
    backward(l);
    const std::vector<float> g = p.grad().to_vector();  // 2(p - t)/n
    EXPECT_FLOAT_EQ(g[0], 0.5f);
    EXPECT_FLOAT_EQ(g[1], 0.0f);
    EXPECT_FLOAT_EQ(g[2], -1.0f);
    EXPECT_FLOAT_EQ(g[3], 0.5f);
    p.zero_grad();
    backward(l1_loss(p, t));
    EXPECT_THAT(p.grad().to_vector(), ::testing::ElementsAre(0.25f, 0.0f, -0.25f, 0.25f));
}

TEST(AutogradGradcheck, CatchesAWrongBackwardRule) {
    // square recorded with a deliberately wrong rule: gradcheck must fail and say where.
    auto bad = [](const std::vector<Var>& x) {
        const Tensor v = x[0].value();
        return record("bad_square", square(v), {x[0]},
                      [v](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{mul(g, v)}; });
    };
    const GradcheckResult r = gradcheck(bad, {Tensor::from_vector({1, 2, 3}, {3})});
    EXPECT_FALSE(r.ok);
    EXPECT_THAT(r.message, HasSubstr("input 0 [3] element "));
    EXPECT_THAT(r.message, HasSubstr("bad_square"));
}

}  // namespace
}  // namespace nuance
