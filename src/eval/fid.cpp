// Shape letters: N, M samples of the two sets, D feature dimensions, n the order of a square matrix.
#include "eval/fid.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/mt19937.h"

namespace nuance {

namespace {

// [N, D] features as row-major doubles, with the checks every entry point shares.
std::vector<double> rows_of(const Tensor& t, const char* what, int64_t& n, int64_t& d) {
    NUANCE_CHECK(t.defined(), what, " features are undefined");
    NUANCE_CHECK(t.dim() == 2, what, " features must be [N, D], got ", t.shape());
    NUANCE_CHECK(dtype_is_float(t.dtype()), what, " features must be a float tensor, got ", t.str());
    n = t.size(0);
    d = t.size(1);
    NUANCE_CHECK(d >= 1, what, " features have no dimensions: ", t.shape());
    const std::vector<float> v = t.to_vector();
    std::vector<double> out(v.begin(), v.end());
    for (double x : out) NUANCE_CHECK(std::isfinite(x), what, " features hold a non-finite value");
    return out;
}

// c = a · b for n x n row-major matrices.
std::vector<double> matmul_square(const std::vector<double>& a, const std::vector<double>& b, int64_t n) {
    std::vector<double> c((size_t)(n * n), 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < n; ++k) {
            const double aik = a[(size_t)(i * n + k)];
            if (aik == 0.0) continue;
            const double* brow = &b[(size_t)(k * n)];
            double* crow = &c[(size_t)(i * n)];
            for (int64_t j = 0; j < n; ++j) crow[j] += aik * brow[j];
        }
    return c;
}

// Square roots of eigenvalues, with those indistinguishable from 0 set to 0: Jacobi finds eigenvalues to about
// n * eps * max|lambda| in absolute terms, and the square root would blow that rounding noise up to ~sqrt(eps)
// (a singular covariance would then be off by ~1e-8 relative instead of ~1e-16).
std::vector<double> sqrt_eigenvalues(const std::vector<double>& values) {
    double top = 0;
    for (double l : values) top = std::max(top, std::abs(l));
    const double noise = 4.0 * (double)values.size() * 2.220446049250313e-16 * top;
    std::vector<double> out;
    for (double l : values) out.push_back(l > noise ? std::sqrt(l) : 0.0);
    return out;
}

// V diag(f(values)) V^T.
std::vector<double> recompose(const SymmetricEigen& e, int64_t n, const std::vector<double>& f) {
    std::vector<double> out((size_t)(n * n), 0.0);
    for (int64_t k = 0; k < n; ++k) {
        if (f[(size_t)k] == 0.0) continue;
        for (int64_t i = 0; i < n; ++i) {
            const double vik = e.vectors[(size_t)(i * n + k)] * f[(size_t)k];
            for (int64_t j = 0; j < n; ++j) out[(size_t)(i * n + j)] += vik * e.vectors[(size_t)(j * n + k)];
        }
    }
    return out;
}

double dot4(const double* a, const double* b, int64_t d) {
    // Four partial sums: independent chains the compiler can keep in flight (strict FP forbids reassociating one).
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < d; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

// Unbiased MMD^2 of the rows ix of x and iy of y (Bińkowski et al. 2018, eq. 3 with the polynomial kernel).
double mmd2_unbiased(const std::vector<double>& x, const std::vector<int64_t>& ix, const std::vector<double>& y,
                     const std::vector<int64_t>& iy, int64_t d) {
    const auto k = [d](const double* a, const double* b) {
        const double t = dot4(a, b, d) / (double)d + 1.0;
        return t * t * t;
    };
    const int64_t m = (int64_t)ix.size(), n = (int64_t)iy.size();
    double kxx = 0, kyy = 0, kxy = 0;
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = i + 1; j < m; ++j) kxx += k(&x[(size_t)(ix[i] * d)], &x[(size_t)(ix[j] * d)]);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = i + 1; j < n; ++j) kyy += k(&y[(size_t)(iy[i] * d)], &y[(size_t)(iy[j] * d)]);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) kxy += k(&x[(size_t)(ix[i] * d)], &y[(size_t)(iy[j] * d)]);
    // Off-diagonal sums counted once above, so twice that over m(m-1) ordered pairs.
    return 2.0 * kxx / ((double)m * (double)(m - 1)) + 2.0 * kyy / ((double)n * (double)(n - 1)) -
           2.0 * kxy / ((double)m * (double)n);
}

}  // namespace

