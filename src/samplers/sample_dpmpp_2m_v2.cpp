// DPM++ 2M v2 (stable-diffusion.cpp "dpm++2mv2", from A1111 discussion #8457): DPM-Solver++(2M) whose second-order
// step uses the mean step h_d = (h_last + h) / 2 in the data coefficient and r = max(h, h_last) / min(h, h_last):
//   x_next = (sigma_next / sigma) x + (1 - e^{-h_d}) ((1 + 1/(2r)) D_i - 1/(2r) D_{i-1})
// (x and D weights no longer sum to 1 unless h_last = h, which is the point of the variant: it damps the
// extrapolation when the step size changes). First step and the step to sigma 0 are first order.
#include <algorithm>
#include <cmath>

#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_dpmpp_2m_v2(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("dpmpp_2m_v2", d, x, s, o);
    Tensor old_denoised;
    for (int i = 0; i < loop.steps(); ++i) {
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        const Tensor denoised = loop.denoise(x, sigma);
        if (i == 0 || sigma_next == 0) {
            x = euler_step(x, denoised, sigma, sigma_next);
        } else {
            const double h = std::log(sigma / sigma_next), h_last = std::log(loop.sigma(i - 1) / sigma);
            const double h_min = std::min(h_last, h), h_max = std::max(h_last, h);
            const double r = h_max / h_min, h_d = 0.5 * (h_max + h_min);
            const Tensor denoised_d =
                denoised * (float)(1.0 + 1.0 / (2.0 * r)) - old_denoised * (float)(1.0 / (2.0 * r));
            x = x * (float)(sigma_next / sigma) + denoised_d * (float)(-std::expm1(-h_d));
        }
        old_denoised = denoised;
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
