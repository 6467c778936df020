// Cheap live previews: latents -> RGB with a fixed linear map per latent space (A1111's "Approx cheap",
// sd.cpp's "proj" preview), nearest-upscaled so the longest side is near `target_side`. Costs microseconds,
// unlike a VAE decode.
#pragma once
#include <concepts>

#include "io/image.h"
#include "models/stable_diffusion.h"

namespace nuance::server {

// latents: [1, 4, h, w] (or [4, h, w]) in the UNet's latent space (already multiplied by the VAE scaling
// factor), any float dtype. Returns an RGB image; width/height 0 when the latent space has no approximation
// (channel count other than 4).
Image latent_preview(const Tensor& latents, SDFamily family, int target_side = 256);

// A preview from the sampler's current state: the x0 estimate when the pipeline reports one, else the noisy sample
// x = x0 + sigma * eps rescaled to unit variance (x / sqrt(1 + sigma^2)).
Image progress_preview(const Tensor& latents, double sigma, const Tensor* denoised, SDFamily family,
                       int target_side = 256);

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
