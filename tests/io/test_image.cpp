// PNG/JPEG decoding and encoding, PNG text metadata, image <-> tensor conversions and Lanczos resizing.
// Inputs of every PNG colour type and JPEGs are produced here with libpng/libjpeg directly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <png.h>
#include <stdio.h>
#include <jpeglib.h>
#include <zlib.h>

#include <cmath>
#include <csetjmp>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>

#include "io/image.h"
#include "io/png_meta.h"

using namespace nuance;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

std::string tmp(const std::string& name) { return ::std::string(NUANCE_SCRATCH_DIR) + "/nuance_img_" + name; }

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), (std::streamsize)b.size());
}
std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// Raw libpng writer for arbitrary colour types / bit depths. `rows` are already packed as PNG expects.
struct RawPng {
    int w = 0, h = 0, bit_depth = 8, color_type = PNG_COLOR_TYPE_RGB, interlace = PNG_INTERLACE_NONE;
    std::vector<std::vector<uint8_t>> rows;
    std::vector<png_color> palette;
    std::vector<uint8_t> trns;
    std::vector<std::pair<std::string, std::string>> ztxt;  // zTXt chunks
    std::vector<std::pair<std::string, std::string>> latin1;  // tEXt chunks, raw Latin-1 bytes
};

void raw_write_cb(png_structp png, png_bytep d, size_t n) {
    auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
    out->insert(out->end(), d, d + n);
}

std::vector<uint8_t> encode_raw(const RawPng& r) {
    std::vector<uint8_t> out;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png_create_info_struct(png);
    std::vector<png_bytep> rows;
    for (const auto& row : r.rows) rows.push_back(const_cast<uint8_t*>(row.data()));
    std::vector<png_text> texts;
    for (const auto& [k, v] : r.ztxt)
        texts.push_back({PNG_TEXT_COMPRESSION_zTXt, const_cast<char*>(k.c_str()), const_cast<char*>(v.c_str()),
                         v.size(), 0, nullptr, nullptr});
    for (const auto& [k, v] : r.latin1)
        texts.push_back({PNG_TEXT_COMPRESSION_NONE, const_cast<char*>(k.c_str()), const_cast<char*>(v.c_str()),
                         v.size(), 0, nullptr, nullptr});
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        ADD_FAILURE() << "libpng failed writing a test image";
        return {};
    }
    png_set_write_fn(png, &out, raw_write_cb, nullptr);
    png_set_IHDR(png, info, r.w, r.h, r.bit_depth, r.color_type, r.interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (!r.palette.empty()) png_set_PLTE(png, info, r.palette.data(), (int)r.palette.size());
    if (!r.trns.empty()) png_set_tRNS(png, info, r.trns.data(), (int)r.trns.size(), nullptr);
    if (!texts.empty()) png_set_text(png, info, texts.data(), (int)texts.size());
    png_write_info(png, info);
    png_write_image(png, rows.data());
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    return out;
}

std::vector<uint8_t> encode_jpeg(const std::vector<uint8_t>& px, int w, int h, int comps, int quality) {
    jpeg_compress_struct c{};
    jpeg_error_mgr err{};
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char* buf = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = w;
    c.image_height = h;
    c.input_components = comps;
    c.in_color_space = comps == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = const_cast<uint8_t*>(px.data()) + (size_t)c.next_scanline * w * comps;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    std::vector<uint8_t> out(buf, buf + size);
    jpeg_destroy_compress(&c);
    free(buf);
    return out;
}

Image pattern(int w, int h, int ch) {
    Image img;
    img.width = w;
    img.height = h;
    img.channels = ch;
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < ch; ++c) img.pixels.push_back((uint8_t)((x * 37 + y * 91 + c * 53) % 256));
    return img;
}

std::vector<uint8_t> px(const Image& img, int x, int y) {
    const uint8_t* p = &img.pixels[((size_t)y * img.width + x) * img.channels];
    return std::vector<uint8_t>(p, p + img.channels);
}

bool contains(const std::vector<uint8_t>& b, const char* s) {
    return std::search(b.begin(), b.end(), s, s + std::strlen(s)) != b.end();
}

}  // namespace

// ============================== PNG roundtrip and text ==============================

