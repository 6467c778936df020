// Samplers without a diffusers reference entry: dpm2, dpm2_a, dpmpp_2s_a, dpmpp_sde, dpmpp_3m_sde, dpmpp_2m_v2,
// ipndm, tcd. Each is checked against (a) numbers worked out by hand for one step, and (b) a scalar transcription of
// the published algorithm in its reference's own form (k-diffusion / ComfyUI sampling.py with t_fn, sigma_fn and
// expm1; sd.cpp's denoiser.hpp; diffusers TCDScheduler in VP space), run element by element in double with the same
// noise, so the tensor implementations (written as Euler-form weighted sums) are tested against an independent
// derivation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/error.h"
#include "ops/elementwise.h"
#include "samplers/registry.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

constexpr double kMu = 0.3, kS = 0.5;

double gauss_d(double x, double sigma) { return (kS * kS * x + sigma * sigma * kMu) / (kS * kS + sigma * sigma); }

Denoiser gauss_denoiser() {
    return Denoiser::direct([](const Tensor& x, double sigma) {
        const double s2 = kS * kS, v = sigma * sigma;
        return x * (float)(s2 / (s2 + v)) + (float)(v * kMu / (s2 + v));
    });
}

// Deterministic "noise": draw k, element i.
double noise_value(int draw, int64_t i) { return std::sin(0.7 * (double)(i + 1) + 1.3 * draw); }

class PatternRng : public Rng {
public:
    void fill_randn(float* out, int64_t n) override {
        for (int64_t i = 0; i < n; ++i) out[i] = (float)noise_value(draws, i);
        ++draws;
    }
    int draws = 0;
};

const std::vector<double> kX0 = {7.5, -3.25, 0.9, 12.0};

Schedule karras_schedule(int n, bool to_zero) {
    Schedule s;
    s.sigmas = karras_sigmas(to_zero ? n : n + 1, 0.05, 8.0);
    if (to_zero) s.sigmas.push_back(0.0);
    s.timesteps.assign(s.sigmas.begin(), s.sigmas.end() - 1);
    return s;
}

// One scalar reference run per element: fn(x, element, sigmas) -> x_final.
using ScalarRef = std::function<double(double x, int64_t elem, const std::vector<double>& sigmas)>;

void expect_matches_reference(const char* name, const ScalarRef& ref, std::optional<double> eta, bool to_zero,
                              int steps = 6) {
    const Schedule s = karras_schedule(steps, to_zero);
    Denoiser d = gauss_denoiser();
    PatternRng rng;
    SamplerOptions o;
    o.rng = &rng;
    o.eta = eta;
    std::vector<float> x0f(kX0.begin(), kX0.end());
    const std::vector<float> got =
        find_sampler(name).fn(d, Tensor::from_vector(x0f, {(int64_t)x0f.size()}), s, o).to_vector();
    for (size_t i = 0; i < kX0.size(); ++i) {
        const double want = ref(kX0[i], (int64_t)i, s.sigmas);
        EXPECT_NEAR(got[i], want, 2e-5 * std::max(1.0, std::fabs(want)))
            << name << " element " << i << (to_zero ? " (to 0)" : " (to sigma_min)");
    }
}

double t_fn(double sigma) { return -std::log(sigma); }
double sigma_fn(double t) { return std::exp(-t); }

// k-diffusion get_ancestral_step
std::pair<double, double> ancestral(double from, double to, double eta) {
    if (eta == 0) return {to, 0.0};
    const double up = std::min(to, eta * std::sqrt(to * to * (from * from - to * to) / (from * from)));
    return {std::sqrt(to * to - up * up), up};
}

}  // namespace

