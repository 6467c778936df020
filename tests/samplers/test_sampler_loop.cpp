// The sampler contract: every step reported, cancellation, noise only from options.rng, the denoiser's
// parameterisations, and identities between samplers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>

#include "core/error.h"
#include "ops/elementwise.h"
#include "samplers/registry.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

// Test double: deterministic "noise" (a fixed pattern per draw) and a draw counter.
class CountingRng : public Rng {
public:
    void fill_randn(float* out, int64_t n) override {
        for (int64_t i = 0; i < n; ++i) out[i] = (float)std::sin(0.7 * (double)(i + 1) + 1.3 * (double)draws);
        ++draws;
    }
    int draws = 0;
};

Tensor linear_model(const Tensor& x_in, double t) { return x_in * 0.3f + (float)(t / 1000.0); }

Denoiser sd_denoiser(Prediction p = Prediction::Epsilon) { return Denoiser(linear_model, p, NoiseSchedule{}); }

Tensor init_x() {
    std::vector<float> v(2 * 3 * 4);
    for (size_t i = 0; i < v.size(); ++i) v[i] = (float)std::cos(0.37 * (double)i);
    return Tensor::from_vector(v, {2, 3, 4});
}

Schedule schedule_for(const SamplerInfo& s, int steps) {
    return make_sampler_schedule(s, NoiseSchedule{}, steps, ScheduleType::Normal);
}

// Model calls per run of n steps ending at sigma 0 (or, for the DDIM/TCD sets, at a small sigma), and after the
// callback of step k (0-based) returned.
bool two_calls_per_step(const std::string& name) {
    return name == "heun" || name == "dpm2" || name == "dpm2_a" || name == "dpmpp_2s_a" || name == "dpmpp_sde";
}
int expected_calls(const std::string& name, int n) {
    if (two_calls_per_step(name)) return 2 * n - 1;
    return name == "plms" ? n + 1 : n;
}
// Noise draws of a stochastic sampler at its default settings for n steps (normal schedule).
int expected_draws(const std::string& name, int n) {
    if (name == "dpmpp_sde") return 2 * (n - 1);  // two per step, none on the step to 0
    if (name == "lcm" || name == "tcd" || name == "dpm2_a" || name == "dpmpp_2s_a" || name == "dpmpp_3m_sde")
        return n - 1;                             // none on the last step
    return n;                                     // euler_a, ddpm, dpmpp_2m_sde: diffusers draws on every step
}

}  // namespace

TEST(SamplerLoop, CallbackSeesEveryStepOfEverySampler) {
    for (const SamplerInfo& info : list_samplers()) {
        const Schedule s = schedule_for(info, 6);
        Denoiser d = sd_denoiser();
        CountingRng rng;
        SamplerOptions o;
        o.rng = &rng;
        std::vector<int> seen;
        o.callback = [&](int step, int total, const Tensor& x, const Tensor& denoised) {
            EXPECT_EQ(total, 6) << info.name;
            EXPECT_EQ(x.shape(), (Shape{2, 3, 4})) << info.name;
            EXPECT_EQ(denoised.shape(), (Shape{2, 3, 4})) << info.name;
            seen.push_back(step);
        };
        const Tensor y = info.fn(d, init_x() * (float)s.init_noise_sigma, s, o);
        EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4, 5})) << info.name;
        EXPECT_EQ(d.calls(), expected_calls(info.name, 6)) << info.name;
        EXPECT_EQ(y.shape(), (Shape{2, 3, 4}));
        for (float v : y.to_vector()) ASSERT_TRUE(std::isfinite(v)) << info.name;
        // noise only where the sampler is stochastic, draws of x's shape in the reference's pattern
        EXPECT_EQ(rng.draws, !info.stochastic ? 0 : expected_draws(info.name, 6)) << info.name;
    }
}

TEST(SamplerLoop, CancelFlagSetByTheCallbackStopsTheRun) {
    for (const SamplerInfo& info : list_samplers()) {
        const Schedule s = schedule_for(info, 8);
        Denoiser d = sd_denoiser();
        CountingRng rng;
        std::atomic<bool> cancel{false};
        SamplerOptions o;
        o.rng = &rng;
        o.cancel_flag = &cancel;
        int callbacks = 0;
        o.callback = [&](int step, int, const Tensor&, const Tensor&) {
            ++callbacks;
            if (step == 2) cancel = true;
        };
        try {
            info.fn(d, init_x() * (float)s.init_noise_sigma, s, o);
            FAIL() << info.name << ": expected Cancelled";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::Cancelled) << info.name;
            EXPECT_THAT(e.what(), HasSubstr("cancelled"));
            EXPECT_THAT(e.what(), HasSubstr(info.fn == sample_ddim ? "ddim" : info.name));  // ddim_trailing runs sample_ddim
        }
        EXPECT_EQ(callbacks, 3) << info.name;
        EXPECT_EQ(d.calls(), two_calls_per_step(info.name) ? 6 : info.name == "plms" ? 4 : 3) << info.name;
    }
}