TEST(Image, PngRoundtripWithTextChunks) {
    const Image rgb = pattern(13, 7, 3);
    const std::string params = "a cat, masterpiece\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42";
    const std::string utf8 = "ein Kätzchen 🐱, 猫";
    const std::string path = tmp("roundtrip.png");
    write_png(path, rgb, {{"parameters", params}, {"prompt", utf8}});
    const Image back = read_image(path);
    EXPECT_EQ(back.width, 13);
    EXPECT_EQ(back.height, 7);
    EXPECT_EQ(back.channels, 3);
    EXPECT_EQ(back.pixels, rgb.pixels);
    const PngText text = read_png_text(path);
    ASSERT_EQ(text.size(), 2u);
    EXPECT_EQ(text[0], std::make_pair(std::string("parameters"), params));
    EXPECT_EQ(text[1], std::make_pair(std::string("prompt"), utf8));
    const auto bytes = read_bytes(path);
    EXPECT_TRUE(contains(bytes, "tEXtparameters"));  // ASCII -> tEXt
    EXPECT_TRUE(contains(bytes, "iTXtprompt"));      // non-ASCII -> iTXt

    // RGBA keeps alpha through read_image_rgba, and read_image drops it
    const Image rgba = pattern(5, 4, 4);
    const auto mem = encode_png(rgba);
    const Image a4 = decode_image(mem.data(), mem.size(), 4);
    EXPECT_EQ(a4.pixels, rgba.pixels);
    const Image a3 = decode_image(mem.data(), mem.size());
    EXPECT_EQ(a3.channels, 3);
    const std::vector<uint8_t> p4 = px(rgba, 2, 1);
    EXPECT_EQ(px(a3, 2, 1), std::vector<uint8_t>(p4.begin(), p4.begin() + 3));
    // an RGB file read as RGBA is opaque
    const auto rgb_mem = encode_png(rgb);
    EXPECT_EQ(px(decode_image(rgb_mem.data(), rgb_mem.size(), 4), 3, 2)[3], 255);
    // 1-channel images can be written too (masks)
    const Image gray = pattern(4, 4, 1);
    const auto gmem = encode_png(gray);
    EXPECT_EQ(px(decode_image(gmem.data(), gmem.size()), 1, 2), std::vector<uint8_t>(3, px(gray, 1, 2)[0]));
}

TEST(Image, PngTextVariantsAndErrors) {
    RawPng r;
    r.w = 2, r.h = 1, r.color_type = PNG_COLOR_TYPE_GRAY;
    r.rows = {{10, 20}};
    r.ztxt = {{"Comment", std::string(5000, 'z') + "end"}};
    r.latin1 = {{"Author", "Ren\xe9"}};  // Latin-1 e-acute
    const auto bytes = encode_raw(r);
    const PngText t = parse_png_text(bytes.data(), bytes.size(), "mem.png");
    ASSERT_EQ(t.size(), 2u);
    EXPECT_EQ(t[0].first, "Comment");
    EXPECT_EQ(t[0].second, std::string(5000, 'z') + "end");
    EXPECT_EQ(t[1].second, "Ren\xc3\xa9");  // converted to UTF-8

    // CRC damage inside a text chunk
    auto bad = bytes;
    const size_t at = std::search(bad.begin(), bad.end(), "Author", "Author" + 6) - bad.begin();
    bad[at + 8] ^= 1;
    EXPECT_THAT(error_of([&] { parse_png_text(bad.data(), bad.size(), "crc.png"); }),
                AllOf(HasSubstr("crc.png"), HasSubstr("CRC mismatch")));
    EXPECT_THAT(error_of([&] { parse_png_text(bytes.data(), 40, "cut.png"); }),
                AllOf(HasSubstr("cut.png"), HasSubstr("truncated")));
    EXPECT_THAT(error_of([] { read_png_text(tmp("does_not_exist.png")); }), HasSubstr("does_not_exist.png"));

    const Image img = pattern(2, 2, 3);
    EXPECT_THAT(error_of([&] { encode_png(img, {{"", "x"}}); }), HasSubstr("keyword"));
    EXPECT_THAT(error_of([&] { encode_png(img, {{std::string(80, 'k'), "x"}}); }), HasSubstr("keyword"));
    EXPECT_THAT(error_of([&] { encode_png(img, {{"k", std::string("a\0b", 3)}}); }), HasSubstr("NUL"));
    EXPECT_THAT(error_of([&] { encode_png(img, {{"k", "\xff\xfe"}}); }), HasSubstr("not valid UTF-8"));
    Image broken = img;
    broken.pixels.pop_back();
    EXPECT_THAT(error_of([&] { encode_png(broken); }), HasSubstr("11 bytes of pixels for a 2x2x3 image"));
    EXPECT_THAT(error_of([&] { write_png("/nonexistent_dir/x.png", img); }), HasSubstr("/nonexistent_dir/x.png"));
}

