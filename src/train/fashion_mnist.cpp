// Fashion-MNIST IDX reader (see fashion_mnist.h). IDX: big-endian magic (0, 0, type, ndim), ndim big-endian u32
// sizes, then the row-major payload.
#include "train/fashion_mnist.h"

#include <zlib.h>

#include <filesystem>
#include <fstream>

namespace nuance {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxIdxBytes = size_t(1) << 30;  // bounds what a hostile gzip stream can make us allocate

std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    NUANCE_CHECK_CODE(f.good(), NotFound, "cannot open '", path, "'");
    const std::streamoff n = f.tellg();
    NUANCE_CHECK_CODE(n >= 0 && (size_t)n <= kMaxIdxBytes, Io, "'", path, "': cannot size the file or it is over 1 GiB");
    std::vector<uint8_t> buf((size_t)n);
    f.seekg(0);
    f.read(reinterpret_cast<char*>(buf.data()), n);
    NUANCE_CHECK_CODE(f.good() || n == 0, Io, "cannot read '", path, "'");
    return buf;
}

std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& path) {
    z_stream z{};
    NUANCE_CHECK_CODE(inflateInit2(&z, 15 + 32) == Z_OK, OutOfMemory, "'", path, "': cannot start zlib");
    std::vector<uint8_t> out;
    z.next_in = const_cast<Bytef*>(in.data());
    z.avail_in = (uInt)in.size();
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        if (out.size() - z.total_out < 65536) {
            if (out.size() >= kMaxIdxBytes) break;
            out.resize(std::min(kMaxIdxBytes, std::max<size_t>(out.size() * 2, 1 << 20)));
        }
        z.next_out = out.data() + z.total_out;
        z.avail_out = (uInt)(out.size() - z.total_out);
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) break;
        if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) { rc = Z_DATA_ERROR; break; }  // truncated
    }
    const size_t produced = z.total_out;
    inflateEnd(&z);
    NUANCE_CHECK_CODE(rc == Z_STREAM_END, Io, "'", path, "': corrupt or truncated gzip data",
                      out.size() >= kMaxIdxBytes ? " (over 1 GiB uncompressed)" : "");
    out.resize(produced);
    return out;
}

uint32_t be32(const uint8_t* p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

std::string find_idx(const std::string& dir, const std::string& stem) {
    for (const char* ext : {".gz", ""}) {
        const fs::path p = fs::path(dir) / (stem + ext);
        std::error_code ec;
        if (fs::is_regular_file(p, ec)) return p.string();
    }
    fail(ErrorCode::NotFound, "Fashion-MNIST file '", stem, "[.gz]' not found in '", dir,
         "' (install Debian's dataset-fashion-mnist, or pass the folder holding the IDX files)");
}

}  // namespace

IdxArray read_idx(const std::string& path) {
    std::vector<uint8_t> raw = read_file(path);
    if (raw.size() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) raw = gunzip(raw, path);
    NUANCE_CHECK(raw.size() >= 4, "IDX file '", path, "': ", raw.size(), " bytes, too short for the header");
    NUANCE_CHECK(raw[0] == 0 && raw[1] == 0, "IDX file '", path, "': bad magic (not an IDX file)");
    NUANCE_CHECK_CODE(raw[2] == 0x08, Unsupported, "IDX file '", path, "': element type 0x", std::hex, (int)raw[2],
                      std::dec, " is not supported (only 0x08, unsigned byte)");
    const int ndim = raw[3];
    NUANCE_CHECK(ndim >= 1 && ndim <= 4, "IDX file '", path, "': ", ndim, " dimensions (expected 1 to 4)");
    const size_t header = 4 + 4 * (size_t)ndim;
    NUANCE_CHECK(raw.size() >= header, "IDX file '", path, "': truncated header");
    IdxArray a;
    uint64_t numel = 1;
    for (int d = 0; d < ndim; ++d) {
        const uint32_t n = be32(&raw[4 + 4 * d]);
        a.dims.push_back(n);
        numel *= n;
        NUANCE_CHECK(numel <= kMaxIdxBytes, "IDX file '", path, "': dimensions ", a.dims, " are too large");
    }
    NUANCE_CHECK(raw.size() - header == numel, "IDX file '", path, "': dimensions ", a.dims, " need ", numel,
                 " bytes of data, the file has ", raw.size() - header);
    a.data.assign(raw.begin() + (std::ptrdiff_t)header, raw.end());
    return a;
}

