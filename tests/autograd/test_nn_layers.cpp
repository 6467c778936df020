// nn modules applied to Vars: same values as the Tensor path, gradients land in the bound ParamGrads.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "autograd/nn_layers.h"
#include "core/rng.h"
#include "ops/elementwise.h"

namespace nuance {
namespace {

struct Tiny : Module {
    Conv2d conv{2, 4, 3, 1, 1};
    GroupNorm norm{2, 4};
    Linear proj{4, 4};
    LayerNorm ln{4};
    Attention attn{4, 4, 2, 2};
    void visit(ParamVisitor& v) override {
        v("conv", conv); v("norm", norm); v("proj", proj); v("ln", ln); v("attn", attn);
    }
};

TEST(AutogradNnLayers, MatchTheTensorPathAndCollectGradients) {
    Tiny m;
    init_random(m, 3, 0.3f);
    const Tensor x = make_rng(RngKind::Cpu, 4)->randn({2, 2, 3, 3});
    // conv -> GN+SiLU -> tokens -> linear -> LN -> self-attention, first on Tensors
    Tensor t = m.norm(m.conv(x), true);
    t = t.flatten(2).transpose(1, 2).contiguous();  // [2, 9, 4]
    t = m.attn(m.ln(m.proj(t)));
    // Var path
    ParamGrads pg(m);
    ParamGrads::Bind bind(pg);
    Var v = apply(m.norm, apply(m.conv, Var(x)), true);
    v = v.flatten(2).transpose(1, 2);
    v = apply(m.attn, apply(m.ln, apply(m.proj, v)));
    EXPECT_EQ(v.shape(), t.shape());
    EXPECT_LT(max_abs_diff(v.value(), t), 1e-5f);
    backward(mean(square(v)));
    for (const auto& e : pg.entries()) {
        ASSERT_TRUE(e.leaf.grad().defined()) << e.name;
        EXPECT_EQ(e.leaf.grad().shape(), e.param->value.shape()) << e.name;
        EXPECT_GT(max_abs(e.leaf.grad()), 0.0f) << e.name;
    }
    EXPECT_EQ(pg.entries().size(), 13u);  // conv 2, norm 2, proj 2, ln 2, attn q/k/v 3 + out 2
}

}  // namespace
}  // namespace nuance
