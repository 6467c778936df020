// AdamW against a hand-computed two-step example, clipping, the LR schedule and EMA, and their error paths.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <omp.h>

#include "../test_util.h"
#include "autograd/autograd.h"
#include "core/rng.h"
#include "autograd/nn_layers.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "train/optim.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;

struct TwoParams : Module {
    Param w{{2}}, b{{1}};
    TwoParams() {
        w.value = Tensor::from_vector({1.0f, -2.0f}, {2});
        b.value = Tensor::from_vector({0.5f}, {1});
    }
    void visit(ParamVisitor& v) override { v("w", w); v("b", b); }
};

// Makes dL/dw = g (and leaves b without a gradient).
void set_grad(ParamGrads& pg, TwoParams& m, const std::vector<float>& g) {
    pg.zero_grad();
    ParamGrads::Bind bind(pg);
    backward(sum(param_var(m.w) * Var(Tensor::from_vector(g, {2}))));
}

TEST(TrainAdamW, TwoStepsMatchTheHandComputedTorchUpdate) {
    // torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), p0 = [1, -2]:
    //   step 1, g = [0.5, -1]: p·(1 − 0.001); m = 0.1g; v = 0.001g²; step_size = lr/0.1 = 1;
    //     denom = sqrt(v)/sqrt(0.001) + eps = |g| + eps  ->  p = [0.899, -1.898] (moves by lr·sign g)
    //   step 2, g = [0.2, 0.3]: m = [0.065, -0.06]; v = [2.8975e-4, 1.089e-3]; bc1 = 0.19; bc2 = 0.001999
    //     -> p = [0.8082434839, -1.8533171424]   (double precision reference)
    TwoParams m;
    ParamGrads pg(m);
    AdamW opt(pg, {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f});
    set_grad(pg, m, {0.5f, -1.0f});
    opt.step();
    EXPECT_NEAR(m.w.value.to_vector()[0], 0.899000002, 1e-6);
    EXPECT_NEAR(m.w.value.to_vector()[1], -1.898000001, 1e-6);
    set_grad(pg, m, {0.2f, 0.3f});
    opt.step();
    EXPECT_NEAR(m.w.value.to_vector()[0], 0.8082434839, 2e-6);
    EXPECT_NEAR(m.w.value.to_vector()[1], -1.8533171424, 2e-6);
    // b never had a gradient: untouched (no weight decay either) and no state, like torch
    EXPECT_EQ(m.b.value.to_vector()[0], 0.5f);
    EXPECT_EQ(opt.state_dict().size(), 3u);
}

TEST(TrainAdamW, StateRoundTripContinuesIdentically) {
    TwoParams a, b;
    ParamGrads pa(a), pb(b);
    AdamW oa(pa, {.lr = 0.05f}), ob(pb, {.lr = 0.05f});
    set_grad(pa, a, {0.3f, -0.7f});
    oa.step();
    // b resumes from a's weights and optimizer state
    b.w.value.copy_(a.w.value);
    std::map<std::string, Tensor> st;
    for (auto& [k, t] : oa.state_dict()) st[k] = t;
    ob.load_state_dict(st);
    set_grad(pa, a, {-0.1f, 0.2f});
    set_grad(pb, b, {-0.1f, 0.2f});
    oa.step();
    ob.step();
    EXPECT_EQ(a.w.value.to_vector(), b.w.value.to_vector());
}

TEST(TrainAdamW, Errors) {
    TwoParams m;
    ParamGrads pg(m);
    EXPECT_THAT(error_of([&] { AdamW o(pg, {.beta1 = 1.0f}); }), HasSubstr("betas (1, 0.999)"));
    EXPECT_THAT(error_of([&] { AdamW o(pg, {.lr = -1.0f}); }), HasSubstr("lr -1"));
    AdamW opt(pg, {});
    std::map<std::string, Tensor> st{{"w.exp_avg", Tensor::zeros({3})}, {"w.exp_avg_sq", Tensor::zeros({2})},
                                     {"w.step", Tensor::from_vector({1}, {1})}};
    EXPECT_THAT(error_of([&] { opt.load_state_dict(st); }), HasSubstr("'w' moments [3] / [2] for a parameter of shape [2]"));
    st.erase("w.exp_avg");
    EXPECT_THAT(error_of([&] { opt.load_state_dict(st); }), HasSubstr("'w' has 2 of its 3 entries"));
    EXPECT_THAT(error_of([&] { opt.load_state_dict({{"decoder.x.exp_avg", Tensor::zeros({1})}}); }),
                HasSubstr("'decoder.x.exp_avg' matches no parameter"));
    st = {{"w.exp_avg", Tensor::zeros({2})}, {"w.exp_avg_sq", Tensor::zeros({2})},
          {"w.step", Tensor::from_vector({-3}, {1})}};
    EXPECT_THAT(error_of([&] { opt.load_state_dict(st); }), HasSubstr("not a step count"));
}

