// iPNDM (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator", improved PNDM;
// zju-pi diff-solvers; ComfyUI sample_ipndm; sd.cpp ipndm): Adams-Bashforth on the Karras ODE direction
// d = (x - D) / sigma with the fixed (equal-step) coefficients, warming up from order 1 to 4:
//   x_next = x + (sigma_next - sigma) * {d,  (3d - d1)/2,  (23d - 16d1 + 5d2)/12,  (55d - 59d1 + 37d2 - 9d3)/24}
// One model call per step; the step to sigma 0 is x = D (ComfyUI; sd.cpp takes the AB step there too).
#include <algorithm>
#include <deque>

#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_ipndm(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("ipndm", d, x, s, o);
    constexpr int kMaxOrder = 4;
    std::deque<Tensor> buf;  // previous d's, newest last, at most 3
    for (int i = 0; i < loop.steps(); ++i) {
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        const Tensor denoised = loop.denoise(x, sigma);
        const Tensor d_cur = (x - denoised) / (float)sigma;
        const int order = std::min(kMaxOrder, i + 1);
        const float dt = (float)(sigma_next - sigma);
        const size_t b = buf.size();
        if (sigma_next == 0) x = denoised;
        else if (order == 1) x = x + d_cur * dt;
        else if (order == 2) x = x + (d_cur * 3.0f - buf[b - 1]) * (dt / 2.0f);
        else if (order == 3) x = x + (d_cur * 23.0f - buf[b - 1] * 16.0f + buf[b - 2] * 5.0f) * (dt / 12.0f);
        else x = x + (d_cur * 55.0f - buf[b - 1] * 59.0f + buf[b - 2] * 37.0f - buf[b - 3] * 9.0f) * (dt / 24.0f);
        buf.push_back(d_cur);
        if ((int)buf.size() > kMaxOrder - 1) buf.pop_front();
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
