#include "eval/inception_eval.h"

#include <cmath>
#include <vector>

#include "core/error.h"

namespace nuance {

InceptionScore inception_score(const Tensor& logits, int splits) {
    NUANCE_CHECK(logits.defined() && logits.dim() == 2 && logits.size(0) >= 1 && logits.size(1) >= 2,
                 "Inception Score: logits must be [N >= 1, classes >= 2], got ",
                 logits.defined() ? shape_str(logits.shape()) : std::string("undefined"));
    NUANCE_CHECK(splits >= 1 && splits <= 100000, "usage: --splits must be 1..100000, got ", splits);
    const int64_t n = logits.size(0), k = logits.size(1);
    const std::vector<float> v = logits.to_vector();
    // log-softmax per row, in double.
    std::vector<double> logp((size_t)(n * k));
    for (int64_t i = 0; i < n; ++i) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < k; ++j) {
            NUANCE_CHECK(std::isfinite(v[(size_t)(i * k + j)]), "Inception Score: logit [", i, ", ", j,
                         "] is not finite");
            mx = std::max(mx, (double)v[(size_t)(i * k + j)]);
        }
        double s = 0;
        for (int64_t j = 0; j < k; ++j) s += std::exp((double)v[(size_t)(i * k + j)] - mx);
        const double lse = mx + std::log(s);
        for (int64_t j = 0; j < k; ++j) logp[(size_t)(i * k + j)] = (double)v[(size_t)(i * k + j)] - lse;
    }
    const int64_t chunk = (n + splits - 1) / splits;  // torch.chunk
    std::vector<double> scores;
    for (int64_t a = 0; a < n; a += chunk) {
        const int64_t b = std::min(n, a + chunk);
        std::vector<double> mean((size_t)k, 0.0);
        for (int64_t i = a; i < b; ++i)
            for (int64_t j = 0; j < k; ++j) mean[(size_t)j] += std::exp(logp[(size_t)(i * k + j)]);
        for (double& m : mean) m /= (double)(b - a);
        double kl = 0;
        for (int64_t i = a; i < b; ++i) {
            double s = 0;
            for (int64_t j = 0; j < k; ++j) {
                const double lp = logp[(size_t)(i * k + j)];
                s += std::exp(lp) * (lp - std::log(mean[(size_t)j]));
            }
            kl += s;
        }
        scores.push_back(std::exp(kl / (double)(b - a)));
    }
    InceptionScore r;
    r.splits = (int)scores.size();
    for (double s : scores) r.mean += s;
    r.mean /= (double)scores.size();
    if (scores.size() >= 2) {
        for (double s : scores) r.std += (s - r.mean) * (s - r.mean);
        r.std = std::sqrt(r.std / (double)(scores.size() - 1));
    } else {
        r.std = NAN;  // torch.std of one value
    }
    return r;
}

}  // namespace nuance