// ---- FeatureStats ----

void FeatureStats::add(const Tensor& features) {
    int64_t n = 0, d = 0;
    const std::vector<double> x = rows_of(features, "FeatureStats:", n, d);
    if (count_ == 0 && dim_ == 0) {
        dim_ = d;
        sum_.assign((size_t)d, 0.0);
        sum_outer_.assign((size_t)(d * d), 0.0);
    }
    NUANCE_CHECK(d == dim_, "FeatureStats: features of ", d, " dimensions added to statistics of ", dim_);
    if (n == 0) return;
    if (shift_.empty()) shift_.assign(x.begin(), x.begin() + d);
    std::vector<double> c((size_t)d);
    for (int64_t r = 0; r < n; ++r) {
        for (int64_t j = 0; j < d; ++j) c[(size_t)j] = x[(size_t)(r * d + j)] - shift_[(size_t)j];
        for (int64_t i = 0; i < d; ++i) {
            sum_[(size_t)i] += c[(size_t)i];
            double* row = &sum_outer_[(size_t)(i * d)];
            const double ci = c[(size_t)i];
            for (int64_t j = i; j < d; ++j) row[j] += ci * c[(size_t)j];  // upper triangle; mirrored on read
        }
    }
    count_ += n;
}

std::vector<double> FeatureStats::mean() const {
    NUANCE_CHECK(count_ >= 1, "FeatureStats: the mean of no samples");
    std::vector<double> mu((size_t)dim_);
    for (int64_t j = 0; j < dim_; ++j) mu[(size_t)j] = shift_[(size_t)j] + sum_[(size_t)j] / (double)count_;
    return mu;
}

std::vector<double> FeatureStats::covariance() const {
    NUANCE_CHECK(count_ >= 2, "FeatureStats: a covariance needs at least 2 samples, got ", count_);
    const int64_t d = dim_;
    const double n = (double)count_;
    std::vector<double> s((size_t)(d * d));
    for (int64_t i = 0; i < d; ++i)
        for (int64_t j = i; j < d; ++j) {
            // sum (c_i - mean c_i)(c_j - mean c_j) = sum c_i c_j - (sum c_i)(sum c_j) / n
            const double v = (sum_outer_[(size_t)(i * d + j)] - sum_[(size_t)i] * sum_[(size_t)j] / n) / (n - 1.0);
            s[(size_t)(i * d + j)] = v;
            s[(size_t)(j * d + i)] = v;
        }
    return s;
}

// ---- symmetric eigendecomposition ----

