// Distances between two sets of image features (design.md §1 "evaluation"), in double precision:
//   FID  Fréchet distance between the Gaussians fitted to the two sets (Heusel et al. 2017, the formula of
//        pytorch-fid): |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). The last trace is taken as
//        tr((S1^(1/2) S2 S1^(1/2))^(1/2)), a symmetric PSD matrix with the same eigenvalues as S1 S2, so only
//        symmetric eigendecompositions (Jacobi) are needed and no complex square root ever appears.
//   KID  squared MMD with the cubic polynomial kernel k(x, y) = (x·y / D + 1)^3, unbiased estimator
//        (Bińkowski et al. 2018, "Demystifying MMD GANs"; torch-fidelity's kid).
// Shape letters: N samples, D feature dimensions.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace nuance {

// Mean and covariance of feature vectors, accumulated batch by batch. The covariance is unbiased (divides by
// N - 1), as np.cov in pytorch-fid. Sums are kept relative to the first row seen, so large common offsets do not
// cancel catastrophically.
class FeatureStats {
public:
    FeatureStats() = default;
    explicit FeatureStats(const Tensor& features) { add(features); }
    void add(const Tensor& features);  // [N, D], any float dtype; D must match earlier batches
    int64_t count() const { return count_; }
    int64_t dim() const { return dim_; }
    std::vector<double> mean() const;        // [D]
    std::vector<double> covariance() const;  // [D, D] row-major; needs count() >= 2

private:
    int64_t dim_ = 0, count_ = 0;
    std::vector<double> shift_, sum_, sum_outer_;  // sum_ of (x - shift), sum_outer_ of (x - shift)(x - shift)^T
};

// A symmetric matrix's eigenvalues and eigenvectors (cyclic Jacobi rotations): a = V diag(values) V^T, V's
// columns are the eigenvectors (row-major n x n). `a` must be symmetric (checked to a relative 1e-9).
struct SymmetricEigen {
    std::vector<double> values;   // [n], unsorted
    std::vector<double> vectors;  // [n, n] row-major, column j belongs to values[j]
};
SymmetricEigen eigen_symmetric(const std::vector<double>& a, int64_t n);

// Fréchet distance between N(mu1, s1) and N(mu2, s2); s1, s2 are [dim, dim] row-major covariances (symmetric,
// positive semi-definite; eigenvalues below zero or below the rounding level n * eps * max|lambda| are taken as 0).
double frechet_distance(const std::vector<double>& mu1, const std::vector<double>& s1, const std::vector<double>& mu2,
                        const std::vector<double>& s2, int64_t dim);
double frechet_distance(const FeatureStats& a, const FeatureStats& b);  // each needs >= 2 samples

// The covariance path above for dim > 256 (Inception's 2048): tr sqrt(S1 S2) as the sum of the square roots of the
// eigenvalues of L^T S2 L with S1 = L L^T (Cholesky; symmetric, same eigenvalues as S1 S2), via Householder
// tridiagonalisation and implicit QL, O(dim^3) in double. A singular S1 (fewer samples than dimensions) has no
// Cholesky factor: then, as pytorch-fid does when its sqrtm is not finite, eps = 1e-6 is added to both
// covariances' diagonals (`eps_used` reports it). Jacobi (exact on singular matrices) below 257 dimensions.
double frechet_distance_cholesky(const std::vector<double>& mu1, const std::vector<double>& s1,
                                 const std::vector<double>& mu2, const std::vector<double>& s2, int64_t dim,
                                 bool* eps_used = nullptr);

// FID straight from two feature sets a [N, D], b [M, D] (N, M >= 2). When min(N, M) <= D the covariances are
// singular and tr sqrt(S_a S_b) is computed exactly as the nuclear norm of A_c B_c^T / sqrt((N-1)(M-1)) (A_c, B_c
// the centred rows), an eigenproblem of order min(N, M); otherwise through FeatureStats and frechet_distance.
double frechet_distance_features(const Tensor& a, const Tensor& b);

// clean-fid's kernel_distance with the subsets given: subset s uses rows idx_a[s] of a and idx_b[s] of b (each
// m >= 2 distinct valid rows, the same m for both); the result is the mean of the per-subset unbiased MMD^2.
double kernel_inception_distance_given(const Tensor& a, const Tensor& b,
                                       const std::vector<std::vector<int64_t>>& idx_a,
                                       const std::vector<std::vector<int64_t>>& idx_b);

// Unbiased MMD^2 between x [N, D] and y [M, D] (N, M >= 2) with k(a, b) = (a·b / D + 1)^3, over all pairs.
double kernel_inception_distance(const Tensor& x, const Tensor& y);

// torch-fidelity's protocol: the mean and standard deviation of the unbiased MMD^2 over `subsets` random subsets
// of `subset_size` rows of each set (drawn without replacement within a subset, seeded). A subset_size larger
// than a set is reduced to the smaller set's size.
struct KidEstimate {
    double mean = 0, std = 0;
    int subsets = 0;
    int64_t subset_size = 0;
};
KidEstimate kernel_inception_distance_subsets(const Tensor& x, const Tensor& y, int subsets, int64_t subset_size,
                                              uint64_t seed);

}  // namespace nuance