// ---- one step, by hand: data N(0, 1) (D = x / (1 + sigma^2)), x = 2 at sigma 2, step to sigma 0.5 -----------------
//   exact ODE: x(0.5) = 2 sqrt(1.25) / sqrt(5) = 1.0
//   Euler:  d = (2 - 0.4) / 2 = 0.8;                      x = 2 + 0.8 (0.5 - 2) = 0.8
//   Heun:   x2 = 0.8, D2 = 0.64, d2 = 0.32;               x = 2 + (0.8 + 0.32) / 2 (-1.5) = 1.16
//   DPM2:   sigma_mid = sqrt(2 * 0.5) = 1, x2 = 2 + 0.8 (1 - 2) = 1.2, D2 = 0.6, d2 = 0.6;  x = 2 + 0.6 (-1.5) = 1.1
//   DPM++(2S), eta 0: x2 = (1/2) 2 + (1/2) 0.4 = 1.2, D2 = 0.6;  x = (0.5/2) 2 + (1 - 0.25) 0.6 = 0.95
TEST(NewSamplersByHand, OneStepOnAUnitGaussian) {
    Schedule s;
    s.sigmas = {2.0, 0.5};
    s.timesteps = {2.0};
    auto run = [&](const char* name) {
        Denoiser d = Denoiser::direct([](const Tensor& x, double sigma) { return x * (float)(1.0 / (1.0 + sigma * sigma)); });
        SamplerOptions o;
        o.eta = 0.0;
        return find_sampler(name).fn(d, Tensor::from_vector({2.0f}, {1}), s, o).item();
    };
    EXPECT_NEAR(run("euler"), 0.8, 1e-6);
    EXPECT_NEAR(run("heun"), 1.16, 1e-6);
    EXPECT_NEAR(run("dpm2"), 1.1, 1e-6);
    EXPECT_NEAR(run("dpm2_a"), 1.1, 1e-6);  // eta 0
    EXPECT_NEAR(run("dpmpp_2s_a"), 0.95, 1e-6);
    EXPECT_NEAR(run("dpmpp_sde"), 0.95, 1e-6);
    EXPECT_NEAR(run("ipndm"), 0.8, 1e-6);         // first step: Euler
    EXPECT_NEAR(run("dpmpp_2m_v2"), 0.8, 1e-6);   // first step: Euler (DPM-Solver++ form)
    EXPECT_NEAR(run("dpmpp_3m_sde"), 0.8, 1e-6);  // eta 0, first step: Euler
}

// ---- against scalar transcriptions of the reference algorithms -----------------------------------------------------

TEST(NewSamplersReference, Dpm2WithAndWithoutChurn) {
    // k-diffusion sample_dpm_2 (ComfyUI form), churn drawn only when gamma > 0
    auto ref = [](double churn) {
        return [churn](double x, int64_t e, const std::vector<double>& sg) {
            const int n = (int)sg.size() - 1;
            int draw = 0;
            for (int i = 0; i < n; ++i) {
                const double gamma = churn > 0 ? std::min(churn / n, std::sqrt(2.0) - 1) : 0.0;
                const double sigma_hat = sg[i] * (gamma + 1);
                if (gamma > 0) x += noise_value(draw++, e) * std::sqrt(sigma_hat * sigma_hat - sg[i] * sg[i]);
                const double d = (x - gauss_d(x, sigma_hat)) / sigma_hat;
                if (sg[i + 1] == 0) {
                    x = x + d * (sg[i + 1] - sigma_hat);
                } else {
                    const double sigma_mid = std::exp(std::log(sigma_hat) + 0.5 * (std::log(sg[i + 1]) - std::log(sigma_hat)));
                    const double x_2 = x + d * (sigma_mid - sigma_hat);
                    const double d_2 = (x_2 - gauss_d(x_2, sigma_mid)) / sigma_mid;
                    x = x + d_2 * (sg[i + 1] - sigma_hat);
                }
            }
            return x;
        };
    };
    expect_matches_reference("dpm2", ref(0.0), std::nullopt, true);
    expect_matches_reference("dpm2", ref(0.0), std::nullopt, false);
    // churn: same schedule, s_churn = 2 (gamma = 1/3 per step)
    const Schedule s = karras_schedule(6, true);
    Denoiser d = gauss_denoiser();
    PatternRng rng;
    SamplerOptions o;
    o.rng = &rng;
    o.s_churn = 2.0;
    std::vector<float> x0f(kX0.begin(), kX0.end());
    const std::vector<float> got = sample_dpm2(d, Tensor::from_vector(x0f, {4}), s, o).to_vector();
    EXPECT_EQ(rng.draws, 6);
    for (size_t i = 0; i < kX0.size(); ++i) EXPECT_NEAR(got[i], ref(2.0)(kX0[i], (int64_t)i, s.sigmas), 2e-5);
}

