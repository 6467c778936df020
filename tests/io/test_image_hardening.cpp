// Image files against hostile input and failing disks: truncated/corrupt JPEGs are errors (not grey images),
// pixel caps apply on the header before decoding, JPEG output, output path checks, atomic writes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sys/resource.h>
#include <unistd.h>

#include "../test_util.h"
#include "io/image.h"

using namespace nuance;
namespace fs = std::filesystem;
using ::testing::HasSubstr;

namespace {

Image noise_image(int w, int h, int ch = 3) {
    Image img;
    img.width = w;
    img.height = h;
    img.channels = ch;
    img.pixels.resize((size_t)w * h * ch);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = (uint8_t)(i * 7919 % 251);
    return img;
}

uint32_t crc32(const uint8_t* p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

struct TempDir {
    fs::path dir = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_image_hardening_" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(dir); }
    ~TempDir() { fs::remove_all(dir); }
    std::string operator/(const std::string& f) const { return (dir / f).string(); }
};

}  // namespace

TEST(ImageHardening, JpegRoundTripAndComment) {
    const Image img = noise_image(40, 24);
    const std::vector<uint8_t> jpg = encode_jpeg(img, 95, "Steps: 20, Sampler: Euler a");
    ASSERT_GT(jpg.size(), 100u);
    EXPECT_EQ(jpg[0], 0xFF);
    EXPECT_EQ(jpg[1], 0xD8);
    EXPECT_NE(std::string(jpg.begin(), jpg.end()).find("Steps: 20, Sampler: Euler a"), std::string::npos);
    const Image back = decode_image(jpg.data(), jpg.size());
    EXPECT_EQ(back.width, 40);
    EXPECT_EQ(back.height, 24);
    // RGBA and gray encode too (alpha dropped)
    EXPECT_NO_THROW(encode_jpeg(noise_image(8, 8, 4)));
    EXPECT_NO_THROW(encode_jpeg(noise_image(8, 8, 1)));
    EXPECT_THAT(test::error_of([&] { encode_jpeg(img, 0); }), HasSubstr("quality must be in 1..100, got 0"));
}

TEST(ImageHardening, TruncatedOrCorruptJpegIsAnErrorAtEveryCut) {
    const std::vector<uint8_t> jpg = encode_jpeg(noise_image(64, 48));
    // Every cut after the header: never a silently grey-filled image.
    for (size_t cut = jpg.size() / 4; cut + 2 < jpg.size(); cut += jpg.size() / 16) {
        const std::string err = test::error_of([&] { decode_image(jpg.data(), cut, 3, "cut.jpg"); });
        EXPECT_THAT(err, HasSubstr("cannot read JPEG 'cut.jpg'")) << "cut at " << cut;
    }
    // Garbage in the entropy-coded data (a marker where none may be) is a warning in libjpeg: an error here.
    std::vector<uint8_t> bad = jpg;
    for (size_t i = bad.size() / 2; i < bad.size() / 2 + 8; ++i) bad[i] = 0xFF;
    bad[bad.size() / 2 + 8] = 0xD3;  // RST3 out of sequence
    EXPECT_THAT(test::error_of([&] { decode_image(bad.data(), bad.size(), 3, "bad.jpg"); }),
                HasSubstr("cannot read JPEG 'bad.jpg'"));
}

TEST(ImageHardening, PixelCapIsCheckedOnTheHeader) {
    std::vector<uint8_t> png = encode_png(noise_image(16, 16));
    // IHDR at offset 8: length(4) "IHDR"(4) width(4) height(4) ... crc over type+data (17 bytes).
    auto put32 = [&](size_t at, uint32_t v) {
        png[at] = (uint8_t)(v >> 24), png[at + 1] = (uint8_t)(v >> 16), png[at + 2] = (uint8_t)(v >> 8),
        png[at + 3] = (uint8_t)v;
    };
    put32(16, 30000);
    put32(20, 30000);
    put32(29, crc32(png.data() + 12, 17));
    EXPECT_THAT(test::error_of([&] { decode_image(png.data(), png.size(), 3, "bomb.png", kMaxInputImagePixels); }),
                HasSubstr("image 'bomb.png' is 30000x30000 = 900000000 pixels, over the limit of 8388608 pixels"));
    const Image ok = noise_image(64, 64);
    const std::vector<uint8_t> good = encode_png(ok);
    EXPECT_THAT(test::error_of([&] { decode_image(good.data(), good.size(), 3, "x.png", 64 * 64 - 1); }),
                HasSubstr("64x64 = 4096 pixels, over the limit of 4095"));
    EXPECT_EQ(decode_image(good.data(), good.size(), 3, "x.png", 64 * 64).width, 64);
}

TEST(ImageHardening, OutputPathsAreCheckedBeforeWork) {
    TempDir d;
    EXPECT_EQ(image_format_for_path("a/b.PNG"), ImageFormat::Png);
    EXPECT_EQ(image_format_for_path("x.Jpeg"), ImageFormat::Jpeg);
    EXPECT_THAT(test::error_of([] { image_format_for_path("out.webp"); }),
                HasSubstr("output 'out.webp': unknown image extension '.webp' (use .png, .jpg or .jpeg)"));
    EXPECT_THAT(test::error_of([] { image_format_for_path("dir.png/out"); }), HasSubstr("no file extension"));
    EXPECT_THAT(test::error_of([&] { check_output_path(d / "missing/x.png"); }),
                HasSubstr("the folder '" + (d / "missing") + "' does not exist"));
    fs::create_directories(d / "sub.png");
    EXPECT_THAT(test::error_of([&] { check_output_path(d / "sub.png"); }), HasSubstr("is a folder, not a file"));
    EXPECT_NO_THROW(check_output_path(d / "fine.jpg"));
    if (::geteuid() != 0) {  // root may write anywhere
        fs::create_directories(d / "ro");
        fs::permissions(d / "ro", fs::perms::owner_read | fs::perms::owner_exec);
        EXPECT_THAT(test::error_of([&] { check_output_path(d / "ro/x.png"); }), HasSubstr("is not writable"));
        fs::permissions(d / "ro", fs::perms::owner_all);
    }
}

TEST(ImageHardening, WriteImageIsAtomicUnderAFullDisk) {
    TempDir d;
    const std::string out = d / "old.png";
    std::ofstream(out, std::ios::binary) << "old bytes";
    std::string e1, e2;
    {
        const test::FileSizeLimit full_disk(128);
        e1 = test::error_of([&] { write_png(out, noise_image(64, 64)); });
        e2 = test::error_of([&] { write_image(d / "old.png", noise_image(64, 64)); });
    }
    EXPECT_THAT(e1, HasSubstr("writing '" + out + "' failed: File too large"));
    EXPECT_THAT(e2, HasSubstr("failed: File too large"));
    std::ifstream f(out, std::ios::binary);
    EXPECT_EQ(std::string((std::istreambuf_iterator<char>(f)), {}), "old bytes");
    for (const auto& e : fs::directory_iterator(d.dir))
        EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
    // and with room, the JPEG path writes a real JPEG
    write_image(d / "ok.jpg", noise_image(32, 32), {{"parameters", "hello"}});
    EXPECT_EQ(read_image(d / "ok.jpg").width, 32);
}
