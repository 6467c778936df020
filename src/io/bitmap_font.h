// A tiny 5x7 bitmap font for printable ASCII (32..126), in the style of the HD44780 character ROM, so labels can be
// drawn on images (contact sheets) with no font library. Anything else (control bytes, each UTF-8 sequence of a
// non-ASCII character) is drawn as '?'.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/image.h"

namespace nuance {

constexpr int kGlyphWidth = 5;
constexpr int kGlyphHeight = 7;
constexpr int kGlyphAdvance = 6;  // glyph + one column of space

// The 7 rows of a character, top first; bit 4 is the leftmost column.
const std::array<uint8_t, 7>& glyph_rows(char c);

// The characters draw_text() would draw: ASCII kept, every other UTF-8 character (or stray byte) -> '?'.
std::string printable_ascii(const std::string& utf8);

// Width in pixels of `text` at `scale` (no trailing space column).
int text_width(const std::string& text, int scale = 1);

// Draws `text` (one line) with its top-left corner at (x, y), each font pixel a scale x scale square of `color`
// (RGB; an RGBA image gets alpha 255). Pixels outside the image are clipped.
void draw_text(Image& image, int x, int y, const std::string& text, std::array<uint8_t, 3> color, int scale = 1);

// Splits `text` into at most `max_lines` lines of at most `max_chars` characters, breaking at spaces where it can
// (a longer word is cut). Text that does not fit ends the last line with "..".
std::vector<std::string> wrap_text(const std::string& text, int max_chars, int max_lines);

}  // namespace nuance