SymmetricEigen eigen_symmetric(const std::vector<double>& a_in, int64_t n) {
    NUANCE_CHECK(n >= 1 && (int64_t)a_in.size() == n * n, "eigen_symmetric: expected a ", n, "x", n, " matrix (",
                 n * n, " values), got ", a_in.size(), " values");
    std::vector<double> a = a_in;
    double norm2 = 0;
    for (double v : a) {
        NUANCE_CHECK(std::isfinite(v), "eigen_symmetric: the matrix holds a non-finite value");
        norm2 += v * v;
    }
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = i + 1; j < n; ++j) {
            const double u = a[(size_t)(i * n + j)], l = a[(size_t)(j * n + i)];
            NUANCE_CHECK(std::abs(u - l) <= 1e-9 * std::sqrt(norm2) + 1e-300, "eigen_symmetric: the matrix is not ",
                         "symmetric: a[", i, ",", j, "] = ", u, " but a[", j, ",", i, "] = ", l);
            a[(size_t)(i * n + j)] = a[(size_t)(j * n + i)] = 0.5 * (u + l);
        }
    SymmetricEigen e;
    e.vectors.assign((size_t)(n * n), 0.0);
    for (int64_t i = 0; i < n; ++i) e.vectors[(size_t)(i * n + i)] = 1.0;
    // Cyclic Jacobi (Golub & Van Loan §8.5): each rotation zeroes a[p][q]; the off-diagonal mass falls
    // quadratically once small, so a handful of sweeps reach rounding level.
    const double tol2 = 1e-30 * norm2;
    for (int sweep = 0;; ++sweep) {
        double off = 0;
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = i + 1; j < n; ++j) off += a[(size_t)(i * n + j)] * a[(size_t)(i * n + j)];
        if (off <= tol2 || off == 0.0) break;
        NUANCE_CHECK_CODE(sweep < 100, Internal, "eigen_symmetric: Jacobi did not converge in 100 sweeps (n = ", n,
                          ", off-diagonal mass ", off, ")");
        for (int64_t p = 0; p < n; ++p)
            for (int64_t q = p + 1; q < n; ++q) {
                const double apq = a[(size_t)(p * n + q)];
                if (apq == 0.0) continue;
                const double app = a[(size_t)(p * n + p)], aqq = a[(size_t)(q * n + q)];
                const double theta = (aqq - app) / (2.0 * apq);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1.0));
                const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
                for (int64_t k = 0; k < n; ++k) {
                    if (k == p || k == q) continue;
                    const double akp = a[(size_t)(k * n + p)], akq = a[(size_t)(k * n + q)];
                    const double nkp = c * akp - s * akq, nkq = s * akp + c * akq;
                    a[(size_t)(k * n + p)] = a[(size_t)(p * n + k)] = nkp;
                    a[(size_t)(k * n + q)] = a[(size_t)(q * n + k)] = nkq;
                }
                a[(size_t)(p * n + p)] = app - t * apq;
                a[(size_t)(q * n + q)] = aqq + t * apq;
                a[(size_t)(p * n + q)] = a[(size_t)(q * n + p)] = 0.0;
                for (int64_t k = 0; k < n; ++k) {
                    const double vkp = e.vectors[(size_t)(k * n + p)], vkq = e.vectors[(size_t)(k * n + q)];
                    e.vectors[(size_t)(k * n + p)] = c * vkp - s * vkq;
                    e.vectors[(size_t)(k * n + q)] = s * vkp + c * vkq;
                }
            }
    }
    e.values.resize((size_t)n);
    for (int64_t i = 0; i < n; ++i) e.values[(size_t)i] = a[(size_t)(i * n + i)];
    return e;
}

// ---- FID ----

double frechet_distance(const std::vector<double>& mu1, const std::vector<double>& s1, const std::vector<double>& mu2,
                        const std::vector<double>& s2, int64_t dim) {
    NUANCE_CHECK(dim >= 1, "frechet_distance: dimension must be >= 1, got ", dim);
    NUANCE_CHECK((int64_t)mu1.size() == dim && (int64_t)mu2.size() == dim, "frechet_distance: means of ",
                 mu1.size(), " and ", mu2.size(), " values for dimension ", dim);
    NUANCE_CHECK((int64_t)s1.size() == dim * dim && (int64_t)s2.size() == dim * dim,
                 "frechet_distance: covariances of ", s1.size(), " and ", s2.size(), " values, expected ", dim, "x",
                 dim);
    double diff2 = 0;
    for (int64_t i = 0; i < dim; ++i) diff2 += (mu1[(size_t)i] - mu2[(size_t)i]) * (mu1[(size_t)i] - mu2[(size_t)i]);
    double tr1 = 0, tr2 = 0;
    for (int64_t i = 0; i < dim; ++i) {
        tr1 += s1[(size_t)(i * dim + i)];
        tr2 += s2[(size_t)(i * dim + i)];
    }
    // A = S1^(1/2) (eigenvalues clamped at 0), M = A S2 A: symmetric PSD, eig(M) = eig(S1 S2).
    const SymmetricEigen e1 = eigen_symmetric(s1, dim);
    const std::vector<double> a = recompose(e1, dim, sqrt_eigenvalues(e1.values));
    std::vector<double> m = matmul_square(matmul_square(a, s2, dim), a, dim);
    for (int64_t i = 0; i < dim; ++i)
        for (int64_t j = i + 1; j < dim; ++j) {
            const double v = 0.5 * (m[(size_t)(i * dim + j)] + m[(size_t)(j * dim + i)]);  // rounding asymmetry
            m[(size_t)(i * dim + j)] = m[(size_t)(j * dim + i)] = v;
        }
    const SymmetricEigen em = eigen_symmetric(m, dim);
    double tr_sqrt = 0;
    for (double r : sqrt_eigenvalues(em.values)) tr_sqrt += r;
    return diff2 + tr1 + tr2 - 2.0 * tr_sqrt;
}

