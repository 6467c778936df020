// Inpainting / outpainting through generate() (pipelines/inpaint.h): the pipeline_inpaint golden case (9-channel
// UNet and masked-latent blending against diffusers), the A1111 pixel side on a tiny random SD1.5 (the original
// kept outside the mask, "only masked", fills, outpainting, a blank mask), 9-channel checkpoints, the flow-matching
// blend (diffusers' SD3/Flux inpaint: the image noised at the current sigma) on a mock flow model, and the errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "../test_util.h"
#include "eval/golden/pipeline_inpaint_golden.h"
#include "models/random_model.h"
#include "models/sd/stable_diffusion.h"
#include "ops/ops.h"
#include "pipelines/generate.h"
#include "pipelines/inpaint.h"

namespace nuance {
namespace {

using test::error_of;
using ::testing::HasSubstr;

StableDiffusionModel& tiny(bool inpaint) {
    auto make = [](bool ip) {
        const std::string path = (std::filesystem::path(NUANCE_SCRATCH_DIR) /
                                  (ip ? "inpaint_tiny9.safetensors" : "inpaint_tiny4.safetensors"))
                                     .string();
        RandomModelOptions o;
        o.tiny = true;
        o.dtype = DType::F32;
        o.inpaint = ip;
        write_random_checkpoint(path, o);
        return load_stable_diffusion(path);
    };
    static StableDiffusionModel m4 = make(false), m9 = make(true);
    return inpaint ? m9 : m4;
}

Image pattern(int w, int h) {
    Image i;
    i.width = w;
    i.height = h;
    i.channels = 3;
    i.pixels.resize((size_t)w * h * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < 3; ++c) i.pixels[((size_t)y * w + x) * 3 + c] = (uint8_t)((x * 7 + y * 13 + c * 50) % 256);
    return i;
}

Image rect_mask(int w, int h, int x1, int y1, int x2, int y2) {
    Image m;
    m.width = w;
    m.height = h;
    m.channels = 1;
    m.pixels.assign((size_t)w * h, 0);
    for (int y = y1; y < y2; ++y)
        for (int x = x1; x < x2; ++x) m.pixels[(size_t)y * w + x] = 255;
    return m;
}

GenerateParams params() {
    GenerateParams p;
    p.prompt = "a cat";
    p.width = p.height = 64;
    p.steps = 2;
    p.seed = 3;
    p.sampler = "euler";
    p.strength = 1.0f;
    p.init_image = pattern(64, 64);
    p.mask = rect_mask(64, 64, 16, 16, 48, 40);
    p.inpaint.mask_blur = 0;
    return p;
}

const uint8_t* px(const Image& i, int x, int y) { return &i.pixels[((size_t)y * i.width + x) * i.channels]; }

bool same_pixel(const Image& a, int ax, int ay, const Image& b, int bx, int by) {
    return std::equal(px(a, ax, ay), px(a, ax, ay) + 3, px(b, bx, by));
}

// How many pixels of the rectangle differ between a and b.
int differing(const Image& a, const Image& b, int x1, int y1, int x2, int y2) {
    int n = 0;
    for (int y = y1; y < y2; ++y)
        for (int x = x1; x < x2; ++x) n += !same_pixel(a, x, y, b, x, y);
    return n;
}

TEST(InpaintGolden, BothPathsPassAgainstDiffusers) {
    const auto lines = check_golden_pipeline_inpaint(std::string(NUANCE_TEST_DATA) + "/golden/pipeline_inpaint");
    ASSERT_EQ(lines.size(), 21u);
    for (const auto& l : lines) EXPECT_TRUE(l.pass && !l.skip) << l.name << " " << l.max_abs << " " << l.reason;
}

TEST(Inpaint, BlendKeepsTheOriginalOutsideTheMaskAndRepaintsInside) {
    const GenerateParams p = params();
    const auto r = generate(tiny(false), p);
    ASSERT_EQ(r.size(), 1u);
    const Image& out = r[0].image;
    ASSERT_EQ(out.width, 64);
    ASSERT_EQ(out.height, 64);
    for (int y = 0; y < 64; ++y)
        for (int x = 0; x < 64; ++x)
            if (!(x >= 16 && x < 48 && y >= 16 && y < 40)) ASSERT_TRUE(same_pixel(out, x, y, *p.init_image, x, y)) << x << "," << y;
    EXPECT_GT(differing(out, *p.init_image, 16, 16, 48, 40), 500);
    EXPECT_THAT(r[0].infotext, HasSubstr("Denoising strength: 1, Mask blur: 0, Version: nuance"));
    EXPECT_EQ(tiny(false).inpaint_channels(), 0);
}

TEST(Inpaint, InvertedMaskRepaintsTheOutside) {
    GenerateParams p = params();
    p.inpaint.invert_mask = true;
    const auto r = generate(tiny(false), p);
    EXPECT_EQ(differing(r[0].image, *p.init_image, 16, 16, 48, 40), 0);
    EXPECT_GT(differing(r[0].image, *p.init_image, 0, 0, 64, 16), 500);
    EXPECT_THAT(r[0].infotext, HasSubstr("Mask mode: Inpaint not masked"));
}

TEST(Inpaint, MaskOfAnotherSizeIsResizedAndBlurred) {
    GenerateParams p = params();
    p.mask = rect_mask(32, 32, 8, 8, 24, 20);  // the same rectangle at half size
    p.inpaint.mask_blur = 4;
    p.strength = 0.6f;
    const auto r = generate(tiny(false), p);
    EXPECT_TRUE(same_pixel(r[0].image, 2, 2, *p.init_image, 2, 2));
    EXPECT_GT(differing(r[0].image, *p.init_image, 20, 20, 44, 36), 300);
    EXPECT_THAT(r[0].infotext, HasSubstr("Mask blur: 4"));
}

TEST(Inpaint, FillModesStartTheMaskedAreaDifferently) {
    std::vector<Image> outs;
    for (InpaintFill f : {InpaintFill::Original, InpaintFill::Fill, InpaintFill::LatentNoise, InpaintFill::LatentNothing}) {
        GenerateParams p = params();
        p.strength = 0.5f;
        p.inpaint.fill = f;
        const auto r = generate(tiny(false), p);
        EXPECT_EQ(differing(r[0].image, *p.init_image, 0, 0, 64, 16), 0) << inpaint_fill_name(f);
        if (f != InpaintFill::Original)
            EXPECT_THAT(r[0].infotext, HasSubstr("Masked content: ")) << inpaint_fill_name(f);
        outs.push_back(r[0].image);
    }
    for (size_t i = 1; i < outs.size(); ++i) EXPECT_GT(differing(outs[0], outs[i], 16, 16, 48, 40), 100) << i;
}

TEST(Inpaint, OnlyMaskedWorksOnTheCropAndKeepsTheImageSize) {
    GenerateParams p = params();
    p.init_image = pattern(128, 96);
    p.mask = rect_mask(128, 96, 90, 60, 110, 80);
    p.inpaint.full_res = true;
    p.inpaint.full_res_padding = 8;
    const auto r = generate(tiny(false), p);
    ASSERT_EQ(r[0].image.width, 128);
    ASSERT_EQ(r[0].image.height, 96);
    EXPECT_EQ(differing(r[0].image, *p.init_image, 0, 0, 128, 50), 0);
    EXPECT_GT(differing(r[0].image, *p.init_image, 90, 60, 110, 80), 200);
    EXPECT_THAT(r[0].infotext, HasSubstr("Inpaint area: Only masked, Masked area padding: 8"));
}

TEST(Inpaint, BlankMaskWarnsAndReturnsTheImage) {
    GenerateParams p = params();
    p.mask = rect_mask(64, 64, 0, 0, 0, 0);
    p.batch_count = 2;
    std::string warning;
    p.on_warning = [&](const std::string& w) { warning = w; };
    int saved = 0;
    p.on_image = [&](const GeneratedImage&) { ++saved; };
    const auto r = generate(tiny(false), p);
    EXPECT_EQ(warning, "the mask has no white pixel: nothing to repaint; returning the image");
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(saved, 2);
    EXPECT_EQ(r[1].image.pixels, p.init_image->pixels);
    EXPECT_EQ(r[1].seed, 4);
}

TEST(Inpaint, OutpaintExtendsTheCanvasByMultiplesOfEight) {
    GenerateParams p = params();
    p.mask.reset();
    p.inpaint.mask_blur = 4;
    p.inpaint.outpaint_left = 4;     // -> 8
    p.inpaint.outpaint_bottom = 12;  // -> 16
    const auto r = generate(tiny(false), p);
    ASSERT_EQ(r[0].image.width, 72);
    ASSERT_EQ(r[0].image.height, 80);
    // far from the new area (8 px overlap + the blur) the original is kept exactly
    for (int y = 0; y < 40; ++y)
        for (int x = 32; x < 72; ++x) ASSERT_TRUE(same_pixel(r[0].image, x, y, *p.init_image, x - 8, y)) << x << "," << y;
    EXPECT_THAT(r[0].infotext, HasSubstr("Outpaint: 4 0 0 12"));
    EXPECT_THAT(r[0].infotext, HasSubstr("Size: 72x80"));
}

TEST(Inpaint, NineChannelCheckpointLoadsAndInpaints) {
    StableDiffusionModel& m = tiny(true);
    EXPECT_EQ(m.inpaint_channels(), 5);
    // With a mask: the 9-channel UNet sees the mask and the masked image; the outside is the original.
    const GenerateParams p = params();
    const auto r = generate(m, p);
    EXPECT_EQ(differing(r[0].image, *p.init_image, 0, 0, 64, 16), 0);
    // Without a mask or init image (A1111: an all-white mask over a mid-grey image): plain txt2img.
    GenerateParams t;
    t.prompt = "a cat";
    t.width = t.height = 64;
    t.steps = 2;
    t.sampler = "euler";
    const auto g = generate(m, t);
    ASSERT_EQ(g.size(), 1u);
    EXPECT_EQ(g[0].image.width, 64);
    for (float v : g[0].decoded.contiguous().to_vector()) ASSERT_TRUE(std::isfinite(v));
    // And an ordinary model refuses the concat it does not take.
    StepContext s;
    EXPECT_THAT(error_of([&] {
                    Conditioning c = m.encode({});
                    m.predict(Tensor::zeros({1, 4, 8, 8}), 10, c, s);
                }),
                HasSubstr("inpainting UNet: expected the mask and masked-image latents as [1, 5, 8, 8], got none"));
}

TEST(Inpaint, ErrorsNameTheSettingAndTheValue) {
    StableDiffusionModel& m = tiny(false);
    GenerateParams p = params();
    p.inpaint.outpaint_left = -8;
    EXPECT_EQ(error_of([&] { generate(m, p); }), "outpaint left must be in 0..8192 pixels, got -8");
    p = params();
    p.width = 8192;
    p.inpaint.outpaint_right = 1;
    EXPECT_EQ(error_of([&] { generate(m, p); }),
              "outpainting 8192x64 by 0,1,0,0 gives 8200x64, larger than 8192x8192");
    p = params();
    p.init_image.reset();
    EXPECT_EQ(error_of([&] { generate(m, p); }), "a mask needs an init image (img2img) to repaint");
    p = params();
    p.mask = Image{};
    EXPECT_EQ(error_of([&] { generate(m, p); }), "the mask image is empty (0x0)");
    p = params();
    p.inpaint.mask_blur = 1000;
    EXPECT_EQ(error_of([&] { generate(m, p); }), "mask blur must be in 0..256 pixels, got 1000");
    p = params();
    p.inpaint.full_res_padding = -1;
    EXPECT_EQ(error_of([&] { generate(m, p); }), "inpaint padding must be in 0..8192 pixels, got -1");
    p = params();
    p.mask.reset();
    p.inpaint.outpaint_top = 8;
    p.init_image.reset();
    EXPECT_EQ(error_of([&] { generate(m, p); }), "outpainting needs an init image");
}

// A flow-matching "model" in pixel-like latent space (3 channels, factor 1, identity VAE) whose velocity makes the
// denoised estimate a constant 0.25: records what it is called with.
struct MockFlow : DiffusionModel {
    mutable std::vector<std::pair<double, Tensor>> calls;  // (sigma, x)
    std::string family_name() const override { return "mockflow"; }
    std::string variant() const override { return "mockflow"; }
    std::string describe() const override { return "mock"; }
    std::vector<std::pair<std::string, Module*>> modules() override { return {}; }
    LatentFormat latent_format() const override {
        LatentFormat f;
        f.channels = 3;
        f.downscale = 1;
        f.scaling_factor = 1;
        return f;
    }
    Objective objective() const override {
        Objective o;
        o.prediction = Prediction::Flow;
        o.flow.shift = 1.0;
        return o;
    }
    GuidanceKind guidance() const override { return GuidanceKind::None; }
    GenerationDefaults generation_defaults() const override { return {}; }
    Conditioning encode(const ConditioningRequest&) const override {
        Conditioning c;
        c["context"] = Tensor::zeros({1, 1, 1});
        return c;
    }
    Tensor predict(const Tensor& x, double t, const Conditioning&, const StepContext&) const override {
        const double s = t / 1000.0;
        calls.push_back({s, x.clone()});
        return (x - 0.25f) / (float)s;  // D = x - s v = 0.25
    }
    Tensor decode(const Tensor& l, const VaeTiling&) const override { return l.clone(); }
    Tensor encode_image(const Image& img, int w, int h, const VaeTiling&, Rng&) const override {
        return image_to_tensor(img.width == w && img.height == h ? img : resize_image(img, w, h));
    }
};

TEST(Inpaint, FlowModelsBlendWithTheImageNoisedAtTheCurrentSigma) {
    MockFlow m;
    GenerateParams p = params();
    p.width = p.height = 16;
    p.init_image = pattern(16, 16);
    p.mask = rect_mask(16, 16, 0, 0, 8, 16);  // left half repainted
    p.steps = 4;
    p.cfg_scale = 1;
    p.strength = 0.75f;
    p.initial_noise = Tensor::full({1, 3, 16, 16}, 0.5f);
    const auto r = generate(m, p);
    const Tensor x0 = image_to_tensor(*p.init_image);
    ASSERT_EQ(m.calls.size(), 3u);  // strength 0.75 of 4 steps
    for (const auto& [s, x] : m.calls) {
        // the kept half is (1 - s) x0 + s noise (diffusers SD3/Flux inpaint: scale_noise at the current sigma)
        const Tensor want = x0 * (1.0f - (float)s) + 0.5f * (float)s;
        const auto got_v = x.contiguous().to_vector(), want_v = want.contiguous().to_vector();
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < 16; ++y)
                for (int xx = 8; xx < 16; ++xx) {
                    const size_t i = ((size_t)c * 16 + y) * 16 + xx;
                    ASSERT_NEAR(got_v[i], want_v[i], 1e-5) << s << " " << i;
                }
    }
    // final latents: the kept half is the image latents, the repainted half the model's estimate 0.25
    const auto lat = r[0].latents.contiguous().to_vector(), x0v = x0.contiguous().to_vector();
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < 16; ++y) {
            EXPECT_NEAR(lat[((size_t)c * 16 + y) * 16 + 2], 0.25f, 1e-5);
            EXPECT_EQ(lat[((size_t)c * 16 + y) * 16 + 12], x0v[((size_t)c * 16 + y) * 16 + 12]);
        }
}

}  // namespace
}  // namespace nuance
