// Cayley transform of square blocks (cayley.h).
#include "ops/cayley.h"

#include <cmath>
#include <vector>

#include "core/error.h"

namespace nuance {

CayleyResult cayley(const Tensor& q_in) {
    NUANCE_CHECK(q_in.dim() >= 2 && q_in.size(-1) == q_in.size(-2) && q_in.size(-1) > 0, "cayley: expected square ",
                 "blocks [..., b, b], got ", q_in.shape());
    const int64_t b = q_in.size(-1), nb = q_in.numel() / (b * b);
    const Tensor q = q_in.f32().contiguous();
    CayleyResult out{Tensor::empty(q.shape()), Tensor::empty(q.shape())};
    const float* src = q.data<float>();
    float* pr = out.r.data<float>();
    float* pa = out.inv.data<float>();
    int64_t singular = -1;  // a block whose I - Q could not be inverted (non-finite values): reported after the loop
#pragma omp parallel if (nb * b * b * b > (1 << 16))
    {
        std::vector<double> a((size_t)(b * 2 * b));
#pragma omp for schedule(static)
        for (int64_t k = 0; k < nb; ++k) {
            const float* qk = src + k * b * b;
            // [I - Q | I] -> [I | (I - Q)^-1]
            for (int64_t i = 0; i < b; ++i)
                for (int64_t j = 0; j < 2 * b; ++j)
                    a[(size_t)(i * 2 * b + j)] = j < b ? (double)(i == j) - qk[i * b + j] : (double)(j - b == i);
            for (int64_t c = 0; c < b; ++c) {
                int64_t piv = c;
                for (int64_t i = c + 1; i < b; ++i)
                    if (std::fabs(a[(size_t)(i * 2 * b + c)]) > std::fabs(a[(size_t)(piv * 2 * b + c)])) piv = i;
                const double d = a[(size_t)(piv * 2 * b + c)];
                if (d == 0 || !std::isfinite(d)) {
#pragma omp critical(cayley_singular)
                    singular = k;
                    break;
                }
                if (piv != c)
                    for (int64_t j = 0; j < 2 * b; ++j) std::swap(a[(size_t)(c * 2 * b + j)], a[(size_t)(piv * 2 * b + j)]);
                for (int64_t j = 0; j < 2 * b; ++j) a[(size_t)(c * 2 * b + j)] /= d;
                for (int64_t i = 0; i < b; ++i) {
                    if (i == c) continue;
                    const double f = a[(size_t)(i * 2 * b + c)];
                    if (f == 0) continue;
                    for (int64_t j = 0; j < 2 * b; ++j) a[(size_t)(i * 2 * b + j)] -= f * a[(size_t)(c * 2 * b + j)];
                }
            }
            for (int64_t i = 0; i < b; ++i)
                for (int64_t j = 0; j < b; ++j) {
                    pa[k * b * b + i * b + j] = (float)a[(size_t)(i * 2 * b + b + j)];
                    double acc = 0;
                    for (int64_t l = 0; l < b; ++l)
                        acc += ((double)(i == l) + qk[i * b + l]) * a[(size_t)(l * 2 * b + b + j)];
                    pr[k * b * b + i * b + j] = (float)acc;
                }
        }
    }
    NUANCE_CHECK(singular < 0, "cayley: block ", singular, " of ", q_in.shape(), " has a singular or non-finite I - Q");
    return out;
}

}  // namespace nuance