// ============================== PNG input variants ==============================

TEST(Image, PngColorTypesBecomeRgb) {
    // 8-bit gray
    RawPng g;
    g.w = 3, g.h = 1, g.color_type = PNG_COLOR_TYPE_GRAY, g.rows = {{0, 128, 255}};
    auto b = encode_raw(g);
    Image im = decode_image(b.data(), b.size());
    EXPECT_EQ(im.pixels, std::vector<uint8_t>({0, 0, 0, 128, 128, 128, 255, 255, 255}));
    // 1-bit gray: bits 1,0,1 -> 255,0,255
    RawPng g1;
    g1.w = 3, g1.h = 1, g1.bit_depth = 1, g1.color_type = PNG_COLOR_TYPE_GRAY, g1.rows = {{0xA0}};
    b = encode_raw(g1);
    EXPECT_EQ(decode_image(b.data(), b.size()).pixels, std::vector<uint8_t>({255, 255, 255, 0, 0, 0, 255, 255, 255}));
    // gray + alpha: alpha dropped for RGB, kept for RGBA
    RawPng ga;
    ga.w = 2, ga.h = 1, ga.color_type = PNG_COLOR_TYPE_GRAY_ALPHA, ga.rows = {{50, 0, 200, 99}};
    b = encode_raw(ga);
    EXPECT_EQ(decode_image(b.data(), b.size()).pixels, std::vector<uint8_t>({50, 50, 50, 200, 200, 200}));
    EXPECT_EQ(decode_image(b.data(), b.size(), 4).pixels, std::vector<uint8_t>({50, 50, 50, 0, 200, 200, 200, 99}));
    // palette with tRNS
    RawPng p;
    p.w = 3, p.h = 1, p.bit_depth = 8, p.color_type = PNG_COLOR_TYPE_PALETTE, p.rows = {{2, 0, 1}};
    p.palette = {{255, 0, 0}, {0, 255, 0}, {1, 2, 3}};
    p.trns = {255, 128};
    b = encode_raw(p);
    EXPECT_EQ(decode_image(b.data(), b.size()).pixels, std::vector<uint8_t>({1, 2, 3, 255, 0, 0, 0, 255, 0}));
    EXPECT_EQ(decode_image(b.data(), b.size(), 4).pixels,
              std::vector<uint8_t>({1, 2, 3, 255, 255, 0, 0, 255, 0, 255, 0, 128}));
    // 16-bit RGB, big-endian samples, scaled to 8 bits with rounding (0x8080 -> 128, 0xffff -> 255)
    RawPng r16;
    r16.w = 1, r16.h = 1, r16.bit_depth = 16, r16.color_type = PNG_COLOR_TYPE_RGB;
    r16.rows = {{0x00, 0x00, 0x80, 0x80, 0xff, 0xff}};
    b = encode_raw(r16);
    EXPECT_EQ(decode_image(b.data(), b.size()).pixels, std::vector<uint8_t>({0, 128, 255}));
    // Adam7-interlaced RGBA
    const Image pat = pattern(9, 6, 4);
    RawPng il;
    il.w = 9, il.h = 6, il.color_type = PNG_COLOR_TYPE_RGB_ALPHA, il.interlace = PNG_INTERLACE_ADAM7;
    for (int y = 0; y < 6; ++y) il.rows.emplace_back(pat.pixels.begin() + y * 36, pat.pixels.begin() + (y + 1) * 36);
    b = encode_raw(il);
    EXPECT_EQ(decode_image(b.data(), b.size(), 4).pixels, pat.pixels);
}

// ============================== JPEG ==============================

