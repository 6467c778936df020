// Regression tests for what fuzzing found (fuzz/README.md). Each case builds the reproducer saved under
// fuzz/crashes/<target>/ itself and runs it through the normal loader, expecting a nuance::Error with its message.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "io/gguf.h"
#include "io/image.h"
#include "io/weights.h"
#include "base64.h"
#include "request_parse.h"
#include "models/unet/unet_config.h"

using namespace nuance;
using nuance::test::error_of;
using ::testing::HasSubstr;

namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_fuzz_regress_" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(path); }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string write(const std::string& name, const std::string& text) const {
        const std::string p = (path / name).string();
        std::ofstream(p, std::ios::binary) << text;
        return p;
    }
};

UNetConfig sd15_levels() {
    UNetConfig c;
    c.block_out_channels = {320, 640, 1280, 1280};
    c.heads = {8, 8, 8, 8};
    return c;
}

}  // namespace

// fuzz/crashes/diffusers_json/index_names_itself.json: a shard index whose weight_map names the index file itself
// made load_weights recurse until the stack overflowed.
TEST(FuzzRegressions, ShardIndexNamingItselfIsAnError) {
    TempDir d;
    const std::string idx =
        d.write("model.safetensors.index.json", R"({"weight_map":{"a":"model.safetensors.index.json"}})");
    EXPECT_THAT(error_of([&] { load_weights(idx); }),
                HasSubstr("': weight_map names the index itself ('model.safetensors.index.json') as a shard"));
}

// The same through two indexes naming each other.
TEST(FuzzRegressions, ShardIndexCycleIsAnError) {
    TempDir d;
    const std::string a = d.write("a.index.json", R"({"weight_map":{"x":"b.index.json"}})");
    d.write("b.index.json", R"({"weight_map":{"x":"a.index.json"}})");
    EXPECT_THAT(error_of([&] { load_weights(a); }),
                HasSubstr("': shard 'b.index.json' is itself a shard index (nested or cyclic indexes are not "
                          "supported)"));
}

// fuzz/crashes/diffusers_json/unet_heads_string.json: a non-integer head count in unet/config.json escaped as
// nlohmann::json::type_error instead of a nuance::Error (0 heads or groups: tests/io/test_hostile_weights.cpp).
TEST(FuzzRegressions, UNetConfigHeadCountsMustBeIntegers) {
    const auto apply = [](const char* text) {
        return error_of([&] { sd15_levels().apply_json(nlohmann::json::parse(text)); });
    };
    EXPECT_EQ(apply(R"({"attention_head_dim":[1,2,3,"x"]})"), "UNet config: head count \"x\" is not an integer");
    EXPECT_EQ(apply(R"({"attention_head_dim":[8,8,1.5,8]})"), "UNet config: head count 1.5 is not an integer");
    EXPECT_EQ(apply(R"({"attention_head_dim":[5,6,7,8],"norm_num_groups":16})"), "(no error)");
    UNetConfig c = sd15_levels();
    c.apply_json(nlohmann::json::parse(R"({"attention_head_dim":[5,6,7,8]})"));
    EXPECT_EQ(c.heads, (std::vector<int64_t>{5, 6, 7, 8}));
}

// fuzz/crashes/png/ztxt_length_1933723988.png: a zTXt chunk whose length field claims 1.9 GB in a 300-byte file
// made libpng allocate and clear 1.9 GB before finding the data missing. Rebuilt here: a valid PNG with a text chunk
// whose length is patched.
TEST(FuzzRegressions, PngChunkLongerThanTheFileIsAnError) {
    Image im;
    im.width = 4, im.height = 4, im.channels = 3;
    im.pixels.assign(4 * 4 * 3, 100);
    std::vector<uint8_t> png = encode_png(im, {{"comment", "hello"}});
    EXPECT_EQ(decode_image(png.data(), png.size()).width, 4);
    // 8-byte signature, then IHDR (4 + 4 + 13 + 4 bytes): the text chunk starts at byte 33.
    ASSERT_EQ(std::string(reinterpret_cast<const char*>(png.data() + 37), 4), "tEXt");
    png[33] = 0x73, png[34] = 0x42, png[35] = 0x49, png[36] = 0x54;  // 0x73424954 = 1933723988
    EXPECT_EQ(error_of([&] { decode_image(png.data(), png.size(), 3, "x.png"); }),
              "cannot read PNG 'x.png': chunk 'tEXt' at byte 33 claims 1933723988 bytes but " +
                  std::to_string(png.size() - 41) + " remain (truncated or corrupt file)");
}

