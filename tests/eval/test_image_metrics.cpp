#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "../test_util.h"
#include "eval/image_metrics.h"

using namespace nuance;

namespace {
Image make(int w, int h, const std::function<int(int, int, int)>& f) {
    Image im;
    im.width = w;
    im.height = h;
    im.pixels.resize((size_t)w * h * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < 3; ++c) im.pixels[((size_t)y * w + x) * 3 + c] = (uint8_t)(((f(x, y, c) % 256) + 256) % 256);
    return im;
}
}  // namespace

// Reference values: scikit-image 0.26 structural_similarity(gaussian_weights=True, sigma=1.5,
// use_sample_covariance=False, data_range=255, channel_axis=2) and peak_signal_noise_ratio(data_range=255) on the
// same images built in numpy (tools/make_ssim_reference.py: the image formulas below, with Python's %).
TEST(ImageMetrics, SsimAndPsnrMatchScikitImage) {
    const Image a = make(32, 24, [](int x, int y, int c) { return (x * 7 + y * 3 + c * 50) ^ (x * y); });
    const Image b = make(32, 24, [](int x, int y, int c) {
        return (x * 7 + y * 3 + c * 50) ^ (x * y) ^ (((x + 2 * y + c) % 5) * 9);
    });
    const Image c = make(16, 16, [](int x, int y, int ch) { return 128 + ((x - 8) * (y - 8) + ch * 3); });
    const Image d = make(16, 16, [](int x, int y, int ch) { return 40 + 2 * ((x - 8) * (y - 8) + ch * 3); });
    EXPECT_NEAR(ssim(a, b), 0.9352380210279693, 1e-12);
    EXPECT_NEAR(ssim(c, d), 0.48814368171361183, 1e-12);
    EXPECT_DOUBLE_EQ(ssim(a, a), 1.0);
    EXPECT_NEAR(psnr(a, b), 22.879624123398443, 1e-12);
    EXPECT_NEAR(psnr(c, d), 9.008893138204787, 1e-12);
    EXPECT_TRUE(std::isinf(psnr(a, a)));
}

TEST(ImageMetrics, HandComputedPsnrAndPooling) {
    const Image a = make(4, 4, [](int, int, int) { return 10; });
    const Image b = make(4, 4, [](int, int, int) { return 11; });  // MSE 1
    const Image c = make(4, 4, [](int, int, int) { return 13; });  // MSE 9 against a
    EXPECT_DOUBLE_EQ(image_mse(a, b), 1.0);
    EXPECT_NEAR(psnr(a, b), 20 * std::log10(255.0), 1e-12);  // 48.13 dB
    EXPECT_NEAR(psnr_pooled({a, a}, {b, c}), 10 * std::log10(255.0 * 255.0 / 5.0), 1e-12);  // mean MSE (1 + 9) / 2
    EXPECT_TRUE(std::isinf(psnr_pooled({a}, {a})));
}

TEST(ImageMetrics, MismatchedOrTinyImagesAreErrors) {
    const Image a = make(16, 16, [](int, int, int) { return 1; });
    const Image b = make(16, 12, [](int, int, int) { return 1; });
    EXPECT_EQ(test::error_of([&] { ssim(a, b); }), "ssim: images of 16x16x3 and 16x12x3 differ in size");
    EXPECT_EQ(test::error_of([&] { psnr(a, b); }), "mse: images of 16x16x3 and 16x12x3 differ in size");
    const Image t = make(8, 8, [](int, int, int) { return 1; });
    EXPECT_EQ(test::error_of([&] { ssim(t, t); }), "ssim: images of 8x8 are smaller than the 11x11 window");
    EXPECT_EQ(test::error_of([&] { psnr_pooled({a}, {}); }),
              "psnr: 1 images against 0 (need the same number, at least one)");
    Image broken = a;
    broken.pixels.pop_back();
    EXPECT_THAT(test::error_of([&] { image_mse(a, broken); }), ::testing::HasSubstr("pixel buffer does not match"));
}
