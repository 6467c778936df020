// The tape engine: hand-computed gradients, accumulation, grad mode, error paths, module parameters as leaves.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "autograd/autograd.h"
#include "nn/layers.h"
#include "ops/elementwise.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;

void expect_values(const Tensor& t, const std::vector<float>& want, float tol = 1e-6f) {
    ASSERT_TRUE(t.defined());
    const std::vector<float> v = t.to_vector();
    ASSERT_EQ(v.size(), want.size());
    for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], want[i], tol) << "element " << i;
}

TEST(AutogradVar, SumOfSquaresGivesTwiceX) {
    Var x(Tensor::from_vector({1, -2, 3.5f}, {3}), true);
    const Var loss = sum(x * x);
    EXPECT_FLOAT_EQ(loss.item(), 1 + 4 + 12.25f);
    backward(loss);
    expect_values(x.grad(), {2, -4, 7});
}

TEST(AutogradVar, VarUsedTwiceAccumulates) {
    // y = x*x + 3x  ->  dy/dx = 2x + 3 (x feeds mul twice and mul_scalar once)
    Var x(Tensor::from_vector({0.5f, -1, 2}, {3}), true);
    backward(sum(x * x + x * 3.0f));
    expect_values(x.grad(), {4, 1, 7});
}

TEST(AutogradVar, DiamondGraph) {
    // a = 2x, b = exp(x), L = sum(a * b): dL/dx = 2 e^x + 2x e^x
    Var x(Tensor::from_vector({0.0f, 1.0f}, {2}), true);
    const Var a = x * 2.0f;
    const Var b = exp(x);
    backward(sum(a * b));
    const float e = std::exp(1.0f);
    expect_values(x.grad(), {2.0f, 2 * e + 2 * e}, 1e-5f);
}

TEST(AutogradVar, GradientsAccumulateAcrossBackwardCallsUntilZeroed) {
    Var x(Tensor::from_vector({1, 2}, {2}), true);
    backward(sum(x * 3.0f));
    backward(sum(x * 3.0f));
    expect_values(x.grad(), {6, 6});
    x.zero_grad();
    EXPECT_FALSE(x.grad().defined());
    backward(mean(x));
    expect_values(x.grad(), {0.5f, 0.5f});
}

TEST(AutogradVar, BroadcastGradientsAreSummedBack) {
    // y[i, j] = a[i, j] + b[j] * c[i, 0]
    Var a(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}), true);
    Var b(Tensor::from_vector({1, 2, 3}, {3}), true);
    Var c(Tensor::from_vector({10, 20}, {2, 1}), true);
    backward(sum(a + b * c));
    expect_values(a.grad(), {1, 1, 1, 1, 1, 1});
    expect_values(b.grad(), {30, 30, 30});
    expect_values(c.grad(), {6, 6});
}

TEST(AutogradVar, NoGradGuardRecordsNothing) {
    Var x(Tensor::from_vector({1, 2}, {2}), true);
    EXPECT_TRUE(grad_enabled());
    {
        NoGradGuard g;
        EXPECT_FALSE(grad_enabled());
        {
            NoGradGuard nested;
            EXPECT_FALSE(grad_enabled());
        }
        EXPECT_FALSE(grad_enabled());
        const Var y = sum(x * x);
        EXPECT_FALSE(y.requires_grad());
        EXPECT_TRUE(y.is_leaf());
        EXPECT_TRUE(y.node()->parents.empty());
        EXPECT_FLOAT_EQ(y.item(), 5.0f);
        EXPECT_THAT(error_of([&] { backward(y); }), HasSubstr("does not require grad"));
    }
    EXPECT_TRUE(grad_enabled());
    const Var z = x * 2.0f;
    EXPECT_TRUE(z.requires_grad());
    EXPECT_FALSE(z.is_leaf());
}

