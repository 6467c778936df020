// pytorch-fid's FID Inception v3 (src/eval/inception/), its resize modes, and the FID/KID paths the golden case and
// `nuance eval` use: the fid_inception golden (tests/data/golden/fid_inception), hand-computed resizes, hostile
// weight files, and the large-dimension FID path against the Jacobi one.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "../test_util.h"
#include "eval/fid.h"
#include "eval/golden/fid_inception_golden.h"
#include "eval/inception/inception.h"
#include "eval/inception/resize.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;

const std::string kCase = std::string(NUANCE_TEST_DATA) + "/golden/fid_inception";

TEST(FidInceptionGolden, EveryLinePasses) {
    const std::vector<CompareLine> lines = check_golden_fid_inception(kCase);
    EXPECT_EQ(lines.size(), 26u);
    for (const CompareLine& l : lines) EXPECT_TRUE(l.pass) << l.name << " max_abs " << l.max_abs << " atol " << l.atol;
}

TEST(InceptionResize, TorchBilinearByHand) {
    // 2 -> 4 px, align_corners=False: src = 0.5 (dst + 0.5) - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (the
    // right neighbour clamped to the last pixel).
    const auto r = resize_plane_torch_bilinear({0.0f, 1.0f}, 2, 1, 4, 1);
    EXPECT_THAT(r, ::testing::ElementsAre(0.0f, 0.25f, 0.75f, 1.0f));
}

TEST(InceptionResize, Tf1BilinearByHand) {
    // TF1 legacy: src = dst * 0.5 = 0, 0.5, 1, 1.5 -> 0, 0.5, 1, 1 (no half-pixel shift).
    const auto r = resize_plane_tf1_bilinear({0.0f, 1.0f}, 2, 1, 4, 1);
    EXPECT_THAT(r, ::testing::ElementsAre(0.0f, 0.5f, 1.0f, 1.0f));
}

TEST(InceptionResize, PilBicubicByHand) {
    // 4 -> 2 px of [0, 0, 1, 1]: the filter widens 2x; output 0 weighs pixels 0..3 with bicubic((x - 0.5) / 2)
    // = 0.8671875, 0.8671875, 0.2265625, -0.0703125 (sum 1.890625): (0.2265625 - 0.0703125) / 1.890625.
    const auto r = resize_plane_pil_bicubic({0.0f, 0.0f, 1.0f, 1.0f}, 4, 1, 2, 1);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_NEAR(r[0], 0.15625 / 1.890625, 1e-7);
    EXPECT_NEAR(r[1], 1.0 - 0.15625 / 1.890625, 1e-7);
    // A constant image stays constant (normalised weights), in both directions.
    for (const float v : resize_plane_pil_bicubic(std::vector<float>(35, 7.0f), 7, 5, 299, 299)) ASSERT_NEAR(v, 7.0f, 1e-5);
}

TEST(InceptionResize, ModesAndErrors) {
    EXPECT_EQ(parse_inception_resize("clean"), InceptionResize::Clean);
    EXPECT_EQ(parse_inception_resize("legacy_pytorch"), InceptionResize::LegacyPytorch);
    EXPECT_EQ(parse_inception_resize("legacy_tensorflow"), InceptionResize::LegacyTensorflow);
    EXPECT_EQ(error_of([] { parse_inception_resize("bicubic"); }),
              "usage: --resize 'bicubic' is not a resize mode (clean, legacy_pytorch, legacy_tensorflow)");
    Image bad;
    bad.width = 4;
    bad.height = 4;
    bad.pixels.assign(10, 0);  // 48 bytes needed
    EXPECT_EQ(error_of([&] { inception_resize(bad, InceptionResize::Clean); }),
              "inception: a 4x4 RGB image with 10 bytes");
    // Normalisation: clean and TF map [0, 255] with (x - 128) / 128, pytorch-fid [0, 1] with 2x - 1.
    Image white;
    white.width = white.height = 1;
    white.pixels = {255, 0, 128};
    const Tensor c = inception_input({white}, InceptionResize::Clean);
    EXPECT_FLOAT_EQ(c.data<float>()[0], 127.0f / 128.0f);
    EXPECT_FLOAT_EQ(c.data<float>()[299 * 299], -1.0f);
    EXPECT_FLOAT_EQ(c.data<float>()[2 * 299 * 299], 0.0f);
    const Tensor p = inception_input({white}, InceptionResize::LegacyPytorch);
    EXPECT_FLOAT_EQ(p.data<float>()[0], 1.0f);
    EXPECT_FLOAT_EQ(p.data<float>()[299 * 299], -1.0f);
}

