// PLMS, pseudo linear multistep (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models", F-PNDM with
// skipped Runge-Kutta warm-up; diffusers PNDMScheduler with skip_prk_steps; A1111 "PLMS"). The PNDM transfer
// function is the DDIM step, i.e. an Euler step in VE scaling along d = (x - D) / sigma, and PLMS replaces d by an
// Adams-Bashforth combination of past d's:
//   step 0: a Heun step (two model calls; its second evaluation is dropped from the history)
//   then    d' = (3 d_i - d_{i-1}) / 2,  (23 d_i - 16 d_{i-1} + 5 d_{i-2}) / 12,
//               (55 d_i - 59 d_{i-1} + 37 d_{i-2} - 9 d_{i-3}) / 24
// N+1 model calls for N steps (diffusers repeats its second timestep). Use the Ddim schedule family.
#include <deque>

#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_plms(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("plms", d, x, s, o);
    loop.require_discrete();
    const int n = loop.steps();
    std::deque<Tensor> ds;  // newest last, at most 4
    for (int i = 0; i < n; ++i) {
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        const float dt = (float)(sigma_next - sigma);
        const Tensor denoised = loop.denoise(x, sigma);
        const Tensor dx = (x - denoised) / (float)sigma;
        ds.push_back(dx);
        if (ds.size() > 4) ds.pop_front();
        Tensor d_prime;
        if (i == 0 && n > 1 && sigma_next > 0) {
            const Tensor x2 = x + dx * dt;
            const Tensor denoised2 = loop.denoise(x2, sigma_next);
            d_prime = (dx + (x2 - denoised2) / (float)sigma_next) * 0.5f;
        } else if (ds.size() == 1) {
            d_prime = dx;
        } else if (ds.size() == 2) {
            d_prime = (ds[1] * 3.0f - ds[0]) * 0.5f;
        } else if (ds.size() == 3) {
            d_prime = (ds[2] * 23.0f - ds[1] * 16.0f + ds[0] * 5.0f) / 12.0f;
        } else {
            d_prime = (ds[3] * 55.0f - ds[2] * 59.0f + ds[1] * 37.0f - ds[0] * 9.0f) / 24.0f;
        }
        x = x + d_prime * dt;
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