TEST(AutogradVar, ConstantsGetNoGradient) {
    Var x(Tensor::from_vector({1, 2}, {2}), true);
    Var k(Tensor::from_vector({3, 4}, {2}));  // requires_grad = false
    backward(sum(x * k));
    expect_values(x.grad(), {3, 4});
    EXPECT_FALSE(k.grad().defined());
    const Var d = (x * 2.0f).detach();
    EXPECT_FALSE(d.requires_grad());
}

TEST(AutogradVar, BackwardOnNonScalarErrorsClearly) {
    Var x(Tensor::from_vector({1, 2, 3, 4}, {2, 2}), true);
    const std::string msg = error_of([&] { backward(x * 2.0f); });
    EXPECT_THAT(msg, HasSubstr("scalar"));
    EXPECT_THAT(msg, HasSubstr("[2, 2]"));
    EXPECT_THAT(msg, HasSubstr("mul_scalar"));
    EXPECT_THAT(error_of([&] { backward(Var()); }), HasSubstr("undefined"));
}

TEST(AutogradVar, ShapeMismatchErrorsNameTheShapes) {
    Var a(Tensor::zeros({2, 3}), true), b(Tensor::zeros({4}), true);
    EXPECT_THAT(error_of([&] { add(a, b); }), HasSubstr("[2, 3] and [4]"));
    Var w(Tensor::zeros({5, 4}), true);
    const std::string lin = error_of([&] { linear(a, w); });
    EXPECT_THAT(lin, HasSubstr("[2, 3]"));
    EXPECT_THAT(lin, HasSubstr("[5, 4]"));
    EXPECT_THAT(error_of([&] { mse_loss(a, b); }), HasSubstr("pred [2, 3] and target [4]"));
    EXPECT_THAT(error_of([&] { matmul(a, a); }), HasSubstr("[2, 3] x [2, 3]"));
    Var img(Tensor::zeros({1, 3, 4, 4})), k(Tensor::zeros({2, 5, 3, 3}));
    EXPECT_THAT(error_of([&] { conv2d(img, k, Var(), Conv2dParams::same(1)); }), HasSubstr("[2, 5, 3, 3]"));
    EXPECT_THAT(error_of([&] { Var(Tensor::from_ids({1}, {1})); }), HasSubstr("float"));
}

TEST(AutogradVar, GraphIsFreedAfterBackwardUnlessRetained) {
    Var x(Tensor::from_vector({1, 2}, {2}), true);
    Var loss = sum(x * x);
    backward(loss);
    EXPECT_THAT(error_of([&] { backward(loss); }), HasSubstr("already freed"));
    x.zero_grad();
    Var loss2 = sum(x * x);
    backward(loss2, {.retain_graph = true});
    backward(loss2);
    expect_values(x.grad(), {4, 8});
}

TEST(AutogradVar, ReduceToShape) {
    const Tensor g = Tensor::full({2, 3, 4}, 1.0f);
    expect_values(reduce_to_shape(g, {3, 1}), {8, 8, 8});
    expect_values(reduce_to_shape(g, {}), {24});
    EXPECT_THAT(error_of([&] { reduce_to_shape(g, {5}); }), HasSubstr("[2, 3, 4] to [5]"));
}

TEST(AutogradVar, DeepChainDoesNotOverflowTheStack) {
    Var x(Tensor::from_vector({1.0f}, {1}), true);
    Var y = x;
    for (int i = 0; i < 20000; ++i) y = y + 0.0f;
    backward(sum(y));
    expect_values(x.grad(), {1});
    // a retained deep graph is freed without deep recursion too
    Var z = x;
    for (int i = 0; i < 50000; ++i) z = z * 1.0f;
    z = Var();
    SUCCEED();
}

