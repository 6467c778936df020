// The sampling options as the txt2img pipeline wires them (tiny random SD1.5 model): CFG guidance rescale, custom
// sigma lists, align-your-steps, the new samplers by their user-facing names, and the errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "models/random_model.h"
#include "ops/elementwise.h"
#include "models/sd/stable_diffusion.h"
#include "pipelines/generate.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

const StableDiffusionModel& tiny_model() {
    static const StableDiffusionModel m = [] {
        const std::string path = (std::filesystem::path(NUANCE_SCRATCH_DIR) / "samp2_tiny_sd15.safetensors").string();
        RandomModelOptions o;
        o.tiny = true;
        o.dtype = DType::F32;
        write_random_checkpoint(path, o);
        return load_stable_diffusion(path);
    }();
    return m;
}

GenerateParams params() {
    GenerateParams p;
    p.prompt = "a cat";
    p.negative_prompt = "blurry";
    p.width = p.height = 64;
    p.steps = 3;
    p.seed = 7;
    p.rng = RngKind::Cpu;
    p.sampler = "euler";
    return p;
}

Tensor latents(const GenerateParams& p) { return generate(tiny_model(), p).at(0).latents; }

}  // namespace

TEST(GenerateSamplingOptions, GuidanceRescale) {
    GenerateParams p = params();
    const Tensor plain = latents(p);
    p.guidance_rescale = 0.7f;
    const Tensor rescaled = latents(p);
    EXPECT_GT(max_abs_diff(plain, rescaled), 1e-6f);  // rescale acts on the guided prediction
    p.cfg_scale = 1.0f;                               // no CFG: nothing to rescale
    const Tensor no_cfg = latents(p);
    p.guidance_rescale = 0.0f;
    EXPECT_EQ(max_abs_diff(no_cfg, latents(p)), 0.0f);
    p.guidance_rescale = 1.5f;
    try {
        validate_params(tiny_model(), p);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("guidance rescale must be in [0, 1], got 1.5"));
    }
}

TEST(GenerateSamplingOptions, CustomSigmas) {
    GenerateParams p = params();
    p.sigmas = {14.6, 3.0, 0.5, 0.0};
    const std::vector<GeneratedImage> out = generate(tiny_model(), p);
    EXPECT_THAT(out.at(0).infotext, HasSubstr("Schedule type: Custom"));
    p.steps = 5;
    try {
        validate_params(tiny_model(), p);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("the sigma list has 4 values (3 steps) but steps is 5"));
    }
    p.steps = 3;
    p.scheduler = "karras";
    try {
        validate_params(tiny_model(), p);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("custom sigmas replace the schedule; drop scheduler 'karras'"));
    }
    p.scheduler = "normal";
    p.sigmas = {3.0, 14.6, 0.0};
    EXPECT_THROW(validate_params(tiny_model(), p), Error);
}

TEST(GenerateSamplingOptions, NewSamplersAndSchedulesByName) {
    // (each sampler/schedule pair is covered without a model elsewhere; these check the pipeline's name handling)
    const std::vector<std::pair<std::string, std::string>> runs = {
        {"DPM2 a", "Align Your Steps"}, {"tcd", "normal"}, {"ddim_trailing", "normal"}};
    for (const auto& [sampler, schedule] : runs) {
        GenerateParams p = params();
        p.sampler = sampler;
        p.scheduler = schedule;
        const std::vector<GeneratedImage> out = generate(tiny_model(), p);
        ASSERT_EQ(out.size(), 1u) << sampler;
        for (float v : out[0].latents.to_vector()) ASSERT_TRUE(std::isfinite(v)) << sampler;
    }
    GenerateParams p = params();
    p.sampler = "DPM++ SDE Karras";
    p.scheduler = "";
    EXPECT_THAT(generate(tiny_model(), p).at(0).infotext, HasSubstr("Sampler: DPM++ SDE, Schedule type: Karras"));
    p.sampler = "tcd";
    p.scheduler = "karras";
    try {
        validate_params(tiny_model(), p);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("sampler 'tcd' does not support"));
    }
}

TEST(GenerateSamplingOptions, ReleasingPackedWeightsBeforeDecodeChangesNothing) {
    // The CLI drops the packed weight copies before the last decode (lower peak RSS); the image must be the same and
    // a later call repacks them.
    GenerateParams p = params();
    p.batch_count = 2;
    const auto keep = generate(tiny_model(), p);
    p.release_weights_before_decode = true;
    const auto released = generate(tiny_model(), p);
    const auto again = generate(tiny_model(), p);
    ASSERT_EQ(keep.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(keep[i].image.pixels, released[i].image.pixels);
        EXPECT_EQ(keep[i].image.pixels, again[i].image.pixels);
    }
}
