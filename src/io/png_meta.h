// PNG text metadata (tEXt / zTXt / iTXt chunks), e.g. A1111's "parameters". Read straight from the chunk
// stream, without decoding the image.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nuance {

// (keyword, value) pairs in file order; values are UTF-8 (tEXt/zTXt Latin-1 is converted).
using PngText = std::vector<std::pair<std::string, std::string>>;

PngText read_png_text(const std::string& path);
// `name` is used in error messages.
PngText parse_png_text(const uint8_t* data, size_t size, const std::string& name = "<memory>");

// Helpers shared with the PNG writer.
bool is_ascii(const std::string& s);
bool is_valid_utf8(const std::string& s);
std::string latin1_to_utf8(const std::string& s);
// Throws unless `key` is a legal PNG keyword (1-79 printable ASCII characters, no leading/trailing/double spaces).
void check_png_keyword(const std::string& key);

}  // namespace nuance
