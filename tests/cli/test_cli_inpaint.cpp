// `nuance generate` inpainting and outpainting flags: --mask, --mask-blur, --invert-mask, --inpaint-full-res,
// --inpaint-padding, --inpaint-fill, --outpaint; a 9-channel checkpoint from `make-random --inpaint`; the errors.
#include <gtest/gtest.h>

#include <fstream>

#include "../test_util.h"
#include "io/image.h"
#include "io/png_meta.h"
#include "tiny_model_suite.h"

using namespace nuance;

namespace {

using nuance::test::CliRun;
using nuance::test::run_cli;

class CliInpaint : public nuance::test::TinyModelSuite<CliInpaint> {
protected:
    static void SetUpTestSuite() {
        TinyModelSuite<CliInpaint>::SetUpTestSuite();
        Image init;
        init.width = init.height = 64;
        init.pixels.resize(64 * 64 * 3);
        for (size_t k = 0; k < init.pixels.size(); ++k) init.pixels[k] = (uint8_t)(k * 37 % 251);
        write_png(path("init.png"), init);
        Image mask;  // 32x32 (resized to the image), white on the middle
        mask.width = mask.height = 32;
        mask.pixels.assign(32 * 32 * 3, 0);
        for (int y = 8; y < 20; ++y)
            for (int x = 8; x < 24; ++x)
                for (int c = 0; c < 3; ++c) mask.pixels[((size_t)y * 32 + x) * 3 + c] = 255;
        write_png(path("mask.png"), mask);
        Image black = mask;
        std::fill(black.pixels.begin(), black.pixels.end(), 0);
        write_png(path("black.png"), black);
    }
};

const std::string kGen = " generate -q --steps 2 -W 64 -H 64 --sampler euler ";

int differing_rows(const Image& a, const Image& b, int y1, int y2) {
    int n = 0;
    for (int y = y1; y < y2; ++y)
        for (int x = 0; x < a.width; ++x)
            for (int c = 0; c < 3; ++c) n += a.pixels[((size_t)y * a.width + x) * 3 + c] != b.pixels[((size_t)y * b.width + x) * 3 + c];
    return n;
}

TEST_F(CliInpaint, MaskRepaintsOnlyTheMaskedArea) {
    const CliRun r = run_cli(kGen + "-m " + model() + " -p apple -i " + path("init.png") + " --mask " + path("mask.png") +
                             " --mask-blur 0 --strength 1 -o " + path("ip.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    const Image out = read_image(path("ip.png")), init = read_image(path("init.png"));
    // the 32x32 mask is resized with Lanczos (rows 16..40 here, ringing up to 6 rows beyond): kept further out
    EXPECT_EQ(differing_rows(out, init, 0, 9), 0);
    EXPECT_EQ(differing_rows(out, init, 47, 64), 0);
    EXPECT_GT(differing_rows(out, init, 16, 40), 1000);
    EXPECT_NE(read_png_text(path("ip.png"))[0].second.find("Mask blur: 0"), std::string::npos);
}

TEST_F(CliInpaint, EveryFlagTogetherAndOutpaint) {
    CliRun r = run_cli(kGen + "-m " + model() + " -p apple -i " + path("init.png") + " --mask " + path("mask.png") +
                       " --mask-blur 2 --invert-mask --inpaint-full-res --inpaint-padding 8 --inpaint-fill latent-noise "
                       "--strength 0.8 -o " + path("all.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    const std::string info = read_png_text(path("all.png"))[0].second;
    EXPECT_NE(info.find("Mask blur: 2, Mask mode: Inpaint not masked, Masked content: latent noise, Inpaint area: Only "
                        "masked, Masked area padding: 8"),
              std::string::npos)
        << info;
    r = run_cli(kGen + "-m " + model() + " -p apple -i " + path("init.png") + " --outpaint 0,5,16,0 -o " +
                path("out.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    const Image o = read_image(path("out.png"));
    EXPECT_EQ(o.width, 72);
    EXPECT_EQ(o.height, 80);
}

TEST_F(CliInpaint, BlankMaskWarnsAndWritesTheImage) {
    const CliRun r = run_cli(" generate --steps 2 -W 64 -H 64 -m " + model() + " -p apple -i " + path("init.png") +
                             " --mask " + path("black.png") + " -o " + path("blank.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("warning: the mask has no white pixel: nothing to repaint; returning the image"),
              std::string::npos)
        << r.out;
    EXPECT_EQ(read_image(path("blank.png")).pixels, read_image(path("init.png")).pixels);
}

TEST_F(CliInpaint, NineChannelCheckpoint) {
    CliRun r = run_cli("make-random --family sd15 --tiny --inpaint -o " + path("inpaint9.safetensors"));
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_cli(kGen + "-m " + path("inpaint9.safetensors") + " -p apple -i " + path("init.png") + " --mask " +
                path("mask.png") + " -o " + path("nine.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_cli(kGen + "-m " + path("inpaint9.safetensors") + " -p apple -o " + path("nine_t2i.png"));
    ASSERT_EQ(r.code, 0) << r.out;  // no mask: A1111's all-white mask over mid-grey
}

TEST_F(CliInpaint, ErrorsNameTheFlagAndTheValue) {
    std::ofstream(path("notimage.png"), std::ios::binary) << "this is not an image";
    std::ofstream(path("empty.png"), std::ios::binary) << "";
    const std::string base = kGen + "-m " + model() + " -p x -i " + path("init.png");
    struct Case {
        std::string args, message;
        int code;
    };
    for (const Case& c : std::vector<Case>{
             {" --mask " + path("notimage.png"), "--mask: image '" + path("notimage.png") +
                                                     "' is neither PNG nor JPEG (unknown magic bytes)", 1},
             {" --mask " + path("empty.png"), "--mask: image '" + path("empty.png") + "' is neither PNG nor JPEG (empty file)", 1},
             {" --mask " + path("missing.png"), "--mask: ", 1},
             {" --mask-blur -1", "--mask-blur must be in 0..256 pixels, got -1", 2},
             {" --inpaint-padding 9000", "--inpaint-padding must be in 0..8192 pixels, got 9000", 2},
             {" --inpaint-fill blur", "--inpaint-fill: unknown inpaint fill 'blur' (valid: fill (0), original (1), "
                                      "latent-noise (2), latent-nothing (3))", 2},
             {" --outpaint 8,8,8", "--outpaint '8,8,8': expected 4 comma-separated amounts (left,right,top,bottom), got 3", 2},
             {" --outpaint 8,-8,0,0", "--outpaint '8,-8,0,0': expected left,right,top,bottom as four whole numbers of "
                                      "pixels in 0..8192, got '-8'", 2},
             {" --outpaint 0,8192,0,0", "outpainting 64x64 by 0,8192,0,0 gives 64x8256... ", 2},
         }) {
        const CliRun r = run_cli(base + c.args);
        EXPECT_EQ(r.code, c.code) << c.args << "\n" << r.out;
        if (c.message.find("...") == std::string::npos)
            EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << "\n" << r.out;
        else
            EXPECT_NE(r.out.find("gives 8256x64, larger than 8192x8192"), std::string::npos) << r.out;
    }
    const CliRun r = run_cli(kGen + "-m " + model() + " -p x --mask " + path("mask.png"));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.out.find("--mask needs the image to work on: -i/--init-img FILE"), std::string::npos) << r.out;
}

}  // namespace
