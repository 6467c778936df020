// Convergence of the samplers on a Gaussian data distribution, where everything is known in closed form.
//
// Data x0 ~ N(mu, s^2) per element. In VE scaling x = x0 + sigma * eps:
//   exact denoiser      D(x, sigma) = E[x0 | x] = (s^2 x + sigma^2 mu) / (s^2 + sigma^2)
//   probability-flow ODE dx/dsigma = (x - D) / sigma, solved by
//                       x(sigma) = mu + (x_T - mu) * sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_T^2)
//   marginal            x(sigma) ~ N(mu, s^2 + sigma^2)
// ODE samplers (stochastic ones with eta 0) start from fixed x_T at sigma_T and stop at sigma_end > 0, so no
// final "jump to D" hides the method's order; the error at sigma_end must fall like h^p as the steps double.
// Stochastic samplers start from x_T ~ N(mu, s^2 + sigma_T^2) and must end with mean ~ mu and std ~ s.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <optional>

#include "core/rng.h"
#include "ops/elementwise.h"
#include "samplers/registry.h"

using namespace nuance;

namespace {

constexpr double kMu = 0.3, kS = 0.5;

// D(x, sigma) = E[x0 | x] for x0 ~ N(kMu, kS^2).
Denoiser posterior_mean_denoiser(bool flow = false) {
    return Denoiser::direct(
        [](const Tensor& x, double sigma) {
            const double s2 = kS * kS, v = sigma * sigma;
            return x * (float)(s2 / (s2 + v)) + (float)(v * kMu / (s2 + v));
        },
        flow);
}

// The consistency function f(x, sigma) = the ODE's endpoint at sigma 0 (what LCM/TCD-distilled models learn).
Denoiser consistency_denoiser() {
    return Denoiser::direct([](const Tensor& x, double sigma) {
        const double k = kS / std::sqrt(kS * kS + sigma * sigma);
        return x * (float)k + (float)(kMu * (1.0 - k));
    });
}

double exact_ode(double x_t, double sigma_t, double sigma) {
    return kMu + (x_t - kMu) * std::sqrt(kS * kS + sigma * sigma) / std::sqrt(kS * kS + sigma_t * sigma_t);
}

// A schedule of n steps from sigma_max to sigma_end > 0 (Karras rho = 7 spacing unless `uniform`).
Schedule ode_schedule(int n, double sigma_max, double sigma_end, bool uniform = false) {
    Schedule s;
    if (uniform) {
        for (int i = 0; i <= n; ++i) s.sigmas.push_back(sigma_max + (sigma_end - sigma_max) * i / n);
    } else {
        s.sigmas = karras_sigmas(n + 1, sigma_end, sigma_max);
    }
    s.timesteps.assign(s.sigmas.begin(), s.sigmas.end() - 1);  // unused by direct denoisers
    return s;
}

Tensor start_points() {
    std::vector<float> v;
    for (int i = 0; i < 64; ++i) v.push_back((float)(kMu + 12.0 * std::sin(0.37 * i + 0.2)));
    return Tensor::from_vector(v, {64});
}

// max |x - exact| at sigma_end after n steps.
double ode_error(const std::string& sampler, int n, bool uniform, bool flow = false) {
    const double sigma_max = flow ? 0.98 : 10.0, sigma_end = flow ? 0.05 : 0.1;
    Schedule s = ode_schedule(n, sigma_max, sigma_end, uniform);
    s.flow = flow;
    Denoiser d = posterior_mean_denoiser(flow);
    SamplerOptions o;
    o.eta = 0.0;  // stochastic samplers run as their ODE solver
    o.lower_order_final = false;
    const Tensor x0 = start_points();
    const Tensor x = find_sampler(sampler).fn(d, x0, s, o);
    const std::vector<float> xs = x.to_vector(), x0s = x0.to_vector();
    double err = 0;
    for (size_t i = 0; i < xs.size(); ++i)
        err = std::max(err, std::fabs((double)xs[i] - exact_ode(x0s[i], sigma_max, sigma_end)));
    return err;
}

// Observed order between n and 2n steps, and the error at 2n.
struct Order {
    double order, err;
};
Order measure(const std::string& sampler, int n, bool uniform = false) {
    const double e1 = ode_error(sampler, n, uniform), e2 = ode_error(sampler, 2 * n, uniform);
    return {std::log2(e1 / e2), e2};
}

// Mean and (unbiased) std of a sample.
std::pair<double, double> stats(const std::vector<float>& y) {
    double mean = 0, var = 0;
    for (float v : y) mean += v;
    mean /= (double)y.size();
    for (float v : y) var += (v - mean) * (v - mean);
    return {mean, std::sqrt(var / (double)(y.size() - 1))};
}

// Runs a stochastic sampler from x_T ~ N(mu, s^2 + sigma_0^2) (the exact marginal) and returns the sample's stats.
std::pair<double, double> sample_stats(const std::string& name, Denoiser d, const Schedule& s,
                                       std::optional<double> eta = std::nullopt) {
    auto rng = make_rng(RngKind::Cpu, 1234);
    const Tensor x = rng->randn({1 << 16}) * (float)std::sqrt(kS * kS + s.sigmas[0] * s.sigmas[0]) + (float)kMu;
    SamplerOptions o;
    o.rng = rng.get();
    o.eta = eta;
    return stats(find_sampler(name).fn(d, x, s, o).to_vector());  // VE sample, no VP finalize
}

// Karras rho 7 from 14.6 to 0.02, then 0.
Schedule to_zero(int n) {
    Schedule s = ode_schedule(n - 1, 14.6, 0.02);
    s.sigmas.push_back(0.0);
    s.timesteps.push_back(0.02);
    return s;
}

}  // namespace

