// FID / KID (src/eval/fid.h) against closed forms and hand-computed cases.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "../test_util.h"
#include "eval/fid.h"
#include "ops/elementwise.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;

Tensor random_features(int64_t n, int64_t d, uint64_t seed, float scale = 1.0f, float offset = 0.0f) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v((size_t)(n * d));
    for (float& x : v) x = offset + scale * nd(gen);
    return Tensor::from_vector(v, {n, d});
}

TEST(Fid, FeatureStatsMeanAndUnbiasedCovarianceByHand) {
    // x = (1,2), (3,4), (5,0): mean (3, 2); deviations (-2,0), (0,2), (2,-2);
    // cov = [[(4+0+4)/2, (0+0-4)/2], [-2, (0+4+4)/2]] = [[4, -2], [-2, 4]] (N - 1 = 2, as np.cov).
    FeatureStats s(Tensor::from_vector({1, 2, 3, 4, 5, 0}, {3, 2}));
    EXPECT_EQ(s.count(), 3);
    EXPECT_EQ(s.dim(), 2);
    const auto mu = s.mean();
    EXPECT_NEAR(mu[0], 3.0, 1e-12);
    EXPECT_NEAR(mu[1], 2.0, 1e-12);
    const auto c = s.covariance();
    EXPECT_NEAR(c[0], 4.0, 1e-12);
    EXPECT_NEAR(c[1], -2.0, 1e-12);
    EXPECT_NEAR(c[2], -2.0, 1e-12);
    EXPECT_NEAR(c[3], 4.0, 1e-12);
}

TEST(Fid, FeatureStatsInBatchesEqualsOneBatchDespiteLargeOffset) {
    // An offset of 1e6 would lose every digit of a variance ~1 with plain sum-of-squares in f64 (1e12 vs 1e0 at
    // 1e-16 relative precision leaves ~1e-4); the shifted sums keep it.
    const Tensor x = random_features(40, 5, 1, 1.0f, 1000.0f);
    FeatureStats whole(x), parts;
    parts.add(x.slice(0, 0, 7));
    parts.add(x.slice(0, 7, 8));
    parts.add(x.slice(0, 8, 40));
    EXPECT_EQ(parts.count(), 40);
    const auto a = whole.covariance(), b = parts.covariance();
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-9);
    // Against a two-pass computation.
    const std::vector<float> v = x.to_vector();
    std::vector<double> mu(5, 0.0);
    for (int r = 0; r < 40; ++r)
        for (int j = 0; j < 5; ++j) mu[j] += v[r * 5 + j] / 40.0;
    for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 5; ++j) {
            double s = 0;
            for (int r = 0; r < 40; ++r) s += (v[r * 5 + i] - mu[i]) * (v[r * 5 + j] - mu[j]);
            EXPECT_NEAR(a[i * 5 + j], s / 39.0, 1e-7);
        }
}

TEST(Fid, EigenSymmetricReconstructs) {
    const int64_t n = 12;
    std::mt19937_64 gen(7);
    std::normal_distribution<double> nd;
    std::vector<double> a((size_t)(n * n));
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j <= i; ++j) a[(size_t)(i * n + j)] = a[(size_t)(j * n + i)] = nd(gen);
    const SymmetricEigen e = eigen_symmetric(a, n);
    // A v_k = lambda_k v_k for every column, and V is orthonormal.
    for (int64_t k = 0; k < n; ++k) {
        for (int64_t i = 0; i < n; ++i) {
            double av = 0;
            for (int64_t j = 0; j < n; ++j) av += a[(size_t)(i * n + j)] * e.vectors[(size_t)(j * n + k)];
            EXPECT_NEAR(av, e.values[(size_t)k] * e.vectors[(size_t)(i * n + k)], 1e-10);
        }
        for (int64_t l = 0; l < n; ++l) {
            double d = 0;
            for (int64_t i = 0; i < n; ++i) d += e.vectors[(size_t)(i * n + k)] * e.vectors[(size_t)(i * n + l)];
            EXPECT_NEAR(d, k == l ? 1.0 : 0.0, 1e-12);
        }
    }
    // 2x2 by hand: [[2, 1], [1, 2]] has eigenvalues 1 and 3.
    SymmetricEigen h = eigen_symmetric({2, 1, 1, 2}, 2);
    std::sort(h.values.begin(), h.values.end());
    EXPECT_NEAR(h.values[0], 1.0, 1e-14);
    EXPECT_NEAR(h.values[1], 3.0, 1e-14);
}

