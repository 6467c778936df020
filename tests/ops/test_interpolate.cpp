// Bilinear and nearest-exact resizing of latents (hires fix), vs hand-computed values and torch 2.x F.interpolate.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "ops/interpolate.h"
#include "../test_util.h"

using namespace nuance;
using nuance::test::error_of;

namespace {

Tensor pattern() {  // x = arange(12) ** 1.5, [1, 1, 3, 4]
    std::vector<float> v;
    for (int i = 0; i < 12; ++i) v.push_back(std::pow((float)i, 1.5f));
    return Tensor::from_vector(v, {1, 1, 3, 4});
}

void expect_near(const Tensor& got, const std::vector<float>& want, float tol) {
    const std::vector<float> g = got.to_vector();
    ASSERT_EQ(g.size(), want.size());
    for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], want[i], tol) << "at " << i;
}

}  // namespace

// 2x of [0, 1]: the taps sit at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the last pixel).
TEST(Interpolate, BilinearHandComputed) {
    const Tensor x = Tensor::from_vector({0.0f, 1.0f}, {1, 1, 1, 2});
    expect_near(interpolate_bilinear(x, 1, 4), {0.0f, 0.25f, 0.75f, 1.0f}, 0);
}

// torch.nn.functional.interpolate(x, size=s, mode="bilinear", align_corners=False, antialias=False), torch 2.x CPU.
TEST(Interpolate, BilinearMatchesTorch) {
    expect_near(interpolate_bilinear(pattern(), 5, 7),
                {0.0f, 0.357143f, 0.928571f, 1.914214f, 2.997551f, 4.350536f, 5.196152f, 3.2f, 3.86862f, 4.938412f,
                 6.323985f, 7.786544f, 9.472239f, 10.525796f, 8.0f, 9.135836f, 10.953173f, 12.93864f, 14.970034f,
                 17.154789f, 18.52026f, 16.776451f, 18.167768f, 20.393875f, 22.762291f, 25.169971f, 27.710192f,
                 29.297829f, 22.627417f, 24.189053f, 26.687674f, 29.31139f, 31.969925f, 34.747124f, 36.482872f},
                2e-5f);
    expect_near(interpolate_bilinear(pattern(), 2, 3), {2.257514f, 4.67032f, 8.071909f, 19.649651f, 25.218201f, 31.225403f},
                2e-5f);
    const Tensor up = interpolate_bilinear(pattern(), 6, 8);
    EXPECT_EQ(up.shape(), (Shape{1, 1, 6, 8}));
    EXPECT_NEAR(up.to_vector()[3], 1.457107f, 2e-5f);
    EXPECT_NEAR(up.to_vector()[20], 10.956172f, 2e-5f);
}

TEST(Interpolate, NearestExactMatchesTorch) {
    const float a = 2.8284270763397217f, b = 5.196152210235596f, c = 11.180339813232422f, d = 14.696938514709473f,
                e = 18.520259857177734f, f = 22.627416610717773f, g = 31.62277603149414f, h = 36.482872009277344f;
    expect_near(interpolate_nearest_exact(pattern(), 5, 7),
                {0, 0, 1, a, a, b, b, 0, 0, 1, a, a, b, b, 8, 8, c, d, d, e, e, f, f, 27, g, g, h, h, f, f, 27, g, g, h, h},
                0);
    expect_near(interpolate_nearest_exact(pattern(), 2, 3), {0, a, b, f, g, h}, 0);
}

TEST(Interpolate, RejectsBadArguments) {
    EXPECT_EQ(error_of([] { interpolate_bilinear(Tensor::zeros({3, 4}), 2, 2); }),
              "interpolate_bilinear: input must be [N, C, H, W], got [3, 4]");
    EXPECT_EQ(error_of([] { interpolate_nearest_exact(pattern(), 0, 2); }),
              "interpolate_nearest_exact: bad output size 0x2");
    EXPECT_EQ(error_of([] { interpolate_bilinear(Tensor::zeros({1 << 12, 1 << 10, 1, 1}), 4096, 4096); }),
              "interpolate_bilinear: output [4096, 1024, 4096, 4096] is too large");
}
