// Class-conditional sampling with a DiT, as diffusers' DiTPipeline does it (pipeline_dit.py, diffusers 0.31):
//   latents ~ randn([B, C, s, s])                         (one draw, s = the model's sample_size)
//   each step: the batch is doubled [x, x] with labels [y, null], null = num_classes (1000 for ImageNet);
//              eps = out[:, :C] (the learned-variance channels C..2C are dropped before the scheduler step),
//              eps = eps_uncond + g * (eps_cond - eps_uncond)   (guidance on the eps channels only, g > 1)
//   scheduler: DDPM training schedule, linear betas 1e-4 .. 0.02 over 1000 steps (DiT's diffusion/__init__.py),
//              any nuance sampler on it (DDIM by default, DiTPipeline's documented scheduler)
//   image = VAE.decode(latents / 0.18215) / 2 + 0.5, clamped to [0, 1]  (sd-vae-ft-ema / -mse, scaling 0.18215)
// For g <= 1 the batch is not doubled and the model sees the labels alone, as the pipeline does.
#pragma once
#include <string>
#include <vector>

#include "models/dit/dit.h"
#include "samplers/registry.h"

namespace nuance {

class AutoencoderKL;

constexpr float kDiTLatentScale = 0.18215f;  // sd-vae-ft-ema's scaling_factor, which DiT was trained with

struct DiTSampling {
    std::vector<int64_t> class_labels;  // one image per label, each in [0, num_classes)
    double guidance_scale = 4.0;        // DiTPipeline's default; classifier-free guidance when > 1
    int steps = 50;                     // DiTPipeline's default num_inference_steps
    std::string sampler = "ddim";
    ScheduleType schedule = ScheduleType::Normal;
    int64_t latent_size = 0;            // 0 = the model's sample_size (required when the model does not know it)
};

// DiT's training noise schedule: linear betas 1e-4 .. 0.02, 1000 steps.
NoiseSchedule dit_noise_schedule();

// The network as a sampler calls it (x_in: VP-scaled latents [B, C, h, w]), with DiTPipeline's guidance; returns
// the (guided) eps [B, C, h, w]. `class_labels` [B] integers < num_classes. Calls the model once per step on a
// batch of 2B when guidance_scale > 1, else once on B.
ModelFn dit_guided_model(const DiTTransformer2DModel& model, std::vector<int64_t> class_labels, double guidance_scale);

// Samples latents for o.class_labels: noise from `rng` (one randn of [B, C, s, s] scaled by the schedule's
// init_noise_sigma), then the sampler. `so` carries progress/cancel (and rng for stochastic samplers; set to `rng`
// when null). Returns the denoised latents in model scaling (divide by kDiTLatentScale for the VAE). Errors name
// the bad label, size, step count or guidance.
Tensor dit_sample_latents(const DiTTransformer2DModel& model, const DiTSampling& o, Rng& rng, SamplerOptions& so);

// VAE decode as DiTPipeline: decode(latents / 0.18215), then (x / 2 + 0.5) clamped to [0, 1]: [B, 3, H, W].
Tensor dit_decode(const AutoencoderKL& vae, const Tensor& latents);

}  // namespace nuance
