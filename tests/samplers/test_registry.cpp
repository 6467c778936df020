// Sampler names as users type them, metadata names, schedule support and the error messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "ops/elementwise.h"
#include "samplers/registry.h"

using namespace nuance;
using ::testing::HasSubstr;

TEST(SamplerRegistry, SpellingsUsersType) {
    const std::vector<std::pair<const char*, const char*>> cases = {
        {"euler", "euler"},         {"Euler", "euler"},           {"k_euler", "euler"},
        {"euler_a", "euler_a"},     {"Euler a", "euler_a"},       {"EULER A", "euler_a"},
        {"euler_ancestral", "euler_a"}, {"k_euler_a", "euler_a"}, {"sample_euler_ancestral", "euler_a"},
        {"DPM++ 2M", "dpmpp_2m"},   {"dpm++2m", "dpmpp_2m"},      {"dpmpp_2m", "dpmpp_2m"},
        {"k_dpmpp_2m", "dpmpp_2m"}, {"DPM++ 2M SDE", "dpmpp_2m_sde"}, {"dpmpp_2m_sde", "dpmpp_2m_sde"},
        {"ddim", "ddim"},           {"DDIM", "ddim"},             {"heun", "heun"},
        {"k_lms", "lms"},           {"LMS", "lms"},               {"ddpm", "ddpm"},
    };
    for (const auto& [typed, canonical] : cases) EXPECT_EQ(find_sampler(typed).name, canonical) << typed;
}

TEST(SamplerRegistry, NamesFromSdCppA1111AndComfyUI) {
    const std::vector<std::pair<const char*, const char*>> cases = {
        // stable-diffusion.cpp --sampling-method
        {"euler_a", "euler_a"}, {"dpm++2m", "dpmpp_2m"}, {"dpm++2mv2", "dpmpp_2m_v2"}, {"ipndm", "ipndm"},
        {"lcm", "lcm"}, {"tcd", "tcd"}, {"ddim_trailing", "ddim_trailing"}, {"dpm2", "dpm2"},
        {"dpm++2s_a", "dpmpp_2s_a"}, {"heun", "heun"},
        // A1111 sampler names (old and new) and k-diffusion function names
        {"Euler a", "euler_a"}, {"DPM++ SDE", "dpmpp_sde"}, {"DPM2 a", "dpm2_a"}, {"DPM2", "dpm2"},
        {"k_dpmpp_2m", "dpmpp_2m"}, {"PLMS", "plms"}, {"UniPC", "unipc"}, {"LCM", "lcm"},
        {"DPM++ 2S a", "dpmpp_2s_a"}, {"DPM++ 3M SDE", "dpmpp_3m_sde"}, {"k_dpm_2_a", "dpm2_a"},
        {"k_dpmpp_sde", "dpmpp_sde"}, {"sample_dpmpp_2s_ancestral", "dpmpp_2s_a"},
        // ComfyUI sampler_name
        {"euler_ancestral", "euler_a"}, {"dpmpp_2m", "dpmpp_2m"}, {"dpmpp_2s_ancestral", "dpmpp_2s_a"},
        {"dpmpp_sde", "dpmpp_sde"}, {"dpmpp_sde_gpu", "dpmpp_sde"}, {"dpmpp_3m_sde", "dpmpp_3m_sde"},
        {"dpmpp_3m_sde_gpu", "dpmpp_3m_sde"}, {"dpm_2", "dpm2"}, {"dpm_2_ancestral", "dpm2_a"},
        {"uni_pc", "unipc"}, {"ipndm", "ipndm"}, {"ddpm", "ddpm"}, {"dpmpp_2m_sde_gpu", "dpmpp_2m_sde"},
    };
    for (const auto& [typed, canonical] : cases) EXPECT_EQ(find_sampler(typed).name, canonical) << typed;
    EXPECT_EQ(find_sampler("ddim_trailing").spacing, Spacing::Trailing);
    const ScheduleConfig c = sampler_schedule_config(find_sampler("ddim_trailing"), 10, ScheduleType::Normal,
                                                     Spacing::Leading, 1);  // the sampler's spacing wins
    EXPECT_EQ(c.spacing, Spacing::Trailing);
    EXPECT_EQ(c.steps_offset, 0);
}

