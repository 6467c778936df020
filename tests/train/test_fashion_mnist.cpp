// FashionMnistDataset and the IDX reader on tiny IDX files written here (plain and gzip), like the Debian ones.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>

#include "../test_util.h"
#include "data_test_util.h"
#include "train/data_loader.h"
#include "train/fashion_mnist.h"

namespace nuance {
namespace {

using test::error_of;
using ::testing::HasSubstr;

std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> b = {0, 0, 0x08, (uint8_t)dims.size()};
    for (uint32_t d : dims)
        for (int s = 24; s >= 0; s -= 8) b.push_back((uint8_t)(d >> s));
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b, bool gzip) {
    if (gzip) {
        gzFile f = gzopen(path.c_str(), "wb");
        gzwrite(f, b.data(), (unsigned)b.size());
        gzclose(f);
    } else {
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), (std::streamsize)b.size());
    }
}

// Three 4x3 images (pixel value = 10 * image + y * 3 + x), labels 0, 9, 3.
struct TinyMnist {
    test::TempDir dir{"fmnist"};
    explicit TinyMnist(bool gzip = true, const std::string& prefix = "train") {
        std::vector<uint8_t> px;
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 12; ++j) px.push_back((uint8_t)(10 * i + j));
        const std::string ext = gzip ? ".gz" : "";
        write_bytes(dir / (prefix + "-images-idx3-ubyte" + ext), idx_bytes({3, 4, 3}, px), gzip);
        write_bytes(dir / (prefix + "-labels-idx1-ubyte" + ext), idx_bytes({3}, {0, 9, 3}), gzip);
    }
    FashionMnistOptions opt() const {
        FashionMnistOptions o;
        o.dir = dir.path().string();
        return o;
    }
};

TEST(FashionMnist, DefaultFolderIsDebians) {
    EXPECT_STREQ(FashionMnistOptions{}.dir.c_str(), "/usr/share/datasets/fashion-mnist");
    EXPECT_EQ(FashionMnistDataset::class_names().size(), 10u);
    EXPECT_STREQ(FashionMnistDataset::class_names()[9], "Ankle boot");
}

TEST(FashionMnist, ReadsGzipAndPlainIdxWithClassCaptions) {
    for (bool gzip : {true, false}) {
        TinyMnist m(gzip);
        FashionMnistDataset ds(m.opt());
        ASSERT_EQ(ds.size(), 3);
        EXPECT_EQ(ds.label(1), 9);
        Mt19937 rng(0);
        const Sample s = ds.get(1, rng);
        EXPECT_EQ(s.caption, "Ankle boot");
        ASSERT_EQ(s.image.shape(), (Shape{1, 4, 3}));
        EXPECT_EQ(s.image.to_vector()[5], (float)(10 + 5) / 255.0f * 2.0f - 1.0f);
        EXPECT_EQ(ds.get(0, rng).caption, "T-shirt/top");
        EXPECT_EQ(ds.get(2, rng).caption, "Dress");
    }
}

TEST(FashionMnist, PadFlipDropoutLimitAndTestSplit) {
    TinyMnist m(true, "t10k");
    FashionMnistOptions o = m.opt();
    o.split = "test";
    o.pad_to_32 = true;
    o.limit = 2;
    FashionMnistDataset ds(o);
    EXPECT_EQ(ds.size(), 2);
    Mt19937 rng(0);
    const Tensor t = ds.get(0, rng).image;
    ASSERT_EQ(t.shape(), (Shape{1, 32, 32}));  // 4x3 centred: 14 rows, 14 columns of border
    const std::vector<float> v = t.to_vector();
    EXPECT_EQ(v[0], -1.0f);
    EXPECT_EQ(v[14 * 32 + 14 + 1], 1.0f / 255.0f * 2.0f - 1.0f);
    o.pad_to_32 = false;
    o.random_flip = true;
    o.caption_dropout = 1;
    FashionMnistDataset f(o);
    bool flipped = false;
    for (uint64_t seed = 0; seed < 20; ++seed) {
        Mt19937 r(seed);
        const Sample s = f.get(0, r);
        EXPECT_EQ(s.caption, "");
        flipped |= s.image.to_vector()[0] == 2.0f / 255.0f * 2.0f - 1.0f;  // row 0 reversed: (2, 1, 0)
    }
    EXPECT_TRUE(flipped);
    LoaderOptions lo;
    lo.batch_size = 2;
    DataLoader dl(f, 1, lo);
    EXPECT_EQ(dl.next().images.shape(), (Shape{2, 1, 4, 3}));
}

TEST(FashionMnistErrors, MissingFilesAndBadIdx) {
    FashionMnistOptions o;
    o.dir = "/nonexistent/fmnist";
    EXPECT_THAT(error_of([&] { FashionMnistDataset ds(o); }), HasSubstr("folder '/nonexistent/fmnist' does not exist"));
    {
        TinyMnist m;
        std::filesystem::remove(m.dir / "train-labels-idx1-ubyte.gz");
        EXPECT_THAT(error_of([&] { FashionMnistDataset ds(m.opt()); }),
                    HasSubstr("'train-labels-idx1-ubyte[.gz]' not found"));
        o = m.opt();
        o.split = "valid";
        EXPECT_THAT(error_of([&] { FashionMnistDataset ds(o); }), HasSubstr("unknown split 'valid'"));
    }
    {
        TinyMnist m;
        write_bytes(m.dir / "train-labels-idx1-ubyte.gz", idx_bytes({2}, {0, 1}), true);
        EXPECT_THAT(error_of([&] { FashionMnistDataset ds(m.opt()); }), HasSubstr("has 3 images but"));
        write_bytes(m.dir / "train-labels-idx1-ubyte.gz", idx_bytes({3}, {0, 12, 1}), true);
        EXPECT_THAT(error_of([&] { FashionMnistDataset ds(m.opt()); }), HasSubstr("label 12 at index 1"));
    }
    test::TempDir d("idx");
    write_bytes(d / "short", idx_bytes({3, 4}, {1, 2, 3}), false);
    EXPECT_THAT(error_of([&] { read_idx(d / "short"); }), HasSubstr("need 12 bytes of data, the file has 3"));
    write_bytes(d / "magic", {1, 2, 8, 1, 0, 0, 0, 0}, false);
    EXPECT_THAT(error_of([&] { read_idx(d / "magic"); }), HasSubstr("bad magic"));
    write_bytes(d / "float", {0, 0, 0x0d, 1, 0, 0, 0, 0}, false);
    EXPECT_THAT(error_of([&] { read_idx(d / "float"); }), HasSubstr("element type 0xd is not supported"));
    write_bytes(d / "huge", idx_bytes({65536, 65536, 65536}, {}), false);
    EXPECT_THAT(error_of([&] { read_idx(d / "huge"); }), HasSubstr("too large"));
    // A gzip stream cut in half.
    write_bytes(d / "full.gz", idx_bytes({1000}, std::vector<uint8_t>(1000, 7)), true);
    std::ifstream in(d / "full.gz", std::ios::binary);
    std::vector<uint8_t> gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    gz.resize(gz.size() / 2);
    write_bytes(d / "cut.gz", gz, false);
    EXPECT_THAT(error_of([&] { read_idx(d / "cut.gz"); }), HasSubstr("corrupt or truncated gzip"));
    EXPECT_EQ(read_idx(d / "full.gz").dims, (std::vector<int64_t>{1000}));
}

}  // namespace
}  // namespace nuance
