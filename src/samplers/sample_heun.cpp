// Heun (Karras et al. 2022, alg. 2; k-diffusion sample_heun): Euler predictor, trapezoidal corrector with a second
// model call at sigma_next; the last step (sigma_next = 0) is a plain Euler step. 2N-1 model calls for N steps,
// exactly diffusers' HeunDiscreteScheduler. Optional churn as in Euler.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_heun(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("heun", d, x, s, o);
    loop.uses_churn();
    const int n = loop.steps();
    for (int i = 0; i < n; ++i) {
        const double sigma_next = loop.sigma(i + 1);
        const double sigma_hat = loop.churn(x, i);  // sigma(i), raised by churn when enabled
        const Tensor denoised = loop.denoise(x, sigma_hat);
        const Tensor dx = (x - denoised) / (float)sigma_hat;  // d = (x - D) / sigma
        const float dt = (float)(sigma_next - sigma_hat);
        if (sigma_next == 0) {
            x = x + dx * dt;
        } else {
            const Tensor x2 = x + dx * dt;
            const Tensor denoised2 = loop.denoise(x2, sigma_next);
            const Tensor dx2 = (x2 - denoised2) / (float)sigma_next;
            x = x + (dx + dx2) * (0.5f * dt);
        }
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
