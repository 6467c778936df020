// Noise schedules and sampling schedules: hand-computed values, spacing rules, conversions and error paths.
// (Bit-level parity with diffusers is covered by test_samplers_golden.cpp.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "samplers/schedule.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

template <class F>
void expect_error(F&& f, ErrorCode code, const std::string& text) {
    try {
        f();
        FAIL() << "expected an Error containing '" << text << "'";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_THAT(e.what(), HasSubstr(text));
    }
}

ScheduleConfig cfg(int steps, ScheduleFamily f, Spacing sp = Spacing::Linspace, int offset = 0,
                   ScheduleType t = ScheduleType::Normal) {
    ScheduleConfig c;
    c.steps = steps;
    c.family = f;
    c.spacing = sp;
    c.steps_offset = offset;
    c.type = t;
    return c;
}

}  // namespace

TEST(NoiseSchedule, SdScaledLinearByHand) {
    const NoiseSchedule ns;
    ASSERT_EQ(ns.alphas_cumprod().size(), 1000u);
    EXPECT_NEAR(ns.betas().front(), 0.00085, 1e-9);
    EXPECT_NEAR(ns.betas().back(), 0.012, 1e-9);
    EXPECT_NEAR(ns.alphas_cumprod()[0], 1.0 - 0.00085, 1e-7);
    EXPECT_NEAR(ns.alphas_cumprod()[1], (1.0 - 0.00085) * (1.0 - ns.betas()[1]), 1e-7);
    // float32 (1 - a) / a as torch computes it: 1 - 0.99915f keeps only ~4 digits of 0.00085 exactly
    EXPECT_NEAR(ns.sigma_min(), std::sqrt(0.00085 / 0.99915), 1e-6);
    EXPECT_FLOAT_EQ(ns.sigma_min(), 0.0291675329f);  // diffusers' value (golden euler_karras.sigmas[9])
    EXPECT_NEAR(ns.sigma_max(), 14.614645, 1e-5);
    for (size_t i = 1; i < ns.sigmas().size(); ++i) ASSERT_GT(ns.sigmas()[i], ns.sigmas()[i - 1]) << i;
}

TEST(NoiseSchedule, LinearBetas) {
    NoiseScheduleConfig c;
    c.beta_schedule = BetaSchedule::Linear;
    c.beta_start = 0.0001;
    c.beta_end = 0.02;
    const NoiseSchedule ns(c);
    EXPECT_NEAR(ns.betas()[0], 0.0001, 1e-10);
    EXPECT_NEAR(ns.betas()[500], 0.0001 + 500 * (0.02 - 0.0001) / 999, 1e-8);
    EXPECT_NEAR(ns.betas()[999], 0.02, 1e-9);
}

TEST(NoiseSchedule, ZeroTerminalSnr) {
    NoiseScheduleConfig c;
    c.rescale_zero_snr = true;
    const NoiseSchedule ns(c);
    EXPECT_EQ(ns.alphas_cumprod().back(), 0.0f);
    EXPECT_EQ(ns.sigma_at(999), kZeroSnrSigma);
    // The sigma table uses alphas_cumprod = 2^-24 at the end, as diffusers' sigma schedulers do.
    EXPECT_NEAR(ns.sigma_max(), std::sqrt((1.0 - std::ldexp(1.0, -24)) / std::ldexp(1.0, -24)), 1e-2);
    // The first alpha is unchanged by the rescale.
    EXPECT_NEAR(ns.alphas_cumprod()[0], 1.0 - 0.00085, 1e-6);
}

TEST(NoiseSchedule, SigmaTimestepConversions) {
    const NoiseSchedule ns;
    const auto& s = ns.sigmas();
    EXPECT_DOUBLE_EQ(ns.t_to_sigma(500.0), s[500]);
    EXPECT_NEAR(ns.t_to_sigma(500.25), 0.75 * s[500] + 0.25 * s[501], 1e-7);
    EXPECT_DOUBLE_EQ(ns.t_to_sigma(-3.0), s[0]);
    EXPECT_DOUBLE_EQ(ns.t_to_sigma(5000.0), s[999]);
    EXPECT_NEAR(ns.sigma_to_t(s[500]), 500.0, 1e-3);
    EXPECT_NEAR(ns.sigma_to_t(s[0]), 0.0, 1e-3);
    EXPECT_NEAR(ns.sigma_to_t(s[999]), 999.0, 1e-3);
    // log-sigma interpolation between neighbours
    const double mid = std::exp(0.5 * (std::log((double)s[300]) + std::log((double)s[301])));
    EXPECT_NEAR(ns.sigma_to_t(mid), 300.5, 1e-3);
    // clamped outside the table
    EXPECT_DOUBLE_EQ(ns.sigma_to_t(1e-6), 0.0);
    EXPECT_DOUBLE_EQ(ns.sigma_to_t(1e6), 999.0);
    EXPECT_NEAR(ns.sigma_at(0), std::sqrt((1.0 - ns.alphas_cumprod()[0]) / ns.alphas_cumprod()[0]), 1e-12);
}

