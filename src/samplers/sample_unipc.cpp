// UniPC, 2nd order with the B2(h) variant (Zhao et al. 2023, "UniPC", alg. 1/2; diffusers UniPCMultistepScheduler
// with predict_x0, solver_type bh2, solver_order 2). In VE scaling with lambda = -log sigma, h = lambda_next -
// lambda, r = sigma_next / sigma and B(h) = expm1(-h) = r - 1, each step is
//   predictor  UniP-p:  x_next = r x + (1 - r) D_i + (1 - r) rho_p (D_{i-1} - D_i) / r_1,   rho_p = 1/2 (order 2)
//   corrector  UniC-p:  once D_{i+1} is known, the previous step is redone with it:
//                       x_{i+1} <- r x_i + (1 - r) D_i + (1 - r) (sum_k rho_k D1_k + rho_c (D_{i+1} - D_i))
// where rho solves the order conditions R rho = b (order 1: rho_c = 1/2). The model is evaluated at the predicted
// point; the corrected point only feeds the next predictor, so the callback reports the predicted x (as diffusers
// returns it) and the last step has no corrector. Orders warm up from 1 and drop to 1 on the last step
// (lower_order_final; always on a step to sigma 0).
#include <cmath>
#include <vector>

#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

namespace {

double lambda_of(double sigma) { return -std::log(sigma); }

// The b vector of the order conditions for B(h) = expm1(hh), hh = -h (diffusers' loop, in double).
std::vector<double> order_b(double hh, int order) {
    std::vector<double> b;
    const double h_phi_1 = std::expm1(hh);
    const double B_h = std::expm1(hh);
    double h_phi_k = h_phi_1 / hh - 1.0;
    double factorial = 1.0;
    for (int i = 1; i <= order; ++i) {
        b.push_back(h_phi_k * factorial / B_h);
        factorial *= i + 1;
        h_phi_k = h_phi_k / hh - 1.0 / factorial;
    }
    return b;
}

}  // namespace

Tensor sample_unipc(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("unipc", d, x, s, o);
    const int n = loop.steps();
    std::vector<Tensor> ms;  // denoised estimates D_0..D_i
    Tensor last_x;           // x_{i-1} after its correction
    int last_order = 0, lower_order_nums = 0;
    for (int i = 0; i < n; ++i) {
        const Tensor denoised = loop.denoise(x, loop.sigma(i));
        if (i > 0) {
            // UniC with the new estimate: redo step i-1 (sigma_{i-1} -> sigma_i) from last_x.
            const double s0 = loop.sigma(i - 1), st = loop.sigma(i);
            const double h = lambda_of(st) - lambda_of(s0);
            const double r = st / s0;
            const Tensor& m0 = ms.back();
            Tensor corr;
            const Tensor d1_t = denoised - m0;
            if (last_order == 1) {
                corr = d1_t * 0.5f;
            } else {
                // order 2: rks = [rk, 1], R = [[1, 1], [rk, 1]], solve R rho = b
                const double rk = (lambda_of(loop.sigma(i - 2)) - lambda_of(s0)) / h;
                const Tensor d1 = (ms[ms.size() - 2] - m0) / (float)rk;
                const std::vector<double> b = order_b(-h, 2);
                const double det = 1.0 - rk;
                const double rho0 = (b[0] - b[1]) / det;
                const double rho1 = (b[1] - rk * b[0]) / det;
                corr = d1 * (float)rho0 + d1_t * (float)rho1;
            }
            x = euler_step(last_x, m0, s0, st) + corr * (float)(1.0 - r);
        }
        ms.push_back(denoised);
        if (ms.size() > 3) ms.erase(ms.begin());
        const double sigma = loop.sigma(i), sigma_next = loop.sigma(i + 1);
        int order = o.lower_order_final ? std::min(2, n - i) : 2;
        order = std::min(order, lower_order_nums + 1);
        if (sigma_next == 0) order = 1;
        last_x = x;
        // UniP: predictor sigma_i -> sigma_{i+1}.
        Tensor x_next = euler_step(x, denoised, sigma, sigma_next);
        if (order == 2) {
            const double h = lambda_of(sigma_next) - lambda_of(sigma);
            const double rk = (lambda_of(loop.sigma(i - 1)) - lambda_of(sigma)) / h;
            const Tensor d1 = (ms[ms.size() - 2] - denoised) / (float)rk;
            x_next = x_next + d1 * (float)(0.5 * (1.0 - sigma_next / sigma));
        }
        x = x_next;
        last_order = order;
        if (lower_order_nums < 2) ++lower_order_nums;
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
