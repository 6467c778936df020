// Cheap live previews: latents -> RGB with a fixed linear map per latent space (A1111's "Approx cheap",
// sd.cpp's "proj" preview), nearest-upscaled so the longest side is near `target_side`. Costs microseconds,
// unlike a VAE decode.
#pragma once
#include <concepts>

#include "io/image.h"
#include "models/diffusion_model.h"

namespace nuance {
class TinyAutoencoder;
}

namespace nuance::server {

// latents: [1, C, h, w] (or [C, h, w]) in the model's latent space (already multiplied by the VAE scaling
// factor), any float dtype; `lf.rgb_factors` maps the C channels to RGB. Returns an RGB image; width/height 0 when
// the latent space has no approximation (no factors, or a channel count other than theirs).
Image latent_preview(const Tensor& latents, const LatentFormat& lf, int target_side = 256);

// A preview from the sampler's current state: the x0 estimate when the pipeline reports one, else the noisy sample
// x = x0 + sigma * eps rescaled to unit variance (x / sqrt(1 + sigma^2)).
// With a tiny autoencoder (models/taesd) of the model's latent channels, that estimate is decoded by it instead:
// a full-size preview (A1111's "TAESD" live preview mode), milliseconds to a second on a CPU at 512x512.
Image progress_preview(const Tensor& latents, double sigma, const Tensor* denoised, const LatentFormat& lf,
                       int target_side = 256, const TinyAutoencoder* tae = nullptr);

// The x0 estimate of a GenerateProgress when the pipeline reports one (a `denoised` member), else nullptr.
template <class P>
const Tensor* progress_denoised(const P& p) {
    if constexpr (requires { { p.denoised } -> std::convertible_to<const Tensor*>; }) {
        return p.denoised;
    } else if constexpr (requires { p.denoised.defined(); }) {
        return &p.denoised;
    } else {
        return nullptr;
    }
}

}  // namespace nuance::server