TEST(Schedule, KarrasByHand) {
    const std::vector<double> k = karras_sigmas(5, 0.1, 10.0, 7.0);
    ASSERT_EQ(k.size(), 5u);
    EXPECT_NEAR(k.front(), 10.0, 1e-12);
    EXPECT_NEAR(k.back(), 0.1, 1e-12);
    const double a = std::pow(10.0, 1.0 / 7), b = std::pow(0.1, 1.0 / 7);
    EXPECT_NEAR(k[2], std::pow(0.5 * (a + b), 7), 1e-12);
    EXPECT_NEAR(k[1], std::pow(a + 0.25 * (b - a), 7), 1e-12);
}

TEST(Schedule, KarrasScheduleSpansTheTrainingSigmas) {
    const NoiseSchedule ns;
    for (ScheduleFamily f : {ScheduleFamily::EulerDiscrete, ScheduleFamily::DpmSolver}) {
        const Schedule s = make_schedule(ns, cfg(12, f, Spacing::Linspace, 0, ScheduleType::Karras));
        ASSERT_EQ(s.sigmas.size(), 13u);
        EXPECT_NEAR(s.sigmas.front(), ns.sigma_max(), 1e-6);
        EXPECT_NEAR(s.sigmas[11], ns.sigma_min(), 1e-7);
        EXPECT_EQ(s.sigmas.back(), 0.0);
        EXPECT_NEAR(s.timesteps.front(), 999.0, 1e-3);
        EXPECT_NEAR(s.timesteps.back(), 0.0, 1e-3);
    }
}

TEST(Schedule, ExponentialIsLogUniform) {
    const std::vector<double> e = exponential_sigmas(4, 0.5, 4.0);
    ASSERT_EQ(e.size(), 4u);
    EXPECT_NEAR(e[0], 4.0, 1e-12);
    EXPECT_NEAR(e[1], 2.0, 1e-12);
    EXPECT_NEAR(e[2], 1.0, 1e-12);
    EXPECT_NEAR(e[3], 0.5, 1e-12);
}

TEST(Schedule, EulerSpacings) {
    const NoiseSchedule ns;
    const Schedule lin = make_schedule(ns, cfg(10, ScheduleFamily::EulerDiscrete));
    EXPECT_EQ(lin.timesteps, (std::vector<double>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0}));
    EXPECT_FLOAT_EQ(lin.init_noise_sigma, ns.sigma_max());
    const Schedule lead = make_schedule(ns, cfg(10, ScheduleFamily::EulerDiscrete, Spacing::Leading, 1));
    EXPECT_EQ(lead.timesteps, (std::vector<double>{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}));
    EXPECT_FLOAT_EQ(lead.sigmas[0], ns.sigmas()[901]);
    EXPECT_NEAR(lead.init_noise_sigma, std::sqrt(lead.sigmas[0] * lead.sigmas[0] + 1), 1e-5);
    const Schedule trail = make_schedule(ns, cfg(10, ScheduleFamily::EulerDiscrete, Spacing::Trailing));
    EXPECT_EQ(trail.timesteps.front(), 999);
    EXPECT_EQ(trail.timesteps.back(), 99);
    // fractional timesteps: sigma by linear interpolation in sigma
    const Schedule seven = make_schedule(ns, cfg(7, ScheduleFamily::EulerDiscrete));
    EXPECT_NEAR(seven.timesteps[1], 832.5, 1e-4);
    EXPECT_NEAR(seven.sigmas[1], 0.5 * (ns.sigmas()[832] + ns.sigmas()[833]), 1e-5);
}

TEST(Schedule, DpmSolverUsesAnNPlusOneGrid) {
    const NoiseSchedule ns;
    const Schedule s = make_schedule(ns, cfg(10, ScheduleFamily::DpmSolver));
    EXPECT_EQ(s.timesteps, (std::vector<double>{999, 899, 799, 699, 599, 500, 400, 300, 200, 100}));
    EXPECT_FLOAT_EQ(s.sigmas[5], ns.sigmas()[500]);
    EXPECT_EQ(s.sigmas.back(), 0.0);
    EXPECT_NEAR(s.init_noise_sigma, std::sqrt(s.sigmas[0] * s.sigmas[0] + 1), 1e-9);
}