const std::array<const char*, 10>& FashionMnistDataset::class_names() {
    static const std::array<const char*, 10> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    return names;
}

FashionMnistDataset::FashionMnistDataset(const FashionMnistOptions& options) : options_(options) {
    NUANCE_CHECK(options.split == "train" || options.split == "test" || options.split == "t10k",
                 "Fashion-MNIST: unknown split '", options.split, "' (valid: train, test)");
    NUANCE_CHECK(options.caption_dropout >= 0 && options.caption_dropout <= 1,
                 "Fashion-MNIST: caption_dropout must be in [0, 1], got ", options.caption_dropout);
    const std::string prefix = options.split == "train" ? "train" : "t10k";
    std::error_code ec;
    NUANCE_CHECK_CODE(fs::is_directory(options.dir, ec), NotFound, "Fashion-MNIST folder '", options.dir,
                      "' does not exist (install Debian's dataset-fashion-mnist)");
    images_path_ = find_idx(options.dir, prefix + "-images-idx3-ubyte");
    const std::string labels_path = find_idx(options.dir, prefix + "-labels-idx1-ubyte");
    IdxArray images = read_idx(images_path_);
    IdxArray labels = read_idx(labels_path);
    NUANCE_CHECK(images.dims.size() == 3 && images.dims[1] > 0 && images.dims[2] > 0, "Fashion-MNIST images '",
                 images_path_, "': expected [N, rows, cols], got ", images.dims);
    NUANCE_CHECK(labels.dims.size() == 1, "Fashion-MNIST labels '", labels_path, "': expected [N], got ", labels.dims);
    NUANCE_CHECK(images.dims[0] == labels.dims[0], "Fashion-MNIST: '", images_path_, "' has ", images.dims[0],
                 " images but '", labels_path, "' has ", labels.dims[0], " labels");
    for (size_t i = 0; i < labels.data.size(); ++i)
        NUANCE_CHECK(labels.data[i] < 10, "Fashion-MNIST labels '", labels_path, "': label ", (int)labels.data[i],
                     " at index ", i, " is not a class (0-9)");
    rows_ = (int)images.dims[1];
    cols_ = (int)images.dims[2];
    int64_t n = images.dims[0];
    if (options.limit > 0) n = std::min(n, options.limit);
    pixels_.assign(images.data.begin(), images.data.begin() + (std::ptrdiff_t)(n * rows_ * cols_));
    labels_.assign(labels.data.begin(), labels.data.begin() + (std::ptrdiff_t)n);
    NUANCE_CHECK(!labels_.empty(), "Fashion-MNIST '", images_path_, "' holds no images");
}

int FashionMnistDataset::label(int64_t index) const {
    NUANCE_CHECK(index >= 0 && index < size(), "Fashion-MNIST index ", index, " out of range [0, ", size(), ")");
    return labels_[(size_t)index];
}

std::string FashionMnistDataset::describe(int64_t index) const {
    return str("Fashion-MNIST image ", index, " of '", images_path_, "'");
}

Sample FashionMnistDataset::get(int64_t index, Mt19937& rng) const {
    const int lbl = label(index);
    // Fixed draws per sample (see ImageCaptionDataset::augment_caption).
    const uint32_t u_flip = rng();
    const float u_drop = uniform01(rng);
    const bool flip = options_.random_flip && (u_flip & 1u);
    // Padded: at least 32x32 with the image centred (28x28 -> a 2-px border).
    const int H = options_.pad_to_32 ? std::max(32, rows_) : rows_, W = options_.pad_to_32 ? std::max(32, cols_) : cols_;
    const int pad = (H - rows_) / 2, pad_w = (W - cols_) / 2;
    Tensor t = Tensor::full({1, H, W}, -1.0f);
    float* p = t.data<float>();
    const uint8_t* src = &pixels_[(size_t)index * rows_ * cols_];
    for (int y = 0; y < rows_; ++y)
        for (int x = 0; x < cols_; ++x) {
            const int sx = flip ? cols_ - 1 - x : x;
            p[(size_t)(y + pad) * W + x + pad_w] = (float)src[y * cols_ + sx] / 255.0f * 2.0f - 1.0f;
        }
    Sample s;
    s.image = t;
    s.caption = u_drop < options_.caption_dropout ? "" : class_names()[(size_t)lbl];
    return s;
}

}  // namespace nuance
