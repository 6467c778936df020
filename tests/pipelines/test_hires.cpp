// Hires fix (pipelines/hires.h): A1111's target-size arithmetic, upscaler names, infotext, both passes on a tiny
// random SD1.5 model (latent and image upscalers, the crop), fast TAESD decodes, and every bad setting refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "../test_util.h"
#include "models/random_model.h"
#include "models/sd/stable_diffusion.h"
#include "models/taesd/taesd.h"
#include "ops/interpolate.h"
#include "pipelines/generate.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;

StableDiffusionModel& tiny_model() {
    static StableDiffusionModel m = [] {
        const std::string path = (std::filesystem::path(NUANCE_SCRATCH_DIR) / "hires_tiny_sd15.safetensors").string();
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
    p.steps = 4;
    p.seed = 7;
    p.sampler = "euler";
    p.hires.enabled = true;
    return p;
}

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/taesd";

}  // namespace

// StableDiffusionProcessingTxt2Img.calculate_target_resolution, and sample_hr_pass's truncation.
TEST(HiresTarget, A1111Arithmetic) {
    HiresParams h;
    h.enabled = true;
    HiresTarget t = hires_target(h, 512, 768, 8);  // scale 2
    EXPECT_EQ(t.width, 1024);
    EXPECT_EQ(t.height, 1536);
    h.scale = 1.5f;
    t = hires_target(h, 520, 512, 8);  // int(780) -> 97 latent px -> 776
    EXPECT_EQ(t.width, 776);
    EXPECT_EQ(t.height, 768);
    h.resize_x = 1000;  // y from the aspect ratio: 1000 * 768 // 512 = 1500 -> 1496
    t = hires_target(h, 512, 768, 8);
    EXPECT_EQ(t.width, 1000);
    EXPECT_EQ(t.height, 1496);
    h.resize_x = 0;
    h.resize_y = 1024;
    t = hires_target(h, 512, 768, 8);
    EXPECT_EQ(t.width, 680);  // 1024 * 512 // 768 = 682 -> 85 latent px
    EXPECT_EQ(t.height, 1024);
    h.resize_x = h.resize_y = 1024;  // cover 1024x1536, then crop (1536 - 1024) / 8 = 64 latent rows: 32 top, 32 bottom
    t = hires_target(h, 512, 768, 8);
    EXPECT_EQ(t.latent_w, 128);
    EXPECT_EQ(t.latent_h, 192);
    EXPECT_EQ(t.crop_x, 0);
    EXPECT_EQ(t.crop_y, 64);
    EXPECT_EQ(t.width, 1024);
    EXPECT_EQ(t.height, 1024);
}

TEST(HiresTarget, RejectsBadSettings) {
    HiresParams h;
    h.scale = 0.5f;
    EXPECT_EQ(error_of([&] { hires_target(h, 64, 64, 8); }), "hires scale must be in 1..8, got 0.5");
    h.scale = 2;
    h.strength = 0;
    EXPECT_EQ(error_of([&] { hires_target(h, 64, 64, 8); }), "hires denoising strength must be in (0, 1], got 0");
    h.strength = 0.7f;
    h.steps = -1;
    EXPECT_EQ(error_of([&] { hires_target(h, 64, 64, 8); }), "hires steps must be in 0..1000 (0: the first pass's), got -1");
    h.steps = 0;
    h.resize_x = 9000;
    EXPECT_EQ(error_of([&] { hires_target(h, 64, 64, 8); }),
              "hires resize must be in 0..8192 (0: from the scale or the aspect ratio), got 9000x0");
    h.resize_x = 0;
    h.scale = 8;
    EXPECT_EQ(error_of([&] { hires_target(h, 2048, 64, 8); }),
              "hires target size 16384x512 (from 2048x64) must be in 1..8192 per side");
    h.scale = 2;
    h.upscaler = "R-ESRGAN 4x+";
    EXPECT_EQ(error_of([&] { hires_target(h, 64, 64, 8); }),
              "unknown hires upscaler 'R-ESRGAN 4x+' (known: latent, latent-nearest, latent-nearest-exact, lanczos, "
              "nearest, none; or A1111's names: Latent, Latent (nearest), Latent (nearest-exact), Lanczos, Nearest, None)");
}

TEST(HiresTarget, UpscalerNamesAndInfotext) {
    EXPECT_EQ(parse_hires_upscaler("Latent"), HiresUpscaler::Latent);
    EXPECT_EQ(parse_hires_upscaler("latent-nearest"), HiresUpscaler::LatentNearest);
    EXPECT_EQ(parse_hires_upscaler("Latent (nearest-exact)"), HiresUpscaler::LatentNearestExact);
    EXPECT_EQ(parse_hires_upscaler("LANCZOS"), HiresUpscaler::Lanczos);
    HiresParams h;
    EXPECT_EQ(hires_infotext(h), ", Denoising strength: 0.7, Hires upscale: 2, Hires upscaler: Latent");
    h.steps = 10;
    h.resize_x = 1024;
    h.resize_y = 768;
    h.upscaler = "lanczos";
    EXPECT_EQ(hires_infotext(h), ", Denoising strength: 0.7, Hires resize: 1024x768, Hires steps: 10, Hires upscaler: Lanczos");
}