TEST(InceptionWeights, HostileFilesNameTheTensor) {
    std::map<std::string, Tensor> t;
    EXPECT_EQ(error_of([&] { InceptionV3::from_tensors(t, "w.pth"); }),
              "inception weights 'w.pth': missing tensor 'Conv2d_1a_3x3.conv.weight' (expected pytorch-fid's "
              "pt_inception / torchvision Inception3 key names)");
    t["Conv2d_1a_3x3.conv.weight"] = Tensor::zeros({32, 3, 3, 2});
    EXPECT_EQ(error_of([&] { InceptionV3::from_tensors(t, "w.pth"); }),
              "inception weights 'w.pth': tensor 'Conv2d_1a_3x3.conv.weight' has shape [32, 3, 3, 2], expected "
              "[32, 3, 3, 3]");
    t["Conv2d_1a_3x3.conv.weight"] = Tensor::zeros({32, 3, 3, 3}, DType::I64);
    EXPECT_EQ(error_of([&] { InceptionV3::from_tensors(t, "w.pth"); }),
              "inception weights 'w.pth': tensor 'Conv2d_1a_3x3.conv.weight' has dtype I64, expected a float type");
    t["Conv2d_1a_3x3.conv.weight"] = Tensor::zeros({32, 3, 3, 3});
    t["Conv2d_1a_3x3.bn.weight"] = Tensor::full({32}, 1.0f);
    t["Conv2d_1a_3x3.bn.bias"] = Tensor::zeros({32});
    t["Conv2d_1a_3x3.bn.running_mean"] = Tensor::zeros({32});
    t["Conv2d_1a_3x3.bn.running_var"] = Tensor::full({32}, -1.0f);
    EXPECT_EQ(error_of([&] { InceptionV3::from_tensors(t, "w.pth"); }),
              "inception weights 'w.pth': Conv2d_1a_3x3.bn.running_var[0] = -1 (must be > -eps and finite)");
}

Tensor random_features(int64_t n, int64_t d, uint64_t seed, float offset = 0.0f) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v((size_t)(n * d));
    for (size_t i = 0; i < v.size(); ++i) v[i] = offset + nd(gen) * (1.0f + 0.01f * (float)(i % (size_t)d));
    return Tensor::from_vector(v, {n, d});
}

TEST(FidLarge, CholeskyPathMatchesJacobi) {
    const Tensor a = random_features(400, 200, 1), b = random_features(300, 200, 2, 0.3f);
    const FeatureStats sa(a), sb(b);
    const double jacobi = frechet_distance(sa, sb);  // dim <= 256: Jacobi
    bool eps = true;
    const double chol = frechet_distance_cholesky(sa.mean(), sa.covariance(), sb.mean(), sb.covariance(), 200, &eps);
    EXPECT_FALSE(eps);
    EXPECT_NEAR(chol, jacobi, 1e-9 * jacobi);
}

TEST(FidLarge, SingularCovarianceTakesPytorchFidsEpsOffset) {
    const Tensor a = random_features(100, 300, 3), b = random_features(120, 300, 4, 0.2f);
    const FeatureStats sa(a), sb(b);
    bool eps = false;
    const double chol = frechet_distance_cholesky(sa.mean(), sa.covariance(), sb.mean(), sb.covariance(), 300, &eps);
    EXPECT_TRUE(eps);
    // The exact (Gram) value; the 1e-6 offset moves it by about dim * 1e-6 / sqrt(eigenvalue) at most.
    const double exact = frechet_distance_features(a, b);
    EXPECT_NEAR(chol, exact, 1e-3 * exact);
}

TEST(FidLarge, GramPathMatchesCovariancePath) {
    const Tensor a = random_features(6, 40, 5), b = random_features(9, 40, 6, 0.5f);
    EXPECT_NEAR(frechet_distance_features(a, b), frechet_distance(FeatureStats(a), FeatureStats(b)), 1e-10);
    EXPECT_NEAR(frechet_distance_features(b, a), frechet_distance(FeatureStats(a), FeatureStats(b)), 1e-10);
}

TEST(KidGiven, MatchesAllPairsAndChecksIndices) {
    const Tensor a = random_features(5, 16, 7), b = random_features(5, 16, 8, 0.1f);
    const std::vector<std::vector<int64_t>> all{{0, 1, 2, 3, 4}};
    EXPECT_NEAR(kernel_inception_distance_given(a, b, all, all), kernel_inception_distance(a, b), 1e-15);
    EXPECT_EQ(error_of([&] { kernel_inception_distance_given(a, b, {{0, 5}}, {{0, 1}}); }),
              "KID: subset 0 row 5 outside 0..4");
    EXPECT_EQ(error_of([&] { kernel_inception_distance_given(a, b, {{0, 1}}, {{0, 1, 2}}); }),
              "KID: subset 0 has 2 and 3 rows (need the same m >= 2)");
}

}  // namespace
}  // namespace nuance
