// The ComfyUI/A1111 schedule types (sgm_uniform, simple, ddim_uniform, beta, align-your-steps) and custom sigma
// lists: values worked out from the reference formulas on the SD training table, the published AYS tables, scipy
// values for the Beta quantiles, and the error messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "samplers/registry.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

template <class F>
void expect_error(F&& f, const std::string& text, ErrorCode code = ErrorCode::InvalidArgument) {
    try {
        f();
        FAIL() << "expected an Error containing '" << text << "'";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_THAT(e.what(), HasSubstr(text));
    }
}

double table(const NoiseSchedule& ns, int t) { return ns.sigmas()[(size_t)t]; }

const std::vector<double> kAysSd15 = {14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520,
                                      1.8841921177,  1.3943805092, 0.9642583904, 0.6523686016,
                                      0.3977456272,  0.1515232662, 0.0291671582};
const std::vector<double> kAysSdxl = {14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769,
                                      1.3405244945,  0.8620721141, 0.5550693289, 0.3798540708,
                                      0.2332364134,  0.1114188177, 0.0291671582};

}  // namespace

TEST(ScheduleTypes, LogInterpolatedTimestepSigma) {
    const NoiseSchedule ns;
    EXPECT_EQ(ns.t_to_sigma_log(500.0), table(ns, 500));
    EXPECT_NEAR(ns.t_to_sigma_log(500.5), std::sqrt(table(ns, 500) * table(ns, 501)), 1e-6);  // geometric mean
    EXPECT_EQ(ns.t_to_sigma_log(-3.0), table(ns, 0));                                            // clamped
    EXPECT_EQ(ns.t_to_sigma_log(1e6), table(ns, 999));
    for (double t : {0.25, 17.5, 499.9, 998.3}) EXPECT_NEAR(ns.sigma_to_t(ns.t_to_sigma_log(t)), t, 1e-6) << t;
    EXPECT_THROW(ns.t_to_sigma_log(std::nan("")), Error);
}

TEST(ScheduleTypes, SgmUniform) {
    // ComfyUI: timesteps linspace(999, 0, n + 1)[:-1] = 999, 749.25, 499.5, 249.75 for n = 4
    const NoiseSchedule ns;
    const std::vector<double> s = sgm_uniform_sigmas(ns, 4);
    ASSERT_EQ(s.size(), 4u);
    EXPECT_EQ(s[0], table(ns, 999));
    EXPECT_NEAR(s[1], std::exp(0.75 * std::log(table(ns, 749)) + 0.25 * std::log(table(ns, 750))), 1e-6 * s[1]);
    EXPECT_NEAR(s[2], std::sqrt(table(ns, 499) * table(ns, 500)), 1e-6 * s[2]);
    // as a sampling schedule: EulerDiscrete timesteps are those fractional timesteps, then sigma 0
    const Schedule e = make_sampler_schedule(find_sampler("euler"), ns, 4, ScheduleType::SgmUniform);
    ASSERT_EQ(e.steps(), 4);
    EXPECT_NEAR(e.timesteps[2], 499.5, 1e-3);
    EXPECT_EQ(e.sigmas.back(), 0.0);
    EXPECT_NEAR(e.init_noise_sigma, table(ns, 999), 1e-5);
    // DPM-Solver family: the same sigmas with rounded timesteps
    const Schedule d = make_sampler_schedule(find_sampler("dpmpp_2m"), ns, 4, ScheduleType::SgmUniform);
    for (double t : d.timesteps) EXPECT_EQ(t, std::nearbyint(t));
    EXPECT_NEAR(d.timesteps[1], 749.0, 0.5 + 1e-6);
    EXPECT_NEAR(d.sigmas[2], s[2], 1e-6);
}

TEST(ScheduleTypes, Simple) {
    // ComfyUI simple_scheduler: sigmas[-(1 + int(x * 1000 / n))]
    const NoiseSchedule ns;
    EXPECT_EQ(simple_sigmas(ns, 4), (std::vector<double>{table(ns, 999), table(ns, 749), table(ns, 499), table(ns, 249)}));
    EXPECT_EQ(simple_sigmas(ns, 3), (std::vector<double>{table(ns, 999), table(ns, 666), table(ns, 333)}));
    EXPECT_EQ(simple_sigmas(ns, 1000).back(), table(ns, 0));
}