TEST(TrainAdamW, CopiesParametersItDoesNotOwnBeforeWriting) {
    // A weight that is a view into someone else's memory (as an mmap'd file would be) is copied, not written.
    std::vector<float> backing{1.0f, -2.0f};
    TwoParams m;
    m.w.value = Tensor::from_storage(Storage::wrap(backing.data(), 8, nullptr), 0, {2}, DType::F32);
    ParamGrads pg(m);
    AdamW opt(pg, {.lr = 0.1f});
    set_grad(pg, m, {1.0f, 1.0f});
    opt.step();
    EXPECT_EQ(backing[0], 1.0f);
    EXPECT_NEAR(m.w.value.to_vector()[0], 1.0f * (1 - 0.1f * 0.01f) - 0.1f, 1e-6);
}

TEST(TrainAdamW, LinearSeesTheUpdatedWeights) {
    // linear() serves weights from oneDNN's packed copies; a step must not leave them stale.
    struct M : Module {
        Linear lin{6, 5};
        void visit(ParamVisitor& v) override { v("lin", lin); }
    } m;
    init_random(m, 5, 0.5f);
    const Tensor x = Tensor::from_vector(std::vector<float>(12, 0.25f), {2, 6});
    (void)m.lin(x);  // packs the weight
    ParamGrads pg(m);
    AdamW opt(pg, {.lr = 0.1f});
    {
        ParamGrads::Bind bind(pg);
        backward(sum(apply(m.lin, Var(x))));
    }
    opt.step();
    const Tensor want = add(matmul(x, m.lin.weight.value.transpose(0, 1)), m.lin.bias.value);
    EXPECT_LT(max_abs_diff(m.lin(x), want), 1e-5f);
}

TEST(TrainClip, ScalesToTheGlobalNorm) {
    TwoParams m;
    ParamGrads pg(m);
    set_grad(pg, m, {3.0f, 4.0f});
    EXPECT_DOUBLE_EQ(clip_grad_norm(pg, 10.0), 5.0);  // under the limit: unchanged
    EXPECT_EQ(pg.grad(m.w).to_vector(), (std::vector<float>{3.0f, 4.0f}));
    EXPECT_DOUBLE_EQ(clip_grad_norm(pg, 1.0), 5.0);
    EXPECT_NEAR(pg.grad(m.w).to_vector()[0], 0.6f, 1e-6);
    EXPECT_NEAR(pg.grad(m.w).to_vector()[1], 0.8f, 1e-6);
    EXPECT_NEAR(grad_norm(pg), 1.0, 1e-6);
    set_grad(pg, m, {NAN, 1.0f});
    EXPECT_THAT(error_of([&] { clip_grad_norm(pg, 1.0); }), HasSubstr("gradient norm is nan"));
    EXPECT_TRUE(std::isnan(clip_grad_norm(pg, 1.0, /*allow_nonfinite=*/true)));
    EXPECT_THAT(error_of([&] { clip_grad_norm(pg, 0.0); }), HasSubstr("max_norm must be > 0"));
}

// Big gradients: the norm runs over fixed chunks in parallel (optim.cpp). It equals a float64 sum, and the same
// value for any thread count; AdamW's vectorised update equals the scalar formula element by element.
struct BigParams : Module {
    Param a{{70001}}, b{{3, 5000}};
    BigParams() {
        a.value = make_rng(RngKind::Cpu, 1)->randn({70001}).contiguous();
        b.value = make_rng(RngKind::Cpu, 2)->randn({3, 5000}).contiguous();
    }
    void visit(ParamVisitor& v) override { v("a", a); v("b", b); }
};

