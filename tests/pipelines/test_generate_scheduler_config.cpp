// A scheduler config set in code (or from a request) with a field of the wrong type: generate() fails with an
// nuance Error naming the field and the type it wants, never with nlohmann's type_error text.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "../test_util.h"
#include "models/random_model.h"
#include "models/sd/stable_diffusion.h"
#include "pipelines/generate.h"

namespace nuance {
namespace {

StableDiffusionModel& tiny_model() {
    static StableDiffusionModel m = [] {
        const std::string path =
            (std::filesystem::path(NUANCE_SCRATCH_DIR) / "sched_cfg_tiny_sd15.safetensors").string();
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
    p.width = p.height = 64;
    p.steps = 2;
    p.seed = 7;
    p.sampler = "euler";
    return p;
}

std::string error_with_config(const nlohmann::json& cfg) {
    StableDiffusionModel& m = tiny_model();
    const nlohmann::json saved = m.scheduler_config;
    m.scheduler_config = cfg;
    std::string msg;
    try {
        generate(m, params());
    } catch (const Error& e) {
        msg = e.what();
    } catch (const std::exception& e) {
        msg = std::string("not an nuance::Error: ") + e.what();
    }
    m.scheduler_config = saved;
    return msg;
}

TEST(GenerateSchedulerConfig, WrongFieldTypesNameTheFieldAndTheType) {
    EXPECT_EQ(error_with_config({{"num_train_timesteps", "x"}}),
              "scheduler_config: field 'num_train_timesteps' must be an integer, got \"x\"");
    EXPECT_EQ(error_with_config({{"num_train_timesteps", 1e30}}),
              "scheduler_config: field 'num_train_timesteps' must be an integer, got 1e+30");
    EXPECT_EQ(error_with_config({{"num_train_timesteps", 5000000000LL}}),
              "scheduler_config: field 'num_train_timesteps' must be an integer in -2147483648..2147483647, got "
              "5000000000");
    EXPECT_EQ(error_with_config({{"beta_start", "0.1"}}),
              "scheduler_config: field 'beta_start' must be a number, got \"0.1\"");
    EXPECT_EQ(error_with_config({{"beta_schedule", 3}}),
              "scheduler_config: field 'beta_schedule' must be a string, got 3");
    EXPECT_EQ(error_with_config({{"rescale_betas_zero_snr", "yes"}}),
              "scheduler_config: field 'rescale_betas_zero_snr' must be a boolean, got \"yes\"");
    EXPECT_EQ(error_with_config({{"timestep_spacing", {1, 2}}}),
              "scheduler_config: field 'timestep_spacing' must be a string, got [1,2]");
    EXPECT_EQ(error_with_config({{"timestep_spacing", "leading"}, {"steps_offset", "1"}}),
              "scheduler_config: field 'steps_offset' must be an integer, got \"1\"");
    EXPECT_EQ(error_with_config(nlohmann::json::array()), "scheduler_config must be a JSON object, got array");
}

TEST(GenerateSchedulerConfig, NullAndWellTypedFieldsStillGenerate) {
    EXPECT_EQ(error_with_config({{"num_train_timesteps", 1000}, {"beta_schedule", nullptr},
                                 {"timestep_spacing", "leading"}, {"steps_offset", 1}}),
              "");
}

}  // namespace
}  // namespace nuance
