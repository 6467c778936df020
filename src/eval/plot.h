// Charts for `nuance eval --plot`: a line chart drawn with the built-in 5x7 font (io/bitmap_font.h) on an 8-bit
// image (io/image.h), a text panel for single numbers, and side-by-side composition with a contact sheet.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "io/image.h"

namespace nuance {

struct ChartSeries {
    std::string label;
    std::vector<double> x, y;  // same length; non-finite points are skipped
};

struct ChartSpec {
    std::string title, x_label, y_label;
    std::vector<ChartSeries> series;
    int width = 640, height = 420;  // 200..4096 each
};

Image line_chart(const ChartSpec& spec);
// Lines of text (label, value) in a white panel, the values 2x larger.
Image value_panel(const std::string& title, const std::vector<std::pair<std::string, std::string>>& rows,
                  int width = 420);
// `a` and `b` side by side on white, top-aligned, `gap` px apart.
Image beside(const Image& a, const Image& b, int gap = 16);
// Thumbnails (longest side `size`, Lanczos) in a captioned contact sheet, at most `max` images.
Image sample_sheet(const std::vector<Image>& images, const std::vector<std::string>& captions, int size = 128,
                   int max = 16);

}  // namespace nuance
