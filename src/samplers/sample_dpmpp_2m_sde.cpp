// DPM-Solver++(2M) SDE, midpoint variant (k-diffusion sample_dpmpp_2m_sde; diffusers DPMSolverMultistepScheduler
// with algorithm_type sde-dpmsolver++). With h = log(sigma / sigma_next):
//   x_next = (sigma_next/sigma) e^{-eta h} x + (1 - e^{-(1+eta) h}) D
//            [+ 0.5 (1 - e^{-(1+eta) h}) / r (D - D_prev)]  + sigma_next sqrt(1 - e^{-2 eta h}) s_noise z
// eta defaults to 1. Noise: one randn of x's shape per step, the last included, as diffusers draws it (k-diffusion
// and ComfyUI use a Brownian-tree noise sampler instead, so their images differ for the same seed).
#include <cmath>

#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_dpmpp_2m_sde(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("dpmpp_2m_sde", d, x, s, o);
    const double eta = loop.eta_or(1.0);
    loop.uses_noise(eta > 0);
    Tensor old_denoised;
    double h_last = 0;
    for (int i = 0; i < loop.steps(); ++i) {
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        const Tensor denoised = loop.denoise(x, sigma);
        const Tensor z = eta > 0 ? loop.noise(x) : Tensor();
        if (sigma_next == 0) {
            x = denoised;
        } else {
            const double h = std::log(sigma / sigma_next);
            const double eta_h = eta * h;
            const double w = -std::expm1(-h - eta_h);
            x = x * (float)(sigma_next / sigma * std::exp(-eta_h)) + denoised * (float)w;
            if (old_denoised.defined()) {
                const double r = h_last / h;
                x = x + (denoised - old_denoised) * (float)(0.5 * w / r);
            }
            if (eta > 0) x = x + z * (float)(sigma_next * std::sqrt(-std::expm1(-2.0 * eta_h)) * o.s_noise);
            h_last = h;
        }
        old_denoised = denoised;
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
