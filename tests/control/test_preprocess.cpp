// ControlNet preprocessors (src/control/preprocess.h): canny against OpenCV (tools/make_canny_reference.py),
// the simple modules by hand, spec parsing and its errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "control/preprocess.h"
#include "models/controlnet/control_stack.h"
#include "io/json_file.h"
#include "../test_util.h"

using namespace nuance;

namespace {

const std::string kData = std::string(NUANCE_TEST_DATA) + "/control/";

Image solid(int w, int h, std::vector<uint8_t> rgb) {
    Image im{w, h, 3, {}};
    for (int i = 0; i < w * h; ++i) im.pixels.insert(im.pixels.end(), rgb.begin(), rgb.end());
    return im;
}

}  // namespace

// Every case exact: the same edge pixels as cv2.Canny (OpenCV 5.1.0 from PyPI; canny.cpp is unchanged since 4.x).
TEST(Canny, MatchesOpenCV) {
    const nlohmann::json info = read_json_file(kData + "info.json");
    ASSERT_GE(info["cases"].size(), 12u);
    for (const auto& c : info["cases"]) {
        const Image in = read_image(kData + c["input"].get<std::string>());
        const Image want = read_image(kData + c["expected"].get<std::string>());
        const Image got = canny(in, c["low"].get<double>(), c["high"].get<double>());
        ASSERT_EQ(got.width, want.width);
        ASSERT_EQ(got.height, want.height);
        int differ = 0, edges = 0;
        for (size_t i = 0; i < got.pixels.size(); ++i) {
            differ += got.pixels[i] != want.pixels[i * (size_t)want.channels];
            edges += got.pixels[i] != 0;
        }
        EXPECT_EQ(differ, 0) << c.dump() << ": " << differ << " pixels differ (" << edges << " edges)";
        EXPECT_EQ(edges, c["edge_pixels"].get<int>()) << c.dump();
    }
}

TEST(Canny, FlatImageHasNoEdgesAndOneStepHasTwoColumns) {
    EXPECT_EQ(canny(solid(8, 6, {90, 90, 90}), 100, 200).pixels, std::vector<uint8_t>(48, 0));
    // a vertical step 0 -> 255 between columns 3 and 4: |dx| = 4 * 255 on both columns; NMS keeps the left one
    // (m > left, m >= right), as OpenCV does.
    Image step = solid(8, 4, {0, 0, 0});
    for (int y = 0; y < 4; ++y)
        for (int x = 4; x < 8; ++x)
            for (int c = 0; c < 3; ++c) step.pixels[(size_t)(y * 8 + x) * 3 + c] = 255;
    const Image e = canny(step, 100, 200);
    for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 8; ++x) EXPECT_EQ(e.pixels[(size_t)y * 8 + x], x == 3 ? 255 : 0) << x << "," << y;
}

TEST(Preprocess, SimpleModulesByHand) {
    const Image in = solid(2, 2, {10, 200, 128});
    EXPECT_EQ(run_preprocessor(parse_preprocessor("invert", "--control-preprocess"), in).pixels,
              solid(2, 2, {245, 55, 127}).pixels);
    EXPECT_EQ(run_preprocessor(parse_preprocessor("threshold:127", "x"), in).pixels, solid(2, 2, {0, 255, 255}).pixels);
    EXPECT_EQ(run_preprocessor(parse_preprocessor("threshold:128", "x"), in).pixels, solid(2, 2, {0, 255, 0}).pixels);
    // scribble: gray = (10 + 200 + 128) / 3 = 112.7; 255 - 112.7 = 142.3 > 127 -> white
    EXPECT_EQ(run_preprocessor(parse_preprocessor("scribble", "x"), in).pixels, solid(2, 2, {255, 255, 255}).pixels);
    EXPECT_EQ(run_preprocessor(parse_preprocessor("scribble:150", "x"), in).pixels, solid(2, 2, {0, 0, 0}).pixels);
    EXPECT_EQ(run_preprocessor(parse_preprocessor("none", "x"), in).pixels, in.pixels);
    const Image t = run_preprocessor(parse_preprocessor("tile:2", "x"), solid(8, 6, {50, 60, 70}));
    EXPECT_EQ(t.width, 4);
    EXPECT_EQ(t.height, 3);
    EXPECT_EQ(t.pixels, solid(4, 3, {50, 60, 70}).pixels);
}

TEST(Preprocess, ShuffleIsSeededAndKeepsTheColours) {
    Image in = solid(32, 24, {0, 0, 0});
    for (int y = 0; y < 24; ++y)
        for (int x = 0; x < 32; ++x) in.pixels[(size_t)(y * 32 + x) * 3] = (uint8_t)(x * 8);
    const Image a = run_preprocessor(parse_preprocessor("shuffle:5", "x"), in);
    const Image b = run_preprocessor(parse_preprocessor("shuffle:5", "x"), in);
    const Image c = run_preprocessor(parse_preprocessor("shuffle:6", "x"), in);
    EXPECT_EQ(a.pixels, b.pixels);
    EXPECT_NE(a.pixels, c.pixels);
    EXPECT_NE(a.pixels, in.pixels);
    for (size_t i = 0; i < a.pixels.size(); i += 3) EXPECT_EQ(a.pixels[i + 1], 0);  // green stays 0
}