TEST(Schedule, DdimTimestepSet) {
    const NoiseSchedule ns;
    ScheduleConfig c = cfg(10, ScheduleFamily::Ddim, Spacing::Leading, 1);
    const Schedule s = make_schedule(ns, c);
    EXPECT_EQ(s.timesteps, (std::vector<double>{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}));
    EXPECT_NEAR(s.sigmas[0], ns.sigma_at(901), 1e-12);
    EXPECT_NEAR(s.sigmas.back(), ns.sigma_at(0), 1e-12);  // set_alpha_to_one = False: ends at alphas_cumprod[0]
    c.final_alpha_one = true;
    EXPECT_EQ(make_schedule(ns, c).sigmas.back(), 0.0);
    const Schedule lin = make_schedule(ns, cfg(4, ScheduleFamily::Ddim, Spacing::Linspace));
    EXPECT_EQ(lin.timesteps, (std::vector<double>{999, 666, 333, 0}));
}

TEST(Schedule, LcmTimestepSet) {
    const NoiseSchedule ns;
    ScheduleConfig c = cfg(4, ScheduleFamily::Lcm);
    const Schedule s = make_schedule(ns, c);
    EXPECT_EQ(s.timesteps, (std::vector<double>{999, 759, 499, 259}));
    EXPECT_NEAR(s.sigmas[1], ns.sigma_at(759), 1e-12);
    EXPECT_EQ(s.sigmas.back(), 0.0);
    c.steps = 51;
    expect_error([&] { make_schedule(ns, c); }, ErrorCode::InvalidArgument,
                 "LCM schedule: 51 steps exceed the 50 original (distillation) steps");
    c.steps = 4;
    c.type = ScheduleType::Karras;
    expect_error([&] { make_schedule(ns, c); }, ErrorCode::Unsupported, "not available for the LCM timestep set");
}

TEST(Schedule, FlowSchedules) {
    EXPECT_NEAR(flux_mu(1024), 0.63, 1e-12);
    FlowScheduleConfig c;
    c.steps = 4;
    c.shift = 3.0;
    const Schedule s = make_flow_schedule(c);
    EXPECT_TRUE(s.flow);
    ASSERT_EQ(s.sigmas.size(), 5u);
    EXPECT_EQ(s.sigmas[0], 1.0);
    EXPECT_EQ(s.sigmas[4], 0.0);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(s.timesteps[(size_t)i], s.sigmas[(size_t)i] * 1000, 1e-3);
    c.dynamic = true;
    c.mu = 0.0;  // e^0 / (e^0 + 1/s - 1) = s: custom sigmas pass through unchanged
    c.custom_sigmas = {1.0, 0.75, 0.5, 0.25};
    const Schedule f = make_flow_schedule(c);
    EXPECT_NEAR(f.sigmas[1], 0.75, 1e-7);
    EXPECT_NEAR(f.sigmas[3], 0.25, 1e-7);
    c.custom_sigmas = {1.0, 0.5};
    expect_error([&] { make_flow_schedule(c); }, ErrorCode::InvalidArgument, "2 custom sigmas given for 4 steps");
}

TEST(Schedule, SliceForImg2Img) {
    const NoiseSchedule ns;
    const Schedule s = make_schedule(ns, cfg(10, ScheduleFamily::EulerDiscrete));
    const Schedule t = slice_schedule(s, 4);
    EXPECT_EQ(t.steps(), 6);
    EXPECT_EQ(t.sigmas.front(), s.sigmas[4]);
    EXPECT_EQ(t.timesteps.front(), s.timesteps[4]);
    EXPECT_EQ(t.sigmas.back(), 0.0);
    expect_error([&] { slice_schedule(s, 10); }, ErrorCode::InvalidArgument, "start step 10 outside [0, 10)");
}