double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
    NUANCE_CHECK(a.count() >= 2 && b.count() >= 2, "FID needs at least 2 samples in each set, got ", a.count(),
                 " and ", b.count());
    NUANCE_CHECK(a.dim() == b.dim(), "FID: feature dimensions differ: ", a.dim(), " vs ", b.dim());
    return frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance(), a.dim());
}

// ---- KID ----

double kernel_inception_distance(const Tensor& x, const Tensor& y) {
    int64_t m = 0, n = 0, dx = 0, dy = 0;
    const std::vector<double> xs = rows_of(x, "KID: first set's", m, dx);
    const std::vector<double> ys = rows_of(y, "KID: second set's", n, dy);
    NUANCE_CHECK(dx == dy, "KID: feature dimensions differ: ", dx, " vs ", dy);
    NUANCE_CHECK(m >= 2 && n >= 2, "KID needs at least 2 samples in each set, got ", m, " and ", n);
    std::vector<int64_t> ix((size_t)m), iy((size_t)n);
    std::iota(ix.begin(), ix.end(), 0);
    std::iota(iy.begin(), iy.end(), 0);
    return mmd2_unbiased(xs, ix, ys, iy, dx);
}

KidEstimate kernel_inception_distance_subsets(const Tensor& x, const Tensor& y, int subsets, int64_t subset_size,
                                              uint64_t seed) {
    int64_t m = 0, n = 0, dx = 0, dy = 0;
    const std::vector<double> xs = rows_of(x, "KID: first set's", m, dx);
    const std::vector<double> ys = rows_of(y, "KID: second set's", n, dy);
    NUANCE_CHECK(dx == dy, "KID: feature dimensions differ: ", dx, " vs ", dy);
    NUANCE_CHECK(m >= 2 && n >= 2, "KID needs at least 2 samples in each set, got ", m, " and ", n);
    NUANCE_CHECK(subsets >= 1 && subset_size >= 2, "KID: subsets must be >= 1 and subset size >= 2, got ", subsets,
                 " and ", subset_size);
    KidEstimate est;
    est.subsets = subsets;
    est.subset_size = std::min({subset_size, m, n});
    Mt19937 rng(seed);
    // The first `k` entries of a partial Fisher-Yates shuffle: k distinct rows.
    const auto draw = [&rng](int64_t total, int64_t k) {
        std::vector<int64_t> idx((size_t)total);
        std::iota(idx.begin(), idx.end(), 0);
        for (int64_t i = 0; i < k; ++i) {
            const int64_t j = i + (int64_t)(rng.next64() % (uint64_t)(total - i));
            std::swap(idx[(size_t)i], idx[(size_t)j]);
        }
        idx.resize((size_t)k);
        return idx;
    };
    std::vector<double> vals;
    for (int s = 0; s < subsets; ++s) {
        const std::vector<int64_t> ix = draw(m, est.subset_size), iy = draw(n, est.subset_size);
        vals.push_back(mmd2_unbiased(xs, ix, ys, iy, dx));
    }
    for (double v : vals) est.mean += v;
    est.mean /= (double)vals.size();
    for (double v : vals) est.std += (v - est.mean) * (v - est.mean);
    // numpy's std (ddof = 0), as torch-fidelity reports kernel_inception_distance_std.
    est.std = std::sqrt(est.std / (double)vals.size());
    return est;
}

}  // namespace nuance
