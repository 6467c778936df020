// max_pool2d (ops/pool.h): hand-computed values (torch's results for the same inputs) and
// the errors for bad shapes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "ops/pool.h"

#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

TEST(MaxPool2d, HandComputed3x3Stride2) {
    // 5x5 ramp 0..24: windows at rows/cols {0..2, 2..4} -> maxima 12, 14, 22, 24
    std::vector<float> v(25);
    for (int i = 0; i < 25; ++i) v[(size_t)i] = (float)i;
    const Tensor y = max_pool2d(Tensor::from_vector(v, {1, 1, 5, 5}), 3, 2);
    EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
    EXPECT_EQ(y.to_vector(), (std::vector<float>{12, 14, 22, 24}));
}

TEST(MaxPool2d, FloorModeDropsTheRaggedEdgeAndPaddingIsMinusInfinity) {
    // torch: F.max_pool2d(-arange(1,10).view(1,1,3,3), 2, 2) == [[-1]]; with padding 1 (windows {-1,0} x {-1,0}, ...):
    // [[-1, -2], [-4, -5]], the padded cells never win
    std::vector<float> v(9);
    for (int i = 0; i < 9; ++i) v[(size_t)i] = -(float)(i + 1);
    const Tensor x = Tensor::from_vector(v, {1, 1, 3, 3});
    EXPECT_EQ(max_pool2d(x, 2, 2).to_vector(), (std::vector<float>{-1}));
    EXPECT_EQ(max_pool2d(x, 2, 2, 1).to_vector(), (std::vector<float>{-1, -2, -4, -5}));
}

TEST(MaxPool2d, RejectsBadArguments) {
    const Tensor x = Tensor::zeros({1, 2, 2, 2});
    EXPECT_THAT(error_of([&] { max_pool2d(x, 3, 2); }),
                HasSubstr("max_pool2d: input 2x2 (padding 0) is smaller than the 3x3 window"));
    EXPECT_THAT(error_of([&] { max_pool2d(x, 2, 0); }), HasSubstr("kernel 2 and stride 0 must be in 1..64"));
    EXPECT_THAT(error_of([&] { max_pool2d(x, 2, 1, 2); }), HasSubstr("padding 2 must be in 0..kernel/2 (1)"));
    EXPECT_THAT(error_of([&] { max_pool2d(Tensor::zeros({2, 2}), 2, 2); }),
                HasSubstr("max_pool2d: input must be [N, C, H, W], got F32[2, 2]"));
}