TEST(Preprocess, ProcessorResolutionResizesTheShortSide) {
    Preprocessor p = preprocessor_from_a1111("invert (from white bg & black line)", -1, -1, 16, "args[0]");
    EXPECT_EQ(p.module, "invert");
    const Image r = run_preprocessor(p, solid(64, 32, {0, 0, 0}));
    EXPECT_EQ(r.width, 32);
    EXPECT_EQ(r.height, 16);
    p = preprocessor_from_a1111("canny", 50, 150, 512, "args[0]");
    EXPECT_EQ(p.a, 50);
    EXPECT_EQ(p.b, 150);
    EXPECT_EQ(preprocessor_from_a1111("tile_resample", 2, -1, -1, "x").module, "tile");
}

TEST(Preprocess, BadSpecsAreNamedErrors) {
    const std::string w = "--control-preprocess";
    EXPECT_EQ(test::error_of([&] { parse_preprocessor("depth_midas", w); }),
              "--control-preprocess: unknown preprocessor 'depth_midas' (this build runs none, canny[:low:high], "
              "invert, threshold[:t], scribble[:t], tile[:factor], shuffle[:seed]; give an already preprocessed "
              "image with 'none' for the others)");
    EXPECT_EQ(test::error_of([&] { parse_preprocessor("canny:1x:2", w); }),
              "--control-preprocess 'canny:1x:2': '1x' is not a number");
    EXPECT_EQ(test::error_of([&] { parse_preprocessor("canny:1:2:3", w); }),
              "--control-preprocess 'canny:1:2:3': canny takes at most 2 parameters");
    EXPECT_EQ(test::error_of([&] { parse_preprocessor("threshold:300", w); }),
              "--control-preprocess 'threshold:300': threshold must be in 0..255, got 300");
    EXPECT_EQ(test::error_of([&] { parse_preprocessor("tile:0.5", w); }),
              "--control-preprocess 'tile:0.5': tile factor must be in 1..8, got 0.5");
    EXPECT_EQ(test::error_of([&] { parse_preprocessor("canny:nan", w); }),
              "--control-preprocess 'canny:nan': 'nan' is not a number");
    EXPECT_EQ(test::error_of([&] { parse_preprocessor("shuffle:-1", w); }),
              "--control-preprocess 'shuffle:-1': the shuffle seed must be a whole number >= 0, got -1");
    EXPECT_EQ(test::error_of([&] { preprocessor_from_a1111("canny", 1, 2, 100000, "args[0]"); }),
              "args[0]: processor_res must be in 64..4096 (or -1), got 100000");
    EXPECT_EQ(test::error_of([&] { canny(Image{}, 1, 2); }), "canny: expected a 1, 3 or 4 channel image, got 0x0x3");
}

// A hostile aspect ratio cannot make a huge intermediate image: processor_res is refused, the resize modes crop
// or fit within the output size.
TEST(Preprocess, ExtremeAspectRatiosStayBounded) {
    const Image thin = solid(1, 4096, {7, 7, 7});
    Preprocessor p = parse_preprocessor("invert", "x");
    p.resolution = 4096;
    EXPECT_EQ(test::error_of([&] { run_preprocessor(p, thin); }),
              "preprocessor: processor_res 4096 makes a 4096x16777216 image from 1x4096 (more than 8192x8192 pixels)");
    for (ControlResize m : {ControlResize::Just, ControlResize::Crop, ControlResize::Fill}) {
        const Image r = fit_control_image(thin, 64, 48, m);
        EXPECT_EQ(r.width, 64);
        EXPECT_EQ(r.height, 48);
    }
    // crop keeps the centre: a 4x2 image of two colours cropped to a square shows only the middle columns
    Image two = solid(4, 2, {0, 0, 0});
    for (int y = 0; y < 2; ++y)
        for (int x = 1; x < 3; ++x) two.pixels[(size_t)(y * 4 + x) * 3] = 200;
    const Image sq = fit_control_image(two, 2, 2, ControlResize::Crop);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(sq.pixels[(size_t)i * 3], 200) << i;
    const Image fill = fit_control_image(two, 4, 4, ControlResize::Fill);  // 4x2 centred on black, rows 1-2
    EXPECT_EQ(fill.pixels[(size_t)(0 * 4 + 1) * 3], 0);
    EXPECT_EQ(fill.pixels[(size_t)(1 * 4 + 1) * 3], 200);
}
