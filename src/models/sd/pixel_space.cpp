// Shape letters: C image channels (1 or 3), H/W image size.
#include "models/sd/pixel_space.h"

#include "core/error.h"
#include "ops/elementwise.h"

namespace nuance {

Tensor pixel_space_encode(const StableDiffusionModel& m, const Image& img, int w, int h) {
    NUANCE_CHECK(m.pixel_space(), "pixel_space_encode: model '", m.name, "' has a VAE");
    const Image sized = (img.width == w && img.height == h) ? img : resize_image(img, w, h);
    const Tensor rgb = image_to_tensor(sized);  // [1, 3, H, W] in [-1, 1]
    const int64_t C = m.latent_channels();
    if (C == 3) return rgb;
    NUANCE_CHECK(C == 1, "model '", m.name, "': a pixel-space UNet takes 1 or 3 channels, not ", C);
    // ITU-R BT.601 luma, as PIL's convert("L") (Fashion-MNIST style grey images)
    return rgb.slice(1, 0, 1) * 0.299f + rgb.slice(1, 1, 2) * 0.587f + rgb.slice(1, 2, 3) * 0.114f;
}

Tensor pixel_space_decode(const StableDiffusionModel& m, const Tensor& x) {
    NUANCE_CHECK(m.pixel_space(), "pixel_space_decode: model '", m.name, "' has a VAE");
    NUANCE_CHECK(x.dim() == 4 && x.size(0) == 1 && (x.size(1) == 1 || x.size(1) == 3),
                 "pixel_space_decode: expected [1, 1 or 3, H, W], got ", shape_str(x.shape()));
    return x.contiguous();
}

}  // namespace nuance