TEST(SamplerRegistry, OldStyleNamesWithAnySchedule) {
    const std::vector<std::tuple<const char*, const char*, ScheduleType>> cases = {
        {"DPM++ 2M SDE Karras", "dpmpp_2m_sde", ScheduleType::Karras},
        {"DPM2 a Karras", "dpm2_a", ScheduleType::Karras},
        {"DPM++ SDE Karras", "dpmpp_sde", ScheduleType::Karras},
        {"Euler a SGM Uniform", "euler_a", ScheduleType::SgmUniform},
        {"dpmpp_2m beta", "dpmpp_2m", ScheduleType::Beta},
        {"Euler Align Your Steps", "euler", ScheduleType::AlignYourSteps},
        {"dpmpp_3m_sde_exponential", "dpmpp_3m_sde", ScheduleType::Exponential},
    };
    for (const auto& [typed, sampler, schedule] : cases) {
        const SamplerSpec s = parse_sampler_spec(typed);
        ASSERT_NE(s.sampler, nullptr) << typed;
        EXPECT_EQ(s.sampler->name, sampler) << typed;
        ASSERT_TRUE(s.schedule.has_value()) << typed;
        EXPECT_EQ(*s.schedule, schedule) << typed;
    }
    EXPECT_THROW(parse_sampler_spec("euler custom"), Error);  // custom needs a list, not a name suffix
}

TEST(SamplerRegistry, DisplayNamesForMetadata) {
    EXPECT_EQ(find_sampler("euler_a").display_name, "Euler a");
    EXPECT_EQ(find_sampler("dpmpp_2m").display_name, "DPM++ 2M");
    EXPECT_EQ(find_sampler("euler").display_name, "Euler");
    EXPECT_EQ(find_sampler("ddim").display_name, "DDIM");
    EXPECT_STREQ(schedule_type_display_name(ScheduleType::Karras), "Karras");
}

TEST(SamplerRegistry, UnknownNameListsTheValidOnes) {
    try {
        find_sampler("euler_b");
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
        EXPECT_THAT(e.what(), HasSubstr("unknown sampler 'euler_b'"));
        for (const SamplerInfo& s : list_samplers()) EXPECT_THAT(e.what(), HasSubstr(s.name));
        EXPECT_THAT(e.what(), HasSubstr("'Euler a'"));
    }
    EXPECT_THROW(find_sampler(""), Error);
    EXPECT_THROW(find_sampler("++"), Error);
}

TEST(SamplerRegistry, TableIsConsistent) {
    std::set<std::string> keys;
    for (const SamplerInfo& s : list_samplers()) {
        EXPECT_NE(s.fn, nullptr) << s.name;
        EXPECT_FALSE(s.schedules.empty()) << s.name;
        EXPECT_FALSE(s.description.empty()) << s.name;
        EXPECT_EQ(&find_sampler(s.name), &s);
        EXPECT_EQ(&find_sampler(s.display_name), &s);
        for (const std::string& a : s.aliases) EXPECT_EQ(&find_sampler(a), &s) << a << " resolves elsewhere";
        EXPECT_TRUE(keys.insert(s.name).second) << "duplicate " << s.name;
    }
    EXPECT_GE(list_samplers().size(), 4u);
}