TEST(SamplerLoop, CancelCallableIsPolledBeforeModelCalls) {
    const SamplerInfo& info = find_sampler("euler");
    const Schedule s = schedule_for(info, 5);
    Denoiser d = sd_denoiser();
    SamplerOptions o;
    o.should_cancel = [&] { return d.calls() >= 2; };
    try {
        run_sampler(info, d, init_x(), s, o);
        FAIL() << "expected Cancelled";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::Cancelled);
    }
    EXPECT_EQ(d.calls(), 2);
    // already cancelled before the first step: no model call at all
    std::atomic<bool> flag{true};
    SamplerOptions o2;
    o2.cancel_flag = &flag;
    Denoiser d2 = sd_denoiser();
    EXPECT_THROW(run_sampler(info, d2, init_x(), s, o2), Error);
    EXPECT_EQ(d2.calls(), 0);
}

TEST(SamplerLoop, StochasticSamplerWithoutRngIsAnError) {
    const Schedule s = schedule_for(find_sampler("euler_a"), 4);
    Denoiser d = sd_denoiser();
    SamplerOptions o;
    try {
        run_sampler("euler_a", d, init_x(), s, o);
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
        EXPECT_THAT(e.what(), HasSubstr("sampler 'euler_a' draws noise"));
        EXPECT_THAT(e.what(), HasSubstr("options.rng is null"));
    }
    o.eta = 0.0;  // eta 0: deterministic, no rng needed
    EXPECT_NO_THROW(run_sampler("euler_a", d, init_x(), s, o));
    o.eta = -1.0;
    try {
        run_sampler("euler_a", d, init_x(), s, o);
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("eta must be finite and >= 0, got -1"));
    }
    SamplerOptions churn;
    churn.s_churn = 1.0;
    EXPECT_THROW(run_sampler("euler", d, init_x(), schedule_for(find_sampler("euler"), 4), churn), Error);
    CountingRng rng;
    churn.rng = &rng;
    run_sampler("euler", d, init_x(), schedule_for(find_sampler("euler"), 4), churn);
    EXPECT_EQ(rng.draws, 4);
}

TEST(SamplerLoop, BadInputsAreErrors) {
    Denoiser d = sd_denoiser();
    SamplerOptions o;
    const Schedule s = schedule_for(find_sampler("euler"), 4);
    EXPECT_THROW(sample_euler(d, Tensor(), s, o), Error);
    Schedule broken = s;
    broken.sigmas.pop_back();
    try {
        sample_euler(d, init_x(), broken, o);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("euler: expected 5 sigmas for 4 timesteps, got 4"));
    }
    // a flow schedule cannot drive an eps model
    FlowScheduleConfig fc;
    fc.steps = 4;
    try {
        sample_euler(d, init_x(), make_flow_schedule(fc), o);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("a flow-matching schedule cannot drive a epsilon model"));
    }
}

TEST(Denoiser, Parameterisations) {
    const Tensor x = Tensor::from_vector({1.0f, -2.0f, 0.5f}, {3});
    const double sigma = 2.0;
    const float c_in = (float)(1.0 / std::sqrt(5.0));
    const Tensor F = x * c_in * 0.3f + 0.25f;  // linear_model at t = 250
    Schedule s;
    s.sigmas = {sigma, 0.0};
    s.timesteps = {250.0};
    auto check = [&](Prediction p, const Tensor& expect) {
        Denoiser d(linear_model, p, NoiseSchedule{});
        d.set_schedule(s);
        EXPECT_DOUBLE_EQ(d.timestep(sigma), 250.0);
        const Tensor got = d(x, sigma);
        EXPECT_LT(max_abs_diff(got, expect), 1e-6) << prediction_name(p);
    };
    check(Prediction::Epsilon, x - F * 2.0f);
    check(Prediction::V, x * (1.0f / 5.0f) + F * (float)(-2.0 / std::sqrt(5.0)));
    check(Prediction::Sample, F);
    // flow: no input scaling, D = x - sigma * v, timestep sigma * 1000
    Denoiser f = Denoiser::flow(linear_model);
    EXPECT_DOUBLE_EQ(f.timestep(0.25), 250.0);
    EXPECT_DOUBLE_EQ(f.c_in(0.25), 1.0);
    EXPECT_LT(max_abs_diff(f(x, 0.25), x - (x * 0.3f + 0.25f) * 0.25f), 1e-6);
}

TEST(Denoiser, TimestepOffTheScheduleUsesTheTrainingTable) {
    Denoiser d = sd_denoiser();
    const NoiseSchedule& ns = d.noise_schedule();
    Schedule s;
    s.sigmas = {5.0, 0.0};
    s.timesteps = {777.0};
    d.set_schedule(s);
    EXPECT_DOUBLE_EQ(d.timestep(5.0), 777.0);  // paired value, verbatim
    EXPECT_NEAR(d.timestep(ns.sigmas()[400]), 400.0, 1e-3);
}

