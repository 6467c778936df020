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
    if (dim > 256) return frechet_distance_cholesky(mu1, s1, mu2, s2, dim);
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

// ---- large covariances: Cholesky + tridiagonal QL ----

namespace nuance {

namespace {

// In-place lower Cholesky factor of a row-major n x n SPD matrix (upper part zeroed). False if not positive definite.
bool cholesky_lower(std::vector<double>& a, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
        double* rj = &a[(size_t)(j * n)];
        double s = rj[j];
        for (int64_t k = 0; k < j; ++k) s -= rj[k] * rj[k];
        if (!(s > 0.0) || !std::isfinite(s)) return false;
        const double ljj = std::sqrt(s);
        rj[j] = ljj;
#pragma omp parallel for schedule(static)
        for (int64_t i = j + 1; i < n; ++i) {
            double* ri = &a[(size_t)(i * n)];
            double t = ri[j];
            for (int64_t k = 0; k < j; ++k) t -= ri[k] * rj[k];
            ri[j] = t / ljj;
        }
        for (int64_t k = j + 1; k < n; ++k) rj[k] = 0.0;
    }
    return true;
}

// c = op(a) b (n x n row-major), op(a) = a^T when a_transposed. Rows of c are computed 8 at a time, so each row of b
// is read once per 8 rows of c instead of once per row (the products of 2048 x 2048 covariances are bound by reading
// b: 32 MB): `nuance eval fid DIR stats.npz` (2048-d) went from 8.3 to 6.3 s, bit-identical. The sum over k runs in
// the same order for every element as the one-row loop did.
std::vector<double> matmul_sq(const std::vector<double>& a, const std::vector<double>& b, int64_t n, bool a_transposed) {
    constexpr int64_t R = 8;
    std::vector<double> c((size_t)(n * n), 0.0);
    const int64_t blocks = (n + R - 1) / R;
#pragma omp parallel for schedule(dynamic, 2)
    for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t i0 = blk * R, rows = std::min(R, n - i0);
        double* cr[R];
        for (int64_t r = 0; r < rows; ++r) cr[r] = &c[(size_t)((i0 + r) * n)];
        for (int64_t k = 0; k < n; ++k) {
            double aik[R];
            bool any = false;
            for (int64_t r = 0; r < rows; ++r) {
                aik[r] = a_transposed ? a[(size_t)(k * n + i0 + r)] : a[(size_t)((i0 + r) * n + k)];
                any = any || aik[r] != 0.0;
            }
            if (!any) continue;  // a triangular factor: whole blocks of zeros
            const double* brow = &b[(size_t)(k * n)];
            for (int64_t r = 0; r < rows; ++r) {
                const double v = aik[r];
                if (v == 0.0) continue;
                double* crow = cr[r];
                for (int64_t j = 0; j < n; ++j) crow[j] += v * brow[j];
            }
        }
    }
    return c;
}
std::vector<double> matmul_tn(const std::vector<double>& a, const std::vector<double>& b, int64_t n) {
    return matmul_sq(a, b, n, true);
}
std::vector<double> matmul_nn(const std::vector<double>& a, const std::vector<double>& b, int64_t n) {
    return matmul_sq(a, b, n, false);
}