// Observed orders on a Karras rho=7 grid from sigma 10 to 0.1 (errors between ~1e-2 and ~1e-5, well above float32
// round-off), between n and 2n steps at an n where the method's leading error term dominates. Multistep methods
// warm up with an Euler step whose O(h^2) error eventually limits every one of them to order 2 for very many steps
// (the Euler step falls where the solution is nearly linear, so that takes ~100 steps here); thresholds are the
// claimed order minus slack for pre-asymptotic behaviour.
TEST(SamplerConvergence, OdeOrdersOnAGaussian) {
    struct Case {
        const char* sampler;
        int n;
        double min_order;
    };
    const std::vector<Case> cases = {
        {"euler", 32, 0.9},                                                                  // order 1
        {"heun", 32, 1.8},      {"dpm2", 32, 1.8},       {"dpm2_a", 32, 1.8},                // 2 (eta 0)
        {"dpmpp_2m", 32, 1.8},  {"dpmpp_2m_sde", 32, 1.8}, {"dpmpp_2s", 32, 1.8},            // 2
        {"dpmpp_2s_a", 32, 1.8}, {"dpmpp_sde", 32, 1.8},                                     // 2 (eta 0)
        {"unipc", 16, 2.7},                                                                  // 2 + corrector = 3
        {"dpmpp_3m_sde", 8, 2.5},                                                            // 3 (eta 0)
        {"lms", 16, 3.0},                                                                    // 4
        {"ipndm", 32, 1.8},  // fixed equal-step coefficients on an uneven grid: 2 (4 on even steps, below)
    };
    for (const Case& c : cases) {
        const Order o = measure(c.sampler, c.n);
        std::printf("  %-14s order %.2f between %d and %d steps (max error %.2e)\n", c.sampler, o.order, c.n,
                    2 * c.n, o.err);
        EXPECT_GE(o.order, c.min_order) << c.sampler << " error " << o.err;
        EXPECT_LT(o.err, 2e-2) << c.sampler;
    }
}

TEST(SamplerConvergence, AdamsBashforthOnEvenSteps) {
    // sigma uniform from 10 to 0.1: the fixed coefficients of iPNDM / PLMS are the 4th-order Adams-Bashforth ones.
    for (const char* name : {"ipndm", "plms", "lms"}) {
        const Order o = measure(name, 32, true);
        std::printf("  %-14s order %.2f between 32 and 64 even steps (max error %.2e)\n", name, o.order, o.err);
        EXPECT_GE(o.order, 3.5) << name;
    }
    // On even steps LMS's integrated Lagrange coefficients are the same Adams-Bashforth ones.
    for (int n : {8, 32}) EXPECT_NEAR(ode_error("lms", n, true), ode_error("ipndm", n, true), 1e-5) << n;
}

