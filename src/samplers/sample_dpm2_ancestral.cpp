// DPM2 ancestral (k-diffusion/ComfyUI sample_dpm_2_ancestral; A1111 "DPM2 a"): the DPM2 midpoint step down to
// sigma_down, then fresh noise of std sigma_up (get_ancestral_step, eta default 1). Two model calls per step but the
// last (sigma_down = 0: x = D). One randn of x's shape per step that adds noise (none on the step to sigma 0, as
// ComfyUI; k-diffusion draws it and multiplies by sigma_up = 0, which gives the same image).
#include <cmath>

#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_dpm2_ancestral(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("dpm2_a", d, x, s, o);
    const double eta = loop.eta_or(1.0);
    loop.uses_noise(eta > 0);
    for (int i = 0; i < loop.steps(); ++i) {
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        const Tensor denoised = loop.denoise(x, sigma);
        const AncestralStep a = get_ancestral_step(sigma, sigma_next, eta);
        if (a.sigma_down == 0) {
            x = denoised;
        } else {
            const double sigma_mid = std::exp(0.5 * (std::log(sigma) + std::log(a.sigma_down)));
            const Tensor x_2 = euler_step(x, denoised, sigma, sigma_mid);
            const Tensor denoised_2 = loop.denoise(x_2, sigma_mid);
            const Tensor d_2 = (x_2 - denoised_2) / (float)sigma_mid;
            x = x + d_2 * (float)(a.sigma_down - sigma);
            if (eta > 0) x = x + loop.noise(x) * (float)(o.s_noise * a.sigma_up);
        }
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
