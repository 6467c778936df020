// .npy reading/writing (io/npy.h): round trips and hostile headers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <unistd.h>

#include "io/npy.h"

#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

namespace {
std::vector<uint8_t> npy(const std::string& header, size_t data_bytes) {
    std::string h = header;
    while ((10 + h.size() + 1) % 64) h += ' ';
    h += '\n';
    std::vector<uint8_t> v = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(h.size() & 0xff), (uint8_t)(h.size() >> 8)};
    v.insert(v.end(), h.begin(), h.end());
    v.resize(v.size() + data_bytes, 0);
    return v;
}
}  // namespace

TEST(Npy, RoundTripsF32AndF64) {
    const std::string path =
        (std::filesystem::path(NUANCE_SCRATCH_DIR) / ("nuance_npy_" + std::to_string(::getpid()) + ".npy")).string();
    const Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
    write_npy(path, a);
    const Tensor b = read_npy(path);
    EXPECT_EQ(b.shape(), (Shape{2, 3}));
    EXPECT_EQ(b.to_vector(), a.to_vector());
    write_npy(path, Tensor::from_vector({7, 8}, {2}).to(DType::F64));
    const Tensor c = read_npy(path);
    EXPECT_EQ(c.dtype(), DType::F64);
    EXPECT_EQ(c.shape(), (Shape{2}));
    std::filesystem::remove(path);
}

TEST(Npy, ReadsNumpysOwnHeader) {
    // np.save of np.zeros((2, 3), np.float32): "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
    const auto v = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24);
    EXPECT_EQ(parse_npy(v.data(), v.size(), "x.npy").shape(), (Shape{2, 3}));
}

TEST(Npy, FortranOrderAndVersion2AndLimits) {
    // np.save of np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)): the data in column order.
    std::vector<uint8_t> v = npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 0);
    for (float f : {0.f, 3.f, 1.f, 4.f, 2.f, 5.f}) {
        uint8_t b[4];
        std::memcpy(b, &f, 4);
        v.insert(v.end(), b, b + 4);
    }
    const Tensor t = parse_npy(v.data(), v.size(), "f.npy");
    EXPECT_EQ(t.shape(), (Shape{2, 3}));
    EXPECT_EQ(t.to_vector(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
    // Version 2.0: a 4-byte header length.
    std::string h = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
    while ((12 + h.size() + 1) % 64) h += ' ';
    h += '\n';
    std::vector<uint8_t> v2 = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, (uint8_t)h.size(), 0, 0, 0};
    v2.insert(v2.end(), h.begin(), h.end());
    const double one = 1.5;
    v2.resize(v2.size() + 8);
    std::memcpy(v2.data() + v2.size() - 8, &one, 8);
    const Tensor d = parse_npy(v2.data(), v2.size(), "v2.npy");
    EXPECT_EQ(d.dtype(), DType::F64);
    EXPECT_EQ(d.data<double>()[0], 1.5);
    // A caller's limits.
    NpyLimits lim;
    lim.max_dim = 2;
    EXPECT_THAT(error_of([&] { parse_npy(v.data(), v.size(), "f.npy", lim); }),
                HasSubstr("'f.npy': .npy dimension 3 in shape (2, 3) exceeds 2"));
    EXPECT_THAT(error_of([] { npy_bytes(Tensor::from_vector({1}, {1}).to(DType::F16)); }),
                HasSubstr("npy: only F32/F64 tensors can be written"));
}

TEST(Npy, HostileHeaders) {
    auto err = [](const std::vector<uint8_t>& v) { return error_of([&] { parse_npy(v.data(), v.size(), "x.npy"); }); };
    EXPECT_THAT(err({1, 2, 3}), HasSubstr("'x.npy' is not a .npy file (bad magic)"));
    EXPECT_THAT(err(npy("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", 16)),
                HasSubstr("'x.npy': .npy dtype '<i8' is not supported (<f2, <f4, <f8)"));
    EXPECT_THAT(err(npy("{'descr': '<f4', 'fortran_order': maybe, 'shape': (2, 2), }", 16)),
                HasSubstr("'x.npy': bad .npy fortran_order 'maybe'"));
    EXPECT_THAT(err(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", 8)),
                HasSubstr("'x.npy': bad .npy shape (2, x)"));
    EXPECT_THAT(err(npy("{'descr': '<f4', 'fortran_order': False, }", 4)),
                HasSubstr("'x.npy': .npy header has no 'shape'"));
    EXPECT_THAT(err(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }", 4)),
                HasSubstr("'x.npy': .npy arrays of more than 8 dimensions are not supported here"));
    EXPECT_THAT(err(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20)),
                HasSubstr("'x.npy': .npy shape (2, 3) of <f4 needs 24 data bytes, the file has 20"));
    EXPECT_THAT(err(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4096), }", 0)),
                HasSubstr("'x.npy': .npy shape (4294967296, 4294967296, 4096) is too large"));
    auto v = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4);
    v[8] = 0xff;
    v[9] = 0xff;
    EXPECT_THAT(err(v), HasSubstr(".npy header length 65535 does not fit the file"));
}
