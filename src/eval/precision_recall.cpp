#include "eval/precision_recall.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace nuance {

namespace {
constexpr int64_t kMaxRows = 1 << 20;
constexpr int64_t kMaxDim = 1 << 16;

struct Rows {
    std::vector<double> v;
    int64_t n = 0, d = 0;
    const double* row(int64_t i) const { return v.data() + (size_t)(i * d); }
};

Rows rows_of(const Tensor& t, const char* what) {
    NUANCE_CHECK(t.defined() && t.dim() == 2 && dtype_is_float(t.dtype()), "precision/recall: ", what,
                 " features must be a float [N, D] matrix, got ", t.defined() ? t.str() : std::string("nothing"));
    NUANCE_CHECK(t.size(0) >= 1 && t.size(0) <= kMaxRows && t.size(1) >= 1 && t.size(1) <= kMaxDim,
                 "precision/recall: ", what, " features ", t.str(), " must have 1..", kMaxRows, " rows and 1..", kMaxDim,
                 " columns");
    Rows r;
    r.n = t.size(0);
    r.d = t.size(1);
    if (t.dtype() == DType::F64) {
        const Tensor c = t.contiguous();
        const double* p = c.data<double>();
        r.v.assign(p, p + c.numel());
    } else {
        const std::vector<float> f = t.to_vector();
        r.v.assign(f.begin(), f.end());
    }
    for (size_t i = 0; i < r.v.size(); ++i)
        NUANCE_CHECK(std::isfinite(r.v[i]), "precision/recall: ", what, " features: value [", (int64_t)i / r.d, ", ",
                     (int64_t)i % r.d, "] is ", r.v[i]);
    return r;
}

double dist(const double* a, const double* b, int64_t d) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) {
        const double t = a[j] - b[j];
        s += t * t;
    }
    return std::sqrt(s);
}

std::vector<double> radii(const Rows& x, int64_t k) {
    std::vector<double> out((size_t)x.n);
#pragma omp parallel
    {
        std::vector<double> ds((size_t)x.n);
#pragma omp for schedule(dynamic, 16)
        for (int64_t i = 0; i < x.n; ++i) {
            for (int64_t j = 0; j < x.n; ++j) ds[(size_t)j] = dist(x.row(i), x.row(j), x.d);
            // index k of the sorted row = the k-th neighbour (index 0 is the point itself, at distance 0)
            std::nth_element(ds.begin(), ds.begin() + k, ds.end());
            out[(size_t)i] = ds[(size_t)k];
        }
    }
    return out;
}

void check_k(int64_t k, int64_t n, const char* what) {
    NUANCE_CHECK(k >= 1 && k < n, "precision/recall: k = ", k, " needs more than k ", what, " samples (got ", n,
                 "); k must be in 1..", n - 1);
}
}  // namespace

std::vector<double> knn_radii(const Tensor& x, int64_t k) {
    const Rows r = rows_of(x, "input");
    check_k(k, r.n, "input");
    return radii(r, k);
}

PrecisionRecall precision_recall(const Tensor& real_t, const Tensor& fake_t, int64_t k) {
    const Rows real = rows_of(real_t, "real"), fake = rows_of(fake_t, "fake");
    NUANCE_CHECK(real.d == fake.d, "precision/recall: real features have ", real.d, " columns, fake features ",
                 fake.d);
    check_k(k, real.n, "real");
    check_k(k, fake.n, "fake");
    const std::vector<double> rr = radii(real, k), rf = radii(fake, k);
    std::vector<char> real_in_fake((size_t)real.n, 0);
    std::vector<double> nearest_fake((size_t)real.n, std::numeric_limits<double>::infinity());
    int64_t precise = 0, density_hits = 0;
#pragma omp parallel
    {
        std::vector<double> nf((size_t)real.n, std::numeric_limits<double>::infinity());
        std::vector<char> rif((size_t)real.n, 0);
#pragma omp for schedule(dynamic, 16) reduction(+ : precise, density_hits)
        for (int64_t f = 0; f < fake.n; ++f) {
            bool in = false;
            for (int64_t r = 0; r < real.n; ++r) {
                const double d = dist(fake.row(f), real.row(r), real.d);
                if (d <= rr[(size_t)r]) {
                    in = true;
                    ++density_hits;
                }
                if (d <= rf[(size_t)f]) rif[(size_t)r] = 1;
                nf[(size_t)r] = std::min(nf[(size_t)r], d);
            }
            precise += in;
        }
#pragma omp critical
        for (int64_t r = 0; r < real.n; ++r) {
            nearest_fake[(size_t)r] = std::min(nearest_fake[(size_t)r], nf[(size_t)r]);
            real_in_fake[(size_t)r] |= rif[(size_t)r];
        }
    }
    int64_t recalled = 0, covered = 0;
    for (int64_t r = 0; r < real.n; ++r) {
        recalled += real_in_fake[(size_t)r];
        covered += nearest_fake[(size_t)r] <= rr[(size_t)r];
    }
    PrecisionRecall out;
    out.k = k;
    out.n_real = real.n;
    out.n_fake = fake.n;
    out.precision = (double)precise / (double)fake.n;
    out.recall = (double)recalled / (double)real.n;
    out.density = (double)density_hits / ((double)k * (double)fake.n);
    out.coverage = (double)covered / (double)real.n;
    return out;
}

}  // namespace nuance