// The latent path is exactly: first pass latents -> bilinear x2 -> img2img from those latents at the hires strength,
// with the same seed; the infotext keeps the first pass's size and adds A1111's hires fields.
TEST(Hires, LatentPathIsFirstPassUpscaledThenImg2img) {
    const auto& m = tiny_model();
    GenerateParams p = params();
    std::vector<std::pair<int, int>> passes;  // (pass, total steps)
    p.on_progress = [&](const GenerateProgress& pr) {
        if (pr.step == 1) passes.emplace_back(pr.pass, pr.total);
        EXPECT_EQ(pr.passes, 2);
    };
    const auto out = generate(m, p);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].image.width, 128);
    EXPECT_EQ(out[0].image.height, 128);
    ASSERT_EQ(passes.size(), 2u);
    EXPECT_EQ(passes[0], std::make_pair(0, 4));
    EXPECT_EQ(passes[1], std::make_pair(1, 2));  // int(4 * 0.7) steps
    EXPECT_THAT(out[0].infotext, HasSubstr("Size: 64x64"));
    EXPECT_THAT(out[0].infotext, HasSubstr("Denoising strength: 0.7, Hires upscale: 2, Hires upscaler: Latent"));

    GenerateParams p1 = params();
    p1.hires.enabled = false;
    p1.skip_decode = true;
    const auto first = generate(m, p1);
    EXPECT_EQ(first[0].image.width, 0);  // skip_decode: latents only
    GenerateParams p2 = p1;
    p2.skip_decode = false;
    p2.width = p2.height = 128;
    p2.strength = 0.7f;
    const int64_t f = m.vae_scale();
    p2.init_latents = interpolate_bilinear(first[0].latents, 128 / f, 128 / f);
    const auto second = generate(m, p2);
    EXPECT_EQ(second[0].image.pixels, out[0].image.pixels);
}

// Image upscalers decode the first pass, resize it and encode it again; hires steps and the crop of a resize to
// another aspect ratio.
TEST(Hires, ImageUpscalersStepsAndCrop) {
    const auto& m = tiny_model();
    for (const char* up : {"lanczos", "nearest", "Latent (nearest)"}) {
        GenerateParams p = params();
        p.hires.upscaler = up;
        p.hires.steps = 3;
        p.hires.resize_x = 128;
        p.hires.resize_y = 64;
        int second_total = 0;
        p.on_progress = [&](const GenerateProgress& pr) {
            if (pr.pass == 1) second_total = pr.total;
        };
        int saved = 0;
        p.on_image = [&](const GeneratedImage& g) {
            ++saved;
            EXPECT_EQ(g.image.width, 128);
        };
        const auto out = generate(m, p);
        EXPECT_EQ(saved, 1) << up;
        EXPECT_EQ(out[0].image.width, 128) << up;
        EXPECT_EQ(out[0].image.height, 64) << up;
        EXPECT_EQ(second_total, 2) << up;  // int(3 * 0.7)
        EXPECT_THAT(out[0].infotext, HasSubstr("Hires resize: 128x64, Hires steps: 3, Hires upscaler: ")) << up;
    }
}

TEST(Hires, RefusesWhatCannotWork) {
    const auto& m = tiny_model();
    GenerateParams p = params();
    p.init_image = Image{8, 8, 3, std::vector<uint8_t>(8 * 8 * 3, 128)};
    EXPECT_EQ(error_of([&] { generate(m, p); }), "hires fix is for txt2img: drop the init image or hires");
    p = params();
    p.sigmas = {14.6, 7.0, 3.0, 1.0, 0.0};
    p.hires.steps = 2;
    EXPECT_EQ(error_of([&] { generate(m, p); }),
              "hires steps 2 differ from the 4 steps of the custom sigmas: leave hires steps at 0");
    p = params();
    p.hires.scale = NAN;
    EXPECT_EQ(error_of([&] { generate(m, p); }), "hires scale must be in 1..8, got nan");
    p = params();
    p.hires.enabled = false;
    p.init_latents = Tensor::zeros({1, 4, 3, 3});
    EXPECT_THAT(error_of([&] { generate(m, p); }), HasSubstr("init latents [1, 4, 3, 3] for a 64x64 image: expected [1, 4, "));
}

// --taesd: the tiny autoencoder decodes the final image; one of another latent space is refused naming both.
TEST(Hires, TaesdDecodeAndFamilyMismatch) {
    const auto& m = tiny_model();
    GenerateParams p = params();
    p.hires.enabled = false;
    p.taesd = TinyAutoencoder::load(kGolden + "/taesd_decoder.safetensors", "--taesd");
    p.taesd_decode = true;
    const auto out = generate(m, p);
    EXPECT_EQ(out[0].image.width, 64);
    const Tensor want = p.taesd->decode(out[0].latents);
    EXPECT_EQ(max_abs_diff(out[0].decoded, want), 0.0);
    p.taesd = TinyAutoencoder::load(kGolden + "/taef1_decoder.safetensors", "--taesd");
    EXPECT_EQ(error_of([&] { generate(m, p); }),
              "TAESD3/TAEF1 '" + kGolden + "/taef1_decoder.safetensors' (16-channel latents) does not fit sd1 model '" +
                  m.name + "' (4-channel latents): use TAESD (SD1/SD2) or TAESDXL (SDXL)");
    p.taesd = TinyAutoencoder::load(kGolden + "/taesd_encoder.safetensors", "--taesd");
    EXPECT_THAT(error_of([&] { generate(m, p); }), HasSubstr("has no decoder weights"));
}

}  // namespace nuance
