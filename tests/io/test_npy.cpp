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
        (std::filesystem::temp_directory_path() / ("nuance_npy_" + std::to_string(::getpid()) + ".npy")).string();
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

TEST(Npy, HostileHeaders) {
    auto err = [](const std::vector<uint8_t>& v) { return error_of([&] { parse_npy(v.data(), v.size(), "x.npy"); }); };
    EXPECT_THAT(err({1, 2, 3}), HasSubstr("'x.npy' is not a .npy file (bad magic)"));
    EXPECT_THAT(err(npy("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", 16)),
                HasSubstr("'x.npy': .npy dtype '<i8' is not supported (<f2, <f4, <f8)"));
    EXPECT_THAT(err(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16)),
                HasSubstr("Fortran-order .npy arrays are not supported"));
    EXPECT_THAT(err(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20)),
                HasSubstr("'x.npy': .npy shape (2, 3) of <f4 needs 24 data bytes, the file has 20"));
    EXPECT_THAT(err(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4096), }", 0)),
                HasSubstr("'x.npy': .npy shape (4294967296, 4294967296, 4096) is too large"));
    auto v = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4);
    v[8] = 0xff;
    v[9] = 0xff;
    EXPECT_THAT(err(v), HasSubstr(".npy header length 65535 does not fit the file"));
}
