// DPM-Solver++ SDE (k-diffusion/ComfyUI sample_dpmpp_sde, r = 1/2; A1111 "DPM++ SDE"): a stochastic
// DPM-Solver++(2S) step. With lambda = -log sigma, h = lambda_next - lambda and sigma_s = exp(-(lambda + r h)):
//   step 1: (sd, su) = get_ancestral_step(sigma, sigma_s, eta); x_2 = euler_step(x, D, sigma -> sd) + su z_1
//   step 2: (sd, su) = get_ancestral_step(sigma, sigma_next, eta);
//           x = euler_step(x, (1 - 1/(2r)) D + 1/(2r) D(x_2, sigma_s), sigma -> sd) + su z_2
// two model calls per step but the last (x = D there). eta default 1; eta = 0 is the deterministic 2S solver.
//
// Noise: the reference draws z_1, z_2 from a Brownian tree (torchsde), so z_2 is correlated with z_1 and the
// image depends on torchsde's tree. nuance draws two independent randn of x's shape per step from options.rng
// (z_1 then z_2; none on the last step), so for the same seed images differ from A1111/ComfyUI; the marginal
// distribution of each step is the same.
#include <cmath>

#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_dpmpp_sde(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("dpmpp_sde", d, x, s, o);
    const double eta = loop.eta_or(1.0);
    const bool noisy = eta > 0 && o.s_noise > 0;
    loop.uses_noise(noisy);
    constexpr double r = 0.5, fac = 1.0 / (2.0 * r);
    for (int i = 0; i < loop.steps(); ++i) {
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        const Tensor denoised = loop.denoise(x, sigma);
        if (sigma_next == 0) {
            x = denoised;
        } else {
            const double lambda = -std::log(sigma), h = -std::log(sigma_next) - lambda;
            const double sigma_s = std::exp(-(lambda + r * h));
            const AncestralStep a1 = get_ancestral_step(sigma, sigma_s, eta);
            Tensor x_2 = euler_step(x, denoised, sigma, a1.sigma_down);
            if (noisy) x_2 = x_2 + loop.noise(x) * (float)(o.s_noise * a1.sigma_up);
            const Tensor denoised_2 = loop.denoise(x_2, sigma_s);
            const AncestralStep a2 = get_ancestral_step(sigma, sigma_next, eta);
            const Tensor denoised_d = fac == 1.0 ? denoised_2 : denoised * (float)(1.0 - fac) + denoised_2 * (float)fac;
            x = euler_step(x, denoised_d, sigma, a2.sigma_down);
            if (noisy) x = x + loop.noise(x) * (float)(o.s_noise * a2.sigma_up);
        }
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