TEST(Fid, DiagonalCovariancesClosedForm) {
    // Diagonal S1 = diag(a), S2 = diag(b) commute: FID = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    const std::vector<double> a = {1.0, 4.0, 0.25, 9.0}, b = {4.0, 1.0, 0.25, 0.0};
    const std::vector<double> mu1 = {0, 1, 2, 3}, mu2 = {1, 1, 0, 3};
    std::vector<double> s1(16, 0.0), s2(16, 0.0);
    double expect = 1.0 + 4.0;  // |mu1 - mu2|^2
    for (int i = 0; i < 4; ++i) {
        s1[i * 5] = a[i];
        s2[i * 5] = b[i];
        expect += (std::sqrt(a[i]) - std::sqrt(b[i])) * (std::sqrt(a[i]) - std::sqrt(b[i]));
    }
    // = 5 + (1-2)^2 + (2-1)^2 + 0 + (3-0)^2 = 16
    EXPECT_NEAR(expect, 16.0, 1e-12);
    EXPECT_NEAR(frechet_distance(mu1, s1, mu2, s2, 4), 16.0, 1e-10);
}

TEST(Fid, TwoByTwoNonDiagonalByHand) {
    // For 2x2 PSD M with eigenvalues l1, l2: tr sqrt(M) = sqrt(l1) + sqrt(l2) = sqrt(tr M + 2 sqrt(det M)).
    // S1 = diag(4, 1), S2 = [[2, 1], [1, 2]] (they do not commute): S1 S2 = [[8, 4], [1, 2]], tr = 10,
    // det = det S1 det S2 = 4 * 3 = 12, so tr sqrt(S1 S2) = sqrt(10 + 2 sqrt 12) = sqrt(10 + 4 sqrt 3) = 4.1143898...
    // mu1 = (0, 0), mu2 = (1, 2): |d|^2 = 5. FID = 5 + tr S1 (5) + tr S2 (4) - 2 * 4.1143898 = 5.7712204...
    const double expect = 5.0 + 5.0 + 4.0 - 2.0 * std::sqrt(10.0 + 4.0 * std::sqrt(3.0));
    EXPECT_NEAR(expect, 5.7712204, 1e-6);
    EXPECT_NEAR(frechet_distance({0, 0}, {4, 0, 0, 1}, {1, 2}, {2, 1, 1, 2}, 2), expect, 1e-12);
    // Both non-diagonal, commuting: S1 = [[2, 1], [1, 2]] (3 on (1,1), 1 on (1,-1)), S2 = [[2, -1], [-1, 2]]
    // (1 on (1,1), 3 on (1,-1)); S1 S2 = 3 I, tr sqrt = 2 sqrt 3; FID = 4 + 4 - 4 sqrt 3 = 1.071796...
    EXPECT_NEAR(frechet_distance({0, 0}, {2, 1, 1, 2}, {0, 0}, {2, -1, -1, 2}, 2), 8.0 - 4.0 * std::sqrt(3.0), 1e-12);
    // Symmetric in its arguments.
    EXPECT_NEAR(frechet_distance({1, 2}, {2, 1, 1, 2}, {0, 0}, {4, 0, 0, 1}, 2), expect, 1e-12);
}

TEST(Fid, IdenticalSetsGiveZeroAndShiftsAddTheirSquare) {
    const Tensor x = random_features(300, 16, 3);
    FeatureStats a(x), b(x);
    EXPECT_NEAR(frechet_distance(a, b), 0.0, 1e-9);
    // Same set shifted by 0.5 in every one of 16 dims: covariances equal, FID = 16 * 0.25 = 4.
    FeatureStats c(x + 0.5f);
    EXPECT_NEAR(frechet_distance(a, c), 4.0, 1e-5);  // f32 rounding of x + 0.5
    // Different samples of one distribution are close to 0 but positive; a wider one is further away.
    FeatureStats d(random_features(300, 16, 4)), e(random_features(300, 16, 5, 2.0f));
    const double near = frechet_distance(a, d), far = frechet_distance(a, e);
    EXPECT_GT(near, 0.0);
    EXPECT_LT(near, 2.0);
    EXPECT_GT(far, 10.0);  // ~ 16 (2 - 1)^2 = 16
}

TEST(Fid, SingularCovarianceIsFine) {
    // Rank-1 features (every dim the same value): S1 singular; FID against itself is still 0.
    std::vector<float> v;
    for (int i = 0; i < 50; ++i)
        for (int j = 0; j < 4; ++j) v.push_back((float)(i % 7));
    FeatureStats a(Tensor::from_vector(v, {50, 4}));
    EXPECT_NEAR(frechet_distance(a, a), 0.0, 1e-9);
}

