// Pixel-side helpers of inpainting and outpainting (A1111 processing.py / masking.py behaviours): masks from
// images, the Gaussian mask blur, the "only masked" crop region, the masked-area fill, the outpaint canvas and the
// final composite. Masks are 1-channel 8-bit Images (255 = repaint).
#pragma once
#include <cstdint>
#include <string>

#include "io/image.h"

namespace nuance {

// How a mask image says "repaint".
enum class MaskConvention {
    White,        // A1111 / CLI: white = repaint. A PNG whose alpha is not all opaque gives its alpha instead,
                  // binarised at > 128 (A1111 create_binary_mask: the painted strokes are opaque); else the grey
                  // level (PIL convert('L'): (19595 R + 38470 G + 7471 B + 2^15) >> 16).
    Transparent,  // OpenAI /v1/images/edits: fully transparent (alpha 0) = edit, everything else kept.
};
// The mask of an RGB/RGBA (or 1-channel) image; `what` names it in errors (size 0, bad channel count).
Image mask_from_image(const Image& img, MaskConvention c, const std::string& what);

// A 1-channel image resized to w x h (Lanczos, as the init image), unchanged when it already has that size.
Image resize_mask(const Image& mask, int w, int h);
Image invert_mask(const Image& mask);
// A1111's mask blur: OpenCV GaussianBlur with sigma = blur and kernel 2*int(2.5*blur + 0.5) + 1 along x, then y
// (BORDER_REFLECT_101, rounded to 8 bits after each pass). blur 0: unchanged. blur must be in 0..kMaxMaskBlur.
constexpr int kMaxMaskBlur = 256;
Image blur_mask(const Image& mask, int blur);
// The largest value of the mask, 0 when it is all black.
uint8_t mask_max(const Image& mask);

// A rectangle [x1, x2) x [y1, y2) in pixels.
struct PixelBox {
    int x1 = 0, y1 = 0, x2 = 0, y2 = 0;
    int width() const { return x2 - x1; }
    int height() const { return y2 - y1; }
};
// A1111's "only masked" region: the bounding box of the nonzero mask pixels grown by `padding` (clamped to the
// mask, get_crop_region_v2), then grown along one axis to the aspect ratio of w x h (expand_crop_region).
// Returns false when the mask is all black.
bool inpaint_crop_region(const Image& mask, int padding, int w, int h, PixelBox* box);
Image crop_image(const Image& img, const PixelBox& box);

// A1111 masking.fill (inpainting_fill 0): the masked area's pixels replaced by the colours around it, blurred at
// radii 256, 64, 16, 4, 2, 0 and layered (premultiplied alpha; PIL's three extended box blurs, in float).
Image fill_masked_area(const Image& img, const Image& mask);

// Outpainting canvas: img moved by (left, top) on a (w + left + right) x (h + top + bottom) canvas whose new area
// is the image's edge pixels stretched outwards plus seeded Gaussian noise of std `noise` (0..255 units).
Image outpaint_canvas(const Image& img, int left, int right, int top, int bottom, float noise, uint64_t seed);
// The outpainting mask: 255 on the new area and `overlap` pixels into the image (0 elsewhere).
Image outpaint_mask(int w, int h, int left, int right, int top, int bottom, int overlap);

// out = generated * m + original * (1 - m), m = mask / 255, per pixel (A1111's overlay of the original outside the
// mask); generated and original have the same size (RGB), mask too (1 channel).
Image composite_masked(const Image& generated, const Image& original, const Image& mask);
// Pastes `patch` resized to box's size into a copy of `base` at box.
Image paste_resized(const Image& base, const Image& patch, const PixelBox& box);
// RGB copy of an RGB or RGBA image (alpha dropped).
Image to_rgb(const Image& img);

}  // namespace nuance
