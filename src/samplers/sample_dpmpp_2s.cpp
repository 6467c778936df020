// DPM-Solver++(2S), singlestep (Lu et al. 2022, "DPM-Solver++", alg. 1; diffusers DPMSolverSinglestepScheduler with
// solver_order 2, dpmsolver++, midpoint, lower_order_final). Steps are taken in pairs: the first step of a pair is
// first order (an Euler step toward D, in the DPM-Solver++ form), the second restarts from the pair's first point
// sigma_{i-1} and goes to sigma_{i+1} with the midpoint correction
//   x_{i+1} = euler_step(x_{i-1}, D_{i-1} + (D_i - D_{i-1}) / (2 r),  sigma_{i-1} -> sigma_{i+1}),
//   r = (lambda_i - lambda_{i-1}) / (lambda_{i+1} - lambda_{i-1}),  lambda = -log sigma.
// Orders are [1, 2, 1, 2, ...] (odd counts end with 1); a step to sigma 0 is first order. Not A1111's
// "DPM++ 2S a", which is ancestral and evaluates extra midpoints.
#include <cmath>

#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_dpmpp_2s(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("dpmpp_2s", d, x, s, o);
    const int n = loop.steps();
    Tensor pair_x, pair_denoised;  // x and D at the pair's first point
    for (int i = 0; i < n; ++i) {
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        const Tensor denoised = loop.denoise(x, sigma);
        int order = (i % 2 == 1 && pair_x.defined()) ? 2 : 1;
        if (sigma_next == 0) order = 1;  // h would be infinite
        if (order == 1) {
            pair_x = x;
            pair_denoised = denoised;
            x = euler_step(x, denoised, sigma, sigma_next);
        } else {
            const double s1 = loop.sigma(i - 1);
            const double r = std::log(s1 / sigma) / std::log(s1 / sigma_next);
            const Tensor d_mid = pair_denoised + (denoised - pair_denoised) * (float)(0.5 / r);
            x = euler_step(pair_x, d_mid, s1, sigma_next);
        }
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