// Eigenvalues of a symmetric n x n matrix (destroyed): Householder reduction to tridiagonal form, then implicit QL
// with Wilkinson-style shifts (JAMA's tql2 without the eigenvectors).
std::vector<double> eigenvalues_symmetric(std::vector<double>& a, int64_t n) {
    std::vector<double> d((size_t)n), e((size_t)n, 0.0), v((size_t)n), p((size_t)n);
    for (int64_t k = 0; k + 2 < n; ++k) {
        const int64_t m = n - k - 1;  // trailing block a[k+1.., k+1..]
        const double* col = &a[(size_t)(k * n + k + 1)];  // row k right of the diagonal = column k below it
        double norm2 = 0;
        for (int64_t i = 0; i < m; ++i) norm2 += col[i] * col[i];
        d[(size_t)k] = a[(size_t)(k * n + k)];
        if (norm2 == 0.0) {
            e[(size_t)k] = 0.0;
            continue;
        }
        const double alpha = col[0] > 0 ? -std::sqrt(norm2) : std::sqrt(norm2);
        for (int64_t i = 0; i < m; ++i) v[(size_t)i] = col[i];
        v[0] -= alpha;
        double vnorm2 = 0;
        for (int64_t i = 0; i < m; ++i) vnorm2 += v[(size_t)i] * v[(size_t)i];
        e[(size_t)k] = alpha;
        if (vnorm2 == 0.0) continue;
        const double beta = 2.0 / vnorm2;
        // p = beta B v; w = p - (beta / 2)(p . v) v; B -= v w^T + w v^T.
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; ++i) {
            const double* row = &a[(size_t)((k + 1 + i) * n + k + 1)];
            double s = 0;
            for (int64_t j = 0; j < m; ++j) s += row[j] * v[(size_t)j];
            p[(size_t)i] = beta * s;
        }
        double pv = 0;
        for (int64_t i = 0; i < m; ++i) pv += p[(size_t)i] * v[(size_t)i];
        const double c = 0.5 * beta * pv;
        for (int64_t i = 0; i < m; ++i) p[(size_t)i] -= c * v[(size_t)i];  // p is now w
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; ++i) {
            double* row = &a[(size_t)((k + 1 + i) * n + k + 1)];
            const double vi = v[(size_t)i], wi = p[(size_t)i];
            for (int64_t j = 0; j < m; ++j) row[j] -= vi * p[(size_t)j] + wi * v[(size_t)j];
        }
    }
    if (n >= 2) {
        d[(size_t)(n - 2)] = a[(size_t)((n - 2) * n + n - 2)];
        e[(size_t)(n - 2)] = a[(size_t)((n - 2) * n + n - 1)];
    }
    d[(size_t)(n - 1)] = a[(size_t)((n - 1) * n + n - 1)];
    e[(size_t)(n - 1)] = 0.0;
    // e[i] couples d[i] and d[i+1]. Implicit QL (JAMA tql2, eigenvalues only).
    double f = 0, tst1 = 0;
    const double eps = 2.220446049250313e-16;
    for (int64_t l = 0; l < n; ++l) {
        tst1 = std::max(tst1, std::abs(d[(size_t)l]) + std::abs(e[(size_t)l]));
        int64_t m = l;
        while (m < n) {
            if (std::abs(e[(size_t)m]) <= eps * tst1) break;
            ++m;
        }
        if (m > l) {
            int iter = 0;
            do {
                NUANCE_CHECK_CODE(++iter <= 200, Internal, "FID: the eigenvalue iteration did not converge (n = ", n,
                                  ")");
                double g = d[(size_t)l];
                double pp = (d[(size_t)(l + 1)] - g) / (2.0 * e[(size_t)l]);
                double r = std::hypot(pp, 1.0);
                if (pp < 0) r = -r;
                d[(size_t)l] = e[(size_t)l] / (pp + r);
                d[(size_t)(l + 1)] = e[(size_t)l] * (pp + r);
                const double dl1 = d[(size_t)(l + 1)];
                double h = g - d[(size_t)l];
                for (int64_t i = l + 2; i < n; ++i) d[(size_t)i] -= h;
                f += h;
                pp = d[(size_t)m];
                double c = 1, c2 = 1, c3 = 1, s = 0, s2 = 0;
                const double el1 = e[(size_t)(l + 1)];
                for (int64_t i = m - 1; i >= l; --i) {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[(size_t)i];
                    h = c * pp;
                    r = std::hypot(pp, e[(size_t)i]);
                    e[(size_t)(i + 1)] = s * r;
                    s = e[(size_t)i] / r;
                    c = pp / r;
                    pp = c * d[(size_t)i] - s * g;
                    d[(size_t)(i + 1)] = h + s * (c * g + s * d[(size_t)i]);
                }
                pp = -s * s2 * c3 * el1 * e[(size_t)l] / dl1;
                e[(size_t)l] = s * pp;
                d[(size_t)l] = c * pp;
            } while (std::abs(e[(size_t)l]) > eps * tst1);
        }
        d[(size_t)l] += f;
        e[(size_t)l] = 0;
    }
    return d;
}

}  // namespace

