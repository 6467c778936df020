// The 5x7 bitmap font and contact sheets (src/io/bitmap_font.h, src/io/contact_sheet.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "io/bitmap_font.h"
#include "io/contact_sheet.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;

Image solid(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
    Image img;
    img.width = w;
    img.height = h;
    img.channels = 3;
    for (int i = 0; i < w * h; ++i) img.pixels.insert(img.pixels.end(), {r, g, b});
    return img;
}

int64_t count_color(const Image& img, int x0, int y0, int x1, int y1, std::array<uint8_t, 3> c) {
    int64_t n = 0;
    for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x) {
            const uint8_t* p = &img.pixels[((size_t)y * img.width + x) * img.channels];
            n += p[0] == c[0] && p[1] == c[1] && p[2] == c[2];
        }
    return n;
}

TEST(BitmapFont, GlyphsAndText) {
    // 'A' = 0E 11 11 11 1F 11 11: 3 + 2 + 2 + 2 + 5 + 2 + 2 = 18 pixels.
    Image img = solid(20, 10, 255, 255, 255);
    draw_text(img, 1, 1, "A", {0, 0, 0});
    EXPECT_EQ(count_color(img, 0, 0, 20, 10, {0, 0, 0}), 18);
    // Top row of 'A' is .XXX. at x = 2..4, y = 1.
    EXPECT_EQ(count_color(img, 2, 1, 5, 2, {0, 0, 0}), 3);
    EXPECT_EQ(count_color(img, 1, 1, 2, 2, {0, 0, 0}), 0);
    // Scale 2 quadruples the pixels; text clipped at the border does not crash.
    Image big = solid(20, 20, 255, 255, 255);
    draw_text(big, 0, 0, "A", {9, 9, 9}, 2);
    EXPECT_EQ(count_color(big, 0, 0, 20, 20, {9, 9, 9}), 72);
    draw_text(big, 15, 15, "WWW", {1, 2, 3});
    draw_text(big, -30, -3, "hello", {1, 2, 3});
    // Every printable character but the space has pixels; the space has none.
    for (int c = 33; c <= 126; ++c) {
        int bits = 0;
        for (uint8_t row : glyph_rows((char)c)) bits += __builtin_popcount(row);
        EXPECT_GT(bits, 0) << (char)c;
    }
    for (uint8_t row : glyph_rows(' ')) EXPECT_EQ(row, 0);
    EXPECT_EQ(text_width("abc"), 17);
    EXPECT_EQ(text_width(""), 0);
    EXPECT_EQ(printable_ascii("caf\xc3\xa9 \xe2\x98\xba\t!"), "caf? ?" "?!");  // split: "??!" is a trigraph
    EXPECT_THAT(error_of([&] { draw_text(img, 0, 0, "x", {0, 0, 0}, 0); }), HasSubstr("scale must be in 1..64"));
}

TEST(BitmapFont, WrapText) {
    EXPECT_EQ(wrap_text("grinning face with big eyes", 10, 2), (std::vector<std::string>{"grinning", "face wit.."}));
    EXPECT_EQ(wrap_text("grinning face", 20, 3), (std::vector<std::string>{"grinning face"}));
    EXPECT_EQ(wrap_text("abcdefghij", 4, 3), (std::vector<std::string>{"abcd", "efgh", "ij"}));
    EXPECT_TRUE(wrap_text("", 4, 3).empty());
    EXPECT_THAT(error_of([] { wrap_text("a", 0, 1); }), HasSubstr("must be >= 1"));
}

TEST(ContactSheet, LayoutPixelsAndCaptions) {
    // 5 images of 8x8 at scale 4 in the default 5 columns: cell 32 px + 2 + 3 lines * 9 = 61 px tall.
    std::vector<Image> images;
    for (int i = 0; i < 5; ++i) images.push_back(solid(8, 8, (uint8_t)(40 * i), 100, 200));
    const std::vector<std::string> captions = {"red apple", "", "a much longer caption that wraps", "x", "y"};
    ContactSheetOptions o;
    const Image s = contact_sheet(images, captions, o);
    EXPECT_EQ(s.width, 5 * (32 + 4) + 4);   // 184
    EXPECT_EQ(s.height, 1 * (61 + 4) + 4);  // 69
    EXPECT_EQ(s.channels, 3);
    // Image 2 fills its 32x32 square at x = 4 + 2 * 36 = 76, y = 4.
    EXPECT_EQ(count_color(s, 76, 4, 108, 36, {80, 100, 200}), 32 * 32);
    // Captions are black text under the images; the empty one leaves its cell white.
    EXPECT_GT(count_color(s, 4, 38, 36, 65, {0, 0, 0}), 20);
    EXPECT_EQ(count_color(s, 40, 36, 72, 65, {255, 255, 255}), 32 * 29);
    EXPECT_GT(count_color(s, 76, 38 + 18, 108, 65, {0, 0, 0}), 0);  // third line of the long caption

    // 10 images in 4 columns: 3 rows; caption_lines = 0 leaves no text rows.
    std::vector<Image> ten(10, solid(4, 6, 0, 0, 0));
    o.columns = 4;
    o.scale = 2;
    o.caption_lines = 0;
    const Image t = contact_sheet(ten, {}, o);
    EXPECT_EQ(t.width, 4 * (8 + 4) + 4);
    EXPECT_EQ(t.height, 3 * (12 + 4) + 4);
}

TEST(ContactSheet, Errors) {
    EXPECT_THAT(error_of([] { contact_sheet({}, {}); }), HasSubstr("no images"));
    EXPECT_THAT(error_of([] { contact_sheet({solid(2, 2, 0, 0, 0)}, {"a", "b"}); }),
                HasSubstr("2 captions for 1 images"));
    Image broken = solid(2, 2, 0, 0, 0);
    broken.pixels.resize(3);
    EXPECT_THAT(error_of([&] { contact_sheet({broken}, {}); }), HasSubstr("image 0 is not a valid RGB/RGBA image"));
    ContactSheetOptions o;
    o.scale = 64;
    o.columns = 1000;
    EXPECT_THAT(error_of([&] { contact_sheet(std::vector<Image>(1000, solid(32, 32, 0, 0, 0)), {}, o); }),
                HasSubstr("larger than 32768"));
}

}  // namespace
}  // namespace nuance
