// Pixel-space diffusion (diffusers' DDPMPipeline layout: unet/ + scheduler/, no vae/; `nuance train --model ddpm`
// exports it, with a text encoder for its class-name captions): the sampler's x is the image itself, [1, C, H, W]
// in [-1, 1] with C = 1 (grey) or 3 (RGB). These are the two places where generate() would use a VAE.
#pragma once
#include "core/tensor.h"
#include "io/image.h"
#include "models/sd/stable_diffusion.h"

namespace nuance {

// img2img start for a pixel-space model: the init image resized to w x h, in [-1, 1], with the model's channel
// count (RGB averaged to grey for a 1-channel model).
Tensor pixel_space_encode(const StableDiffusionModel& m, const Image& img, int w, int h);
// The sample as an image: clamped to [-1, 1]; grey for 1 channel. Returns the tensor decoders return ([1, C, H, W]).
Tensor pixel_space_decode(const StableDiffusionModel& m, const Tensor& x);

}  // namespace nuance