double frechet_distance_cholesky(const std::vector<double>& mu1, const std::vector<double>& s1,
                                 const std::vector<double>& mu2, const std::vector<double>& s2, int64_t dim,
                                 bool* eps_used) {
    NUANCE_CHECK(dim >= 1, "frechet_distance: dimension must be >= 1, got ", dim);
    NUANCE_CHECK((int64_t)mu1.size() == dim && (int64_t)mu2.size() == dim, "frechet_distance: means of ",
                 mu1.size(), " and ", mu2.size(), " values for dimension ", dim);
    NUANCE_CHECK((int64_t)s1.size() == dim * dim && (int64_t)s2.size() == dim * dim,
                 "frechet_distance: covariances of ", s1.size(), " and ", s2.size(), " values, expected ", dim, "x",
                 dim);
    for (const auto* v : {&mu1, &mu2, &s1, &s2})
        for (double x : *v) NUANCE_CHECK(std::isfinite(x), "frechet_distance: a non-finite mean or covariance value");
    double diff2 = 0, tr1 = 0, tr2 = 0;
    for (int64_t i = 0; i < dim; ++i) {
        diff2 += (mu1[(size_t)i] - mu2[(size_t)i]) * (mu1[(size_t)i] - mu2[(size_t)i]);
        tr1 += s1[(size_t)(i * dim + i)];
        tr2 += s2[(size_t)(i * dim + i)];
    }
    std::vector<double> l = s1, b = s2;
    bool offset = false;
    if (!cholesky_lower(l, dim)) {
        // pytorch-fid: "fid calculation produces singular product; adding 1e-6 to diagonal of cov estimates"
        offset = true;
        l = s1;
        for (int64_t i = 0; i < dim; ++i) {
            l[(size_t)(i * dim + i)] += 1e-6;
            b[(size_t)(i * dim + i)] += 1e-6;
        }
        NUANCE_CHECK(cholesky_lower(l, dim), "frechet_distance: the first covariance is not positive semi-definite ",
                     "(no Cholesky factor even with 1e-6 added to its diagonal)");
    }
    if (eps_used) *eps_used = offset;
    std::vector<double> c = matmul_tn(l, matmul_nn(b, l, dim), dim);  // L^T S2 L
    for (int64_t i = 0; i < dim; ++i)
        for (int64_t j = i + 1; j < dim; ++j) {
            const double v = 0.5 * (c[(size_t)(i * dim + j)] + c[(size_t)(j * dim + i)]);
            c[(size_t)(i * dim + j)] = c[(size_t)(j * dim + i)] = v;
        }
    double tr_sqrt = 0;
    for (double r : sqrt_eigenvalues(eigenvalues_symmetric(c, dim))) tr_sqrt += r;
    return diff2 + tr1 + tr2 - 2.0 * tr_sqrt;
}

