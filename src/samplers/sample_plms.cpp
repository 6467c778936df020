// PLMS, pseudo linear multistep (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models", F-PNDM with
// skipped Runge-Kutta warm-up; diffusers PNDMScheduler with skip_prk_steps; A1111 "PLMS"), step for step as
// diffusers 0.31 runs it. The PNDM transfer function is the DDIM step, i.e. an Euler step in VE scaling along the
// noise estimate eps, and PLMS feeds it an Adams-Bashforth combination of the model's raw outputs m (eps or v):
//   call 0 at t_0:    m' = m_0                           step t_0 -> t_0 - r          (r = T // N; the sample lands
//                                                                                    there and is evaluated at t_1)
//   call 1 at t_1:    m' = (m_1 + m_0) / 2               step t_1 + r -> t_1 from the sample of call 0 (a Heun
//                                                        step; m_1 is not kept)
//   call k+1 at t_k:  m' = (3 m_k - m_{k-1}) / 2,  (23 m_k - 16 m_{k-1} + 5 m_{k-2}) / 12,
//                          (55 m_k - 59 m_{k-1} + 37 m_{k-2} - 9 m_{k-3}) / 24      step t_k -> t_k - r
// where the combination is converted to eps with the sample and timestep of the step it drives (for v models that
// is not the combination of the per-call eps estimates). Off the 'leading' spacing t_k - r and t_1 + r are not
// listed timesteps (Schedule::step_sigmas / timestep_stride). N+1 model calls for N > 1 steps. Use the Ddim family.
#include <cmath>
#include <deque>

#include "core/error.h"
#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_plms(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("plms", d, x, s, o);
    loop.require_discrete();
    const int n = loop.steps();
    // The sample is re-read as a VP latent at another sigma (x_vp = x / sqrt(sigma^2 + 1)).
    auto rescale = [](const Tensor& v, double from, double to) {
        return from == to ? v : v * (float)(std::sqrt(to * to + 1.0) / std::sqrt(from * from + 1.0));
    };
    // One PNDM transfer step: the combined raw output m at (x, sigma) -> eps -> Euler step to sigma_to.
    auto transfer = [&](const Tensor& xs, const Tensor& m, double sigma, double sigma_to) {
        return xs + d.eps_from_output(m, xs, sigma) * (float)(sigma_to - sigma);
    };
    std::deque<Tensor> ms;  // kept raw outputs, newest last, at most 4
    Tensor x_start;         // the sample of call 0, for the Heun step of call 1
    for (int i = 0; i < n; ++i) {
        const double sigma = loop.sigma(i);
        const Tensor denoised = loop.denoise(x, sigma);
        const Tensor m = d.last_output();
        if (i == 0 && n > 1) {
            // Call 0: a step t_0 -> t_0 - r, evaluated at t_1 (call 1), then the Heun step of call 1.
            ms.push_back(m);
            x_start = x;
            const Tensor x1 = loop.land(transfer(x, m, sigma, loop.target(0)), 0);
            const Tensor denoised1 = loop.denoise(x1, loop.sigma(1));
            const Tensor m_heun = (d.last_output() + ms.back()) * 0.5f;
            double sigma_from = sigma;  // t_1 + r: t_0 on the 'leading' spacing
            if (s.timestep_stride > 0) {
                const int t_from = (int)s.timesteps[1] + s.timestep_stride;
                const NoiseSchedule& ns = d.noise_schedule();
                NUANCE_CHECK(t_from < ns.num_train_timesteps(), "sampler 'plms': timestep ", t_from,
                             " outside the model's ", ns.num_train_timesteps(), " training timesteps");
                if (t_from != (int)s.timesteps[0]) sigma_from = ns.sigma_at(t_from);
            }
            const Tensor xa = rescale(x_start, sigma, sigma_from);
            x = transfer(xa, m_heun, sigma_from, loop.sigma(1));
            loop.step_done(0, x, denoised1);
            continue;
        }
        if (i > 0) {
            ms.push_back(m);
            if (ms.size() > 4) ms.pop_front();
        }
        Tensor m_prime;
        const size_t k = ms.size();
        if (k <= 1) m_prime = m;
        else if (k == 2) m_prime = (ms[1] * 3.0f - ms[0]) * 0.5f;
        else if (k == 3) m_prime = (ms[2] * 23.0f - ms[1] * 16.0f + ms[0] * 5.0f) / 12.0f;
        else m_prime = (ms[3] * 55.0f - ms[2] * 59.0f + ms[1] * 37.0f - ms[0] * 9.0f) / 24.0f;
        x = loop.land(transfer(x, m_prime, sigma, loop.target(i)), i);
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
