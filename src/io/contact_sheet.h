// A contact sheet: images upscaled (nearest neighbour, so 32 px emoji stay crisp) in a grid on white, each with
// its caption under it in the built-in 5x7 font (io/bitmap_font.h).
#pragma once
#include <string>
#include <vector>

#include "io/image.h"

namespace nuance {

struct ContactSheetOptions {
    int scale = 4;          // each image pixel becomes scale x scale
    int columns = 0;        // 0: min(count, 8)
    int padding = 4;        // white space around and between cells, in pixels
    int caption_lines = 3;  // lines of text under each image (wrapped at the cell width)
};

// Cells are as large as the largest image (smaller ones sit at the top-left of theirs). captions: one per image,
// or none at all. The layout, for n images, c columns, r = ceil(n / c) rows, cell w x h = the largest image x scale:
//   width  = c * (w + padding) + padding
//   height = r * (h + 2 + caption_lines * 9 + padding) + padding      (9 = 7 px glyphs + 2 px line gap)
Image contact_sheet(const std::vector<Image>& images, const std::vector<std::string>& captions,
                    const ContactSheetOptions& o = {});

}  // namespace nuance