TEST(NewSamplersReference, Dpm2Ancestral) {
    auto ref = [](double eta) {
        return [eta](double x, int64_t e, const std::vector<double>& sg) {
            int draw = 0;
            for (size_t i = 0; i + 1 < sg.size(); ++i) {
                const auto [down, up] = ancestral(sg[i], sg[i + 1], eta);
                const double d = (x - gauss_d(x, sg[i])) / sg[i];
                if (down == 0) {
                    x = x + d * (down - sg[i]);
                } else {
                    const double mid = std::exp(std::log(sg[i]) + 0.5 * (std::log(down) - std::log(sg[i])));
                    const double x_2 = x + d * (mid - sg[i]);
                    const double d_2 = (x_2 - gauss_d(x_2, mid)) / mid;
                    x = x + d_2 * (down - sg[i]);
                    x = x + noise_value(draw++, e) * up;
                }
            }
            return x;
        };
    };
    for (double eta : {1.0, 0.5}) {
        expect_matches_reference("dpm2_a", ref(eta), eta, true);
        expect_matches_reference("dpm2_a", ref(eta), eta, false);
    }
}

TEST(NewSamplersReference, DpmPP2SAncestral) {
    auto ref = [](double eta) {
        return [eta](double x, int64_t e, const std::vector<double>& sg) {
            int draw = 0;
            for (size_t i = 0; i + 1 < sg.size(); ++i) {
                const double denoised = gauss_d(x, sg[i]);
                const auto [down, up] = ancestral(sg[i], sg[i + 1], eta);
                if (down == 0) {
                    x = x + (x - denoised) / sg[i] * (down - sg[i]);
                } else {
                    const double t = t_fn(sg[i]), t_next = t_fn(down), h = t_next - t, s = t + 0.5 * h;
                    const double x_2 = (sigma_fn(s) / sigma_fn(t)) * x - std::expm1(-h * 0.5) * denoised;
                    const double denoised_2 = gauss_d(x_2, sigma_fn(s));
                    x = (sigma_fn(t_next) / sigma_fn(t)) * x - std::expm1(-h) * denoised_2;
                }
                if (sg[i + 1] > 0) x = x + noise_value(draw++, e) * up;
            }
            return x;
        };
    };
    for (double eta : {1.0, 0.0}) {
        expect_matches_reference("dpmpp_2s_a", ref(eta), eta, true);
        expect_matches_reference("dpmpp_2s_a", ref(eta), eta, false);
    }
}

TEST(NewSamplersReference, DpmPPSde) {
    // ComfyUI sample_dpmpp_sde with alpha = 1 (VE) and r = 1/2; its Brownian-tree noise replaced by independent draws.
    auto ref = [](double eta) {
        return [eta](double x, int64_t e, const std::vector<double>& sg) {
            int draw = 0;
            const double r = 0.5, fac = 1 / (2 * r);
            for (size_t i = 0; i + 1 < sg.size(); ++i) {
                const double denoised = gauss_d(x, sg[i]);
                if (sg[i + 1] == 0) {
                    x = denoised;
                    continue;
                }
                const double lambda_s = t_fn(sg[i]), lambda_t = t_fn(sg[i + 1]);
                const double h = lambda_t - lambda_s, lambda_s_1 = lambda_s + r * h;
                const double sigma_s_1 = sigma_fn(lambda_s_1);
                auto [sd, su] = ancestral(sigma_fn(lambda_s), sigma_fn(lambda_s_1), eta);
                double h_ = t_fn(sd) - lambda_s;
                double x_2 = std::exp(-h_) * x - std::expm1(-h_) * denoised;
                if (eta > 0) x_2 += noise_value(draw++, e) * su;
                const double denoised_2 = gauss_d(x_2, sigma_s_1);
                std::tie(sd, su) = ancestral(sigma_fn(lambda_s), sigma_fn(lambda_t), eta);
                h_ = t_fn(sd) - lambda_s;
                const double denoised_d = (1 - fac) * denoised + fac * denoised_2;
                x = std::exp(-h_) * x - std::expm1(-h_) * denoised_d;
                if (eta > 0) x += noise_value(draw++, e) * su;
            }
            return x;
        };
    };
    for (double eta : {1.0, 0.0}) {
        expect_matches_reference("dpmpp_sde", ref(eta), eta, true);
        expect_matches_reference("dpmpp_sde", ref(eta), eta, false);
    }
}

