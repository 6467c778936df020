// 8-bit images: PNG (libpng) and JPEG (libjpeg) decoding, PNG encoding with text metadata,
// Lanczos resizing, and the image <-> tensor conversions of the diffusers/A1111 pipelines.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/png_meta.h"

namespace nuance {

// Row-major HWC, 8 bits per channel. channels: 3 (RGB) or 4 (RGBA); 1 (gray) is accepted by the writers.
struct Image {
    int width = 0, height = 0, channels = 3;
    std::vector<uint8_t> pixels;
};

// Decoders pick the format from the magic bytes. Any PNG (bit depth 1-16, palette, gray, alpha, interlaced)
// or JPEG (gray, YCbCr, CMYK) becomes RGB (alpha dropped) or, with the _rgba variants, RGBA (opaque if none).
// Unreadable, unsupported or corrupt input throws an Error naming the file.
Image read_image(const std::string& path);
Image read_image_rgba(const std::string& path);
// `channels` is 3 or 4; `name` names the data in error messages.
Image decode_image(const uint8_t* data, size_t size, int channels = 3, const std::string& name = "<memory>");

// Each text chunk is written as tEXt when its value is ASCII, as iTXt (UTF-8) otherwise.
// A1111 stores its generation settings under the key "parameters".
std::vector<uint8_t> encode_png(const Image& image, const PngText& text_chunks = {});
void write_png(const std::string& path, const Image& image, const PngText& text_chunks = {});

// [1, 3, H, W] F32 in [-1, 1]: x / 255 * 2 - 1, computed in f32 as diffusers/A1111 do (gray is replicated,
// alpha dropped).
Tensor image_to_tensor(const Image& image);
// From [1, C, H, W] or [C, H, W] (C = 1, 3 or 4), any float dtype, in [-1, 1]:
// u8 = round_half_even(clamp(x / 2 + 0.5, 0, 1) * 255) in f32, numpy's `(image * 255).round().astype("uint8")`.
Image tensor_to_image(const Tensor& t);

// Lanczos-3 resampling with PIL's algorithm (antialiased when shrinking, 8-bit fixed-point accumulation),
// matching PIL's Image.resize(size, LANCZOS) used by A1111 for init images. Channels are filtered independently.
Image resize_image(const Image& image, int width, int height);

}  // namespace nuance
