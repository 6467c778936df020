// Output images by extension: PNG or JPEG, encoded in memory and written atomically (see image.h).
//
// libjpeg reports errors by longjmp: as in image.cpp, the step that calls it holds only trivially destructible
// locals, and every C++ object lives in the caller.
#include <stdio.h>  // jpeglib.h needs FILE
#include <jpeglib.h>

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/image.h"

namespace nuance {

namespace {

constexpr size_t kMsgLen = 256;

struct JpegWriteError {
    jpeg_error_mgr pub;
    std::jmp_buf jump;
    char msg[kMsgLen];
};

void jpeg_write_on_error(j_common_ptr c) {
    auto* e = reinterpret_cast<JpegWriteError*>(c->err);
    char buf[JMSG_LENGTH_MAX];
    (*c->err->format_message)(c, buf);
    std::strncpy(e->msg, buf, kMsgLen - 1);
    e->msg[kMsgLen - 1] = 0;
    std::longjmp(e->jump, 1);
}
void jpeg_write_no_output(j_common_ptr) {}

struct JpegWriter {
    jpeg_compress_struct cinfo{};
    JpegWriteError err{};
    bool created = false;
    unsigned char* buf = nullptr;  // malloc'd by jpeg_mem_dest
    unsigned long size = 0;
    ~JpegWriter() {
        if (created) jpeg_destroy_compress(&cinfo);
        std::free(buf);
    }
};

// rows: height pointers to rows of width * components bytes.
bool jpeg_step_write(JpegWriter* w, int width, int height, int components, int quality, JSAMPROW* rows,
                     const char* comment, size_t comment_len) {
    w->cinfo.err = jpeg_std_error(&w->err.pub);
    w->err.pub.error_exit = jpeg_write_on_error;
    w->err.pub.output_message = jpeg_write_no_output;
    if (setjmp(w->err.jump)) return false;
    jpeg_create_compress(&w->cinfo);
    w->created = true;
    jpeg_mem_dest(&w->cinfo, &w->buf, &w->size);
    w->cinfo.image_width = (JDIMENSION)width;
    w->cinfo.image_height = (JDIMENSION)height;
    w->cinfo.input_components = components;
    w->cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&w->cinfo);
    jpeg_set_quality(&w->cinfo, quality, TRUE);
    jpeg_start_compress(&w->cinfo, TRUE);
    for (size_t off = 0; off < comment_len; off += 65533) {  // a marker holds at most 65533 bytes
        const size_t n = std::min<size_t>(65533, comment_len - off);
        jpeg_write_marker(&w->cinfo, JPEG_COM, reinterpret_cast<const JOCTET*>(comment + off), (unsigned)n);
    }
    jpeg_write_scanlines(&w->cinfo, rows, (JDIMENSION)height);
    jpeg_finish_compress(&w->cinfo);
    return true;
}

std::string lower_extension(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    const size_t dot = path.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
    std::string e = path.substr(dot);
    for (char& c : e) c = (char)std::tolower((unsigned char)c);
    return e;
}

}  // namespace

ImageFormat image_format_for_path(const std::string& path) {
    const std::string e = lower_extension(path);
    if (e == ".png") return ImageFormat::Png;
    if (e == ".jpg" || e == ".jpeg") return ImageFormat::Jpeg;
    fail(ErrorCode::InvalidArgument, "output '", path, "': ",
         e.empty() ? std::string("no file extension") : "unknown image extension '" + e + "'",
         " (use .png, .jpg or .jpeg)");
}

void check_output_path(const std::string& path) {
    NUANCE_CHECK(!path.empty(), "output path is empty");
    NUANCE_CHECK(path.back() != '/', "output '", path, "' names a folder, not a file");
    image_format_for_path(path);
    struct stat st{};
    if (::stat(path.c_str(), &st) == 0)
        NUANCE_CHECK(!S_ISDIR(st.st_mode), "output '", path, "' is a folder, not a file");
    const size_t slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    if (::stat(dir.c_str(), &st) != 0)
        fail(ErrorCode::NotFound, "output '", path, "': the folder '", dir, "' does not exist");
    NUANCE_CHECK_CODE(S_ISDIR(st.st_mode), NotFound, "output '", path, "': '", dir, "' is not a folder");
    NUANCE_CHECK_CODE(::access(dir.c_str(), W_OK | X_OK) == 0, Io, "output '", path, "': the folder '", dir,
                      "' is not writable: ", std::strerror(errno));
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality, const std::string& comment) {
    NUANCE_CHECK(image.channels >= 1 && image.channels <= 4 && image.width > 0 && image.height > 0 &&
                     image.pixels.size() == (size_t)image.width * image.height * image.channels,
                 "encode_jpeg: bad image ", image.width, "x", image.height, "x", image.channels, " with ",
                 image.pixels.size(), " bytes");
    NUANCE_CHECK(quality >= 1 && quality <= 100, "encode_jpeg: quality must be in 1..100, got ", quality);
    NUANCE_CHECK(image.width <= 65500 && image.height <= 65500, "encode_jpeg: ", image.width, "x", image.height,
                 " is larger than JPEG's 65500 pixels per side");
    // JPEG has no alpha: RGBA drops it, gray+alpha keeps the gray.
    const int comps = image.channels >= 3 ? 3 : 1;
    std::vector<uint8_t> packed;
    const uint8_t* src = image.pixels.data();
    if (comps != image.channels) {
        const size_t n = (size_t)image.width * image.height;
        packed.resize(n * comps);
        for (size_t i = 0; i < n; ++i)
            for (int c = 0; c < comps; ++c) packed[i * comps + c] = image.pixels[i * image.channels + c];
        src = packed.data();
    }
    std::vector<JSAMPROW> rows((size_t)image.height);
    for (int y = 0; y < image.height; ++y)
        rows[(size_t)y] = const_cast<JSAMPROW>(src + (size_t)y * image.width * comps);
    JpegWriter w;
    NUANCE_CHECK_CODE(jpeg_step_write(&w, image.width, image.height, comps, quality, rows.data(), comment.data(),
                                      comment.size()),
                      Internal, "encode_jpeg: ", w.err.msg);
    return std::vector<uint8_t>(w.buf, w.buf + w.size);
}

void write_bytes_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
    write_file_atomic(path, [&](FILE* f) { return std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size(); });
}

void write_image(const std::string& path, const Image& image, const PngText& text_chunks) {
    if (image_format_for_path(path) == ImageFormat::Png) return write_png(path, image, text_chunks);
    std::string comment;
    for (const auto& [key, value] : text_chunks)
        if (key == "parameters") comment = value;
    write_bytes_atomic(path, encode_jpeg(image, 95, comment));
}

}  // namespace nuance
