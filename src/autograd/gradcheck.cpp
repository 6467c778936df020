#include "autograd/gradcheck.h"

#include "autograd/functions.h"
#include "backends/backend.h"

#include <cmath>
#include <random>

namespace nuance {

GradcheckResult gradcheck(const std::function<Var(const std::vector<Var>&)>& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& o, const std::vector<bool>& wrt) {
    NUANCE_CHECK(wrt.empty() || wrt.size() == inputs.size(), "gradcheck: ", wrt.size(), " wrt flags for ",
                 inputs.size(), " inputs");
    std::vector<Var> xs;
    for (size_t i = 0; i < inputs.size(); ++i) {
        NUANCE_CHECK(inputs[i].defined(), "gradcheck: input ", i, " is undefined");
        Tensor x = Tensor::empty(inputs[i].shape(), DType::F32);  // contiguous: element j is logical index j
        x.copy_(inputs[i]);
        xs.emplace_back(x, wrt.empty() || wrt[i]);
    }
    // Analytic: backward of Σ y·R.
    Var y = f(xs);
    NUANCE_CHECK(y.defined(), "gradcheck: f returned an undefined Var");
    std::mt19937_64 gen(o.seed);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    std::vector<float> r((size_t)y.numel());
    for (float& v : r) v = uni(gen);
    const Tensor R = Tensor::from_vector(r, y.shape());
    auto loss_of = [&](const Tensor& out) {  // in double, so the difference is not lost to f32 rounding of the sum
        const std::vector<float> v = out.to_vector();
        double s = 0;
        for (size_t k = 0; k < v.size(); ++k) s += (double)v[k] * r[k];
        return s;
    };
    backward(sum(mul(y, Var(R))));
    GradcheckResult res;
    for (size_t i = 0; i < xs.size(); ++i) {
        if (!xs[i].requires_grad()) continue;
        Tensor x = xs[i].value();
        const Tensor ga = xs[i].grad().defined() ? xs[i].grad() : Tensor::zeros(x.shape());
        const std::vector<float> analytic = ga.to_vector();
        float* px = x.data<float>();
        for (int64_t j = 0; j < x.numel(); ++j) {
            const float saved = px[j];
            double lp, lm;
            {
                // The input is edited in place: packed copies of it (an op's weight) must be rebuilt each time.
                NoGradGuard ng;
                px[j] = saved + o.eps;
                clear_packed_weights();
                lp = loss_of(f(xs).value());
                px[j] = saved - o.eps;
                clear_packed_weights();
                lm = loss_of(f(xs).value());
            }
            px[j] = saved;
            clear_packed_weights();
            const double numeric = (lp - lm) / (2.0 * o.eps);
            const double err = std::fabs((double)analytic[(size_t)j] - numeric);
            res.max_abs_err = std::max(res.max_abs_err, err);
            ++res.checked;
            if (res.ok && err > o.atol + o.rtol * std::fabs(numeric)) {
                res.ok = false;
                res.message = str("input ", i, " ", x.shape(), " element ", j, ": analytic ", analytic[(size_t)j],
                                  " vs numeric ", numeric, " (op '", y.op(), "')");
            }
        }
    }
    return res;
}

}  // namespace nuance
