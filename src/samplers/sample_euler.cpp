// Euler (Karras et al. 2022, alg. 2 with optional churn; k-diffusion sample_euler). Deterministic unless s_churn > 0.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_euler(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("euler", d, x, s, o);
    NUANCE_CHECK(std::isfinite(o.s_churn) && o.s_churn >= 0, "sampler 'euler': s_churn must be >= 0, got ", o.s_churn);
    const int n = loop.steps();
    for (int i = 0; i < n; ++i) {
        const double sigma = s.sigmas[(size_t)i];
        const double gamma = (o.s_churn > 0 && o.s_tmin <= sigma && sigma <= o.s_tmax)
                                 ? std::min(o.s_churn / n, std::sqrt(2.0) - 1.0)
                                 : 0.0;
        const double sigma_hat = sigma * (gamma + 1.0);
        if (gamma > 0) x = x + loop.noise(x) * (float)(o.s_noise * std::sqrt(sigma_hat * sigma_hat - sigma * sigma));
        const Tensor denoised = loop.denoise(x, sigma_hat);
        x = euler_step(x, denoised, sigma_hat, s.sigmas[(size_t)i + 1]);
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
