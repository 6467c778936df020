// Improved precision/recall + density/coverage (eval/precision_recall.h) against tools/ref_prdc.py (the authors'
// formulas in numpy float64, cross-checked with the `prdc` package) on seeded random features, exact to 1e-12.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "eval/precision_recall.h"
#include "io/safetensors.h"

#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

TEST(PrecisionRecall, MatchesTheReferenceOnRandomFeatures) {
    const auto t = load_safetensors(std::string(NUANCE_TEST_DATA) + "/eval/prdc_case.safetensors").tensors;
    const Tensor exp = t.at("expected").contiguous();
    ASSERT_EQ(exp.dtype(), DType::F64);
    const double* e = exp.data<double>();
    for (int64_t row = 0; row < exp.size(0); ++row, e += 5) {
        const PrecisionRecall r = precision_recall(t.at("real"), t.at("fake"), (int64_t)e[0]);
        EXPECT_NEAR(r.precision, e[1], 1e-12) << "k=" << e[0];
        EXPECT_NEAR(r.recall, e[2], 1e-12) << "k=" << e[0];
        EXPECT_NEAR(r.density, e[3], 1e-12) << "k=" << e[0];
        EXPECT_NEAR(r.coverage, e[4], 1e-12) << "k=" << e[0];
        EXPECT_EQ(r.n_real, 120);
        EXPECT_EQ(r.n_fake, 90);
    }
}

TEST(PrecisionRecall, HandComputedOnALine) {
    // real at 0, 1, 2, 10 (k=1 radii 1, 1, 1, 8); fake at 0.5 and 20 (radius 19.5 each).
    // precision: 0.5 is inside real 0's ball, 20 is not inside any (|20-10| = 10 > 8) -> 1/2.
    // recall: every real point lies within 19.5 of 0.5 -> 1. density: 0.5 is in the balls of 0 and 1 (and 10's:
    // 9.5 > 8, no) -> 2 hits / (1 * 2) = 1. coverage: nearest fake of 0, 1 is 0.5 (inside radius 1); of 2 it is
    // 0.5 at 1.5 > 1; of 10 it is 0.5 at 9.5 > 8 -> 2/4.
    const Tensor real = Tensor::from_vector({0, 1, 2, 10}, {4, 1});
    const Tensor fake = Tensor::from_vector({0.5f, 20}, {2, 1});
    const PrecisionRecall r = precision_recall(real, fake, 1);
    EXPECT_DOUBLE_EQ(r.precision, 0.5);
    EXPECT_DOUBLE_EQ(r.recall, 1.0);
    EXPECT_DOUBLE_EQ(r.density, 1.0);
    EXPECT_DOUBLE_EQ(r.coverage, 0.5);
    const std::vector<double> radii = knn_radii(real, 1);
    EXPECT_EQ(radii, (std::vector<double>{1, 1, 1, 8}));
}

TEST(PrecisionRecall, HostileInputs) {
    const Tensor a = Tensor::zeros({3, 4}), b = Tensor::zeros({5, 4});
    EXPECT_THAT(error_of([&] { precision_recall(a, b, 3); }),
                HasSubstr("precision/recall: k = 3 needs more than k real samples (got 3); k must be in 1..2"));
    EXPECT_THAT(error_of([&] { precision_recall(a, b, 0); }), HasSubstr("k = 0 needs more than k real samples"));
    EXPECT_THAT(error_of([&] { precision_recall(a, Tensor::zeros({5, 3}), 1); }),
                HasSubstr("real features have 4 columns, fake features 3"));
    EXPECT_THAT(error_of([&] { precision_recall(Tensor::zeros({4}), b, 1); }),
                HasSubstr("real features must be a float [N, D] matrix, got F32[4]"));
    Tensor nan = Tensor::zeros({3, 4});
    nan.data<float>()[6] = NAN;
    EXPECT_THAT(error_of([&] { precision_recall(a, nan, 1); }), HasSubstr("fake features: value [1, 2] is nan"));
}
