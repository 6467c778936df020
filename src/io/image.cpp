// PNG/JPEG codecs, conversions and resizing (see image.h).
//
// libpng and libjpeg report errors by longjmp. Each codec step below runs in its own small function that
// calls setjmp and holds only trivially destructible locals; every C++ object (vectors, strings) and the
// codec structs live in the caller, so a longjmp never skips a destructor. The step returns false and the
// caller turns the saved message into a nuance::Error.
#include "io/image.h"

#include <png.h>
#include <stdio.h>  // jpeglib.h needs FILE
#include <jpeglib.h>
#include <jerror.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstring>
#include <fstream>

#include "io/atomic_file.h"
#include "io/weight_file.h"

namespace nuance {

namespace {

constexpr uint32_t kMaxSide = 65535;
constexpr uint64_t kMaxPixels = 1ull << 28;  // 16k x 16k: bounds what a hostile header can make us allocate
constexpr size_t kMsgLen = 256;
constexpr size_t kMaxChunkBytes = 16u << 20;  // text chunks are KB, ICC profiles at most a few MB

void copy_msg(char* dst, const char* src) {
    std::strncpy(dst, src ? src : "unknown error", kMsgLen - 1);
    dst[kMsgLen - 1] = 0;
}

void check_size(uint64_t w, uint64_t h, const std::string& name, uint64_t max_pixels = kMaxPixels) {
    // Checked on the header, before a byte of pixels is allocated or decoded (decompression bombs).
    NUANCE_CHECK(max_pixels >= kMaxPixels || w * h <= max_pixels, "image '", name, "' is ", w, "x", h, " = ", w * h,
                 " pixels, over the limit of ", max_pixels, " pixels for input images");
    NUANCE_CHECK_CODE(w > 0 && h > 0 && w <= kMaxSide && h <= kMaxSide && w * h <= kMaxPixels, Unsupported,
                      "image '", name, "' is ", w, "x", h, " pixels (supported: up to ", kMaxSide, " per side and ",
                      kMaxPixels, " pixels)");
}

// A chunk type for a message: non-printable bytes as '?'.
std::string printable(std::string s) {
    for (char& c : s)
        if (c < 0x20 || c > 0x7e) c = '?';
    return s;
}

// ---------------------------------------------------------------- PNG decode
struct PngReader {
    png_structp png = nullptr;
    png_infop info = nullptr;
    const uint8_t* data = nullptr;
    size_t size = 0, pos = 0;
    char msg[kMsgLen] = "";
    ~PngReader() {
        if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    }
};

void png_on_error(png_structp png, png_const_charp msg) {
    copy_msg(static_cast<char*>(png_get_error_ptr(png)), msg);
    png_longjmp(png, 1);
}
void png_on_warning(png_structp, png_const_charp) {}
void png_read_cb(png_structp png, png_bytep out, size_t len) {
    auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
    if (len > r->size - r->pos) png_error(png, "unexpected end of data (truncated file)");
    std::memcpy(out, r->data + r->pos, len);
    r->pos += len;
}

bool png_step_header(PngReader* r, int channels, uint32_t* w, uint32_t* h) {
    if (setjmp(png_jmpbuf(r->png))) return false;
    png_set_read_fn(r->png, r, png_read_cb);
    png_set_user_limits(r->png, kMaxSide, kMaxSide);
    // One ancillary chunk (or its decompressed text / ICC profile) may take at most this much memory: a 300-byte
    // file whose chunk claims a 2 GB length made libpng allocate and clear 2 GB (found by fuzz/fuzz_png).
    png_set_chunk_malloc_max(r->png, kMaxChunkBytes);
    png_read_info(r->png, r->info);
    png_set_expand(r->png);     // palette -> RGB, gray 1/2/4 -> 8 bits, tRNS -> alpha
    png_set_scale_16(r->png);   // 16 -> 8 bits with rounding
    png_set_gray_to_rgb(r->png);
    if (channels == 3) png_set_strip_alpha(r->png);
    else png_set_add_alpha(r->png, 0xff, PNG_FILLER_AFTER);  // no-op when alpha is already there
    png_set_interlace_handling(r->png);
    png_read_update_info(r->png, r->info);
    *w = png_get_image_width(r->png, r->info);
    *h = png_get_image_height(r->png, r->info);
    if (png_get_channels(r->png, r->info) != channels || png_get_bit_depth(r->png, r->info) != 8 ||
        png_get_rowbytes(r->png, r->info) != (size_t)*w * channels) {
        copy_msg(r->msg, "unsupported PNG pixel layout");
        return false;
    }
    return true;
}

bool png_step_pixels(PngReader* r, png_bytepp rows) {
    if (setjmp(png_jmpbuf(r->png))) return false;
    png_read_image(r->png, rows);
    return true;
}

Image decode_png(const uint8_t* data, size_t size, int channels, const std::string& name, uint64_t max_pixels) {
    PngReader r;
    r.data = data;
    r.size = size;
    r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r.msg, png_on_error, png_on_warning);
    NUANCE_CHECK_CODE(r.png != nullptr, OutOfMemory, "png '", name, "': cannot create decoder");
    r.info = png_create_info_struct(r.png);
    NUANCE_CHECK_CODE(r.info != nullptr, OutOfMemory, "png '", name, "': cannot create decoder");
    // libpng allocates a chunk's declared length before reading its data (png_set_chunk_malloc_max does not stop
    // it for text chunks): a 300-byte file whose zTXt chunk claimed 1.9 GB made it allocate and clear 1.9 GB (found
    // by fuzz/fuzz_png). A chunk's data can never be longer than what is left of the file, so check that first.
    for (size_t p = 8; p + 8 <= size;) {
        const uint32_t len = (uint32_t)data[p] << 24 | (uint32_t)data[p + 1] << 16 | (uint32_t)data[p + 2] << 8 | data[p + 3];
        const std::string type(reinterpret_cast<const char*>(data + p + 4), 4);
        NUANCE_CHECK(len <= size - (p + 8), "cannot read PNG '", name, "': chunk '", printable(type), "' at byte ", p,
                     " claims ", len, " bytes but ", size - (p + 8), " remain (truncated or corrupt file)");
        if (type == "IEND") break;
        p += 12 + (size_t)len;
    }
    uint32_t w = 0, h = 0;
    NUANCE_CHECK(png_step_header(&r, channels, &w, &h), "cannot read PNG '", name, "': ", r.msg);
    check_size(w, h, name, max_pixels);
    Image img;
    img.width = (int)w;
    img.height = (int)h;
    img.channels = channels;
    img.pixels.resize((size_t)w * h * channels);
    std::vector<png_bytep> rows(h);
    for (uint32_t y = 0; y < h; ++y) rows[y] = img.pixels.data() + (size_t)y * w * channels;
    NUANCE_CHECK(png_step_pixels(&r, rows.data()), "cannot read PNG '", name, "': ", r.msg);
    return img;
}

// ---------------------------------------------------------------- JPEG decode
struct JpegError {
    jpeg_error_mgr pub;
    std::jmp_buf jump;
    char msg[kMsgLen];
};

void jpeg_on_error(j_common_ptr c) {
    auto* e = reinterpret_cast<JpegError*>(c->err);
    char buf[JMSG_LENGTH_MAX];
    (*c->err->format_message)(c, buf);
    copy_msg(e->msg, buf);
    std::longjmp(e->jump, 1);
}
// Every libjpeg warning is an error: libjpeg "recovers" from truncated or corrupt data by filling the rest of the
// image with grey, which must not pass as a good init image.
void jpeg_on_message(j_common_ptr c, int level) {
    if (level == -1) jpeg_on_error(c);
}
void jpeg_output_nothing(j_common_ptr) {}

struct JpegReader {
    jpeg_decompress_struct cinfo{};
    JpegError err{};
    bool created = false;
    ~JpegReader() {
        if (created) jpeg_destroy_decompress(&cinfo);
    }
};

bool jpeg_step_header(JpegReader* r, const uint8_t* data, size_t size, bool* cmyk) {
    r->cinfo.err = jpeg_std_error(&r->err.pub);
    r->err.pub.error_exit = jpeg_on_error;
    r->err.pub.emit_message = jpeg_on_message;
    r->err.pub.output_message = jpeg_output_nothing;
    if (setjmp(r->err.jump)) return false;
    r->created = true;
    jpeg_create_decompress(&r->cinfo);
    jpeg_mem_src(&r->cinfo, data, (unsigned long)size);
    jpeg_read_header(&r->cinfo, TRUE);
    *cmyk = r->cinfo.jpeg_color_space == JCS_CMYK || r->cinfo.jpeg_color_space == JCS_YCCK;
    r->cinfo.out_color_space = *cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_calc_output_dimensions(&r->cinfo);
    return true;
}

bool jpeg_step_pixels(JpegReader* r, uint8_t* out, size_t stride) {
    if (setjmp(r->err.jump)) return false;
    jpeg_start_decompress(&r->cinfo);
    while (r->cinfo.output_scanline < r->cinfo.output_height) {
        JSAMPROW row = out + (size_t)r->cinfo.output_scanline * stride;
        jpeg_read_scanlines(&r->cinfo, &row, 1);
    }
    return true;
}

Image decode_jpeg(const uint8_t* data, size_t size, int channels, const std::string& name, uint64_t max_pixels) {
    JpegReader r;
    bool cmyk = false;
    NUANCE_CHECK(jpeg_step_header(&r, data, size, &cmyk), "cannot read JPEG '", name, "': ", r.err.msg);
    const uint32_t w = r.cinfo.output_width, h = r.cinfo.output_height;
    check_size(w, h, name, max_pixels);
    const int comps = cmyk ? 4 : 3;
    std::vector<uint8_t> buf((size_t)w * h * comps);
    NUANCE_CHECK_CODE(r.cinfo.output_components == comps, Unsupported, "cannot read JPEG '", name, "': ",
                      r.cinfo.output_components, " output components");
    NUANCE_CHECK(jpeg_step_pixels(&r, buf.data(), (size_t)w * comps), "cannot read JPEG '", name, "': ", r.err.msg);
    const bool inverted = cmyk && r.cinfo.saw_Adobe_marker;  // Adobe writes CMYK inverted
    Image img;
    img.width = (int)w;
    img.height = (int)h;
    img.channels = channels;
    img.pixels.resize((size_t)w * h * channels);
    for (size_t i = 0, n = (size_t)w * h; i < n; ++i) {
        uint8_t* o = &img.pixels[i * channels];
        const uint8_t* s = &buf[i * comps];
        if (cmyk) {
            for (int c = 0; c < 3; ++c) {
                const int v = inverted ? s[c] : 255 - s[c];
                const int k = inverted ? s[3] : 255 - s[3];
                o[c] = (uint8_t)((v * k + 127) / 255);
            }
        } else {
            o[0] = s[0], o[1] = s[1], o[2] = s[2];
        }
        if (channels == 4) o[3] = 255;
    }
    return img;
}

// ---------------------------------------------------------------- PNG encode
struct PngWriter {
    png_structp png = nullptr;
    png_infop info = nullptr;
    std::vector<uint8_t>* out = nullptr;
    char msg[kMsgLen] = "";
    ~PngWriter() {
        if (png) png_destroy_write_struct(&png, info ? &info : nullptr);
    }
};

void png_write_cb(png_structp png, png_bytep data, size_t len) {
    auto* w = static_cast<PngWriter*>(png_get_io_ptr(png));
    bool ok = true;
    try {
        w->out->insert(w->out->end(), data, data + len);
    } catch (...) {
        ok = false;
    }
    if (!ok) png_error(png, "out of memory");  // outside the catch block: longjmp must not leave a handler
}
void png_flush_cb(png_structp) {}

bool png_step_write(PngWriter* w, const Image* img, png_bytepp rows, png_textp text, int ntext) {
    if (setjmp(png_jmpbuf(w->png))) return false;
    static constexpr int kType[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                     PNG_COLOR_TYPE_RGB_ALPHA};
    png_set_write_fn(w->png, w, png_write_cb, png_flush_cb);
    png_set_IHDR(w->png, w->info, (png_uint_32)img->width, (png_uint_32)img->height, 8, kType[img->channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (ntext > 0) png_set_text(w->png, w->info, text, ntext);
    png_write_info(w->png, w->info);
    png_write_image(w->png, rows);
    png_write_end(w->png, nullptr);
    return true;
}

void check_image(const Image& img, const char* what) {
    NUANCE_CHECK(img.channels >= 1 && img.channels <= 4, what, ": image has ", img.channels, " channels");
    NUANCE_CHECK(img.width > 0 && img.height > 0, what, ": empty image (", img.width, "x", img.height, ")");
    NUANCE_CHECK(img.pixels.size() == (size_t)img.width * img.height * img.channels, what, ": ", img.pixels.size(),
                 " bytes of pixels for a ", img.width, "x", img.height, "x", img.channels, " image");
}

// ---------------------------------------------------------------- Lanczos / bicubic (PIL Resample.c)
constexpr int kPrecisionBits = 32 - 8 - 2;

double sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return std::sin(x) / x;
}
double lanczos3(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0; }
double bicubic(double x) {  // PIL's bicubic_filter, a = -0.5
    constexpr double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

struct Coeffs {
    int ksize = 0;
    std::vector<int> start, count;  // per output pixel: first input pixel and number of taps
    std::vector<int32_t> k;         // [out][ksize] fixed point, 22 fractional bits
};

Coeffs precompute_coeffs(int in_size, int out_size, ResampleFilter filter) {
    double (*const fn)(double) = filter == ResampleFilter::Bicubic ? bicubic : lanczos3;
    const double scale = (double)in_size / out_size;
    const double filterscale = std::max(scale, 1.0);
    const double support = (filter == ResampleFilter::Bicubic ? 2.0 : 3.0) * filterscale;
    Coeffs c;
    c.ksize = (int)std::ceil(support) * 2 + 1;
    c.start.resize(out_size);
    c.count.resize(out_size);
    c.k.assign((size_t)out_size * c.ksize, 0);
    std::vector<double> w(c.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        const int xmin = std::max((int)(center - support + 0.5), 0);
        const int xmax = std::min((int)(center + support + 0.5), in_size) - xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            w[x] = fn((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        for (int x = 0; x < xmax; ++x) {
            const double v = ww != 0.0 ? w[x] / ww : w[x];
            c.k[(size_t)xx * c.ksize + x] = (int32_t)(v < 0 ? -0.5 + v * (1 << kPrecisionBits)
                                                            : 0.5 + v * (1 << kPrecisionBits));
        }
        c.start[xx] = xmin;
        c.count[xx] = xmax;
    }
    return c;
}

uint8_t clip8(int32_t v) { return (uint8_t)std::clamp(v >> kPrecisionBits, 0, 255); }

// One pass of PIL's separable resampler along x (horizontal) or y.
Image resample_axis(const Image& in, int out_w, int out_h, bool horizontal, ResampleFilter filter) {
    const Coeffs c = precompute_coeffs(horizontal ? in.width : in.height, horizontal ? out_w : out_h, filter);
    Image out;
    out.width = out_w;
    out.height = out_h;
    out.channels = in.channels;
    out.pixels.resize((size_t)out_w * out_h * in.channels);
    const int ch = in.channels;
    for (int y = 0; y < out_h; ++y)
        for (int x = 0; x < out_w; ++x) {
            const int o = horizontal ? x : y;
            const int32_t* k = &c.k[(size_t)o * c.ksize];
            for (int cc = 0; cc < ch; ++cc) {
                int32_t ss = 1 << (kPrecisionBits - 1);
                for (int t = 0; t < c.count[o]; ++t) {
                    const int sx = horizontal ? c.start[o] + t : x, sy = horizontal ? y : c.start[o] + t;
                    ss += in.pixels[((size_t)sy * in.width + sx) * ch + cc] * k[t];
                }
                out.pixels[((size_t)y * out_w + x) * ch + cc] = clip8(ss);
            }
        }
    return out;
}

uint8_t round_half_even_u8(float y) {  // y in [0, 255]; independent of the FP rounding mode
    float r = std::floor(y);
    const float d = y - r;
    if (d > 0.5f || (d == 0.5f && std::fmod(r, 2.0f) != 0.0f)) r += 1.0f;
    return (uint8_t)r;
}

}  // namespace

// ---------------------------------------------------------------- public API
Image decode_image(const uint8_t* data, size_t size, int channels, const std::string& name, uint64_t max_pixels) {
    NUANCE_CHECK(channels == 3 || channels == 4, "decode_image: channels must be 3 or 4, got ", channels);
    NUANCE_CHECK(data != nullptr || size == 0, "decode_image: null data for '", name, "'");
    static constexpr uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return decode_png(data, size, channels, name, max_pixels);
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return decode_jpeg(data, size, channels, name, max_pixels);
    fail(ErrorCode::Unsupported, "image '", name, "' is neither PNG nor JPEG (", size == 0 ? "empty file" : "unknown magic bytes",
         ")");
}

Image read_image(const std::string& path, uint64_t max_pixels) {
    const auto file = map_file(path);
    return decode_image(file->data(), file->size(), 3, path, max_pixels);
}

Image read_image_rgba(const std::string& path) {
    const auto file = map_file(path);
    return decode_image(file->data(), file->size(), 4, path);
}

std::vector<uint8_t> encode_png(const Image& image, const PngText& text_chunks) {
    check_image(image, "encode_png");
    std::vector<png_text> texts(text_chunks.size());
    for (size_t i = 0; i < text_chunks.size(); ++i) {
        const auto& [key, value] = text_chunks[i];
        check_png_keyword(key);
        NUANCE_CHECK(value.find('\0') == std::string::npos, "png text '", key, "' contains a NUL byte");
        NUANCE_CHECK(is_valid_utf8(value), "png text '", key, "' is not valid UTF-8");
        png_text& t = texts[i];
        t.key = const_cast<char*>(key.c_str());
        t.text = const_cast<char*>(value.c_str());
        if (is_ascii(value)) {
            t.compression = PNG_TEXT_COMPRESSION_NONE;
            t.text_length = value.size();
        } else {
            t.compression = PNG_ITXT_COMPRESSION_NONE;
            t.itxt_length = value.size();
            t.lang = nullptr;
            t.lang_key = nullptr;
        }
    }
    std::vector<uint8_t> out;
    out.reserve(image.pixels.size() / 2 + 1024);
    PngWriter w;
    w.out = &out;
    w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, w.msg, png_on_error, png_on_warning);
    NUANCE_CHECK_CODE(w.png != nullptr, OutOfMemory, "encode_png: cannot create encoder");
    w.info = png_create_info_struct(w.png);
    NUANCE_CHECK_CODE(w.info != nullptr, OutOfMemory, "encode_png: cannot create encoder");
    std::vector<png_bytep> rows(image.height);
    const size_t stride = (size_t)image.width * image.channels;
    for (int y = 0; y < image.height; ++y) rows[y] = const_cast<uint8_t*>(image.pixels.data()) + y * stride;
    NUANCE_CHECK(png_step_write(&w, &image, rows.data(), texts.data(), (int)texts.size()), "encode_png: ", w.msg);
    return out;
}

void write_png(const std::string& path, const Image& image, const PngText& text_chunks) {
    const std::vector<uint8_t> bytes = encode_png(image, text_chunks);  // in memory first: no half-written file
    write_bytes_atomic(path, bytes);
}

Tensor image_to_tensor(const Image& image) {
    check_image(image, "image_to_tensor");
    const int64_t h = image.height, w = image.width, ch = image.channels;
    Tensor t = Tensor::empty({1, 3, h, w}, DType::F32);
    float* dst = t.data<float>();
    for (int64_t c = 0; c < 3; ++c) {
        const int64_t src_c = ch >= 3 ? c : 0;  // gray: replicate
        for (int64_t i = 0; i < h * w; ++i) {
            const float v = (float)image.pixels[(size_t)(i * ch + src_c)] / 255.0f;
            dst[c * h * w + i] = 2.0f * v - 1.0f;
        }
    }
    return t;
}

Image tensor_to_image(const Tensor& t) {
    NUANCE_CHECK(t.defined(), "tensor_to_image: undefined tensor");
    NUANCE_CHECK(dtype_is_float(t.dtype()), "tensor_to_image: expected a float tensor, got ", t.str());
    Shape s = t.shape();
    NUANCE_CHECK((s.size() == 4 && s[0] == 1) || s.size() == 3, "tensor_to_image: expected [1, C, H, W] or [C, H, W], got ",
                 s);
    if (s.size() == 4) s.erase(s.begin());
    NUANCE_CHECK(s[0] == 1 || s[0] == 3 || s[0] == 4, "tensor_to_image: expected 1, 3 or 4 channels, got ", s[0]);
    check_size((uint64_t)s[2], (uint64_t)s[1], "tensor_to_image");
    const std::vector<float> v = t.to_vector();
    Image img;
    img.channels = (int)s[0];
    img.height = (int)s[1];
    img.width = (int)s[2];
    img.pixels.resize(v.size());
    const int64_t hw = s[1] * s[2];
    for (int64_t c = 0; c < s[0]; ++c)
        for (int64_t i = 0; i < hw; ++i) {
            float x = v[(size_t)(c * hw + i)] / 2.0f + 0.5f;
            x = std::isnan(x) ? 0.0f : std::clamp(x, 0.0f, 1.0f);
            img.pixels[(size_t)(i * s[0] + c)] = round_half_even_u8(x * 255.0f);
        }
    return img;
}

Image resize_image(const Image& image, int width, int height, ResampleFilter filter) {
    check_image(image, "resize_image");
    NUANCE_CHECK(width > 0 && height > 0, "resize_image: target size ", width, "x", height, " must be positive");
    check_size((uint64_t)width, (uint64_t)height, "resize_image");
    // PIL order: horizontal pass, then vertical; an axis whose size does not change is skipped.
    Image out = image;
    if (width != image.width) out = resample_axis(out, width, out.height, true, filter);
    if (height != image.height) out = resample_axis(out, width, height, false, filter);
    return out;
}

}  // namespace nuance
