// The C API and the CLI take size, steps, CFG and sampler from the model when the caller leaves them unset
// (nuance_generate_params_init: 0 / -1 / NULL; CLI: no -W/-H/--steps/--cfg-scale/--sampler): the built-in 32x32
// emoji model makes 32x32 images with its CFG 5, not 512x512 with CFG 7.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "../test_util.h"
#include "io/png_meta.h"
#include "models/default_model.h"
#include "nuance.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kEmoji = fs::path(NUANCE_TEST_DATA) / ".." / ".." / "models" / kDefaultModelName;

TEST(CapiDefaults, InitLeavesModelDefaultsUnsetAndGenerateFillsThem) {
    nuance_generate_params gp;
    std::memset(&gp, 0x7f, sizeof gp);
    nuance_generate_params_init(&gp);
    EXPECT_EQ(gp.width, 0);
    EXPECT_EQ(gp.height, 0);
    EXPECT_EQ(gp.steps, 0);
    EXPECT_LT(gp.cfg_scale, 0.0f);
    EXPECT_EQ(gp.sampler, nullptr);
    EXPECT_EQ(gp.scheduler, nullptr);

    nuance_model* m = nullptr;
    ASSERT_EQ(nuance_model_load(kEmoji.string().c_str(), nullptr, &m), NUANCE_OK) << nuance_last_error();
    EXPECT_EQ(nuance_model_default_size(m), 32);
    nuance_context* ctx = nullptr;
    ASSERT_EQ(nuance_context_create(m, nullptr, &ctx), NUANCE_OK) << nuance_last_error();
    gp.prompt = "grinning face, noto style";
    gp.seed = 1;
    nuance_image* im = nullptr;
    int n = 0;
    ASSERT_EQ(nuance_generate(ctx, &gp, &im, &n), NUANCE_OK) << nuance_last_error();
    ASSERT_EQ(n, 1);
    EXPECT_EQ(im[0].width, 32);
    EXPECT_EQ(im[0].height, 32);
    ASSERT_NE(im[0].infotext, nullptr);
    EXPECT_THAT(std::string(im[0].infotext), HasSubstr("Steps: 20, Sampler: Euler a, Schedule type: Normal, CFG scale: 3, "));
    nuance_images_free(im, n);
    // Explicit values still win; a negative step count is refused.
    gp.steps = 2;
    gp.cfg_scale = 3.0f;
    gp.width = gp.height = 16;
    ASSERT_EQ(nuance_generate(ctx, &gp, &im, &n), NUANCE_OK) << nuance_last_error();
    EXPECT_EQ(im[0].width, 16);
    EXPECT_THAT(std::string(im[0].infotext), HasSubstr("Steps: 2, Sampler: Euler a, Schedule type: Normal, CFG scale: 3, "));
    nuance_images_free(im, n);
    gp.steps = -3;
    EXPECT_EQ(nuance_generate(ctx, &gp, &im, &n), NUANCE_ERR_INVALID_ARGUMENT);
    EXPECT_THAT(std::string(nuance_last_error()), HasSubstr("steps -3 is negative (0 = the model's default)"));
    nuance_context_free(ctx);
    nuance_model_free(m);
}

TEST(CapiDefaults, CliGenerateUsesTheModelsDefaults) {
    const fs::path out = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_cli_defaults_" + std::to_string(::getpid()) + ".png");
    test::CliRun r = test::run_cli("generate -q -p \"red heart, noto style\" -s 2 -o " + out.string());
    ASSERT_EQ(r.code, 0) << r.out;
    std::string params;
    for (const auto& [k, v] : read_png_text(out.string()))
        if (k == "parameters") params = v;
    EXPECT_THAT(params, HasSubstr("Steps: 20, Sampler: Euler a, Schedule type: Normal, CFG scale: 3, Seed: 2, Size: 32x32"));
    r = test::run_cli("generate -q -p x -s 2 --steps 3 --cfg-scale 2.5 --sampler euler -W 16 -H 24 -o " + out.string());
    ASSERT_EQ(r.code, 0) << r.out;
    params.clear();
    for (const auto& [k, v] : read_png_text(out.string()))
        if (k == "parameters") params = v;
    EXPECT_THAT(params, HasSubstr("Steps: 3, Sampler: Euler, Schedule type: Normal, CFG scale: 2.5, Seed: 2, Size: 16x24"));
    fs::remove(out);
}

}  // namespace
}  // namespace nuance