TEST(Fid, KidByHand) {
    // D = 1, k(a, b) = (a b + 1)^3. x = {0, 1}, y = {1, 2}.
    // K_XX off-diagonal: k(0,1) = 1 -> mean 1. K_YY: k(1,2) = 27 -> mean 27.
    // K_XY: k(0,1) = 1, k(0,2) = 1, k(1,1) = 8, k(1,2) = 27 -> mean 37/4 = 9.25. MMD^2 = 1 + 27 - 18.5 = 9.5.
    EXPECT_NEAR(kernel_inception_distance(Tensor::from_vector({0, 1}, {2, 1}), Tensor::from_vector({1, 2}, {2, 1})),
                9.5, 1e-12);
    // D = 2 divides the dot product: x = {(0,0), (2,0)}, y = {(0,2), (2,2)}: k = (x·y / 2 + 1)^3.
    // K_XX: x1·x2 = 0 -> 1. K_YY: (0,2)·(2,2) = 4 -> 3^3 = 27. K_XY: 0,0 -> 1, 1; (2,0)·(0,2) = 0 -> 1,
    // (2,0)·(2,2) = 4 -> 27: mean 30/4 = 7.5. MMD^2 = 1 + 27 - 15 = 13.
    EXPECT_NEAR(kernel_inception_distance(Tensor::from_vector({0, 0, 2, 0}, {2, 2}),
                                          Tensor::from_vector({0, 2, 2, 2}, {2, 2})),
                13.0, 1e-12);
}

TEST(Fid, KidSeparatesDistributionsAndSubsetsAgree) {
    const Tensor x = random_features(200, 8, 11), y = random_features(200, 8, 12),
                 z = random_features(200, 8, 13, 1.0f, 1.0f);
    const double same = kernel_inception_distance(x, y), diff = kernel_inception_distance(x, z);
    EXPECT_LT(std::abs(same), 0.05);
    EXPECT_GT(diff, 0.5);
    // Subsets as large as the sets, drawn again and again, estimate the same full-set statistic.
    const KidEstimate full = kernel_inception_distance_subsets(x, z, 3, 1000, 0);
    EXPECT_EQ(full.subset_size, 200);
    EXPECT_NEAR(full.mean, diff, 1e-9);
    EXPECT_NEAR(full.std, 0.0, 1e-9);
    const KidEstimate sub = kernel_inception_distance_subsets(x, z, 20, 50, 1);
    EXPECT_EQ(sub.subsets, 20);
    EXPECT_GT(sub.std, 0.0);
    EXPECT_NEAR(sub.mean, diff, 0.5 * diff);
}

TEST(Fid, Errors) {
    const Tensor a = random_features(10, 4, 1), b = random_features(10, 3, 2);
    FeatureStats sa(a), sb(b), one(random_features(1, 4, 3));
    EXPECT_THAT(error_of([&] { frechet_distance(sa, sb); }), HasSubstr("feature dimensions differ: 4 vs 3"));
    EXPECT_THAT(error_of([&] { frechet_distance(sa, one); }), HasSubstr("at least 2 samples"));
    EXPECT_THAT(error_of([&] { sa.add(b); }), HasSubstr("features of 3 dimensions added to statistics of 4"));
    EXPECT_THAT(error_of([&] { FeatureStats s(Tensor::zeros({2, 3, 4})); }), HasSubstr("must be [N, D]"));
    EXPECT_THAT(error_of([&] { one.covariance(); }), HasSubstr("at least 2 samples, got 1"));
    EXPECT_THAT(error_of([&] { kernel_inception_distance(a, b); }), HasSubstr("feature dimensions differ"));
    EXPECT_THAT(error_of([&] { kernel_inception_distance(a, random_features(1, 4, 5)); }),
                HasSubstr("at least 2 samples in each set, got 10 and 1"));
    EXPECT_THAT(error_of([&] { kernel_inception_distance(Tensor::from_vector({NAN, 0, 1, 2}, {2, 2}), a.slice(1, 0, 2)); }),
                HasSubstr("non-finite"));
    EXPECT_THAT(error_of([&] { frechet_distance({0}, {1}, {0, 0}, {1, 0, 0, 1}, 2); }), HasSubstr("means of 1 and 2"));
    EXPECT_THAT(error_of([&] { eigen_symmetric({1, 2, 3, 4}, 2); }), HasSubstr("not symmetric"));
    EXPECT_THAT(error_of([&] { eigen_symmetric({1, 2, 3}, 2); }), HasSubstr("expected a 2x2 matrix"));
    EXPECT_THAT(error_of([&] { kernel_inception_distance_subsets(a, a, 0, 5, 0); }), HasSubstr("subsets must be >= 1"));
}

}  // namespace
}  // namespace nuance
