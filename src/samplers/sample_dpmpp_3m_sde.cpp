// DPM-Solver++(3M) SDE (k-diffusion/ComfyUI sample_dpmpp_3m_sde; A1111 "DPM++ 3M SDE"). With h = log(sigma /
// sigma_next) and h_eta = (1 + eta) h:
//   x <- (sigma_next/sigma) e^{-eta h} x + (1 - e^{-h_eta}) D                          (first order)
//      + phi_2 d1 - phi_3 d2   with two previous estimates (third order), or + phi_2 d with one (second order),
//   phi_2 = expm1(-h_eta)/h_eta + 1, phi_3 = phi_2/h_eta - 1/2, d1/d2 the divided differences of D over lambda,
//   then + sigma_next sqrt(1 - e^{-2 eta h}) s_noise z.
// The step to sigma 0 is x = D. eta default 1; eta = 0 is the deterministic 3rd-order multistep DPM-Solver++(3M).
// Noise: one randn of x's shape per step but the last, from options.rng (the reference uses a Brownian tree; see
// sample_dpmpp_sde.cpp).
#include <cmath>

#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_dpmpp_3m_sde(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("dpmpp_3m_sde", d, x, s, o);
    const double eta = loop.eta_or(1.0);
    const bool noisy = eta > 0 && o.s_noise > 0;
    loop.uses_noise(noisy);
    Tensor denoised_1, denoised_2;
    double h = 0, h_1 = 0, h_2 = 0;  // 0 = not yet defined
    for (int i = 0; i < loop.steps(); ++i) {
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        const Tensor denoised = loop.denoise(x, sigma);
        if (sigma_next == 0) {
            x = denoised;
        } else {
            h = std::log(sigma / sigma_next);
            const double h_eta = h * (eta + 1.0);
            x = x * (float)(sigma_next / sigma * std::exp(-h * eta)) + denoised * (float)(-std::expm1(-h_eta));
            const double phi_2 = std::expm1(-h_eta) / h_eta + 1.0;
            if (h_2 > 0) {
                const double r0 = h_1 / h, r1 = h_2 / h;
                const Tensor d1_0 = (denoised - denoised_1) / (float)r0;
                const Tensor d1_1 = (denoised_1 - denoised_2) / (float)r1;
                const Tensor d1 = d1_0 + (d1_0 - d1_1) * (float)(r0 / (r0 + r1));
                const Tensor d2 = (d1_0 - d1_1) / (float)(r0 + r1);
                const double phi_3 = phi_2 / h_eta - 0.5;
                x = x + d1 * (float)phi_2 - d2 * (float)phi_3;
            } else if (h_1 > 0) {
                const double r = h_1 / h;
                x = x + (denoised - denoised_1) * (float)(phi_2 / r);
            }
            if (noisy) x = x + loop.noise(x) * (float)(sigma_next * std::sqrt(-std::expm1(-2.0 * h * eta)) * o.s_noise);
        }
        denoised_2 = denoised_1;
        denoised_1 = denoised;
        h_2 = h_1;
        h_1 = h;
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
