// `nuance generate --control-net ...` and `make-random --controlnet-for` end to end with the built binary.
#include <gtest/gtest.h>

#include <filesystem>

#include "../test_util.h"
#include "io/image.h"
#include "io/png_meta.h"
#include "tiny_model_suite.h"

using namespace nuance;
using nuance::test::CliRun;
using nuance::test::run_cli;

namespace {

class CliControlNet : public nuance::test::TinyModelSuite<CliControlNet> {
protected:
    static void SetUpTestSuite() {
        TinyModelSuite::SetUpTestSuite();
        CliRun r = run_cli("make-random --controlnet-for " + model() + " --controlnet-layout original -o " + path("cn.safetensors"));
        ASSERT_EQ(r.code, 0) << r.out;
        r = run_cli("make-random --controlnet-for " + model() + " --seed 4 -o " + path("cn2.safetensors"));
        ASSERT_EQ(r.code, 0) << r.out;
    }
};

const std::string kGen = " generate -q --steps 2 -W 64 -H 64 --seed 5 -p cat ";
const std::string kImage = std::string(NUANCE_TEST_DATA) + "/control/canny_in_0.png";

}  // namespace

TEST_F(CliControlNet, TwoControlNetsChangeTheImageAndAreInTheInfotext) {
    CliRun r = run_cli(kGen + "-m " + model() + " -o " + path("plain.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_cli(kGen + "-m " + model() + " --control-net " + path("cn.safetensors") + " --control-image " + kImage +
                " --control-preprocess canny:100:200 --control-net " + path("cn2.safetensors") + " --control-image " +
                kImage + " --control-preprocess invert --control-strength 0.5 --control-strength 1.2 --control-start 0 "
                "--control-start 0.5 -o " + path("cn.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(read_image(path("plain.png")).pixels, read_image(path("cn.png")).pixels);
    const std::string info = read_png_text(path("cn.png"))[0].second;
    EXPECT_NE(info.find("ControlNet 0: \"Module: canny, Model: cn, Weight: 0.5, Guidance Start: 0, Guidance End: 1, "
                        "Control Mode: Balanced\""), std::string::npos) << info;
    EXPECT_NE(info.find("ControlNet 1: \"Module: invert, Model: cn2, Weight: 1.2, Guidance Start: 0.5"),
              std::string::npos) << info;
    // guess mode runs too, and differs from balanced
    r = run_cli(kGen + "-m " + model() + " --control-net " + path("cn.safetensors") + " --control-image " + kImage +
                " --guess-mode -o " + path("guess.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(read_png_text(path("guess.png"))[0].second.find("Control Mode: Guess mode"), std::string::npos);
}

TEST_F(CliControlNet, UsageErrorsNameTheFlags) {
    CliRun r = run_cli(kGen + "-m " + model() + " --control-net " + path("cn.safetensors") + " -o " + path("x.png"));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.out.find("usage: 1 --control-net but 0 --control-image: give one control image per ControlNet "
                         "(--control-net '" + path("cn.safetensors") + "' has none)"), std::string::npos) << r.out;
    r = run_cli(kGen + "-m " + model() + " --control-image " + kImage + " -o " + path("x.png"));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.out.find("usage: --control-image/--control-* options need a --control-net"), std::string::npos) << r.out;
    r = run_cli(kGen + "-m " + model() + " --control-net " + path("cn.safetensors") + " --control-image " + kImage +
                " --control-start 0.9 --control-end 0.2 -o " + path("x.png"));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.out.find("usage: --control-start/--control-end must satisfy 0 <= start < end <= 1, got 0.9 and 0.2"),
              std::string::npos) << r.out;
    r = run_cli(kGen + "-m " + model() + " --control-net " + path("nope.safetensors") + " --control-image " + kImage +
                " -o " + path("x.png"));
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("--control-net '" + path("nope.safetensors") + "' does not exist"), std::string::npos) << r.out;
    r = run_cli(kGen + "-m " + model() + " --control-net " + path("cn.safetensors") + " --control-image " +
                path("nope.png") + " -o " + path("x.png"));
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("nope.png"), std::string::npos) << r.out;
}

TEST_F(CliControlNet, SdxlControlNetWithSd15ModelNamesBoth) {
    CliRun r = run_cli("make-random --family sdxl --tiny -o " + path("xl.safetensors"));
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_cli("make-random --controlnet-for " + path("xl.safetensors") + " -o " + path("cnxl.safetensors"));
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_cli(kGen + "-m " + model() + " --control-net " + path("cnxl.safetensors") + " --control-image " + kImage +
                " -o " + path("x.png"));
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("--control-net 'cnxl.safetensors' is a ControlNet for SDXL (context 192, channels [32, 64, "
                         "128], text_time) but the model 'tiny15' (sd15) has a UNet with context 64"),
              std::string::npos) << r.out;
    r = run_cli("make-random --controlnet-for " + model() + " --controlnet-layout lora -o " + path("y.safetensors"));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.out.find("unknown ControlNet layout 'lora' (valid: diffusers, original, difference)"), std::string::npos)
        << r.out;
}
