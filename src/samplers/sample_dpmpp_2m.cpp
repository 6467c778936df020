// DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", alg. 2; k-diffusion sample_dpmpp_2m; diffusers
// DPMSolverMultistepScheduler with algorithm_type dpmsolver++, solver_order 2, midpoint). With lambda = -log sigma
// and h = lambda_next - lambda, the update x_next = (sigma_next/sigma) x - expm1(-h) D equals an Euler step toward
// D; the second-order step extrapolates D from the previous denoised estimate:
//   D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1},   r = h_{i-1} / h_i.
// First order on the first step, on a step to sigma 0, and (lower_order_final) on the last step of runs shorter than
// 15 steps, as diffusers does.
#include <cmath>

#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_dpmpp_2m(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("dpmpp_2m", d, x, s, o);
    const int n = loop.steps();
    Tensor old_denoised;
    for (int i = 0; i < n; ++i) {
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        const Tensor denoised = loop.denoise(x, sigma);
        const bool first_order =
            !old_denoised.defined() || sigma_next == 0 || (o.lower_order_final && i == n - 1 && n < 15);
        if (first_order) {
            x = euler_step(x, denoised, sigma, sigma_next);
        } else {
            const double h = std::log(sigma / sigma_next);
            const double h_last = std::log(loop.sigma(i - 1) / sigma);
            const double r = h_last / h;
            const Tensor denoised_d = denoised * (float)(1.0 + 1.0 / (2.0 * r)) - old_denoised * (float)(1.0 / (2.0 * r));
            x = euler_step(x, denoised_d, sigma, sigma_next);
        }
        old_denoised = denoised;
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