TEST(SamplerConvergence, DpmPP2MV2IsDpmPP2MOnEvenLogSteps) {
    // With h constant (exponential schedule) r = 1 and h_d = h: the v2 update is exactly DPM++ 2M.
    auto run = [](const char* name, int n) {
        Schedule s;
        s.sigmas = exponential_sigmas(n + 1, 0.1, 10.0);
        s.timesteps.assign(s.sigmas.begin(), s.sigmas.end() - 1);
        Denoiser d = posterior_mean_denoiser();
        SamplerOptions o;
        o.lower_order_final = false;
        return find_sampler(name).fn(d, start_points(), s, o);
    };
    EXPECT_LT(max_abs_diff(run("dpmpp_2m_v2", 16), run("dpmpp_2m", 16)), 2e-5);
    // On grids whose log-step changes (Karras) its data weight (1 - e^{-h_d}) no longer matches the x weight: the
    // method is then only first order (a property of the sd.cpp variant, kept for parity).
    const Order o = measure("dpmpp_2m_v2", 32);
    std::printf("  dpmpp_2m_v2    order %.2f on the Karras grid (max error %.2e)\n", o.order, o.err);
    EXPECT_GE(o.order, 0.8);
}

TEST(SamplerConvergence, ErrorFallsMonotonicallyWithSteps) {
    for (const char* name : {"euler", "heun", "dpm2", "dpmpp_2m", "dpmpp_sde", "dpmpp_3m_sde", "lms", "unipc"}) {
        double prev = 1e300;
        for (int n : {8, 16, 32, 64}) {
            const double e = ode_error(name, n, false);
            EXPECT_LT(e, prev) << name << " at " << n << " steps";
            prev = e;
        }
    }
}

TEST(SamplerConvergence, EtaZeroAncestralSamplersAreTheirOdeSolvers) {
    for (int n : {5, 12}) {
        EXPECT_EQ(ode_error("euler_a", n, false), ode_error("euler", n, false));
        EXPECT_EQ(ode_error("ddim", n, false), ode_error("euler", n, false));
        EXPECT_EQ(ode_error("dpm2_a", n, false), ode_error("dpm2", n, false));
        EXPECT_NEAR(ode_error("dpmpp_sde", n, false), ode_error("dpmpp_2s_a", n, false), 1e-6);
    }
}

TEST(SamplerConvergence, FlowSchedulesSolveTheSameOde) {
    // x = (1 - s) x0 + s eps has dx/ds = (x - D) / s too; with D the flow model's x0 estimate the deterministic
    // samplers converge on it. (Data-space Gaussian: x0 ~ N(mu, s^2) -> D = E[x0 | x] for this interpolation.)
    auto flow_error = [](const char* name, int n) {
        const double smax = 0.98, send = 0.05;
        Schedule s = ode_schedule(n, smax, send, true);
        s.flow = true;
        // E[x0 | x] for x = (1-t) x0 + t eps: a = 1-t, Var = a^2 s^2 + t^2.
        Denoiser d = Denoiser::direct(
            [](const Tensor& x, double t) {
                const double a = 1.0 - t, v = a * a * kS * kS + t * t;
                return x * (float)(a * kS * kS / v) + (float)(kMu * t * t / v);
            },
            true);
        SamplerOptions o;
        o.eta = 0.0;
        o.lower_order_final = false;
        const Tensor x0 = start_points() * 0.1f;
        const std::vector<float> xs = find_sampler(name).fn(d, x0, s, o).to_vector(), x0s = x0.to_vector();
        // exact flow ODE: x(t) = (1-t) mu + (x_T - (1-T) mu) * sqrt((1-t)^2 s^2 + t^2) / sqrt((1-T)^2 s^2 + T^2)
        auto sd = [](double t) { return std::sqrt((1 - t) * (1 - t) * kS * kS + t * t); };
        double err = 0;
        for (size_t i = 0; i < xs.size(); ++i) {
            const double exact = (1 - send) * kMu + (x0s[i] - (1 - smax) * kMu) * sd(send) / sd(smax);
            err = std::max(err, std::fabs(xs[i] - exact));
        }
        return err;
    };
    for (const auto& [name, order] : std::map<std::string, double>{{"euler", 0.9}, {"heun", 1.8}, {"dpmpp_2m", 1.8}}) {
        const double e1 = flow_error(name.c_str(), 16), e2 = flow_error(name.c_str(), 32);
        std::printf("  flow %-10s order %.2f (error %.2e)\n", name.c_str(), std::log2(e1 / e2), e2);
        EXPECT_GE(std::log2(e1 / e2), order) << name;
    }
}

