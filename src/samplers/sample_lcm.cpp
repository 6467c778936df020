// LCM multistep sampling (Luo et al. 2023, alg. 3; k-diffusion/ComfyUI sample_lcm; diffusers LCMScheduler): jump to
// the denoised estimate, then re-noise it to the next sigma with fresh noise, x = D + sigma_next * z. Draws one
// randn of x's shape on every step but the last. Use the Lcm schedule family; LCM-distilled models also want
// Denoiser::set_consistency_boundary().
#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_lcm(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("lcm", d, x, s, o);
    loop.require_discrete();
    for (int i = 0; i < loop.steps(); ++i) {
        const Tensor denoised = loop.denoise(x, loop.sigma(i));
        const double sigma_next = loop.sigma(i + 1);
        x = denoised;
        if (sigma_next > 0) x = x + loop.noise(x) * (float)(sigma_next * o.s_noise);
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