TEST(Image, JpegReadRgbAndGray) {
    // 16x16 blocks of flat colour survive quality-100 JPEG almost exactly
    const int w = 32, h = 16;
    std::vector<uint8_t> rgb;
    const uint8_t colors[2][3] = {{200, 30, 60}, {20, 120, 240}};
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < 3; ++c) rgb.push_back(colors[x / 16][c]);
    const auto jpg = encode_jpeg(rgb, w, h, 3, 100);
    const std::string path = tmp("rgb.jpg");
    write_bytes(path, jpg);
    const Image im = read_image(path);
    ASSERT_EQ(im.width, w);
    ASSERT_EQ(im.height, h);
    ASSERT_EQ(im.channels, 3);
    for (int c = 0; c < 3; ++c) {
        EXPECT_NEAR(px(im, 4, 4)[c], colors[0][c], 3);
        EXPECT_NEAR(px(im, 27, 11)[c], colors[1][c], 3);
    }
    const Image im4 = read_image_rgba(path);
    EXPECT_EQ(im4.channels, 4);
    EXPECT_EQ(px(im4, 4, 4)[3], 255);

    std::vector<uint8_t> gray(16 * 8, 77);
    const auto gj = encode_jpeg(gray, 16, 8, 1, 95);
    const Image gi = decode_image(gj.data(), gj.size());
    EXPECT_EQ(gi.channels, 3);
    EXPECT_EQ(px(gi, 5, 5), std::vector<uint8_t>({77, 77, 77}));
}

// ============================== corrupt input ==============================

TEST(Image, CorruptAndTruncatedFilesGiveErrors) {
    const auto png = encode_png(pattern(40, 30, 3));
    const std::string cut = tmp("truncated.png");
    write_bytes(cut, std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2));
    EXPECT_THAT(error_of([&] { read_image(cut); }), AllOf(HasSubstr("truncated.png"), HasSubstr("PNG")));
    auto flipped = png;
    flipped[png.size() / 2] ^= 0x40;  // inside IDAT: CRC or zlib error
    EXPECT_THAT(error_of([&] { decode_image(flipped.data(), flipped.size(), 3, "flip.png"); }), HasSubstr("flip.png"));

    std::vector<uint8_t> rgb(64 * 64 * 3, 100);
    const auto jpg = encode_jpeg(rgb, 64, 64, 3, 90);
    const std::string jcut = tmp("truncated.jpg");
    write_bytes(jcut, std::vector<uint8_t>(jpg.begin(), jpg.begin() + jpg.size() / 2));
    EXPECT_THAT(error_of([&] { read_image(jcut); }), AllOf(HasSubstr("truncated.jpg"), HasSubstr("JPEG")));
    const std::vector<uint8_t> header_only(jpg.begin(), jpg.begin() + 10);
    EXPECT_THAT(error_of([&] { decode_image(header_only.data(), header_only.size(), 3, "hdr.jpg"); }),
                HasSubstr("hdr.jpg"));

    const std::string junk = tmp("junk.bin");
    write_bytes(junk, {'G', 'I', 'F', '8', '9', 'a', 0, 0});
    try {
        read_image(junk);
        ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::Unsupported);
        EXPECT_THAT(e.what(), AllOf(HasSubstr("junk.bin"), HasSubstr("neither PNG nor JPEG")));
    }
    const std::string empty = tmp("empty.png");
    write_bytes(empty, {});
    EXPECT_THAT(error_of([&] { read_image(empty); }), AllOf(HasSubstr("empty.png"), HasSubstr("empty file")));
    EXPECT_THAT(error_of([] { read_image(tmp("missing.png")); }), HasSubstr("missing.png"));

    // a header claiming 60000 x 60000 pixels is refused before anything is allocated
    RawPng huge;
    huge.w = 1, huge.h = 1, huge.color_type = PNG_COLOR_TYPE_GRAY, huge.rows = {{0}};
    auto hb = encode_raw(huge);
    const uint8_t side[4] = {0, 0, 0xEA, 0x60};  // 60000, big-endian; IHDR data starts at byte 16
    std::memcpy(&hb[16], side, 4);
    std::memcpy(&hb[20], side, 4);
    const uint32_t crc = (uint32_t)crc32(0, &hb[12], 17);
    for (int k = 0; k < 4; ++k) hb[29 + k] = (uint8_t)(crc >> (24 - 8 * k));
    EXPECT_THAT(error_of([&] { decode_image(hb.data(), hb.size(), 3, "huge.png"); }),
                AllOf(HasSubstr("huge.png"), HasSubstr("60000x60000")));
}