TEST(ScheduleTypes, DdimUniform) {
    // ComfyUI/A1111 ddim_scheduler: table sigmas at 1, 1 + 1000 // n, ... (< 1000), reversed
    const NoiseSchedule ns;
    const std::vector<double> s10 = ddim_uniform_sigmas(ns, 10);
    ASSERT_EQ(s10.size(), 10u);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(s10[(size_t)i], table(ns, 901 - 100 * i)) << i;
    EXPECT_EQ(ddim_uniform_sigmas(ns, 3), (std::vector<double>{table(ns, 667), table(ns, 334), table(ns, 1)}));
    // the reference's quirk: 1000 // 7 = 142 gives 1, 143, ..., 995: eight steps for n = 7
    const std::vector<double> s7 = ddim_uniform_sigmas(ns, 7);
    ASSERT_EQ(s7.size(), 8u);
    EXPECT_EQ(s7.front(), table(ns, 995));
    const Schedule e = make_sampler_schedule(find_sampler("euler"), ns, 7, ScheduleType::DdimUniform);
    EXPECT_EQ(e.steps(), 8);
}

TEST(ScheduleTypes, BetaQuantiles) {
    // scipy.stats.beta 1.10.1
    EXPECT_NEAR(beta_cdf(0.3, 0.6, 0.6), 0.35252651177214367, 1e-13);
    EXPECT_NEAR(beta_cdf(0.8, 2.5, 0.7), 0.4272966863619844, 1e-13);
    EXPECT_NEAR(beta_ppf(0.9, 0.6, 0.6), 0.9604155944112192, 1e-13);
    EXPECT_NEAR(beta_ppf(0.1, 0.6, 0.6), 0.03958440558878085, 1e-13);
    EXPECT_NEAR(beta_ppf(0.37, 2.5, 0.7), 0.7625984208355969, 1e-13);
    EXPECT_EQ(beta_ppf(0.5, 0.6, 0.6), 0.5);
    // closed forms: Beta(1, 1) is uniform, Beta(2, 1) has cdf x^2, Beta(1/2, 1/2) is the arcsine law
    EXPECT_NEAR(beta_cdf(0.3, 1, 1), 0.3, 1e-14);
    EXPECT_NEAR(beta_ppf(0.25, 2, 1), 0.5, 1e-14);
    EXPECT_NEAR(beta_ppf(0.25, 0.5, 0.5), std::pow(std::sin(M_PI / 8), 2), 1e-13);
    EXPECT_EQ(beta_ppf(0, 0.6, 0.6), 0.0);
    EXPECT_EQ(beta_ppf(1, 0.6, 0.6), 1.0);
    EXPECT_THROW(beta_ppf(1.5, 0.6, 0.6), Error);
    EXPECT_THROW(beta_cdf(0.5, 0.0, 0.6), Error);
}

TEST(ScheduleTypes, Beta) {
    // ComfyUI beta_scheduler timesteps rint(ppf(1 - i/n, 0.6, 0.6) * 999), from scipy 1.10.1
    const NoiseSchedule ns;
    auto expect_ts = [&](int n, const std::vector<int>& ts) {
        const std::vector<double> s = beta_sigmas(ns, n);
        ASSERT_EQ(s.size(), ts.size()) << n;
        for (size_t i = 0; i < ts.size(); ++i) EXPECT_EQ(s[i], table(ns, ts[i])) << "n=" << n << " i=" << i;
    };
    expect_ts(10, {999, 959, 876, 765, 637, 500, 362, 234, 123, 40});
    expect_ts(7, {999, 928, 782, 598, 401, 217, 71});
    expect_ts(30, {999, 993, 979, 959, 936, 908, 876, 842, 805, 765, 724, 681, 637, 591, 546,
                   500, 453, 408, 362, 318, 275, 234, 194, 157, 123, 91,  63,  40,  20,  6});
    // repeated timesteps are dropped: 200 steps give 199 (999 twice)
    const std::vector<double> s200 = beta_sigmas(ns, 200);
    EXPECT_EQ(s200.size(), 199u);
    EXPECT_EQ(s200.back(), table(ns, 0));
    const Schedule e = make_sampler_schedule(find_sampler("euler"), ns, 200, ScheduleType::Beta);
    EXPECT_EQ(e.steps(), 199);
    // other shape parameters
    ScheduleConfig c;
    c.steps = 5;
    c.type = ScheduleType::Beta;
    c.beta_alpha = c.beta_beta = 1.0;  // uniform quantiles: rint((1 - i/5) * 999)
    const Schedule u = make_schedule(ns, c);
    EXPECT_EQ(u.sigmas[1], (double)(float)table(ns, 799));
    expect_error([&] { beta_sigmas(ns, 4, 0.0, 0.6); }, "alpha and beta must be > 0");
}

