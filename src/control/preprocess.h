// ControlNet preprocessors that need no model, in C++ (A1111's sd-webui-controlnet module names in brackets):
//   canny:LOW:HIGH   [canny]          OpenCV's Canny (3x3 Sobel, L1 gradient, hysteresis) on the RGB image
//   invert           [invert]         255 - x
//   threshold:T      [threshold]      255 where a channel > T, else 0 (per channel)
//   scribble:T       [scribble]       dark strokes on light paper -> white strokes on black: 255 where 255-gray > T
//   tile:F           [tile_resample]  downscale by F >= 1 (the pipeline scales it back to the output size)
//   shuffle[:SEED]   [shuffle]        content shuffle: a smooth random flow field remaps the image (seeded)
//   none             [none]           the image as is
// Every other module (depth, openpose, lineart ... which need models) is refused by name; such control images are
// used as they are (module "none").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/image.h"

namespace nuance {

struct Preprocessor {
    std::string module = "none";  // canonical name: none, canny, invert, threshold, scribble, tile, shuffle
    double a = -1, b = -1;        // module parameters (A1111 threshold_a / threshold_b); < 0: the module's default
    uint64_t seed = 0;            // shuffle
    int resolution = 0;           // > 0: short side resized to this first (A1111 processor_res); 0: as given
};

// "canny:100:200", "invert", "threshold:127", "scribble", "tile:2", "shuffle:42", "none"; also the A1111 names
// ("tile_resample", "canny" ...). Error naming `what` (the flag or field) and the value.
Preprocessor parse_preprocessor(const std::string& spec, const std::string& what);
// From A1111 fields (module, threshold_a, threshold_b, processor_res); module names as the extension's.
Preprocessor preprocessor_from_a1111(const std::string& module, double threshold_a, double threshold_b,
                                     int processor_res, const std::string& what);
// The modules this build runs, in the extension's names (GET /controlnet/module_list).
std::vector<std::string> preprocessor_modules();

// Runs it: an RGB image of the same size (tile: smaller). Errors name the module and the parameter.
Image run_preprocessor(const Preprocessor& p, const Image& in);

// OpenCV cv::Canny(img, low, high) with apertureSize 3, L2gradient false on an 8-bit 1- or 3-channel image; the
// result is 0/255 with one channel (replicated to RGB by run_preprocessor).
Image canny(const Image& in, double low, double high);

}  // namespace nuance