TEST(Image, EveryTruncationAndByteFlipFailsCleanly) {
    const auto png = encode_png(pattern(8, 6, 4), {{"parameters", "x"}});
    std::vector<uint8_t> rgb(16 * 16 * 3);
    for (size_t k = 0; k < rgb.size(); ++k) rgb[k] = (uint8_t)(k * 7);
    const auto jpg = encode_jpeg(rgb, 16, 16, 3, 80);
    for (const auto* file : {&png, &jpg}) {
        size_t errors = 0;
        auto attempt = [&](const std::vector<uint8_t>& b) {
            try {
                const Image im = decode_image(b.data(), b.size(), 4, "fuzz");
                EXPECT_EQ(im.pixels.size(), (size_t)im.width * im.height * 4);
            } catch (const Error& e) {
                EXPECT_THAT(e.what(), HasSubstr("fuzz"));
                ++errors;
            }
            try {
                parse_png_text(b.data(), b.size(), "fuzz");
            } catch (const Error&) {
            }
        };
        for (size_t n = 0; n < file->size(); ++n) attempt(std::vector<uint8_t>(file->begin(), file->begin() + n));
        for (size_t k = 0; k < file->size(); ++k) {
            auto b = *file;
            b[k] ^= 0xA5;
            attempt(b);
        }
        EXPECT_GT(errors, file->size() / 2);
    }
}

// ============================== tensor conversions ==============================

TEST(Image, ImageToTensor) {
    Image img;
    img.width = 2, img.height = 1, img.channels = 3;
    img.pixels = {0, 255, 51, 255, 0, 102};
    const Tensor t = image_to_tensor(img);
    EXPECT_EQ(t.shape(), Shape({1, 3, 1, 2}));
    EXPECT_EQ(t.dtype(), DType::F32);
    const auto v = t.to_vector();  // planar: R(x0, x1), G(x0, x1), B(x0, x1)
    EXPECT_EQ(v[0], -1.0f);
    EXPECT_EQ(v[1], 1.0f);
    EXPECT_EQ(v[2], 1.0f);
    EXPECT_EQ(v[3], -1.0f);
    EXPECT_EQ(v[4], 2.0f * (51.0f / 255.0f) - 1.0f);  // exactly the f32 sequence diffusers runs
    EXPECT_NEAR(v[4], -0.6f, 1e-6);
    EXPECT_NEAR(v[5], -0.2f, 1e-6);
}

TEST(Image, TensorToImageClampsAndRoundsHalfToEven) {
    // v * 255 == 126.5 exactly in f32 must round to 126 (numpy's round-half-even), not 127.
    float v_half = 0;
    for (float v = std::nextafter(126.5f / 255.0f, 0.0f), k = 0; k < 8; ++k, v = std::nextafter(v, 1.0f)) {
        volatile float y = v * 255.0f;
        if (y == 126.5f) { v_half = v; break; }
    }
    ASSERT_NE(v_half, 0.0f) << "no f32 v with v*255 == 126.5";
    const float x_half = 2.0f * v_half - 1.0f;  // exact; x/2 + 0.5 gives v_half back
    ASSERT_EQ(x_half / 2.0f + 0.5f, v_half);

    // [3, 1, 6]: R = {-1, 1, 0, 2, -3, x_half}, G = NaN..., B = f32 values from a real decode range
    std::vector<float> vals = {-1, 1, 0, 2, -3, x_half,
                               NAN, 0.5f, -0.5f, 1e-8f, -1e-8f, 0.999f,
                               -1, -1, -1, -1, -1, -1};
    const Image img = tensor_to_image(Tensor::from_vector(vals, {3, 1, 6}));
    EXPECT_EQ(img.channels, 3);
    EXPECT_EQ(img.width, 6);
    EXPECT_EQ(img.height, 1);
    std::vector<int> r, g;
    for (int x = 0; x < 6; ++x) {
        r.push_back(img.pixels[x * 3]);
        g.push_back(img.pixels[x * 3 + 1]);
    }
    // 0 -> 0.5 * 255 = 127.5 -> 128 (even); x_half -> 126.5 -> 126 (even)
    EXPECT_EQ(r, std::vector<int>({0, 255, 128, 255, 0, 126}));
    // NaN -> 0; 0.5 -> 191.25 -> 191; -0.5 -> 63.75 -> 64; ±1e-8 -> 127.5 -> 128; 0.999 -> 254.8725 -> 255
    EXPECT_EQ(g, std::vector<int>({0, 191, 64, 128, 128, 255}));

    // [1, 3, H, W] in F16 gives the same image; layout is HWC
    const Tensor t4 = Tensor::from_vector(vals, {1, 3, 1, 6}).to(DType::F16);
    const Image img16 = tensor_to_image(t4);
    EXPECT_EQ(img16.pixels[0 * 3], 0);
    EXPECT_EQ(img16.pixels[2 * 3], 128);

    EXPECT_THAT(error_of([] { tensor_to_image(Tensor::zeros({2, 3, 4, 4})); }), HasSubstr("[2, 3, 4, 4]"));
    EXPECT_THAT(error_of([] { tensor_to_image(Tensor::zeros({1, 2, 4, 4})); }), HasSubstr("1, 3 or 4 channels"));
    EXPECT_THAT(error_of([] { tensor_to_image(Tensor::from_ids({1, 2, 3}, {1, 1, 3})); }),
                HasSubstr("float tensor"));

    // roundtrip: image -> tensor -> image is the identity on every 8-bit value
    Image all;
    all.width = 256, all.height = 1, all.channels = 3;
    for (int k = 0; k < 256; ++k) all.pixels.insert(all.pixels.end(), {(uint8_t)k, (uint8_t)(255 - k), (uint8_t)k});
    EXPECT_EQ(tensor_to_image(image_to_tensor(all)).pixels, all.pixels);
}