TEST(SamplerRegistry, OldA1111NamesCarryTheSchedule) {
    SamplerSpec s = parse_sampler_spec("DPM++ 2M Karras");
    ASSERT_NE(s.sampler, nullptr);
    EXPECT_EQ(s.sampler->name, "dpmpp_2m");
    ASSERT_TRUE(s.schedule.has_value());
    EXPECT_EQ(*s.schedule, ScheduleType::Karras);
    s = parse_sampler_spec("k_euler_a");
    EXPECT_EQ(s.sampler->name, "euler_a");
    EXPECT_FALSE(s.schedule.has_value());
    s = parse_sampler_spec("euler exponential");
    EXPECT_EQ(s.sampler->name, "euler");
    EXPECT_EQ(*s.schedule, ScheduleType::Exponential);
    EXPECT_THROW(parse_sampler_spec("karras"), Error);
    EXPECT_THROW(parse_sampler_spec("nothing karras"), Error);
}

TEST(SamplerRegistry, SchedulesPerSampler) {
    EXPECT_TRUE(sampler_supports(find_sampler("euler"), ScheduleType::Karras));
    EXPECT_TRUE(sampler_supports(find_sampler("dpmpp_2m"), ScheduleType::Karras));
    EXPECT_TRUE(sampler_supports(find_sampler("ddim"), ScheduleType::Karras));  // k-diffusion/ComfyUI style
    EXPECT_FALSE(sampler_supports(find_sampler("plms"), ScheduleType::Karras));
    try {
        sampler_schedule_config(find_sampler("plms"), 10, ScheduleType::Karras);
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::Unsupported);
        EXPECT_THAT(e.what(), HasSubstr("sampler 'plms' does not support schedule 'karras' (supported: normal)"));
    }
    // family defaults: DDIM uses SD's leading/offset-1 set, the others linspace
    const ScheduleConfig d = sampler_schedule_config(find_sampler("ddim"), 10);
    EXPECT_EQ(d.family, ScheduleFamily::Ddim);
    EXPECT_EQ(d.spacing, Spacing::Leading);
    EXPECT_EQ(d.steps_offset, 1);
    EXPECT_FALSE(d.final_alpha_one);
    EXPECT_TRUE(sampler_schedule_config(find_sampler("ddpm"), 10).final_alpha_one);
    const ScheduleConfig e = sampler_schedule_config(find_sampler("euler_a"), 10, ScheduleType::Karras);
    EXPECT_EQ(e.family, ScheduleFamily::EulerDiscrete);
    EXPECT_EQ(e.spacing, Spacing::Linspace);
    EXPECT_EQ(e.steps_offset, 0);
    EXPECT_EQ(sampler_schedule_config(find_sampler("dpmpp_2m"), 10).family, ScheduleFamily::DpmSolver);
    const ScheduleConfig t = sampler_schedule_config(find_sampler("ddim"), 10, ScheduleType::Normal, Spacing::Trailing);
    EXPECT_EQ(t.steps_offset, 0);
}

TEST(SamplerRegistry, RunSamplerByNameAndFinalize) {
    const NoiseSchedule ns;
    Denoiser d([](const Tensor& x, double) { return x * 0.0f; }, Prediction::Epsilon, ns);  // eps = 0: D = x
    const Schedule s = make_sampler_schedule(find_sampler("ddim"), ns, 5);
    ASSERT_GT(s.sigmas.back(), 0.0);
    SamplerOptions o;
    const Tensor x = Tensor::full({1, 2}, 3.0f);
    // eps = 0 keeps x fixed in VE space; the result is returned as the VP latent x / sqrt(sigma_last^2 + 1)
    const Tensor y = run_sampler("DDIM", d, x, s, o);
    const double expect = 3.0 / std::sqrt(s.sigmas.back() * s.sigmas.back() + 1.0);
    for (float v : y.to_vector()) EXPECT_NEAR(v, expect, 1e-6);
    const Schedule e = make_sampler_schedule(find_sampler("euler"), ns, 5);
    for (float v : run_sampler("euler", d, x, e, o).to_vector()) EXPECT_NEAR(v, 3.0, 1e-6);
    EXPECT_THROW(run_sampler("nope", d, x, e, o), Error);
}
