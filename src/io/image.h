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
// Every libjpeg warning (truncated or corrupt data) is an error. `max_pixels` is checked on the header, before any
// pixel is allocated or decoded (decompression bombs); the default is the decoders' own hard cap (16k x 16k).
constexpr uint64_t kMaxDecodePixels = 1ull << 28;
// Input images of the CLI and the server (init images, masks; resized to the output size anyway): 4096x2048.
constexpr uint64_t kMaxInputImagePixels = 4096ull * 2048ull;
Image read_image(const std::string& path, uint64_t max_pixels = kMaxDecodePixels);
Image read_image_rgba(const std::string& path);
// `channels` is 3 or 4; `name` names the data in error messages.
Image decode_image(const uint8_t* data, size_t size, int channels = 3, const std::string& name = "<memory>",
                   uint64_t max_pixels = kMaxDecodePixels);

// Each text chunk is written as tEXt when its value is ASCII, as iTXt (UTF-8) otherwise.
// A1111 stores its generation settings under the key "parameters".
std::vector<uint8_t> encode_png(const Image& image, const PngText& text_chunks = {});
// Encoded in memory, then written atomically (io/atomic_file.h): a full disk or a crash leaves the old file intact.
void write_png(const std::string& path, const Image& image, const PngText& text_chunks = {});

// ---- output files by extension (io/image_write.cpp) ----
enum class ImageFormat { Png, Jpeg };
// .png -> Png, .jpg/.jpeg -> Jpeg (any case); any other extension, or none, is an Error naming the path.
ImageFormat image_format_for_path(const std::string& path);
// Checks before any work is spent on an image: a known extension, not a folder, an existing folder that this
// process may write into. Throws Error naming the path (InvalidArgument / NotFound / Io).
void check_output_path(const std::string& path);
// Baseline JPEG, 4:2:0, quality 1..100; `comment` (e.g. the A1111 parameters) goes into COM markers.
std::vector<uint8_t> encode_jpeg(const Image& image, int quality = 95, const std::string& comment = "");
// PNG (with the text chunks) or JPEG (the "parameters" text as a comment) by the extension, written atomically.
void write_image(const std::string& path, const Image& image, const PngText& text_chunks = {});
// Writes bytes atomically: a temp file in the same folder, fsync, rename.
void write_bytes_atomic(const std::string& path, const std::vector<uint8_t>& bytes);

// [1, 3, H, W] F32 in [-1, 1]: x / 255 * 2 - 1, computed in f32 as diffusers/A1111 do (gray is replicated,
// alpha dropped).
Tensor image_to_tensor(const Image& image);
// From [1, C, H, W] or [C, H, W] (C = 1, 3 or 4), any float dtype, in [-1, 1]:
// u8 = round_half_even(clamp(x / 2 + 0.5, 0, 1) * 255) in f32, numpy's `(image * 255).round().astype("uint8")`.
Image tensor_to_image(const Tensor& t);

// Resampling with PIL's algorithm (antialiased when shrinking, 8-bit fixed-point accumulation, uint8 between the
// horizontal and the vertical pass): Lanczos-3 = PIL's Image.resize(size, LANCZOS) used by A1111 for init images;
// Bicubic (a = -0.5) = Image.resize(size, BICUBIC) as transformers' CLIPImageProcessor calls it. Channels are
// filtered independently.
enum class ResampleFilter { Lanczos, Bicubic };
Image resize_image(const Image& image, int width, int height, ResampleFilter filter = ResampleFilter::Lanczos);

}  // namespace nuance
