// Legacy (pre-1.6) torch.save files (io/ckpt.h): the format of torchvision's ImageNet weights and the lpips
// package's lin layers. Fixtures from tools/make_legacy_torch_fixture.py; hostile variants built here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "io/ckpt.h"
#include "io/weights.h"

#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

namespace {
const std::string kDir = std::string(NUANCE_TEST_DATA) + "/ckpt/";

std::string file_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}
std::shared_ptr<Storage> bytes_storage(const std::string& s) {
    auto st = Storage::allocate(s.size());
    std::memcpy(st->data(), s.data(), s.size());
    return st;
}
}  // namespace

TEST(CkptLegacy, ReadsViewsDtypesAndSharedStorages) {
    const WeightFile w = load_weights(kDir + "legacy.pth");
    EXPECT_EQ(w.metadata.at("format"), "torch_legacy");
    ASSERT_EQ(w.tensors.size(), 5u);  // "meta" (an int) is ignored
    std::vector<float> want(12);
    for (int i = 0; i < 12; ++i) want[(size_t)i] = (float)i;
    EXPECT_EQ(w.tensors.at("a.weight").shape(), (Shape{3, 4}));
    EXPECT_EQ(w.tensors.at("a.weight").to_vector(), want);
    EXPECT_EQ(w.tensors.at("a.t").shape(), (Shape{4, 3}));
    EXPECT_EQ(w.tensors.at("a.t").to_vector(), (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
    EXPECT_EQ(w.tensors.at("a.row1").to_vector(), (std::vector<float>{4, 5, 6, 7}));
    EXPECT_EQ(w.tensors.at("h").dtype(), DType::F16);
    EXPECT_EQ(w.tensors.at("h").to_vector(), (std::vector<float>{0.5f, -2.0f, 3.25f}));
    EXPECT_EQ(w.tensors.at("ids").to_ids(), (std::vector<int64_t>{7, -1, int64_t(1) << 40}));
}

TEST(CkptLegacy, ReadsTheLpipsPackagesAlexLinLayers) {
    const WeightFile w = load_weights(kDir + "lpips_v0.1_alex.pth");
    const int64_t ch[5] = {64, 192, 384, 256, 256};
    const double sums[5] = {2.34953231, 16.1430275, 39.2684392, 27.1971784, 20.3171771};
    for (int k = 0; k < 5; ++k) {
        const Tensor& t = w.tensors.at("lin" + std::to_string(k) + ".model.1.weight");
        EXPECT_EQ(t.shape(), (Shape{1, ch[k], 1, 1}));
        double s = 0;
        for (float v : t.to_vector()) s += v;
        EXPECT_NEAR(s, sums[k], 1e-5) << k;
    }
}

TEST(CkptLegacy, HostileFiles) {
    const std::string good = file_bytes(kDir + "legacy.pth");
    ASSERT_GT(good.size(), 100u);
    // Truncated inside the last storage's data (the 12 floats of a.weight, written last): the count no longer fits.
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(good.substr(0, good.size() - 4)), "cut.pth"); }),
                HasSubstr("checkpoint 'cut.pth': storage '"));
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(good.substr(0, good.size() - 4)), "cut.pth"); }),
                HasSubstr("claims 12 elements of 4 bytes but only 44 bytes are left"));
    // A huge element count must not overflow the size product.
    std::string big = good;
    const size_t last = big.size() - 12 * 4 - 8;  // the int64 count before the last storage (12 floats)
    const int64_t huge = int64_t(1) << 62;
    std::memcpy(&big[last], &huge, 8);
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(big), "big.pth"); }),
                HasSubstr("claims 4611686018427387904 elements of 4 bytes"));
    // The magic number is required.
    std::string nomagic = good;
    nomagic[5] ^= 0x01;
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(nomagic), "m.pth"); }),
                HasSubstr("checkpoint 'm.pth' starts like a legacy (pre-1.6) torch file but lacks its magic number"));
    // Cut inside a pickle.
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(good.substr(0, 40)), "p.pth"); }),
                HasSubstr("truncated"));
}