TEST(ScheduleTypes, AlignYourSteps) {
    // ComfyUI AlignYourStepsScheduler: 10 steps use the published table, its 11th level replaced by 0
    const std::vector<double> s10 = align_your_steps_sigmas(10, false);
    EXPECT_EQ(s10, std::vector<double>(kAysSd15.begin(), kAysSd15.end() - 1));
    EXPECT_EQ(align_your_steps_sigmas(10, true), std::vector<double>(kAysSdxl.begin(), kAysSdxl.end() - 1));
    // 5 steps: interpolated to 6 levels at every other table point; 20: geometric means in between
    const std::vector<double> s5 = align_your_steps_sigmas(5, false);
    ASSERT_EQ(s5.size(), 5u);
    for (int k = 0; k < 5; ++k) EXPECT_NEAR(s5[(size_t)k], kAysSd15[(size_t)(2 * k)], 1e-9 * kAysSd15[(size_t)(2 * k)]);
    const std::vector<double> s20 = align_your_steps_sigmas(20, true);
    ASSERT_EQ(s20.size(), 20u);
    EXPECT_NEAR(s20[0], kAysSdxl[0], 1e-9);
    EXPECT_NEAR(s20[1], std::sqrt(kAysSdxl[0] * kAysSdxl[1]), 1e-9);
    EXPECT_NEAR(s20[19], std::sqrt(kAysSdxl[9] * kAysSdxl[10]), 1e-9);
    // as a sampling schedule (0 appended), and picked by model family
    const NoiseSchedule ns;
    const Schedule e = make_sampler_schedule(find_sampler("dpmpp_2m"), ns, 10, ScheduleType::AlignYourSteps);
    EXPECT_EQ(e.steps(), 10);
    EXPECT_NEAR(e.sigmas[1], kAysSd15[1], 1e-6);
    EXPECT_EQ(e.sigmas.back(), 0.0);
    EXPECT_EQ(schedule_for_model(ScheduleType::AlignYourSteps, true), ScheduleType::AlignYourStepsSdxl);
    EXPECT_EQ(schedule_for_model(ScheduleType::AlignYourSteps, false), ScheduleType::AlignYourSteps);
    EXPECT_EQ(schedule_for_model(ScheduleType::Karras, true), ScheduleType::Karras);
    // loglinear_interp: exact at the ends, monotone
    const std::vector<double> li = loglinear_interp({8.0, 2.0, 0.5}, 5);
    EXPECT_NEAR(li[0], 8.0, 1e-12);
    EXPECT_NEAR(li[1], 4.0, 1e-12);
    EXPECT_NEAR(li[3], 1.0, 1e-12);
    EXPECT_NEAR(li[4], 0.5, 1e-12);
    expect_error([] { loglinear_interp({1.0, 0.0}, 3); }, "values must be > 0");
}

