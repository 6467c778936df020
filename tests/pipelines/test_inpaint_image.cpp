// Pixel-side helpers of inpainting/outpainting (pipelines/inpaint_image.h): masks from images, the A1111 mask blur,
// the "only masked" crop region, fill, outpaint canvas and mask, composite; hand-computed values.
#include <gtest/gtest.h>

#include <cmath>

#include "../test_util.h"
#include "pipelines/inpaint.h"
#include "pipelines/inpaint_image.h"

namespace nuance {
namespace {

using test::error_of;

Image img(int w, int h, int c, uint8_t v = 0) {
    Image i;
    i.width = w;
    i.height = h;
    i.channels = c;
    i.pixels.assign((size_t)w * h * c, v);
    return i;
}

TEST(InpaintImage, MaskFromGreyAlphaAndTransparent) {
    Image rgb = img(2, 1, 3);
    rgb.pixels = {255, 255, 255, 10, 200, 30};
    const Image m = mask_from_image(rgb, MaskConvention::White, "mask");
    ASSERT_EQ(m.channels, 1);
    EXPECT_EQ(m.pixels[0], 255);
    // PIL convert('L'): (19595 R + 38470 G + 7471 B + 2^15) >> 16 = 127 for (10, 200, 30)
    EXPECT_EQ(m.pixels[1], (19595u * 10 + 38470u * 200 + 7471u * 30 + 32768u) >> 16);
    Image rgba = img(3, 1, 4, 0);
    rgba.pixels = {0, 0, 0, 255, 0, 0, 0, 129, 255, 255, 255, 128};
    // A1111 create_binary_mask: alpha > 128 -> 255 (the painted strokes are opaque), colours ignored
    const Image a = mask_from_image(rgba, MaskConvention::White, "mask");
    EXPECT_EQ(a.pixels, (std::vector<uint8_t>{255, 255, 0}));
    // OpenAI: fully transparent = edit
    rgba.pixels[11] = 0;
    const Image t = mask_from_image(rgba, MaskConvention::Transparent, "mask");
    EXPECT_EQ(t.pixels, (std::vector<uint8_t>{0, 0, 255}));
    // An opaque RGBA image is read as grey
    Image opaque = img(1, 1, 4, 255);
    EXPECT_EQ(mask_from_image(opaque, MaskConvention::White, "mask").pixels[0], 255);
    EXPECT_EQ(error_of([] { mask_from_image(Image{}, MaskConvention::White, "--mask 'm.png'"); }),
              "--mask 'm.png': the mask image is empty (0x0)");
}

TEST(InpaintImage, BlurIsOpenCvGaussianWithA1111Kernel) {
    Image m = img(15, 1, 1);
    m.pixels[7] = 255;
    // blur 1: kernel 2 * int(2.5 + 0.5) + 1 = 7, sigma 1; along x only (one row: the y pass of a 1-row image with
    // reflect-101 borders is the identity)
    const Image b = blur_mask(m, 1);
    double s = 0;
    std::vector<double> k(7);
    for (int i = 0; i < 7; ++i) s += k[i] = std::exp(-(i - 3) * (i - 3) / 2.0);
    for (int i = 0; i < 7; ++i) EXPECT_EQ(b.pixels[4 + i], (uint8_t)std::lround(255 * k[i] / s)) << i;
    EXPECT_EQ(b.pixels[0], 0);
    EXPECT_EQ(blur_mask(m, 0).pixels, m.pixels);
    EXPECT_EQ(error_of([&] { blur_mask(m, -1); }), "mask blur must be in 0..256 pixels, got -1");
    EXPECT_EQ(error_of([&] { blur_mask(m, 257); }), "mask blur must be in 0..256 pixels, got 257");
    // All white stays all white (reflect borders)
    const Image w = blur_mask(img(9, 9, 1, 255), 4);
    for (uint8_t v : w.pixels) ASSERT_EQ(v, 255);
}

TEST(InpaintImage, CropRegionIsBoxPlusPaddingGrownToTheAspectRatio) {
    Image m = img(100, 80, 1);
    for (int y = 30; y < 40; ++y)
        for (int x = 40; x < 60; ++x) m.pixels[(size_t)y * 100 + x] = 255;
    PixelBox b;
    ASSERT_TRUE(inpaint_crop_region(m, 0, 64, 64, &b));
    // box x [40, 60) y [30, 40): wider than square, so y grows by 10: 5 above, 5 below
    EXPECT_EQ(b.x1, 40);
    EXPECT_EQ(b.x2, 60);
    EXPECT_EQ(b.y1, 25);
    EXPECT_EQ(b.y2, 45);
    ASSERT_TRUE(inpaint_crop_region(m, 32, 64, 64, &b));
    // padded: x [8, 92) y [0, 72) (clamped at 0); then square: x grows by 72 - 84 < 0 -> y grows to 84 > 80:
    // shifted back inside and clamped to [0, 80)
    EXPECT_EQ(b.x1, 8);
    EXPECT_EQ(b.x2, 92);
    EXPECT_EQ(b.y1, 0);
    EXPECT_EQ(b.y2, 80);
    EXPECT_FALSE(inpaint_crop_region(img(4, 4, 1), 0, 8, 8, &b));
}

TEST(InpaintImage, OutpaintCanvasMaskAndRounding) {
    Image i = img(2, 2, 3);
    for (size_t k = 0; k < i.pixels.size(); ++k) i.pixels[k] = (uint8_t)(10 * k);
    const Image c = outpaint_canvas(i, 3, 1, 0, 2, 0.0f, 1);
    ASSERT_EQ(c.width, 6);
    ASSERT_EQ(c.height, 4);
    // the image at (3, 0); the new area repeats the nearest edge pixel (no noise here)
    for (int ch = 0; ch < 3; ++ch) {
        EXPECT_EQ(c.pixels[((size_t)0 * 6 + 3) * 3 + ch], i.pixels[ch]);
        EXPECT_EQ(c.pixels[((size_t)0 * 6 + 0) * 3 + ch], i.pixels[ch]);
        EXPECT_EQ(c.pixels[((size_t)3 * 6 + 5) * 3 + ch], i.pixels[(1 * 2 + 1) * 3 + ch]);
    }
    const Image m = outpaint_mask(6, 4, 3, 1, 0, 2, 0);
    EXPECT_EQ(m.pixels[(size_t)0 * 6 + 2], 255);
    EXPECT_EQ(m.pixels[(size_t)0 * 6 + 3], 0);
    EXPECT_EQ(m.pixels[(size_t)1 * 6 + 4], 0);
    EXPECT_EQ(m.pixels[(size_t)1 * 6 + 5], 255);
    EXPECT_EQ(m.pixels[(size_t)2 * 6 + 4], 255);
    EXPECT_EQ(round_up_to(1, 8), 8);
    EXPECT_EQ(round_up_to(16, 8), 16);
    EXPECT_EQ(round_up_to(0, 8), 0);
    EXPECT_EQ(error_of([&] { outpaint_canvas(i, -1, 0, 0, 0, 0, 0); }),
              "outpaint amounts must be in 0..8192 pixels, got -1,0,0,0");
}

TEST(InpaintImage, FillTakesTheColoursAroundTheMask) {
    Image i = img(16, 8, 3);
    for (int y = 0; y < 8; ++y)
        for (int x = 0; x < 16; ++x) {
            uint8_t* p = &i.pixels[((size_t)y * 16 + x) * 3];
            p[0] = x < 8 ? 200 : 0, p[2] = x < 8 ? 0 : 255;  // red left, blue right
        }
    Image m = img(16, 8, 1);
    for (int y = 0; y < 8; ++y)
        for (int x = 8; x < 16; ++x) m.pixels[(size_t)y * 16 + x] = 255;  // the blue half is masked
    const Image f = fill_masked_area(i, m);
    for (int y = 0; y < 8; ++y)
        for (int x = 0; x < 16; ++x) {
            const uint8_t* p = &f.pixels[((size_t)y * 16 + x) * 3];
            ASSERT_EQ(p[0], 200) << x << "," << y;  // only the kept red is spread
            ASSERT_EQ(p[2], 0) << x << "," << y;
        }
}

TEST(InpaintImage, CompositeAndPaste) {
    Image g = img(2, 1, 3, 200), o = img(2, 1, 3, 100), m = img(2, 1, 1);
    m.pixels = {0, 255};
    const Image c = composite_masked(g, o, m);
    EXPECT_EQ(c.pixels, (std::vector<uint8_t>{100, 100, 100, 200, 200, 200}));
    m.pixels = {128, 255};
    EXPECT_EQ(composite_masked(g, o, m).pixels[0], (uint8_t)((200 * 128 + 100 * 127 + 127) / 255));
    const Image p = paste_resized(img(4, 4, 3, 0), img(2, 2, 3, 9), PixelBox{1, 1, 3, 3});
    EXPECT_EQ(p.pixels[((size_t)1 * 4 + 1) * 3], 9);
    EXPECT_EQ(p.pixels[0], 0);
    EXPECT_EQ(error_of([&] { composite_masked(g, img(3, 1, 3), m); }),
              "composite: generated 2x1, original 3x1, mask 2x1 differ");
}

TEST(InpaintImage, FillNames) {
    EXPECT_EQ(parse_inpaint_fill("latent_noise"), InpaintFill::LatentNoise);
    EXPECT_EQ(parse_inpaint_fill("Latent nothing"), InpaintFill::LatentNothing);
    EXPECT_EQ(parse_inpaint_fill("0"), InpaintFill::Fill);
    EXPECT_EQ(parse_inpaint_fill("original"), InpaintFill::Original);
    EXPECT_EQ(error_of([] { parse_inpaint_fill("blur"); }),
              "unknown inpaint fill 'blur' (valid: fill (0), original (1), latent-noise (2), latent-nothing (3))");
}

}  // namespace
}  // namespace nuance