TEST(AutogradVar, IntermediatesDroppedByTheCallerStayAliveDuringBackward) {
    Var x(Tensor::from_vector({2.0f}, {1}), true);
    Var loss;
    {
        const Var a = x * x;  // only the graph holds these after the scope
        const Var b = exp(a * 0.5f);
        loss = sum(b + a);
    }
    backward(loss);
    expect_values(x.grad(), {2.0f * std::exp(2.0f) + 4.0f}, 1e-4f);
}

TEST(AutogradParams, LinearModuleWeightsAreLeaves) {
    Linear lin(3, 2);
    lin.weight.value = Tensor::from_vector({1, 0, -1, 2, 1, 0}, {2, 3});
    lin.bias.value = Tensor::from_vector({0.5f, -0.5f}, {2});
    ParamGrads pg(lin);
    ASSERT_EQ(pg.size(), 2u);
    EXPECT_EQ(pg.entries()[0].name, "weight");
    EXPECT_EQ(pg.entries()[1].name, "bias");
    EXPECT_EQ(pg.numel(), 8);
    ParamGrads::Bind bind(pg);
    const Var x(Tensor::from_vector({1, 2, 3, -1, 0, 1}, {2, 3}));
    // The same weight used twice feeds one gradient.
    const Var y = linear(x, param_var(lin.weight), param_var_opt(lin.bias));
    const Var y2 = linear(x, param_var(lin.weight));
    backward(sum(y) + sum(y2));
    // d/dW sum(xWᵀ) twice = 2 · Σ_rows x ; d/db = rows
    expect_values(pg.grad(lin.weight), {0, 4, 8, 0, 4, 8});
    expect_values(pg.grad(lin.bias), {2, 2});
    pg.zero_grad();
    EXPECT_FALSE(pg.grad(lin.weight).defined());
}

TEST(AutogradParams, LeafFollowsAReplacedValueAndFrozenParamsGetNoGradient) {
    Linear lin(2, 2);
    lin.weight.value = Tensor::from_vector({1, 0, 0, 1}, {2, 2});
    lin.bias.value = Tensor::zeros({2});
    ParamGrads pg(lin);
    ParamGrads::Bind bind(pg);
    lin.weight.value = Tensor::from_vector({2, 0, 0, 2}, {2, 2});  // e.g. loaded again
    EXPECT_FLOAT_EQ(param_var(lin.weight).value().to_vector()[0], 2.0f);
    EXPECT_EQ(pg.set_trainable("bias", false), 1u);
    const Var x(Tensor::from_vector({1, 1}, {1, 2}));
    backward(sum(linear(x, param_var(lin.weight), param_var(lin.bias))));
    EXPECT_TRUE(pg.grad(lin.weight).defined());
    EXPECT_FALSE(pg.grad(lin.bias).defined());
    EXPECT_EQ(pg.numel(), 4);
}

TEST(AutogradParams, Errors) {
    Linear lin(2, 2);  // no values yet
    EXPECT_THAT(error_of([&] { ParamGrads pg(lin); }), HasSubstr("'weight' [2, 2] has no value"));
    lin.weight.value = Tensor::zeros({2, 2}, DType::F16);
    lin.bias.value = Tensor::zeros({2});
    EXPECT_THAT(error_of([&] { ParamGrads pg(lin); }), HasSubstr("F32"));
    lin.weight.value = Tensor::zeros({2, 2});
    // No set bound: training use is an error, inference (no grad) gets a constant.
    EXPECT_THAT(error_of([&] { param_var(lin.weight); }), HasSubstr("no ParamGrads is bound"));
    {
        NoGradGuard ng;
        EXPECT_FALSE(param_var(lin.weight).requires_grad());
    }
    ParamGrads pg(lin);
    Param stray({3});
    stray.value = Tensor::zeros({3});
    EXPECT_THAT(error_of([&] { pg.var(stray); }), HasSubstr("not in this set"));
    EXPECT_THAT(error_of([&] { pg.add("weight", lin.weight); }), HasSubstr("added twice"));
}

}  // namespace
}  // namespace nuance
