// DPM-Solver++(2S) ancestral (k-diffusion/ComfyUI sample_dpmpp_2s_ancestral; A1111 "DPM++ 2S a"; sd.cpp
// dpm++2s_a). Each step goes deterministically to sigma_down = get_ancestral_step(sigma, sigma_next, eta) with the
// second-order singlestep DPM-Solver++ (Lu et al. 2022, alg. 1, r = 1/2) in lambda = -log sigma:
//   sigma_s = sqrt(sigma * sigma_down)                  (lambda midpoint)
//   x_2 = (sigma_s / sigma) x - expm1(-h/2) D            = euler_step(x, D, sigma -> sigma_s)
//   x   = (sigma_down / sigma) x - expm1(-h) D(x_2, sigma_s)
// then adds sigma_up * s_noise * z while sigma_next > 0 (one randn per step but the last). Two model calls per step
// but the last (x = D there). eta = 0 is the deterministic DPM-Solver++(2S).
#include "ops/elementwise.h"
#include "samplers/sampler.h"

#include <cmath>

namespace nuance {

Tensor sample_dpmpp_2s_ancestral(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("dpmpp_2s_a", d, x, s, o);
    const double eta = loop.eta_or(1.0);
    loop.uses_noise(eta > 0);
    for (int i = 0; i < loop.steps(); ++i) {
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        const Tensor denoised = loop.denoise(x, sigma);
        const AncestralStep a = get_ancestral_step(sigma, sigma_next, eta);
        if (a.sigma_down == 0) {
            x = denoised;
        } else {
            const double sigma_s = std::exp(0.5 * (std::log(sigma) + std::log(a.sigma_down)));
            const Tensor x_2 = euler_step(x, denoised, sigma, sigma_s);
            const Tensor denoised_2 = loop.denoise(x_2, sigma_s);
            x = euler_step(x, denoised_2, sigma, a.sigma_down);
        }
        if (sigma_next > 0 && eta > 0) x = x + loop.noise(x) * (float)(o.s_noise * a.sigma_up);
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
