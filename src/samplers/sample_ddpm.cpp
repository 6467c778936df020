// DDPM ancestral sampling (Ho et al. 2020) on a strided timestep set: the posterior q(x_prev | x_t, x0) with the
// "fixed_small" variance beta~ = (1-a_prev)/(1-a_t) (1 - a_t/a_prev) is DDIM with eta = 1 (Song et al. 2020, §4.1),
// i.e. an ancestral Euler step. Use the Ddim schedule family with final_alpha_one (DDPM steps to alpha 1); each
// step goes from t to t - T // N (DDPMScheduler.previous_timestep). Draws one randn of x's shape per step whose
// timestep is > 0 (diffusers adds no noise at t = 0, e.g. the last 'linspace' step).
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_ddpm(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("ddpm", d, x, s, o);
    loop.require_discrete();
    const double eta = loop.eta_or(1.0);
    return ancestral_euler_loop(loop, x, eta, o.s_noise, [&s](int i) { return s.timesteps[(size_t)i] > 0; });
}

}  // namespace nuance
