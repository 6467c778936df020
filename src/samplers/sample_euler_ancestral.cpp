// Euler ancestral (k-diffusion sample_euler_ancestral; diffusers EulerAncestralDiscreteScheduler): an Euler step
// down to sigma_down, then fresh noise of std sigma_up. eta (default 1) scales the noise; eta = 0 is plain Euler.
// Draws one randn of x's shape per step, the last step included (diffusers' order; its sigma_up is 0).
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_euler_ancestral(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("euler_a", d, x, s, o);
    const double eta = loop.eta_or(1.0);
    loop.uses_noise(eta > 0);
    return ancestral_euler_loop(loop, x, eta, o.s_noise);
}

}  // namespace nuance