TEST(NewSamplersReference, DpmPP3MSde) {
    // ComfyUI sample_dpmpp_3m_sde (VE: alpha_t = 1)
    auto ref = [](double eta) {
        return [eta](double x, int64_t e, const std::vector<double>& sg) {
            int draw = 0;
            double d_1 = 0, d_2 = 0, h = 0, h_1 = 0, h_2 = 0;
            bool have_h1 = false, have_h2 = false;
            for (size_t i = 0; i + 1 < sg.size(); ++i) {
                const double denoised = gauss_d(x, sg[i]);
                if (sg[i + 1] == 0) {
                    x = denoised;
                } else {
                    const double t = t_fn(sg[i]), s = t_fn(sg[i + 1]);
                    h = s - t;
                    const double h_eta = h * (eta + 1);
                    x = sg[i + 1] / sg[i] * std::exp(-h * eta) * x + (-std::expm1(-h_eta)) * denoised;
                    if (have_h2) {
                        const double r0 = h_1 / h, r1 = h_2 / h;
                        const double d1_0 = (denoised - d_1) / r0, d1_1 = (d_1 - d_2) / r1;
                        const double d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1), d2 = (d1_0 - d1_1) / (r0 + r1);
                        const double phi_2 = std::expm1(-h_eta) / h_eta + 1, phi_3 = phi_2 / h_eta - 0.5;
                        x = x + phi_2 * d1 - phi_3 * d2;
                    } else if (have_h1) {
                        const double r = h_1 / h;
                        x = x + (std::expm1(-h_eta) / h_eta + 1) * (denoised - d_1) / r;
                    }
                    if (eta > 0) x += noise_value(draw++, e) * sg[i + 1] * std::sqrt(-std::expm1(-2 * h * eta));
                }
                d_2 = d_1;
                d_1 = denoised;
                h_2 = h_1;
                h_1 = h;
                have_h2 = have_h1;
                have_h1 = true;
            }
            return x;
        };
    };
    for (double eta : {1.0, 0.0}) {
        expect_matches_reference("dpmpp_3m_sde", ref(eta), eta, true);
        expect_matches_reference("dpmpp_3m_sde", ref(eta), eta, false);
    }
}

TEST(NewSamplersReference, DpmPP2MV2) {
    // stable-diffusion.cpp DPMPP2Mv2: x = a x - b D', a = sigma_next / sigma, b = exp(-h_d) - 1
    auto ref = [](double x, int64_t, const std::vector<double>& sg) {
        double old = 0;
        for (size_t i = 0; i + 1 < sg.size(); ++i) {
            const double denoised = gauss_d(x, sg[i]);
            const double t = t_fn(sg[i]), t_next = t_fn(sg[i + 1]), h = t_next - t, a = sg[i + 1] / sg[i];
            if (i == 0 || sg[i + 1] == 0) {
                x = sg[i + 1] == 0 ? denoised : a * x - (std::exp(-h) - 1) * denoised;
            } else {
                const double h_last = t - t_fn(sg[i - 1]);
                const double h_min = std::min(h_last, h), h_max = std::max(h_last, h);
                const double r = h_max / h_min, h_d = (h_max + h_min) / 2, b = std::exp(-h_d) - 1;
                const double denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old;
                x = a * x - b * denoised_d;
            }
            old = denoised;
        }
        return x;
    };
    expect_matches_reference("dpmpp_2m_v2", ref, std::nullopt, true);
    expect_matches_reference("dpmpp_2m_v2", ref, std::nullopt, false);
}

TEST(NewSamplersReference, IPndm) {
    // ComfyUI sample_ipndm (max_order 4)
    auto ref = [](double x, int64_t, const std::vector<double>& sg) {
        std::vector<double> buf;
        for (size_t i = 0; i + 1 < sg.size(); ++i) {
            const double t_cur = sg[i], t_next = sg[i + 1];
            const double denoised = gauss_d(x, t_cur), d_cur = (x - denoised) / t_cur;
            const int order = std::min(4, (int)i + 1);
            const size_t b = buf.size();
            if (t_next == 0) x = denoised;
            else if (order == 1) x = x + (t_next - t_cur) * d_cur;
            else if (order == 2) x = x + (t_next - t_cur) * (3 * d_cur - buf[b - 1]) / 2;
            else if (order == 3) x = x + (t_next - t_cur) * (23 * d_cur - 16 * buf[b - 1] + 5 * buf[b - 2]) / 12;
            else x = x + (t_next - t_cur) * (55 * d_cur - 59 * buf[b - 1] + 37 * buf[b - 2] - 9 * buf[b - 3]) / 24;
            buf.push_back(d_cur);
            if (buf.size() > 3) buf.erase(buf.begin());
        }
        return x;
    };
    expect_matches_reference("ipndm", ref, std::nullopt, true, 7);
    expect_matches_reference("ipndm", ref, std::nullopt, false, 7);
}

