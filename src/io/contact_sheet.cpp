#include "io/contact_sheet.h"

#include <algorithm>

#include "core/error.h"
#include "io/bitmap_font.h"

namespace nuance {

namespace {
constexpr int kLineHeight = kGlyphHeight + 2;
constexpr int64_t kMaxSide = 32768;
}  // namespace

Image contact_sheet(const std::vector<Image>& images, const std::vector<std::string>& captions,
                    const ContactSheetOptions& o) {
    NUANCE_CHECK(!images.empty(), "contact sheet: no images");
    NUANCE_CHECK(captions.empty() || captions.size() == images.size(), "contact sheet: ", captions.size(),
                 " captions for ", images.size(), " images");
    NUANCE_CHECK(o.scale >= 1 && o.scale <= 64, "contact sheet: scale must be in 1..64, got ", o.scale);
    NUANCE_CHECK(o.columns >= 0 && o.padding >= 0 && o.padding <= 1024 && o.caption_lines >= 0 &&
                     o.caption_lines <= 64,
                 "contact sheet: bad layout (columns ", o.columns, ", padding ", o.padding, ", caption lines ",
                 o.caption_lines, ")");
    int64_t w = 0, h = 0;
    for (size_t i = 0; i < images.size(); ++i) {
        const Image& im = images[i];
        NUANCE_CHECK(im.width > 0 && im.height > 0 && (im.channels == 3 || im.channels == 4) &&
                         im.pixels.size() == (size_t)im.width * im.height * im.channels,
                     "contact sheet: image ", i, " is not a valid RGB/RGBA image (", im.width, "x", im.height, "x",
                     im.channels, ", ", im.pixels.size(), " bytes)");
        w = std::max<int64_t>(w, im.width);
        h = std::max<int64_t>(h, im.height);
    }
    const int64_t n = (int64_t)images.size();
    const int64_t cols = o.columns > 0 ? std::min<int64_t>(o.columns, n) : std::min<int64_t>(n, 8);
    const int64_t rows = (n + cols - 1) / cols;
    const int64_t cw = w * o.scale, ih = h * o.scale;
    const int64_t text_h = o.caption_lines > 0 ? 2 + (int64_t)o.caption_lines * kLineHeight : 0;
    const int64_t ch = ih + text_h;
    const int64_t sw = cols * (cw + o.padding) + o.padding, sh = rows * (ch + o.padding) + o.padding;
    NUANCE_CHECK(sw <= kMaxSide && sh <= kMaxSide, "contact sheet: ", sw, "x", sh, " pixels is larger than ", kMaxSide,
                 " on a side (fewer images, columns or a smaller scale)");

    Image sheet;
    sheet.width = (int)sw;
    sheet.height = (int)sh;
    sheet.channels = 3;
    sheet.pixels.assign((size_t)sw * sh * 3, 255);
    const int max_chars = std::max<int>(1, (int)((cw + 1) / kGlyphAdvance));
    for (int64_t i = 0; i < n; ++i) {
        const Image& im = images[(size_t)i];
        const int64_t x0 = o.padding + (i % cols) * (cw + o.padding), y0 = o.padding + (i / cols) * (ch + o.padding);
        for (int64_t y = 0; y < (int64_t)im.height * o.scale; ++y)
            for (int64_t x = 0; x < (int64_t)im.width * o.scale; ++x) {
                const uint8_t* s = &im.pixels[((size_t)(y / o.scale) * im.width + (size_t)(x / o.scale)) * im.channels];
                uint8_t* d = &sheet.pixels[((size_t)(y0 + y) * sw + (size_t)(x0 + x)) * 3];
                if (im.channels == 4) {  // over white, like the data set's transparent emoji
                    for (int c = 0; c < 3; ++c) d[c] = (uint8_t)((s[c] * s[3] + 255 * (255 - s[3]) + 127) / 255);
                } else {
                    d[0] = s[0];
                    d[1] = s[1];
                    d[2] = s[2];
                }
            }
        if (captions.empty() || o.caption_lines == 0) continue;
        const std::vector<std::string> lines = wrap_text(captions[(size_t)i], max_chars, o.caption_lines);
        for (size_t l = 0; l < lines.size(); ++l)
            draw_text(sheet, (int)x0, (int)(y0 + ih + 2 + (int64_t)l * kLineHeight), lines[l], {0, 0, 0});
    }
    return sheet;
}

}  // namespace nuance