TEST(TrainClip, NormOfLargeGradientsIsExactAndThreadIndependent) {
    BigParams m;
    ParamGrads pg(m);
    const Tensor ga = make_rng(RngKind::Cpu, 3)->randn({70001}).contiguous(),
                 gb = make_rng(RngKind::Cpu, 4)->randn({3, 5000}).contiguous();
    {
        ParamGrads::Bind bind(pg);
        backward(sum(param_var(m.a) * Var(ga)) + sum(param_var(m.b) * Var(gb)));
    }
    double want = 0;
    for (const Tensor* g : {&ga, &gb})
        for (float v : g->to_vector()) want += (double)v * v;
    want = std::sqrt(want);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const double one = grad_norm(pg);
    omp_set_num_threads(std::max(2, threads));
    const double many = grad_norm(pg);
    omp_set_num_threads(threads);
    EXPECT_NEAR(one, want, 1e-12 * want);
    EXPECT_EQ(one, many);
    // AdamW, one step from zero state: p·(1 − lr·wd) − lr·m̂/(sqrt(v̂) + eps) with m̂ = g, v̂ = g², per element
    AdamW opt(pg, AdamWOptions{0.01f, 0.9f, 0.999f, 1e-8f, 0.1f});
    const std::vector<float> p0 = m.a.value.to_vector(), g0 = ga.to_vector();
    opt.step();
    const std::vector<float> p1 = m.a.value.to_vector();
    for (size_t i = 0; i < p0.size(); i += 997) {
        const double w = (double)p0[i] * (1.0 - 0.01 * 0.1);
        const double ref = w - 0.01 * (double)g0[i] / (std::fabs((double)g0[i]) + 1e-8);
        ASSERT_NEAR(p1[i], ref, 1e-6) << i;
    }
}

TEST(TrainSchedule, WarmupThenCosine) {
    EXPECT_FLOAT_EQ(lr_warmup_cosine(0, 10, 110, 1.0f), 0.0f);
    EXPECT_FLOAT_EQ(lr_warmup_cosine(5, 10, 110, 1.0f), 0.5f);
    EXPECT_FLOAT_EQ(lr_warmup_cosine(10, 10, 110, 1.0f), 1.0f);
    EXPECT_NEAR(lr_warmup_cosine(60, 10, 110, 1.0f), 0.5f, 1e-6);
    EXPECT_NEAR(lr_warmup_cosine(35, 10, 110, 2.0f), 2.0f * 0.5f * (1 + std::cos(M_PI * 0.25)), 1e-6);
    EXPECT_NEAR(lr_warmup_cosine(110, 10, 110, 1.0f), 0.0f, 1e-7);
    EXPECT_NEAR(lr_warmup_cosine(500, 10, 110, 1.0f, 0.1f), 0.1f, 1e-7);  // held at min_lr past the end
    EXPECT_NEAR(lr_warmup_cosine(60, 10, 110, 1.0f, 0.1f), 0.55f, 1e-6);
    EXPECT_FLOAT_EQ(lr_warmup_cosine(0, 0, 100, 1.0f), 1.0f);  // no warmup
    EXPECT_THAT(error_of([] { lr_warmup_cosine(-1, 0, 10, 1.0f); }), HasSubstr("step -1"));
}

TEST(TrainEma, UpdatesWithWarmupAndSwaps) {
    TwoParams m;
    ParamGrads pg(m);
    Ema plain(pg, {.decay = 0.5f, .warmup = false});
    Ema warm(pg, {.decay = 0.9999f, .warmup = true});
    EXPECT_NEAR(warm.current_decay(), 2.0f / 11.0f, 1e-7);
    m.w.value.copy_(Tensor::from_vector({3.0f, 0.0f}, {2}));
    plain.update();
    warm.update();
    // shadow = s − (1 − d)(s − p): from [1, −2] toward [3, 0]
    EXPECT_EQ(plain.state_dict()[0].second.to_vector(), (std::vector<float>{2.0f, -1.0f}));
    EXPECT_NEAR(warm.state_dict()[0].second.to_vector()[0], 1.0f + (9.0f / 11.0f) * 2.0f, 1e-6);
    EXPECT_EQ(plain.updates(), 1);
    plain.swap_into_params();
    EXPECT_EQ(m.w.value.to_vector(), (std::vector<float>{2.0f, -1.0f}));
    plain.swap_into_params();
    EXPECT_EQ(m.w.value.to_vector(), (std::vector<float>{3.0f, 0.0f}));
    // round trip and errors
    std::map<std::string, Tensor> st;
    for (auto& [k, t] : plain.state_dict()) st[k] = t;
    warm.load_state_dict(st, 7);
    EXPECT_EQ(warm.updates(), 7);
    EXPECT_EQ(warm.state_dict()[0].second.to_vector(), (std::vector<float>{2.0f, -1.0f}));
    st.erase("b");
    EXPECT_THAT(error_of([&] { warm.load_state_dict(st, 1); }), HasSubstr("no weights for 'b'"));
    st["b"] = Tensor::zeros({4});
    EXPECT_THAT(error_of([&] { warm.load_state_dict(st, 1); }), HasSubstr("'b' is [4], expected [1]"));
    EXPECT_THAT(error_of([&] { Ema e(pg, {.decay = 1.5f}); }), HasSubstr("decay 1.5"));
}

}  // namespace
}  // namespace nuance
