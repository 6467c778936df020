#include "models/dit/dit_sampling.h"

#include <cmath>

#include "models/vae/autoencoder_kl.h"
#include "samplers/guidance.h"

namespace nuance {

NoiseSchedule dit_noise_schedule() {
    NoiseScheduleConfig c;
    c.num_train_timesteps = 1000;
    c.beta_start = 1e-4;
    c.beta_end = 0.02;
    c.beta_schedule = BetaSchedule::Linear;
    return NoiseSchedule(c);
}

ModelFn dit_guided_model(const DiTTransformer2DModel& model, std::vector<int64_t> labels, double g) {
    const DiTConfig& c = model.config();
    NUANCE_CHECK(!labels.empty(), "DiT sampling: no class labels");
    NUANCE_CHECK(std::isfinite(g), "DiT sampling: guidance scale ", g, " is not finite");
    NUANCE_CHECK(c.out_channels >= c.in_channels, "DiT: the model outputs ", c.out_channels, " channels, fewer than ",
                 "its ", c.in_channels, " latent channels");
    for (int64_t y : labels)
        NUANCE_CHECK(y >= 0 && y < c.num_classes, "DiT sampling: class label ", y, " is out of range [0, ",
                     c.num_classes - 1, "]");
    const int64_t B = (int64_t)labels.size();
    const bool cfg = g > 1.0;
    // DiTPipeline: class_labels_input = cat([class_labels, [null] * B]) when guidance_scale > 1.
    if (cfg)
        for (int64_t i = 0; i < B; ++i) labels.push_back(c.num_classes);
    const Tensor y = Tensor::from_ids(labels, {(int64_t)labels.size()});
    return [&model, y, B, cfg, g, C = c.in_channels](const Tensor& x_in, double timestep) -> Tensor {
        NUANCE_CHECK(x_in.dim() == 4 && x_in.size(0) == B, "DiT sampling: expected ", B, " latents, got ",
                     x_in.shape());
        const Tensor x = cfg ? cat({x_in, x_in}, 0) : x_in;               // [2B or B, C, h, w]
        const Tensor t = Tensor::full({x.size(0)}, (float)timestep);     // timesteps.expand(batch)
        const Tensor eps = model.forward(x, t, y).narrow(1, 0, C);       // learned sigma dropped
        if (!cfg) return eps.contiguous();
        const Tensor cond = eps.narrow(0, 0, B), uncond = eps.narrow(0, B, B);
        return cfg_combine(uncond, cond, g);                             // uncond + g (cond - uncond)
    };
}

Tensor dit_sample_latents(const DiTTransformer2DModel& model, const DiTSampling& o, Rng& rng, SamplerOptions& so) {
    const DiTConfig& c = model.config();
    const int64_t s = o.latent_size > 0 ? o.latent_size : c.sample_size;
    NUANCE_CHECK(s > 0, "DiT sampling: the model does not state its sample size (no pos_embed, no config.json); "
                        "give the latent size");
    NUANCE_CHECK(s % c.patch_size == 0 && s <= 4096, "DiT sampling: latent size ", s,
                 " must be a multiple of the patch size ", c.patch_size, " (at most 4096)");
    NUANCE_CHECK(o.steps >= 1 && o.steps <= 1000, "DiT sampling: steps ", o.steps, " out of range [1, 1000]");
    NUANCE_CHECK(o.class_labels.size() <= 4096, "DiT sampling: ", o.class_labels.size(),
                 " class labels (one image each) is too many (at most 4096)");
    const SamplerInfo& info = find_sampler(o.sampler);
    // DDIMScheduler's defaults (leading spacing, steps_offset 0), as DiTPipeline's scheduler config uses them.
    const Schedule sched = make_sampler_schedule(info, dit_noise_schedule(), o.steps, o.schedule, std::nullopt, 0);
    Denoiser d(dit_guided_model(model, o.class_labels, o.guidance_scale), Prediction::Epsilon, dit_noise_schedule());
    const int64_t B = (int64_t)o.class_labels.size();
    Tensor x = rng.randn({B, c.in_channels, s, s}) * (float)sched.init_noise_sigma;
    if (!so.rng) so.rng = &rng;
    return run_sampler(info, d, x, sched, so);
}

Tensor dit_decode(const AutoencoderKL& vae, const Tensor& latents) {
    const Tensor image = vae.decode(latents * (1.0f / kDiTLatentScale));
    return clamp(image * 0.5f + 0.5f, 0.0f, 1.0f);
}

}  // namespace nuance
