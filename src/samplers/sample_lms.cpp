// Linear multistep (k-diffusion sample_lms; diffusers LMSDiscreteScheduler): x += sum_j c_j d_{i-j}, where c_j
// integrates the Lagrange basis polynomial of the last `order` sigmas over [sigma_i, sigma_{i+1}]. The reference
// integrates with scipy quad; the integrands are polynomials of degree < 8, which 5-point Gauss-Legendre
// integrates exactly.
#include <cmath>
#include <deque>

#include "core/error.h"
#include "ops/elementwise.h"
#include "samplers/sampler.h"

namespace nuance {

namespace {

double lms_coeff(int order, const std::vector<double>& t, int i, int j) {
    static const double kNodes[5] = {-0.9061798459386640, -0.5384693101056831, 0.0, 0.5384693101056831,
                                     0.9061798459386640};
    static const double kWeights[5] = {0.2369268850561891, 0.4786286704993665, 0.5688888888888889,
                                       0.4786286704993665, 0.2369268850561891};
    const double a = t[(size_t)i], b = t[(size_t)i + 1];
    double sum = 0;
    for (int q = 0; q < 5; ++q) {
        const double tau = 0.5 * (b - a) * kNodes[q] + 0.5 * (a + b);
        double prod = 1.0;
        for (int k = 0; k < order; ++k) {
            if (k == j) continue;
            prod *= (tau - t[(size_t)(i - k)]) / (t[(size_t)(i - j)] - t[(size_t)(i - k)]);
        }
        sum += kWeights[q] * prod;
    }
    return 0.5 * (b - a) * sum;
}

}  // namespace

Tensor sample_lms(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o) {
    SamplerLoop loop("lms", d, x, s, o);
    NUANCE_CHECK(o.lms_order >= 1 && o.lms_order <= 8, "sampler 'lms': lms_order must be in [1, 8], got ",
                 o.lms_order);
    std::deque<Tensor> ds;  // newest last
    for (int i = 0; i < loop.steps(); ++i) {
        const double sigma = loop.sigma(i);
        const Tensor denoised = loop.denoise(x, sigma);
        ds.push_back((x - denoised) / (float)sigma);
        if ((int)ds.size() > o.lms_order) ds.pop_front();
        const int cur_order = std::min(i + 1, o.lms_order);
        for (int j = 0; j < cur_order; ++j)
            x = x + ds[ds.size() - 1 - (size_t)j] * (float)lms_coeff(cur_order, s.sigmas, i, j);
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
