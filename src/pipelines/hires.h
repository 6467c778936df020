// Hires fix (A1111 "Hires. fix", `enable_hr`): a first pass at width x height, its result upscaled (the latents:
// "Latent" = bilinear, "Latent (nearest)", "Latent (nearest-exact)"; or the decoded image: "Lanczos", "Nearest",
// then VAE-encoded), then an img2img second pass at the larger size with `strength` (A1111 denoising_strength).
// Target size as A1111: width/height * scale, or hr_resize_x/y (one 0: from the first pass's aspect ratio; both
// given with another aspect ratio: cover then centre-crop the latents).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance {

class DiffusionModel;
struct GenerateParams;
struct GeneratedImage;

struct HiresParams {
    bool enabled = false;
    float scale = 2.0f;              // hr_scale (used when resize_x and resize_y are 0)
    int resize_x = 0, resize_y = 0;  // hr_resize_x / hr_resize_y
    std::string upscaler = "Latent"; // hr_upscaler: A1111 names or the CLI's latent, latent-nearest, lanczos, ...
    float strength = 0.7f;           // denoising_strength of the second pass
    int steps = 0;                   // hr_second_pass_steps; 0 = the first pass's steps
};

enum class HiresUpscaler { Latent, LatentNearest, LatentNearestExact, Lanczos, Nearest, None };

// Accepts A1111's names ("Latent", "Latent (nearest)", "Latent (nearest-exact)", "Lanczos", "Nearest", "None") and
// the CLI's (latent, latent-nearest, latent-nearest-exact, lanczos, nearest, none), case-insensitive.
HiresUpscaler parse_hires_upscaler(const std::string& name);
const char* hires_upscaler_name(HiresUpscaler u);  // A1111's name, for infotexts
bool hires_upscaler_is_latent(HiresUpscaler u);
std::vector<std::string> hires_upscaler_names();    // A1111's names, for /sdapi/v1/latent-upscale-modes etc.

struct HiresTarget {
    int64_t latent_w = 0, latent_h = 0;  // the upscaled latents (before the crop)
    int64_t crop_x = 0, crop_y = 0;      // latent pixels cut off (A1111 truncate_x/y), half left/top
    int width = 0, height = 0;           // the second pass's image size
};

// Throws Error naming the field when the hires settings cannot work for a width x height first pass with the model's
// VAE factor (scale range, resize range, strength in (0, 1], steps in 0..1000, upscaler name, target <= 8192).
HiresTarget hires_target(const HiresParams& h, int width, int height, int64_t factor);

// Resizes latents [1, C, h, w] for a latent upscaler.
Tensor hires_upscale_latents(const Tensor& latents, HiresUpscaler u, int64_t h, int64_t w);

// ", Denoising strength: 0.7, Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent" (A1111's order; "Hires
// resize: 1024x768" instead of the upscale when hr_resize_x/y are given; steps only when set).
std::string hires_infotext(const HiresParams& h);

// generate() with p.hires.enabled: both passes for each image of the batch. Callbacks as generate(): progress
// (GenerateProgress::pass 0 then 1), cancel, on_image with the final image.
std::vector<GeneratedImage> generate_hires(const DiffusionModel& m, const GenerateParams& p);

}  // namespace nuance