TEST(NewSamplersReference, TcdInVpSpaceAsDiffusers) {
    // diffusers TCDScheduler.step, epsilon prediction, written in VP space with alphas_cumprod.
    const NoiseSchedule ns;
    const auto& ac = ns.alphas_cumprod();
    auto eps_model = [](double x_in, double t) { return 0.3 * x_in + 0.05 * std::cos(t / 1000.0); };
    for (double gamma : {0.3, 0.0, 1.0}) {
        for (int steps : {4, 1}) {
            const Schedule s = make_sampler_schedule(find_sampler("tcd"), ns, steps);
            ASSERT_EQ(s.timesteps.front(), 999.0);
            EXPECT_NEAR(s.sigmas.back(), ns.sigma_at(0), 1e-12);  // ends at timestep 0, not at a clean sample
            Denoiser d([&](const Tensor& x_in, double t) { return x_in * 0.3f + (float)(0.05 * std::cos(t / 1000.0)); },
                       Prediction::Epsilon, ns);
            PatternRng rng;
            SamplerOptions o;
            o.rng = &rng;
            o.eta = gamma;
            std::vector<float> x0f(kX0.begin(), kX0.end());
            for (float& v : x0f) v *= 0.1f;  // unit-ish latents
            const Tensor x_ve = Tensor::from_vector(x0f, {4}) * (float)s.init_noise_sigma;
            const std::vector<float> got = run_sampler(find_sampler("tcd"), d, x_ve, s, o).to_vector();
            EXPECT_EQ(rng.draws, gamma > 0 ? steps - 1 : 0) << gamma;
            for (size_t e = 0; e < x0f.size(); ++e) {
                double x = x0f[e];  // diffusers: latents = noise * init_noise_sigma (1)
                int draw = 0;
                for (int i = 0; i < steps; ++i) {
                    const int t = (int)s.timesteps[(size_t)i];
                    const int prev_t = i + 1 < steps ? (int)s.timesteps[(size_t)i + 1] : 0;
                    const int t_s = (int)std::floor((1 - gamma) * prev_t);
                    const double a_t = ac[(size_t)t], a_prev = ac[(size_t)prev_t], a_s = ac[(size_t)t_s];
                    const double eps = eps_model(x, t);
                    const double x0 = (x - std::sqrt(1 - a_t) * eps) / std::sqrt(a_t);
                    const double x_s = std::sqrt(a_s) * x0 + std::sqrt(1 - a_s) * eps;
                    if (gamma > 0 && i != steps - 1)
                        x = std::sqrt(a_prev / a_s) * x_s + std::sqrt(1 - a_prev / a_s) * noise_value(draw++, (int64_t)e);
                    else
                        x = x_s;
                }
                EXPECT_NEAR(got[e], x, 2e-5) << "gamma " << gamma << " steps " << steps << " element " << e;
            }
        }
    }
}

