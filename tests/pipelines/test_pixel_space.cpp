// Pixel-space models: `nuance train --model ddpm` exports diffusers' DDPMPipeline layout (unet/ + scheduler/, no
// vae/, plus the text encoder of its captions) and `generate` loads it and samples pixels (issue 12).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "../train/data_test_util.h"
#include "core/error.h"
#include "io/image.h"
#include "models/sd/stable_diffusion.h"
#include "pipelines/generate.h"
#include "train/trainer.h"

using namespace nuance;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

// A few training steps of a tiny pixel DDPM, once per test process; returns the export folder.
std::string train_tiny_ddpm() {
    static test::TempDir d("pixel_ddpm");
    static std::string exported;
    if (!exported.empty()) return exported;
    TrainOptions o;
    o.model = "ddpm";
    o.output = d / "run";
    o.arch = {{"unet", {{"block_out_channels", {8, 16}}, {"attention_levels", {false, true}}, {"heads", 2},
                        {"norm_num_groups", 4}}},
              {"text_encoder", {{"hidden", 16}, {"layers", 1}, {"heads", 2}}}};
    o.resolution = 28;
    o.batch = 2;
    o.steps = 2;
    o.limit = 4;
    o.warmup = 0;
    const TrainReport r = train(o);
    EXPECT_EQ(r.steps, 2);
    exported = r.exported;
    return exported;
}

nlohmann::json read_json_file(const std::string& path) {
    std::ifstream f(path);
    return nlohmann::json::parse(f);
}

}  // namespace

TEST(PixelSpace, DdpmExportLoadsAndGenerates) {
    if (!fs::exists(kFashionMnist)) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    const std::string dir = train_tiny_ddpm();
    // diffusers' DDPMPipeline layout
    EXPECT_EQ(read_json_file(dir + "/model_index.json").at("_class_name"), "DDPMPipeline");
    EXPECT_EQ(read_json_file(dir + "/scheduler/scheduler_config.json").at("_class_name"), "DDPMScheduler");
    EXPECT_TRUE(fs::exists(dir + "/unet/config.json"));
    EXPECT_FALSE(fs::exists(dir + "/vae"));

    const StableDiffusionModel m = load_stable_diffusion(dir);
    EXPECT_TRUE(m.pixel_space());
    EXPECT_EQ(m.latent_channels(), 1);
    EXPECT_EQ(m.vae_scale(), 1);
    EXPECT_EQ(m.native_size, 28);
    EXPECT_THAT(m.describe(), HasSubstr("pixel space: no VAE, 1 image channels"));

    GenerateParams p;
    p.prompt = "Trouser";
    p.width = p.height = 28;
    p.steps = 3;
    p.sampler = "ddpm";
    const std::vector<GeneratedImage> out = generate(m, p);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].image.width, 28);
    EXPECT_EQ(out[0].image.height, 28);
    EXPECT_EQ(out[0].image.channels, 1);
    EXPECT_EQ(out[0].decoded.shape(), (Shape{1, 1, 28, 28}));

    // img2img: the init image is the starting sample (grey for a 1-channel model), no VAE encode
    Image init;
    init.width = init.height = 28;
    init.channels = 3;
    init.pixels.assign(28 * 28 * 3, 200);
    p.init_image = init;
    p.strength = 0.5f;
    EXPECT_EQ(generate(m, p).at(0).image.channels, 1);
}

TEST(PixelSpace, CliGeneratesFromTheExportAtTheModelsSize) {
    if (!fs::exists(kFashionMnist)) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    test::TempDir d("pixel_ddpm_cli");
    const std::string dir = train_tiny_ddpm();
    const std::string png = d / "x.png";
    const test::CliRun r = test::run_cli("generate -m " + dir + " -p \"\" -o " + png + " --steps 2 -q");  // -p is required (issue 12)
    ASSERT_EQ(r.code, 0) << r.out;
    const Image img = read_image(png);
    EXPECT_EQ(img.width, 28);  // -W/-H default to the model's size
    EXPECT_EQ(img.height, 28);
}

TEST(PixelSpace, OlderExportWithoutVaeLoadsAsPixelSpace) {
    // Exports made before the DDPMPipeline layout say StableDiffusionPipeline and have no vae/: a 1-channel UNet that
    // outputs what it takes is recognised as pixel space.
    if (!fs::exists(kFashionMnist)) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    test::TempDir d("pixel_old");
    fs::copy(train_tiny_ddpm(), d / "m", fs::copy_options::recursive);
    nlohmann::json index = read_json_file(d / "m/model_index.json");
    index["_class_name"] = "StableDiffusionPipeline";
    test::write_text(d / "m/model_index.json", index.dump());
    EXPECT_TRUE(load_stable_diffusion(d / "m").pixel_space());
}

TEST(PixelSpace, UnconditionalUNet2DModelIsRefusedByName) {
    // A hub DDPMPipeline (google/ddpm-*) has an unconditional UNet2DModel: refused with a message, not a crash.
    test::TempDir d("pixel_unet2d");
    test::write_text(d / "m/model_index.json",
                     R"({"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
                         "scheduler": ["diffusers", "DDPMScheduler"]})");
    test::write_text(d / "m/unet/config.json", R"({"_class_name": "UNet2DModel", "in_channels": 3})");
    test::write_text(d / "m/unet/diffusion_pytorch_model.safetensors", "not read");
    const std::string dir = d / "m";
    EXPECT_EQ(test::error_of([&] { load_stable_diffusion(dir); }),
              "diffusers folder '" + dir + "': unet/ is an unconditional UNet2DModel (DDPMPipeline), which nuance "
              "does not run yet; it runs UNet2DConditionModel, as `nuance train --model ddpm` exports it");
}