TEST(ScheduleTypes, CustomSigmaLists) {
    EXPECT_EQ(parse_sigma_list("14.6, 7.0 ,3.5;1.2 0"), (std::vector<double>{14.6, 7.0, 3.5, 1.2, 0.0}));
    EXPECT_EQ(parse_sigma_list("[14.6,0.5]"), (std::vector<double>{14.6, 0.5}));
    expect_error([] { parse_sigma_list(""); }, "is empty");
    expect_error([] { parse_sigma_list(" , "); }, "is empty");
    expect_error([] { parse_sigma_list("14.6"); }, "need at least 2 sigmas");
    expect_error([] { parse_sigma_list("14.6,abc,0"); }, "entry 2 'abc' is not a number");
    expect_error([] { parse_sigma_list("14.6,3x,0"); }, "entry 2 '3x' is not a number");
    expect_error([] { parse_sigma_list("14.6,-1"); }, "entry 2 (-1) is negative");
    expect_error([] { parse_sigma_list("inf,0"); }, "entry 1 'inf' is not finite");
    expect_error([] { parse_sigma_list("nan,0"); }, "entry 1 'nan' is not finite");
    expect_error([] { parse_sigma_list("1e999,0"); }, "entry 1 '1e999' is not a number");
    expect_error([] { parse_sigma_list("14.6,15,0"); },
                 "sigmas must be strictly decreasing, but entry 2 (15) >= entry 1 (14.6)");
    expect_error([] { parse_sigma_list("14.6,7,7,0"); }, "entry 3 (7) >= entry 2 (7)");

    const NoiseSchedule ns;
    const std::vector<double> list = {14.6, 7.0, 3.5, 1.2, 0.0};
    const Schedule e = make_sampler_schedule(find_sampler("euler"), ns, 99, ScheduleType::Custom, std::nullopt,
                                             std::nullopt, list);
    EXPECT_EQ(e.steps(), 4);  // steps come from the list
    for (size_t i = 0; i < list.size(); ++i) EXPECT_NEAR(e.sigmas[i], list[i], 1e-6);
    EXPECT_NEAR(e.timesteps[0], ns.sigma_to_t(14.6), 1e-3);
    // a list ending above 0 stops there (run_sampler then returns the VP latent, like the DDIM set)
    const Schedule part = make_sampler_schedule(find_sampler("dpmpp_2m"), ns, 0, ScheduleType::Custom, std::nullopt,
                                                std::nullopt, {14.6, 3.0, 0.5});
    EXPECT_EQ(part.steps(), 2);
    EXPECT_NEAR(part.sigmas.back(), 0.5, 1e-6);
    EXPECT_EQ(part.timesteps[1], std::nearbyint(ns.sigma_to_t((double)(float)3.0)));
    // the right combination of type and list is required
    expect_error([&] { make_sampler_schedule(find_sampler("euler"), ns, 4, ScheduleType::Custom); },
                 "schedule 'custom' needs a sigma list");
    expect_error([&] { make_sampler_schedule(find_sampler("euler"), ns, 4, ScheduleType::Karras, std::nullopt,
                                             std::nullopt, list); },
                 "a custom sigma list was given with schedule 'karras'");
    expect_error([&] { make_sampler_schedule(find_sampler("lcm"), ns, 4, ScheduleType::Custom, std::nullopt,
                                             std::nullopt, list); },
                 "sampler 'lcm' does not support schedule 'custom' (supported: normal)", ErrorCode::Unsupported);
    ScheduleConfig c;
    c.type = ScheduleType::Custom;
    c.custom_sigmas = {1.0, 2.0};
    expect_error([&] { make_schedule(ns, c); }, "strictly decreasing");
}

TEST(ScheduleTypes, EveryTypeOnEverySigmaFamily) {
    // Each sampler's supported types build a valid schedule (validate_schedule inside make_schedule), ending at 0
    // for the sigma-based types.
    const NoiseSchedule ns;
    for (const SamplerInfo& info : list_samplers()) {
        for (ScheduleType t : info.schedules) {
            const std::vector<double> custom = t == ScheduleType::Custom ? std::vector<double>{10.0, 2.0, 0.3, 0.0}
                                                                         : std::vector<double>{};
            Schedule s;
            ASSERT_NO_THROW(s = make_sampler_schedule(info, ns, 12, t, std::nullopt, std::nullopt, custom))
                << info.name << " / " << schedule_type_name(t);
            if (t != ScheduleType::Normal) EXPECT_EQ(s.sigmas.back(), 0.0) << info.name << " / " << schedule_type_name(t);
            EXPECT_GT(s.init_noise_sigma, 1.0) << info.name;
        }
    }
    // DDIM family on a sigma schedule: integer timesteps, final sigma 0, VP-start init scaling
    const Schedule d = make_sampler_schedule(find_sampler("ddim"), ns, 6, ScheduleType::Karras);
    for (double t : d.timesteps) EXPECT_EQ(t, std::nearbyint(t));
    EXPECT_EQ(d.sigmas.back(), 0.0);
    EXPECT_NEAR(d.init_noise_sigma, std::sqrt(d.sigmas[0] * d.sigmas[0] + 1.0), 1e-9);
}