// fuzz/crashes/jpeg/header_65285x1791_200_bytes.jpg: 200 bytes that libjpeg decodes to 65285 x 1791 pixels (the
// entropy data ends at a marker, which libjpeg fills with zeros). Within the decoders' own 2^28-pixel limit, so not an
// error by default, but seconds of work: callers that take images from outside pass max_pixels, which is checked
// against the size the decoder itself read, before any pixel memory is allocated.
TEST(FuzzRegressions, DecodeImageMaxPixelsIsCheckedAgainstTheDecodersHeader) {
    Image im;
    im.width = 8, im.height = 4, im.channels = 3;
    im.pixels.assign(8 * 4 * 3, 7);
    const std::vector<uint8_t> png = encode_png(im);
    EXPECT_EQ(decode_image(png.data(), png.size(), 3, "a.png", 32).width, 8);
    EXPECT_EQ(error_of([&] { decode_image(png.data(), png.size(), 3, "a.png", 31); }),
              "image 'a.png' is 8x4 = 32 pixels, over the limit of 31 pixels for input images");
    // A baseline JPEG header (SOI, DQT, SOF0 65285 x 1791 x 3, SOS, no data): refused from its header alone.
    std::vector<uint8_t> jpg = {0xff, 0xd8, 0xff, 0xdb, 0x00, 0x43, 0x00};
    for (int i = 0; i < 64; ++i) jpg.push_back(1);
    for (uint8_t b : {0xff, 0xc0, 0x00, 0x11, 0x08, 0x06, 0xff, 0xff, 0x05, 0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x00,
                      0x03, 0x11, 0x00, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00, 0x3f,
                      0x00, 0x00, 0x00, 0xff, 0xd9})
        jpg.push_back(b);
    EXPECT_EQ(error_of([&] { decode_image(jpg.data(), jpg.size(), 3, "b.jpg", 1 << 20); }),
              "image 'b.jpg' is 65285x1791 = 116925435 pixels, over the limit of 1048576 pixels for input images");
}

// fuzz/crashes/request/png_size_product_overflows.json: an img2img request whose base64 PNG header claims
// 2939806654 x 4193472264 pixels; the server's pixel check multiplied them as int64_t (signed overflow, UBSan).
TEST(FuzzRegressions, RequestImageSizeProductDoesNotOverflow) {
    std::string png = "\x89PNG\r\n\x1a\n";
    png += std::string("\0\0\0\x0dIHDR", 8);
    auto be32 = [&](uint32_t v) {
        for (int s = 24; s >= 0; s -= 8) png += (char)((v >> s) & 0xff);
    };
    be32(2939806654u);
    be32(4193472264u);
    png += std::string("\x08\x02\0\0\0", 5);
    server::Limits lim;
    const std::string msg = error_of([&] { server::decode_request_image(server::base64_encode(png), lim, "init_images[0]"); });
    EXPECT_THAT(msg, HasSubstr("init_images[0] is 2939806654x4193472264 pixels, over this server's limit of"));
    // Both sides at the top of their range, and a limit at the top of int64_t.
    png.replace(16, 8, std::string("\xff\xff\xff\xff\xff\xff\xff\xff", 8));
    lim.max_input_pixels = INT64_MAX;
    const std::string msg2 = error_of([&] { server::decode_request_image(server::base64_encode(png), lim, "img"); });
    // (2^32-1)^2 is over INT64_MAX: refused by the comparison in uint64_t, without overflow.
    EXPECT_THAT(msg2, HasSubstr("img is 4294967295x4294967295 pixels, over this server's limit of 9223372036854775807"));
}

// fuzz/crashes/gguf/q8_0_row_past_int64_zero_dim.gguf (fuzz_gguf, 2026-12-07): a Q8_0 tensor whose second dimension
// is 0 and whose row claims so many values that its bytes pass int64: the header reader refuses it (before: signed
// overflow in GgufFile::quantized's row size). The constructed case is in GgufHostile.TensorInfoFields.
TEST(FuzzRegressions, GgufRowBytesPastInt64WithAZeroDimension) {
    const std::string file =
        (fs::path(NUANCE_TEST_DATA) / ".." / ".." / "fuzz" / "crashes" / "gguf" / "q8_0_row_past_int64_zero_dim.gguf")
            .string();
    ASSERT_TRUE(fs::exists(file)) << file;
    EXPECT_THAT(error_of([&] { (void)read_gguf(file); }), HasSubstr("values overflows its byte size"));
}
