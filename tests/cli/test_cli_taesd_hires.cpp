// `nuance generate --taesd / --preview / --hr*` end to end on a tiny random SD1.5, and every misuse refused with a
// usage error naming the flag.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "tiny_model_suite.h"

#include "io/image.h"
#include "io/png_meta.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

using nuance::test::CliRun;
using nuance::test::run_cli;

const std::string kTaesd = std::string(NUANCE_TEST_DATA) + "/golden/taesd";

class CliTaesdHires : public nuance::test::TinyModelSuite<CliTaesdHires> {
protected:
    static std::string gen() { return " generate -q --steps 2 --seed 5 -W 64 -H 64 -p apple -m " + model() + " "; }
};

}  // namespace

// --taesd decodes the final image and the --preview file (written every step, the last one kept).
TEST_F(CliTaesdHires, TaesdDecodeAndPreview) {
    const CliRun r = run_cli(gen() + "--taesd " + kTaesd + "/taesd_decoder.safetensors --preview " + path("prev.png") +
                             " -o " + path("t.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(read_image(path("t.png")).width, 64);
    EXPECT_EQ(read_image(path("prev.png")).width, 64);  // TAESD previews are full size
    // --taesd-preview-only: the VAE decodes the image, so it differs from the TAESD decode.
    const CliRun v = run_cli(gen() + "--taesd " + kTaesd + "/taesd_decoder.safetensors --taesd-preview-only -o " +
                             path("v.png"));
    ASSERT_EQ(v.code, 0) << v.out;
    EXPECT_NE(read_image(path("v.png")).pixels, read_image(path("t.png")).pixels);
    // Without --taesd the preview is the latent colour projection (8x8 latents scaled up).
    const CliRun p = run_cli(gen() + "--preview " + path("proj.png") + " --preview-every 2 -o " + path("p.png"));
    ASSERT_EQ(p.code, 0) << p.out;
    EXPECT_GT(read_image(path("proj.png")).width, 0);
}

TEST_F(CliTaesdHires, HiresFixWritesTheLargerImageAndItsInfotext) {
    const CliRun r = run_cli(gen() + "--hr --hr-scale 1.5 --hr-steps 3 --hr-strength 0.5 -o " + path("h.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    const Image im = read_image(path("h.png"));
    EXPECT_EQ(im.width, 96);
    EXPECT_EQ(im.height, 96);
    const auto text = read_png_text(path("h.png"));
    std::string params;
    for (const auto& [k, v] : text)
        if (k == "parameters") params = v;
    EXPECT_THAT(params, HasSubstr("Size: 64x64"));
    EXPECT_THAT(params, HasSubstr("Denoising strength: 0.5, Hires upscale: 1.5, Hires steps: 3, Hires upscaler: Latent"));
    const CliRun l = run_cli(gen() + "--hr --hr-resize 128x0 --hr-upscaler lanczos -o " + path("l.png"));
    ASSERT_EQ(l.code, 0) << l.out;
    EXPECT_EQ(read_image(path("l.png")).width, 128);
}

TEST_F(CliTaesdHires, MisuseIsAUsageError) {
    const std::string u = "(a usage error";
    struct Case {
        std::string args, message;
    } cases[] = {
        {"--taesd " + kTaesd + "/taef1_decoder.safetensors",
         "usage: TAESD3/TAEF1 '" + kTaesd + "/taef1_decoder.safetensors' (16-channel latents) does not fit sd1 model "},
        {"--taesd " + kTaesd + "/io.safetensors", " is not a tiny autoencoder (TAESD/TAESDXL/TAESD3/TAEF1)"},
        {"--taesd-preview-only", "usage: --taesd-preview-only needs --taesd FILE"},
        {"--hr-scale 2", "usage: --hr-scale needs --hr (the hires fix)"},
        {"--hr-steps 4", "usage: --hr-steps needs --hr (the hires fix)"},
        {"--hr --hr-upscaler ESRGAN", "usage: --hr-upscaler: unknown hires upscaler 'ESRGAN' (known: latent, "},
        {"--hr --hr-resize 0x0", "usage: --hr-resize must be WxH with sides in 0..8192 (0: from the aspect ratio; "
                                 "not both), got '0x0'"},
        {"--hr --hr-resize 64x64x", "got '64x64x'"},
        {"--hr --hr-scale 9", "usage: hires scale must be in 1..8, got 9"},
        {"--hr --hr-strength 0", "usage: hires denoising strength must be in (0, 1], got 0"},
        {"--preview-every 3", "usage: --preview-every needs --preview FILE"},
        {"--preview p.gif", "usage: --preview: "},
    };
    for (const auto& c : cases) {
        const CliRun r = run_cli(gen() + c.args + " -o " + path("x.png"));
        EXPECT_NE(r.code, 0) << c.args;
        EXPECT_THAT(r.out, HasSubstr(c.message)) << c.args;
    }
    EXPECT_THAT(run_cli(gen() + "--hr --hr-scale 2 -i " + path("nothing.png") + " -o " + path("x.png")).out,
                HasSubstr("usage: --hr is for txt2img; drop -i/--init-img or --hr"));
}
