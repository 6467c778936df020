// Inpainting and outpainting for any DiffusionModel (generate() calls in here when GenerateParams has a mask, an
// outpaint amount, or the model is an inpainting network).
//
// Pixels (generate_inpaint, A1111 img2img): the mask (white = repaint) is resized to the image, inverted, blurred
// (mask_blur); "only masked" crops the mask's box + padding grown to the output's aspect ratio and works on that
// crop at the output size; the fill mode prepares the masked area; outpainting extends the canvas (edge stretch +
// noise) with a mask over the new area and a small blurred overlap. After decoding, the result is composited with
// the original outside the mask (A1111's overlay: mask_for_overlay = min(1, 2 * blurred mask), or the blurred mask
// itself when pasting an "only masked" crop back).
//
// Latents (diffusers' StableDiffusionInpaintPipeline, the pipeline_inpaint golden case): mask_condition = mask
// binarised at 0.5; mask latents = mask_condition[8i, 8j] (nearest). An inpainting network (inpaint_channels() > 0,
// 9-channel SD UNets) takes cat([x, mask latents, VAE(image * (mask < 0.5))]) and is not blended. Any other model is
// blended: at every model call x' = m x + (1 - m) noised(image latents, sigma) (VP: x0 + sigma noise, flow:
// (1 - sigma) x0 + sigma noise, as diffusers' SD3/Flux inpaint pipelines), its estimate D' = m D + (1 - m) x0, and
// the final latents m x + (1 - m) x0; the same noise that started the sampler noises the image. At strength 1 the
// sampler starts from pure noise (diffusers is_strength_max) and the first call is not blended.
#pragma once
#include <optional>

#include "pipelines/generate.h"

namespace nuance {

// The latent-side state of one masked image, made per seed by start_inpaint.
struct InpaintSampling {
    Tensor x;              // the sampler's start (VE scaling; flow: (1 - s) x0 + s eps)
    Schedule schedule;     // the (strength-sliced) schedule
    Tensor blend_mask;     // [1, 1, h, w], 1 = repaint; undefined for inpainting networks (no blending)
    Tensor image_latents;  // the encoded image (after the latent fill modes); undefined when not needed
    Tensor noise;
    Tensor concat;         // inpainting networks: [1, 1 + C, h, w] mask latents ++ masked-image latents
    bool flow = false;
    bool pure_noise_start = false;

    bool blends() const { return blend_mask.defined(); }
    // The image latents at noise level sigma.
    Tensor noised(double sigma) const;
    // m a + (1 - m) b
    Tensor mix(const Tensor& a, const Tensor& b) const;
    // A denoiser that blends its input and output as described above (only when blends()).
    Denoiser wrap(Denoiser& inner) const;
    // What the latents of the image are after step i (0-based) of `total`: the sampler's x blended with the noised
    // image (previews, per-step parity with diffusers).
    Tensor shown(const Tensor& x, int step, int total) const;
    // The sampler's final latents (run_sampler's output) blended with the image latents.
    Tensor finish(const Tensor& latents) const;
};

// p.init_image and p.mask are the working image and mask at p.width x p.height (generate_inpaint made them).
InpaintSampling start_inpaint(const DiffusionModel& m, const GenerateParams& p, const Schedule& full, Rng& rng);

// The pixel side: prepares the working image and mask, runs generate() on them and composites the results.
std::vector<GeneratedImage> generate_inpaint(const DiffusionModel& m, const GenerateParams& p);

// Checks the inpaint settings (mask, blur, padding, outpaint amounts and the resulting size) against the model.
void validate_inpaint(const DiffusionModel& m, const GenerateParams& p);

// diffusers' mask_condition: [1, 1, H, W] F32 of a 1-channel mask, u8 / 255 binarised at 0.5 (1 = repaint).
Tensor inpaint_mask_condition(const Image& mask);
// F.interpolate(mask, size=(h, w)) mode 'nearest': element [floor(i * H / h), floor(j * W / w)].
Tensor inpaint_nearest_downsample(const Tensor& mask, int64_t h, int64_t w);

// Outpaint amounts rounded up to multiples of `factor`.
int round_up_to(int v, int factor);

}  // namespace nuance