TEST(NewSamplersErrors, FlowSchedulesAndBadParameters) {
    FlowScheduleConfig fc;
    fc.steps = 4;
    const Schedule flow = make_flow_schedule(fc);
    Denoiser f = Denoiser::direct([](const Tensor& x, double) { return x * 0.5f; }, true);
    SamplerOptions o;
    // discrete-only samplers refuse flow schedules, with the list of those that work
    for (const char* name : {"ddim", "ddpm", "plms", "lcm", "tcd", "ddim_trailing"}) {
        try {
            run_sampler(name, f, Tensor::zeros({2}), flow, o);
            FAIL() << name;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::Unsupported) << name;
            EXPECT_THAT(e.what(), HasSubstr("cannot sample a flow-matching model"));
            EXPECT_THAT(e.what(), HasSubstr("euler, euler_a, heun"));
        }
    }
    // ... also when called directly
    try {
        sample_tcd(f, Tensor::zeros({2}), flow, o);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("sampler 'tcd' works on a DDPM timestep set"));
    }
    // VE noise on a flow schedule: an error up front (before any model call); eta 0 runs
    for (const char* name : {"euler_a", "dpm2_a", "dpmpp_2s_a", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"}) {
        Denoiser g = Denoiser::direct([](const Tensor& x, double) { return x * 0.5f; }, true);
        try {
            run_sampler(name, g, Tensor::zeros({2}), flow, o);
            FAIL() << name;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::Unsupported) << name;
            EXPECT_THAT(e.what(), HasSubstr("adds variance-exploding noise"));
        }
        EXPECT_EQ(g.calls(), 0) << name;
        SamplerOptions z;
        z.eta = 0.0;
        EXPECT_NO_THROW(run_sampler(name, g, Tensor::zeros({2}), flow, z)) << name;
    }
    SamplerOptions churn;
    churn.s_churn = 1.0;
    EXPECT_THROW(run_sampler("dpm2", f, Tensor::zeros({2}), flow, churn), Error);
    // deterministic samplers run on flow schedules
    for (const char* name : {"euler", "heun", "dpm2", "lms", "dpmpp_2m", "dpmpp_2m_v2", "dpmpp_2s", "unipc", "ipndm"})
        EXPECT_NO_THROW(run_sampler(name, f, Tensor::zeros({2}), flow, o)) << name;

    // bad parameters
    Denoiser d = gauss_denoiser();
    const Schedule s = make_sampler_schedule(find_sampler("tcd"), NoiseSchedule{}, 4);
    SamplerOptions bad;
    bad.eta = 1.5;
    try {
        sample_tcd(d, Tensor::zeros({2}), s, bad);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("eta (gamma) must be in [0, 1], got 1.5"));
    }
    bad.eta = -0.1;
    EXPECT_THROW(sample_dpmpp_sde(d, Tensor::zeros({2}), karras_schedule(3, true), bad), Error);
    SamplerOptions neg_churn;
    neg_churn.s_churn = -1;
    EXPECT_THROW(sample_dpm2(d, Tensor::zeros({2}), karras_schedule(3, true), neg_churn), Error);
    // stochastic samplers need an rng
    SamplerOptions no_rng;
    try {
        sample_dpmpp_3m_sde(d, Tensor::zeros({2}), karras_schedule(3, true), no_rng);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("options.rng is null"));
    }
}

TEST(NewSamplers, DiffusersChurnOrderDiffersFromKDiffusion) {
    // Same noise, same schedule: the two churn orders give different samples; without churn both are plain Euler.
    const Schedule s = karras_schedule(5, true);
    auto run = [&](ChurnMode mode, double churn) {
        Denoiser d = gauss_denoiser();
        PatternRng rng;
        SamplerOptions o;
        o.rng = &rng;
        o.s_churn = churn;
        o.churn_mode = mode;
        std::vector<float> x0f(kX0.begin(), kX0.end());
        return sample_euler(d, Tensor::from_vector(x0f, {4}), s, o);
    };
    EXPECT_GT(max_abs_diff(run(ChurnMode::KDiffusion, 1.0), run(ChurnMode::Diffusers, 1.0)), 1e-3);
    EXPECT_EQ(max_abs_diff(run(ChurnMode::KDiffusion, 0.0), run(ChurnMode::Diffusers, 0.0)), 0.0f);
    // diffusers order by hand for one churned step: D at (x, sigma), then x_hat = x + z sqrt(sh^2 - s^2),
    // x_next = x_hat + (x - D)/sigma (s_next - sh)
    Schedule one;
    one.sigmas = {2.0, 0.0};
    one.timesteps = {2.0};
    Denoiser d = gauss_denoiser();
    PatternRng rng;
    SamplerOptions o;
    o.rng = &rng;
    o.s_churn = 0.2;  // gamma = 0.2
    o.churn_mode = ChurnMode::Diffusers;
    const float got = sample_euler(d, Tensor::from_vector({1.5f}, {1}), one, o).item();
    const double sh = 2.4, z = noise_value(0, 0);
    const double x_hat = 1.5 + z * std::sqrt(sh * sh - 4.0);
    EXPECT_NEAR(got, x_hat + (1.5 - gauss_d(1.5, 2.0)) / 2.0 * (0.0 - sh), 1e-5);
}