TEST(Denoiser, Errors) {
    try {
        Denoiser d(linear_model, Prediction::Flow, NoiseSchedule{});
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("use Denoiser::flow()"));
    }
    EXPECT_THROW(Denoiser(ModelFn(), Prediction::Epsilon, NoiseSchedule{}), Error);
    Denoiser bad([](const Tensor&, double) { return Tensor::zeros({7}); }, Prediction::Epsilon, NoiseSchedule{});
    try {
        bad(Tensor::zeros({2, 3}), 1.0);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("model returned [7] for input [2, 3]"));
    }
    Denoiser d = sd_denoiser();
    EXPECT_THROW(d(Tensor::zeros({2}), std::nan("")), Error);
    EXPECT_THROW(d(Tensor::zeros({2}), -1.0), Error);
    EXPECT_EQ(parse_prediction("v_prediction"), Prediction::V);
    EXPECT_EQ(parse_prediction("EPS"), Prediction::Epsilon);
    EXPECT_EQ(parse_prediction("x0"), Prediction::Sample);
    try {
        parse_prediction("noise");
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("unknown prediction type 'noise': expected one of epsilon, v_prediction"));
    }
}

TEST(SamplerIdentities, DdimWithEtaZeroIsEulerOnTheSameSchedule) {
    const Schedule s = schedule_for(find_sampler("ddim"), 7);
    SamplerOptions o;
    Denoiser d1 = sd_denoiser(), d2 = sd_denoiser();
    const Tensor x = init_x() * (float)s.init_noise_sigma;
    const Tensor a = sample_ddim(d1, x, s, o);
    const Tensor b = sample_euler(d2, x, s, o);
    EXPECT_EQ(max_abs_diff(a, b), 0.0f);
}

TEST(SamplerIdentities, SingleStepMultistepSamplersReduceToEuler) {
    // With one step every multistep method has no history: it is the Euler step (to sigma 0: x = D).
    const NoiseSchedule ns;
    SamplerOptions o;
    for (const char* name : {"dpmpp_2m", "dpmpp_2s", "unipc", "plms", "lms", "ipndm", "dpmpp_2m_v2"}) {
        const SamplerInfo& info = find_sampler(name);
        const Schedule s = make_sampler_schedule(info, ns, 1);
        Denoiser d1 = sd_denoiser(), d2 = sd_denoiser();
        const Tensor x = init_x() * (float)s.init_noise_sigma;
        EXPECT_LT(max_abs_diff(info.fn(d1, x, s, o), sample_euler(d2, x, s, o)), 1e-5) << name;
    }
}

TEST(Denoiser, ConsistencyBoundary) {
    Denoiser d(linear_model, Prediction::Sample, NoiseSchedule{});
    Schedule s;
    s.sigmas = {2.0, 0.0};
    s.timesteps = {0.1};  // scaled t = 1 with timestep_scaling 10: c_skip = 0.25/1.25, c_out = 1/sqrt(1.25)
    d.set_schedule(s);
    d.set_consistency_boundary(10.0, 0.5);
    const Tensor x = Tensor::from_vector({1.0f, -1.0f}, {2});
    const Tensor x_in = x * (float)(1.0 / std::sqrt(5.0));
    const Tensor F = x_in * 0.3f + 0.0001f;
    const Tensor expect = F * (float)(1.0 / std::sqrt(1.25)) + x_in * 0.2f;
    EXPECT_LT(max_abs_diff(d(x, 2.0), expect), 1e-6);
    EXPECT_THROW(d.set_consistency_boundary(0.0, 0.5), Error);
    Denoiser f = Denoiser::flow(linear_model);
    EXPECT_THROW(f.set_consistency_boundary(10.0, 0.5), Error);
}

TEST(SamplerIdentities, AncestralStepSplitsTheVariance) {
    const AncestralStep a = get_ancestral_step(3.0, 2.0, 1.0);
    EXPECT_NEAR(a.sigma_up * a.sigma_up + a.sigma_down * a.sigma_down, 4.0, 1e-12);
    EXPECT_NEAR(a.sigma_up, std::sqrt(4.0 * (9.0 - 4.0) / 9.0), 1e-12);
    const AncestralStep z = get_ancestral_step(3.0, 2.0, 0.0);
    EXPECT_EQ(z.sigma_down, 2.0);
    EXPECT_EQ(z.sigma_up, 0.0);
    const AncestralStep last = get_ancestral_step(3.0, 0.0, 1.0);
    EXPECT_EQ(last.sigma_down, 0.0);
    EXPECT_EQ(last.sigma_up, 0.0);
}
