// TCD, Strategic Stochastic Sampling (Zheng et al. 2024, "Trajectory Consistency Distillation", alg. 4; diffusers
// TCDScheduler; sd.cpp tcd). gamma = options.eta (default 0.3; 0 = deterministic, 1 = LCM-like). For step i from
// timestep t to the next timestep t_prev of the schedule:
//   t_s = floor((1 - gamma) t_prev);  x_s = sqrt(a_s) D + sqrt(1 - a_s) eps                  (DDIM jump to t_s)
//   x_prev = sqrt(a_prev / a_s) x_s + sqrt(1 - a_prev / a_s) z          (forward-diffuse back up to t_prev)
// In VE scaling (1/a = 1 + sigma^2) that is x_s = euler_step(x, D, sigma -> sigma_s) and
// x_prev = x_s + sqrt(sigma_prev^2 - sigma_s^2) z. The last step (t_prev = 0) lands on sigma(t=0) without noise,
// which is where the Tcd schedule family ends (run_sampler returns the VP latent, as diffusers does). One randn of
// x's shape per step but the last when gamma > 0. Needs the DDPM noise schedule: discrete-time models only.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_tcd(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("tcd", d, x, s, o);
    loop.require_discrete();
    const double gamma = loop.eta_or(0.3);
    NUANCE_CHECK(gamma <= 1.0, "sampler 'tcd': eta (gamma) must be in [0, 1], got ", gamma);
    const NoiseSchedule& ns = d.noise_schedule();
    const int n = loop.steps(), T = ns.num_train_timesteps();
    for (int i = 0; i < n; ++i) {
        const double sigma = loop.sigma(i), sigma_prev = loop.sigma(i + 1);
        const Tensor denoised = loop.denoise(x, sigma);
        if (sigma_prev == 0) {
            x = denoised;
        } else if (i == n - 1) {
            x = euler_step(x, denoised, sigma, sigma_prev);  // t_s = floor((1 - gamma) * 0) = 0: no noise
        } else {
            const double t_prev = s.timesteps[(size_t)i + 1];
            const int t_s = std::clamp((int)std::floor((1.0 - gamma) * t_prev), 0, T - 1);
            const double sigma_s = std::min(ns.sigma_at(t_s), sigma_prev);
            x = euler_step(x, denoised, sigma, sigma_s);
            if (gamma > 0)
                x = x + loop.noise(x) * (float)(o.s_noise * std::sqrt(sigma_prev * sigma_prev - sigma_s * sigma_s));
        }
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
