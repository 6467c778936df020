// DPM2 (k-diffusion sample_dpm_2: "a sampler inspired by DPM-Solver-2 and Algorithm 2 from Karras et al. 2022").
// Per step: Euler half-step to the geometric midpoint sigma_mid = sqrt(sigma_hat * sigma_next), a second model call
// there, and the full step with the midpoint's ODE direction (second order, 2 model calls per step; the last step
// to sigma 0 is a plain Euler step, i.e. x = D). Optional Karras churn exactly as sample_euler (k-diffusion order).
// A1111 runs it with 'discard_next_to_last_sigma' (one extra sigma computed, the next-to-last dropped); nuance
// uses the schedule it is given.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_dpm2(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("dpm2", d, x, s, o);
    loop.uses_churn();
    const int n = loop.steps();
    for (int i = 0; i < n; ++i) {
        const double sigma_next = loop.sigma(i + 1);
        const double sigma_hat = loop.churn(x, i);  // sigma(i), raised by churn when enabled
        const Tensor denoised = loop.denoise(x, sigma_hat);
        if (sigma_next == 0) {
            x = denoised;  // Euler to 0
        } else {
            const double sigma_mid = std::exp(0.5 * (std::log(sigma_hat) + std::log(sigma_next)));
            const Tensor x_2 = euler_step(x, denoised, sigma_hat, sigma_mid);
            const Tensor denoised_2 = loop.denoise(x_2, sigma_mid);
            const Tensor d_2 = (x_2 - denoised_2) / (float)sigma_mid;
            x = x + d_2 * (float)(sigma_next - sigma_hat);
        }
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