double frechet_distance_features(const Tensor& a, const Tensor& b) {
    int64_t na = 0, nb = 0, da = 0, db = 0;
    std::vector<double> xa = rows_of(a, "FID: first set's", na, da);
    std::vector<double> xb = rows_of(b, "FID: second set's", nb, db);
    NUANCE_CHECK(da == db, "FID: feature dimensions differ: ", da, " vs ", db);
    NUANCE_CHECK(na >= 2 && nb >= 2, "FID needs at least 2 samples in each set, got ", na, " and ", nb);
    const int64_t d = da;
    if (std::min(na, nb) > d) return frechet_distance(FeatureStats(a), FeatureStats(b));
    auto centre = [d](std::vector<double>& x, int64_t n, std::vector<double>& mu, double& tr) {
        mu.assign((size_t)d, 0.0);
        for (int64_t r = 0; r < n; ++r)
            for (int64_t j = 0; j < d; ++j) mu[(size_t)j] += x[(size_t)(r * d + j)];
        for (double& m : mu) m /= (double)n;
        tr = 0;
        for (int64_t r = 0; r < n; ++r)
            for (int64_t j = 0; j < d; ++j) {
                x[(size_t)(r * d + j)] -= mu[(size_t)j];
                tr += x[(size_t)(r * d + j)] * x[(size_t)(r * d + j)];
            }
        tr /= (double)(n - 1);
    };
    std::vector<double> mua, mub;
    double tra = 0, trb = 0;
    centre(xa, na, mua, tra);
    centre(xb, nb, mub, trb);
    // M = A_c B_c^T [na, nb]; singular values = sqrt(eig(M M^T)) (order na; or M^T M, order nb, if smaller).
    std::vector<double> m((size_t)(na * nb));
    for (int64_t i = 0; i < na; ++i)
        for (int64_t j = 0; j < nb; ++j) m[(size_t)(i * nb + j)] = dot4(&xa[(size_t)(i * d)], &xb[(size_t)(j * d)], d);
    const bool rows = na <= nb;
    const int64_t k = rows ? na : nb;
    std::vector<double> g((size_t)(k * k), 0.0);
    for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < k; ++j) {
            double s = 0;
            if (rows)
                for (int64_t t = 0; t < nb; ++t) s += m[(size_t)(i * nb + t)] * m[(size_t)(j * nb + t)];
            else
                for (int64_t t = 0; t < na; ++t) s += m[(size_t)(t * nb + i)] * m[(size_t)(t * nb + j)];
            g[(size_t)(i * k + j)] = s;
        }
    double nuclear = 0;
    for (double r : sqrt_eigenvalues(eigen_symmetric(g, k).values)) nuclear += r;
    const double tr_sqrt = nuclear / std::sqrt((double)(na - 1) * (double)(nb - 1));
    double diff2 = 0;
    for (int64_t j = 0; j < d; ++j) diff2 += (mua[(size_t)j] - mub[(size_t)j]) * (mua[(size_t)j] - mub[(size_t)j]);
    return diff2 + tra + trb - 2.0 * tr_sqrt;
}

double kernel_inception_distance_given(const Tensor& a, const Tensor& b,
                                       const std::vector<std::vector<int64_t>>& idx_a,
                                       const std::vector<std::vector<int64_t>>& idx_b) {
    int64_t na = 0, nb = 0, da = 0, db = 0;
    const std::vector<double> xa = rows_of(a, "KID: first set's", na, da);
    const std::vector<double> xb = rows_of(b, "KID: second set's", nb, db);
    NUANCE_CHECK(da == db, "KID: feature dimensions differ: ", da, " vs ", db);
    NUANCE_CHECK(!idx_a.empty() && idx_a.size() == idx_b.size(), "KID: ", idx_a.size(), " and ", idx_b.size(),
                 " subsets given (need the same number, >= 1)");
    double t = 0;
    for (size_t s = 0; s < idx_a.size(); ++s) {
        const size_t m = idx_a[s].size();
        NUANCE_CHECK(m >= 2 && idx_b[s].size() == m, "KID: subset ", s, " has ", m, " and ", idx_b[s].size(),
                     " rows (need the same m >= 2)");
        for (int64_t i : idx_a[s]) NUANCE_CHECK(i >= 0 && i < na, "KID: subset ", s, " row ", i, " outside 0..", na - 1);
        for (int64_t i : idx_b[s]) NUANCE_CHECK(i >= 0 && i < nb, "KID: subset ", s, " row ", i, " outside 0..", nb - 1);
        t += mmd2_unbiased(xa, idx_a[s], xb, idx_b[s], da);
    }
    return t / (double)idx_a.size();
}

}  // namespace nuance
