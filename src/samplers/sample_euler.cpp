// Euler (Karras et al. 2022, alg. 2 with optional churn; k-diffusion sample_euler). Deterministic unless s_churn > 0.
//
// Churn (gamma = min(s_churn / N, sqrt2 - 1) for s_tmin <= sigma <= s_tmax) raises the noise level to
// sigma_hat = sigma (1 + gamma) with fresh noise of std sqrt(sigma_hat^2 - sigma^2), one randn of x's shape per
// churned step. SamplerOptions::churn_mode picks where the model is evaluated:
//   KDiffusion: x_hat = x + noise;  D = D(x_hat, sigma_hat);  x_next = x_hat + (x_hat - D)/sigma_hat (s_next - s_hat)
//   Diffusers:  D = D(x, sigma);    x_hat = x + noise;        x_next = x_hat + (x - D)/sigma (s_next - s_hat)
// (diffusers' EulerDiscreteScheduler.step receives the model output for x at sigma and only then churns; for eps
// models its derivative is the eps prediction itself, which is what (x - D)/sigma is. For v models diffusers mixes
// the churned sample into its x0 formula; nuance uses the same eps-form derivative for every prediction type.)
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_euler(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("euler", d, x, s, o);
    loop.uses_churn();
    const int n = loop.steps();
    for (int i = 0; i < n; ++i) {
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        if (loop.churn_gamma(i) > 0 && o.churn_mode == ChurnMode::Diffusers) {
            const Tensor denoised = loop.denoise(x, sigma);
            const Tensor dx = (x - denoised) / (float)sigma;
            const double sigma_hat = loop.churn(x, i);
            x = x + dx * (float)(sigma_next - sigma_hat);
            loop.step_done(i, x, denoised);
            continue;
        }
        const double sigma_hat = loop.churn(x, i);
        const Tensor denoised = loop.denoise(x, sigma_hat);
        x = euler_step(x, denoised, sigma_hat, sigma_next);
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