TEST(Schedule, Names) {
    EXPECT_EQ(parse_schedule_type("Karras"), ScheduleType::Karras);
    EXPECT_EQ(parse_schedule_type("discrete"), ScheduleType::Normal);
    EXPECT_EQ(parse_schedule_type("NORMAL"), ScheduleType::Normal);
    EXPECT_EQ(parse_schedule_type("exponential"), ScheduleType::Exponential);
    EXPECT_STREQ(schedule_type_display_name(ScheduleType::Karras), "Karras");
    EXPECT_STREQ(schedule_type_name(ScheduleType::Normal), "normal");
    EXPECT_EQ(parse_spacing("Trailing"), Spacing::Trailing);
    EXPECT_EQ(list_schedule_types().size(), 10u);
    EXPECT_EQ(parse_schedule_type("SGM Uniform"), ScheduleType::SgmUniform);
    EXPECT_EQ(parse_schedule_type("sgm_uniform"), ScheduleType::SgmUniform);
    EXPECT_EQ(parse_schedule_type("Align Your Steps"), ScheduleType::AlignYourSteps);
    EXPECT_EQ(parse_schedule_type("AYS"), ScheduleType::AlignYourSteps);
    EXPECT_EQ(parse_schedule_type("ays_sdxl"), ScheduleType::AlignYourStepsSdxl);
    EXPECT_EQ(parse_schedule_type("ddim_uniform"), ScheduleType::DdimUniform);
    EXPECT_EQ(parse_schedule_type("DDIM"), ScheduleType::DdimUniform);  // A1111's "Schedule type: DDIM"
    EXPECT_EQ(parse_schedule_type("simple"), ScheduleType::Simple);
    EXPECT_EQ(parse_schedule_type("Beta"), ScheduleType::Beta);
    EXPECT_EQ(parse_schedule_type("custom"), ScheduleType::Custom);
    EXPECT_STREQ(schedule_type_display_name(ScheduleType::SgmUniform), "SGM Uniform");
    EXPECT_STREQ(schedule_type_display_name(ScheduleType::AlignYourStepsSdxl), "Align Your Steps");
    EXPECT_EQ(schedule_type_aliases(ScheduleType::AlignYourSteps), "ays, ays_sd15, align_your_steps_sd15");
    // every listed name parses back to itself
    for (const std::string& n : list_schedule_types()) EXPECT_STREQ(schedule_type_name(parse_schedule_type(n)), n.c_str());
}

TEST(Schedule, Errors) {
    const NoiseSchedule ns;
    expect_error([] { parse_schedule_type("polyexponential"); }, ErrorCode::InvalidArgument,
                 "unknown schedule 'polyexponential': expected one of normal");
    expect_error([] { parse_schedule_type("x"); }, ErrorCode::InvalidArgument, "karras");
    expect_error([] { parse_spacing("middle"); }, ErrorCode::InvalidArgument, "unknown timestep spacing 'middle'");
    expect_error([&] { make_schedule(ns, cfg(0, ScheduleFamily::EulerDiscrete)); }, ErrorCode::InvalidArgument,
                 "number of steps must be >= 1, got 0");
    expect_error([&] { make_schedule(ns, cfg(1001, ScheduleFamily::Ddim)); }, ErrorCode::InvalidArgument,
                 "exceeds the model's 1000 training timesteps");
    expect_error([&] { make_schedule(ns, cfg(4, ScheduleFamily::Lcm, Spacing::Leading, 0, ScheduleType::Karras)); },
                 ErrorCode::Unsupported, "schedule 'karras' is not available for the LCM timestep set");
    expect_error([&] { make_schedule(ns, cfg(4, ScheduleFamily::Tcd, Spacing::Leading, 0, ScheduleType::Beta)); },
                 ErrorCode::Unsupported, "schedule 'beta' is not available for the TCD timestep set");
    expect_error([] { parse_schedule_type("x"); }, ErrorCode::InvalidArgument,
                 "align_your_steps (ays, ays_sd15, align_your_steps_sd15)");
    expect_error([&] { make_schedule(ns, cfg(10, ScheduleFamily::Ddim, Spacing::Leading, 150)); },
                 ErrorCode::InvalidArgument, "DDIM schedule: timestep 1050 outside [0, 1000)");
    NoiseScheduleConfig bad;
    bad.beta_start = 0;
    expect_error([&] { NoiseSchedule n(bad); (void)n; }, ErrorCode::InvalidArgument, "need 0 < beta_start <= beta_end < 1");
    expect_error([] { karras_sigmas(3, 2.0, 1.0); }, ErrorCode::InvalidArgument, "sigma_min=2 sigma_max=1");

    Schedule s;
    s.sigmas = {1.0, 2.0, 0.0};
    s.timesteps = {10, 20};
    expect_error([&] { validate_schedule(s, "test"); }, ErrorCode::InvalidArgument,
                 "test: sigmas must not increase, but sigmas[0] = 1 < sigmas[1] = 2");
    s.sigmas = {1.0, 0.0};
    expect_error([&] { validate_schedule(s, "test"); }, ErrorCode::InvalidArgument,
                 "expected 3 sigmas for 2 timesteps, got 2");
    s.sigmas = {1.0, std::nan(""), 0.0};
    expect_error([&] { validate_schedule(s, "test"); }, ErrorCode::InvalidArgument, "sigmas[1] = nan");
}