// ============================== resize ==============================

TEST(Image, ResizeMatchesPilLanczos) {
    // Expected bytes from PIL 9.4: Image.frombytes("RGB", (7, 5), pattern).resize((w, h), Image.LANCZOS)
    const Image src = pattern(7, 5, 3);
    const std::vector<uint8_t> down = {56, 108, 166, 125, 178, 128, 165, 159, 154, 124, 99, 99,
                                       147, 127, 100, 82, 108, 122, 119, 151, 126, 134, 153, 183,
                                       77, 142, 187, 152, 151, 146, 104, 124, 91, 131, 129, 116};
    EXPECT_EQ(resize_image(src, 4, 3).pixels, down);
    const std::vector<uint8_t> horizontal = {24, 73, 131, 111, 179, 217, 198, 150, 90, 116, 185, 179, 202, 180, 52,
                                             75, 69, 138, 164, 104, 56, 37, 75, 143, 123, 181, 230, 41, 90, 164,
                                             128, 196, 159, 215, 167, 48, 149, 202, 196, 144, 91, 69, 33, 86, 155};
    EXPECT_EQ(resize_image(src, 3, 5).pixels, horizontal);
    const Image up = resize_image(src, 11, 9);
    EXPECT_EQ(up.width, 11);
    EXPECT_EQ(up.height, 9);
    const std::vector<uint8_t> up_first_row = {0, 43, 87, 5, 54, 98, 33, 77, 133, 51, 103, 186, 71, 120, 216, 94, 147,
                                               240, 114, 189, 255, 148, 255, 220, 201, 255, 42, 236, 113, 26, 247, 0,
                                               75};
    EXPECT_EQ(std::vector<uint8_t>(up.pixels.begin(), up.pixels.begin() + 33), up_first_row);
    const std::vector<uint8_t> up_last_row = {0, 227, 0, 46, 61, 0, 101, 0, 44, 134, 5, 63, 156, 45, 116, 184, 54,
                                              151, 200};
    EXPECT_EQ(std::vector<uint8_t>(up.pixels.end() - 19, up.pixels.end()), up_last_row);
    const std::vector<uint8_t> vertical_head = {0, 45, 89, 29, 73, 126, 57, 110, 203, 94, 147, 240};
    const Image vert = resize_image(src, 7, 9);
    EXPECT_EQ(std::vector<uint8_t>(vert.pixels.begin(), vert.pixels.begin() + 12), vertical_head);

    EXPECT_EQ(resize_image(src, 7, 5).pixels, src.pixels);  // same size: identity
    EXPECT_THAT(error_of([&] { resize_image(src, 0, 5); }), HasSubstr("0x5"));
}