// Stochastic samplers at their default noise: the final sample statistics approach the data distribution, and the
// bias shrinks as the steps rise (first order in distribution for Euler-ancestral-type steps: euler_a, ddpm, and
// dpmpp_sde with independent rather than Brownian-tree noise; the second-order ones are within 1-2% at 20 steps).
TEST(SamplerConvergence, StochasticSamplersReachTheDataDistribution) {
    for (const char* name : {"euler_a", "ddpm", "dpm2_a", "dpmpp_2s_a", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"}) {
        const auto [m20, sd20] = sample_stats(name, posterior_mean_denoiser(), to_zero(20));
        const auto [m80, sd80] = sample_stats(name, posterior_mean_denoiser(), to_zero(80));
        std::printf("  %-14s 20 steps: mean %.4f std %.4f   80 steps: mean %.4f std %.4f   (mu %.2f, s %.2f)\n", name,
                    m20, sd20, m80, sd80, kMu, kS);
        EXPECT_NEAR(m80, kMu, 0.012) << name;
        EXPECT_NEAR(sd80, kS, 0.05 * kS) << name;
        const double e20 = std::fabs(sd20 - kS), e80 = std::fabs(sd80 - kS);
        EXPECT_TRUE(e80 < e20 / 2.5 || e20 < 0.02 * kS) << name << ": std error " << e20 << " -> " << e80;
    }
}

// LCM and TCD assume a consistency model: D is the ODE endpoint f(x, sigma), not E[x0 | x].
TEST(SamplerConvergence, ConsistencySamplersOnAConsistencyFunction) {
    const NoiseSchedule ns;
    // LCM: f(x) ~ N(mu, s^2) exactly when x ~ N(mu, s^2 + sigma^2), and re-noising keeps the marginal: exact.
    const auto [ml, sl] = sample_stats("lcm", consistency_denoiser(), make_sampler_schedule(find_sampler("lcm"), ns, 4));
    EXPECT_NEAR(ml, kMu, 0.012);
    EXPECT_NEAR(sl, kS, 0.01 * kS);
    // TCD with gamma = 1 re-noises from (nearly) the consistency point, like LCM; its final DDIM jump to
    // sigma(t=0) = 0.029 adds (sigma_0/sigma) (x - f), which inflates the std by a few percent.
    const Schedule tcd = make_sampler_schedule(find_sampler("tcd"), ns, 8);
    const auto [mt, st] = sample_stats("tcd", consistency_denoiser(), tcd, 1.0);
    std::printf("  tcd gamma=1: mean %.4f std %.4f (s %.2f)\n", mt, st, kS);
    EXPECT_NEAR(mt, kMu, 0.012);
    EXPECT_NEAR(st, kS, 0.07 * kS);
    // TCD with gamma = 0 is DDIM (an ODE solver): with E[x0 | x] it converges to the data std as the steps rise.
    const auto [m25, s25] = sample_stats("tcd", posterior_mean_denoiser(), make_sampler_schedule(find_sampler("tcd"), ns, 25), 0.0);
    const auto [m50, s50] = sample_stats("tcd", posterior_mean_denoiser(), make_sampler_schedule(find_sampler("tcd"), ns, 50), 0.0);
    std::printf("  tcd gamma=0: std %.4f (25 steps) %.4f (50 steps)\n", s25, s50);
    EXPECT_NEAR(m50, kMu, 0.012);
    EXPECT_LT(std::fabs(s50 - kS), 0.6 * std::fabs(s25 - kS));
    EXPECT_NEAR(s50, kS, 0.06 * kS);
}
