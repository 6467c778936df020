// Folders of images for the metrics (`nuance eval lpips|clip-score|pr`): listing, pairing by file name, and the
// caption A1111/nuance store in a PNG's "parameters" text.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace nuance {

// The .png / .jpg / .jpeg files (any case) directly in `dir`, sorted by name (byte order), as full paths. Errors:
// `dir` is not a folder, holds no images, or more than `max_images`.
std::vector<std::string> list_images(const std::string& dir, size_t max_images = 1000000);

// Pairs the images of two folders by file name: (a/NAME, b/NAME) for every NAME of `a`, in name order. A name in one
// folder only is an Error naming it, the folder, and how many are unpaired.
std::vector<std::pair<std::string, std::string>> pair_images(const std::string& dir_a, const std::string& dir_b);

// The prompt of an A1111 infotext ("<prompt>\nNegative prompt: ...\nSteps: ..."): the text before the first line
// that starts with "Negative prompt: " or the last line when that starts with "Steps: ".
std::string caption_from_infotext(const std::string& infotext);
// The "parameters" text of a PNG (Error naming the file when it has none), through caption_from_infotext.
std::string caption_from_png(const std::string& path);

// Lines of a prompt file (UTF-8, '\n' or '\r\n'), empty lines skipped; Error naming the file when it has none or
// is not valid UTF-8. At most `max_lines`.
std::vector<std::string> read_prompt_lines(const std::string& path, size_t max_lines = 1000000);

// Checks a report file name before any work: not a folder, in a folder that exists. Error naming it.
void check_report_path(const std::string& path);

}  // namespace nuance
