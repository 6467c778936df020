// DDIM (Song et al. 2020, eq. 12) in VE scaling. With x_vp = x / sqrt(sigma^2 + 1) and
// sigma_t = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t]), DDIM's update
//   x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - std^2) eps + std * z,   std^2 = eta^2 (1-a_prev)/(1-a_t) (1 - a_t/a_prev)
// is exactly an ancestral Euler step sigma_t -> sigma_prev with sigma_up = std / sqrt(a_prev), which equals
// k-diffusion's get_ancestral_step(sigma_t, sigma_prev, eta). So DDIM = ancestral Euler with eta (default 0) on
// the DDIM timestep set (ScheduleFamily::Ddim, whose last sigma is that of alphas_cumprod[0] unless
// set_alpha_to_one). t_prev is t - T // N as in diffusers (DDIMScheduler.step), not the next listed timestep: off
// the 'leading' spacing the step lands between two listed timesteps and the VP latent is carried to the next one
// unchanged (Schedule::step_sigmas). With eta > 0 it draws one randn of x's shape per step, the last step included.
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_ddim(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("ddim", d, x, s, o);
    loop.require_discrete();
    const double eta = loop.eta_or(0.0);
    return ancestral_euler_loop(loop, x, eta, o.s_noise);
}

}  // namespace nuance
