// iPNDM-v (zju-pi diff-solvers; ComfyUI sample_ipndm_v): iPNDM with the variable-step Adams-Bashforth coefficients,
// so it keeps its order on uneven sigma spacing (Karras, AYS...). Steps h_n = sigma_next - sigma,
// h_{n-k} = sigma_{i-k+1} - sigma_{i-k}; orders warm up 1..4; the step to sigma 0 is x = D. One model call per step.
#include <algorithm>
#include <deque>

#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

Tensor sample_ipndm_v(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("ipndm_v", d, x, s, o);
    constexpr int kMaxOrder = 4;
    std::deque<Tensor> buf;  // previous d's, newest last
    auto t = [&](int k) { return loop.sigma(k); };
    for (int i = 0; i < loop.steps(); ++i) {
        const double sigma = t(i), sigma_next = t(i + 1);
        const Tensor denoised = loop.denoise(x, sigma);
        const Tensor d_cur = (x - denoised) / (float)sigma;
        const int order = std::min(kMaxOrder, i + 1);
        const double h_n = sigma_next - sigma;
        const size_t b = buf.size();
        if (sigma_next == 0) {
            x = denoised;
        } else if (order == 1) {
            x = x + d_cur * (float)h_n;
        } else if (order == 2) {
            const double h_n_1 = sigma - t(i - 1);
            const double c1 = (2.0 + h_n / h_n_1) / 2.0, c2 = -(h_n / h_n_1) / 2.0;
            x = x + (d_cur * (float)c1 + buf[b - 1] * (float)c2) * (float)h_n;
        } else if (order == 3) {
            const double h_n_1 = sigma - t(i - 1), h_n_2 = t(i - 1) - t(i - 2);
            const double temp =
                (1.0 - h_n / (3.0 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2.0;
            const double c1 = (2.0 + h_n / h_n_1) / 2.0 + temp;
            const double c2 = -(h_n / h_n_1) / 2.0 - (1.0 + h_n_1 / h_n_2) * temp;
            const double c3 = temp * h_n_1 / h_n_2;
            x = x + (d_cur * (float)c1 + buf[b - 1] * (float)c2 + buf[b - 2] * (float)c3) * (float)h_n;
        } else {
            const double h_n_1 = sigma - t(i - 1), h_n_2 = t(i - 1) - t(i - 2), h_n_3 = t(i - 2) - t(i - 3);
            const double temp1 =
                (1.0 - h_n / (3.0 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2.0;
            const double temp2 = ((1.0 - h_n / (3.0 * (h_n + h_n_1))) / 2.0 +
                                  (1.0 - h_n / (2.0 * (h_n + h_n_1))) * h_n / (6.0 * (h_n + h_n_1 + h_n_2))) *
                                 (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2)) /
                                 (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3));
            const double q = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3));
            const double c1 = (2.0 + h_n / h_n_1) / 2.0 + temp1 + temp2;
            const double c2 = -(h_n / h_n_1) / 2.0 - (1.0 + h_n_1 / h_n_2) * temp1 - (1.0 + h_n_1 / h_n_2 + q) * temp2;
            const double c3 = temp1 * h_n_1 / h_n_2 + (h_n_1 / h_n_2 + q * (1.0 + h_n_2 / h_n_3)) * temp2;
            const double c4 = -temp2 * q * h_n_1 / h_n_2;
            x = x + (d_cur * (float)c1 + buf[b - 1] * (float)c2 + buf[b - 2] * (float)c3 + buf[b - 3] * (float)c4) *
                        (float)h_n;
        }
        buf.push_back(d_cur);
        if ((int)buf.size() > kMaxOrder - 1) buf.pop_front();
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
