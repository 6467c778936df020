// ImageCaptionDataset and the image/caption transforms (see dataset.h).
#include "train/dataset.h"

#include "io/json_file.h"
#include "io/weight_file.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <unordered_map>

namespace nuance {

namespace fs = std::filesystem;

uint32_t uniform_below(Mt19937& rng, uint32_t n) {
    NUANCE_ASSERT(n >= 1);
    // Lemire's rejection: draws below (2^32 mod n) would favour small values.
    const uint32_t threshold = (uint32_t)(-n) % n;
    for (;;) {
        const uint64_t m = (uint64_t)rng() * n;
        if ((uint32_t)m >= threshold) return (uint32_t)(m >> 32);
    }
}

Image composite_on_white(const Image& image) {
    NUANCE_CHECK(image.channels == 3 || image.channels == 4, "composite_on_white: expected 3 or 4 channels, got ",
                 image.channels);
    if (image.channels == 3) return image;
    Image out;
    out.width = image.width;
    out.height = image.height;
    out.channels = 3;
    const size_t n = (size_t)image.width * image.height;
    out.pixels.resize(n * 3);
    for (size_t i = 0; i < n; ++i) {
        const uint32_t a = image.pixels[i * 4 + 3];
        for (int c = 0; c < 3; ++c) {
            // c * a/255 + 255 * (1 - a/255), rounded to nearest.
            const uint32_t v = image.pixels[i * 4 + c] * a + 255u * (255u - a);
            out.pixels[i * 3 + c] = (uint8_t)((v + 127) / 255);
        }
    }
    return out;
}

Image resize_and_crop(const Image& image, int size, bool resize, bool center_crop) {
    NUANCE_CHECK(size > 0, "resize_and_crop: size must be positive, got ", size);
    Image img = image;
    if (resize && std::min(img.width, img.height) != size) {
        // Shorter side -> size, the other side rounded like torchvision's Resize(int).
        const bool wide = img.width >= img.height;
        const double scale = (double)size / (wide ? img.height : img.width);
        const int w = wide ? std::max(size, (int)(img.width * scale + 0.5)) : size;
        const int h = wide ? size : std::max(size, (int)(img.height * scale + 0.5));
        img = resize_image(img, w, h);
    }
    NUANCE_CHECK(img.width >= size && img.height >= size, "image is ", img.width, "x", img.height,
                 ", smaller than the crop ", size, "x", size, " (enable resize)");
    if (img.width == size && img.height == size) return img;
    const int x0 = center_crop ? (img.width - size) / 2 : 0;
    const int y0 = center_crop ? (img.height - size) / 2 : 0;
    Image out;
    out.width = out.height = size;
    out.channels = img.channels;
    out.pixels.resize((size_t)size * size * img.channels);
    const size_t row = (size_t)size * img.channels;
    for (int y = 0; y < size; ++y)
        std::copy_n(&img.pixels[(((size_t)(y0 + y) * img.width) + x0) * img.channels], row, &out.pixels[y * row]);
    return out;
}

Tensor image_to_chw(const Image& image, bool flip) {
    const int C = image.channels, H = image.height, W = image.width;
    NUANCE_CHECK(C >= 1 && H > 0 && W > 0 && image.pixels.size() == (size_t)C * H * W,
                 "image_to_chw: inconsistent image ", W, "x", H, "x", C);
    Tensor t = Tensor::empty({C, H, W});
    float* p = t.data<float>();
    for (int c = 0; c < C; ++c)
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                const int sx = flip ? W - 1 - x : x;
                // x / 255 * 2 - 1 in f32, as image_to_tensor (and diffusers) compute it.
                p[((size_t)c * H + y) * W + x] = (float)image.pixels[((size_t)y * W + sx) * C + c] / 255.0f * 2.0f - 1.0f;
            }
    return t;
}

namespace {

std::string trim(const std::string& s) {
    const char* ws = " \t\r\n";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string read_text(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    NUANCE_CHECK_CODE(f.good(), Io, "cannot read caption file '", p.string(), "'");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    NUANCE_CHECK_CODE(!f.bad(), Io, "cannot read caption file '", p.string(), "'");
    return s;
}

}  // namespace

bool is_image_ext(const fs::path& p) {
    std::string e = p.extension().string();
    std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    return e == ".png" || e == ".jpg" || e == ".jpeg";
}

ImageCaptionDataset::ImageCaptionDataset(const std::string& root, const DatasetOptions& options)
    : root_(root), options_(options) {
    NUANCE_CHECK(options.resolution >= 0, "dataset '", root, "': resolution must be >= 0, got ", options.resolution);
    for (float p : {options.caption_dropout, options.style_dropout, options.keyword_prob})
        NUANCE_CHECK(p >= 0 && p <= 1, "dataset '", root, "': probabilities must be in [0, 1], got ", p);
    NUANCE_CHECK(options.max_keywords >= 1, "dataset '", root, "': max_keywords must be >= 1, got ",
                 options.max_keywords);
    std::error_code ec;
    NUANCE_CHECK_CODE(fs::is_directory(root, ec), NotFound, "dataset folder '", root, "' does not exist");
    std::string manifest = options.manifest;
    if (manifest.empty() && fs::is_regular_file(fs::path(root) / "manifest.jsonl", ec))
        manifest = (fs::path(root) / "manifest.jsonl").string();
    if (!manifest.empty()) {
        from_manifest_ = true;
        read_manifest(manifest);
    } else {
        scan_sidecars();
    }
    if (!options_.exclude_concepts.empty()) exclude_concepts();
    NUANCE_CHECK(options_.limit >= 0, "dataset '", root, "': limit must be >= 0, got ", options_.limit);
    if (options_.limit > 0 && (int64_t)records_.size() > options_.limit) records_.resize((size_t)options_.limit);
    NUANCE_CHECK(!records_.empty(), "dataset '", root, "' has no images",
                 from_manifest_ ? str(" (manifest '", manifest, "' lists none)")
                                : std::string(" (looked for .png/.jpg/.jpeg with a .txt caption of the same stem)"));
    if (options_.cache_images) {
        std::vector<Image> cache;
        cache.reserve(records_.size());
        for (int64_t i = 0; i < size(); ++i) cache.push_back(load_image(i));
        cache_ = std::move(cache);  // load_image() reads from the cache only once it is complete
    }
}

namespace {

// The next line of `in` without its '\n' (false at the end); a line longer than max_bytes is an error naming it.
bool read_bounded_line(std::istream& in, std::string& line, size_t max_bytes, const std::string& path, int64_t lineno) {
    line.clear();
    std::streambuf* sb = in.rdbuf();
    for (int c = sb->sbumpc(); c != std::char_traits<char>::eof(); c = sb->sbumpc()) {
        if (c == '\n') return true;
        NUANCE_CHECK(line.size() < max_bytes, "manifest '", path, "' line ", lineno, " is longer than ", max_bytes,
                     " bytes");
        line.push_back((char)c);
    }
    return !line.empty();
}

}  // namespace

void ImageCaptionDataset::read_manifest(const std::string& path) {
    require_regular_file(path, "manifest");  // a FIFO or /dev/zero would block or never end
    std::ifstream f(path, std::ios::binary);
    NUANCE_CHECK_CODE(f.good(), NotFound, "manifest '", path, "' cannot be opened");
    const fs::path base = fs::path(root_);
    std::string line;
    for (int64_t lineno = 1; read_bounded_line(f, line, kMaxManifestLineBytes, path, lineno); ++lineno) {
        if (trim(line).empty()) continue;
        NUANCE_CHECK((int64_t)records_.size() < kMaxManifestRows, "manifest '", path, "' has more than ",
                     kMaxManifestRows, " rows");
        nlohmann::json j;
        try {
            j = parse_json_bounded(line);
        } catch (const std::exception& e) {
            fail(ErrorCode::InvalidArgument, "manifest '", path, "' line ", lineno, ": ", e.what());
        }
        NUANCE_CHECK(j.is_object(), "manifest '", path, "' line ", lineno, ": expected a JSON object");
        NUANCE_CHECK(j.contains("file") && j["file"].is_string() && !j["file"].get<std::string>().empty(),
                     "manifest '", path, "' line ", lineno, ": missing string field 'file'");
        NUANCE_CHECK(j.contains("caption") && j["caption"].is_string(), "manifest '", path, "' line ", lineno,
                     ": missing string field 'caption' (file '", j["file"].get<std::string>(), "')");
        CaptionRecord r;
        const std::string file = j["file"].get<std::string>();
        r.path = (base / file).lexically_normal().string();
        std::error_code ec;
        NUANCE_CHECK_CODE(fs::is_regular_file(r.path, ec), NotFound, "manifest '", path, "' line ", lineno,
                          ": image '", file, "' not found (looked at '", r.path, "')");
        r.caption = j["caption"].get<std::string>();
        if (j.contains("keywords"))
            NUANCE_CHECK(j["keywords"].is_array() &&
                             std::all_of(j["keywords"].begin(), j["keywords"].end(), [](auto& k) { return k.is_string(); }),
                         "manifest '", path, "' line ", lineno, ": 'keywords' must be an array of strings");
        if (j.contains("style"))
            NUANCE_CHECK(j["style"].is_string(), "manifest '", path, "' line ", lineno, ": 'style' must be a string");
        j.erase("file");
        j.erase("caption");
        r.meta = std::move(j);
        records_.push_back(std::move(r));
    }
    NUANCE_CHECK_CODE(!f.bad(), Io, "cannot read manifest '", path, "'");
}

std::vector<double> concept_balance_weights(const ImageCaptionDataset& data) {
    const int64_t n = data.size();
    std::vector<std::string> keys((size_t)n);
    std::unordered_map<std::string, int64_t> count;
    for (int64_t i = 0; i < n; ++i) {
        const CaptionRecord& r = data.record(i);
        std::string key;  // "<kind>\x1f<name>[\x1f<style>]" (appends: GCC 12 warns on literal + temporary)
        const auto id = r.meta.find("concept_id");
        const auto label = r.meta.find("label");
        if (id != r.meta.end() && (id->is_number_integer() || id->is_string())) {
            key.append("id\x1f");
            key.append(id->is_string() ? id->get<std::string>() : std::to_string(id->get<int64_t>()));
        } else if (label != r.meta.end() && label->is_string()) {
            key.append("label\x1f");
            key.append(label->get<std::string>());
        } else {
            key.append("caption\x1f");
            key.append(r.caption);
        }
        const auto style = r.meta.find("style");
        if (style != r.meta.end() && style->is_string()) {
            key.push_back('\x1f');
            key.append(style->get<std::string>());
        }
        ++count[key];
        keys[(size_t)i] = std::move(key);
    }
    std::vector<double> w((size_t)n);
    for (int64_t i = 0; i < n; ++i) w[(size_t)i] = 1.0 / (double)count[keys[(size_t)i]];
    return w;
}

Sample ConcatDataset::get(int64_t index, Mt19937& rng) const {
    NUANCE_CHECK(index >= 0 && index < size(), "data set index ", index, " outside 0..", size() - 1);
    return in_second(index) ? second_.get(index - first_.size(), rng) : first_.get(index, rng);
}

std::string ConcatDataset::describe(int64_t index) const {
    NUANCE_CHECK(index >= 0 && index < size(), "data set index ", index, " outside 0..", size() - 1);
    return in_second(index) ? second_.describe(index - first_.size()) : first_.describe(index);
}

std::vector<double> prior_preservation_weights(const std::vector<double>& instance, int64_t n_instance,
                                               int64_t n_class) {
    NUANCE_CHECK(n_instance >= 1 && n_class >= 1, "prior preservation needs instance and class images (", n_instance,
                 " and ", n_class, ")");
    NUANCE_CHECK(instance.empty() || (int64_t)instance.size() == n_instance, "prior preservation: ", instance.size(),
                 " instance weights for ", n_instance, " rows");
    double sum = 0;
    for (double w : instance) {
        NUANCE_CHECK(std::isfinite(w) && w >= 0, "prior preservation: an instance weight is ", w);
        sum += w;
    }
    if (instance.empty()) sum = (double)n_instance;
    NUANCE_CHECK(sum > 0 && std::isfinite(sum), "prior preservation: the instance weights sum to ", sum);
    std::vector<double> w((size_t)(n_instance + n_class));
    for (int64_t i = 0; i < n_instance; ++i) w[(size_t)i] = (instance.empty() ? 1.0 : instance[(size_t)i]) / sum;
    for (int64_t i = 0; i < n_class; ++i) w[(size_t)(n_instance + i)] = 1.0 / (double)n_class;
    return w;
}

void ImageCaptionDataset::exclude_concepts() {
    const std::vector<std::string>& names = options_.exclude_concepts;
    std::vector<int64_t> hits(names.size(), 0);
    std::vector<CaptionRecord> kept;
    kept.reserve(records_.size());
    for (CaptionRecord& r : records_) {
        const auto label_it = r.meta.find("label");
        const std::string label =
            label_it != r.meta.end() && label_it->is_string() ? label_it->get<std::string>() : r.caption;
        bool out = false;
        for (size_t i = 0; i < names.size(); ++i) {
            const std::string& n = names[i];
            if (label.compare(0, n.size(), n) == 0 &&
                (label.size() == n.size() || label[n.size()] == ':' || label[n.size()] == ',')) {
                ++hits[i];
                out = true;
            }
        }
        if (out)
            ++excluded_;
        else
            kept.push_back(std::move(r));
    }
    for (size_t i = 0; i < names.size(); ++i)
        NUANCE_CHECK(hits[i] > 0, "dataset '", root_, "': the held-out concept '", names[i],
                     "' matches no image's label (a misspelt name would hold out nothing)");
    records_ = std::move(kept);
}

std::vector<std::string> read_concept_list(const std::string& path) {
    std::error_code ec;
    NUANCE_CHECK_CODE(fs::is_regular_file(path, ec), NotFound, "--exclude-concepts '", path,
                      "' is not a readable file");
    const uintmax_t bytes = fs::file_size(path, ec);
    NUANCE_CHECK_CODE(!ec && bytes <= (1u << 20), InvalidArgument, "--exclude-concepts '", path,
                      "' is larger than 1 MiB");
    std::ifstream f(path, std::ios::binary);
    NUANCE_CHECK_CODE(f.good(), Io, "--exclude-concepts '", path, "' cannot be opened");
    std::vector<std::string> names;
    std::string line;
    for (int64_t lineno = 1; std::getline(f, line); ++lineno) {
        const std::string n = trim(line);
        if (n.empty() || n[0] == '#') continue;
        NUANCE_CHECK(n.size() <= 256, "--exclude-concepts '", path, "' line ", lineno, ": a name longer than 256 bytes");
        NUANCE_CHECK(n.find('\0') == std::string::npos, "--exclude-concepts '", path, "' line ", lineno,
                     ": a NUL byte");
        NUANCE_CHECK(names.size() < 65536, "--exclude-concepts '", path, "': more than 65,536 names");
        names.push_back(n);
    }
    NUANCE_CHECK_CODE(!f.bad(), Io, "cannot read --exclude-concepts '", path, "'");
    NUANCE_CHECK(!names.empty(), "--exclude-concepts '", path, "' lists no concept");
    return names;
}

void ImageCaptionDataset::scan_sidecars() {
    std::vector<fs::path> images;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root_, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file(ec) && is_image_ext(it->path())) images.push_back(it->path());
    }
    NUANCE_CHECK_CODE(!ec, Io, "cannot list dataset folder '", root_, "': ", ec.message());
    std::sort(images.begin(), images.end());
    for (const fs::path& p : images) {
        fs::path txt = p;
        txt.replace_extension(".txt");
        if (!fs::is_regular_file(txt, ec)) {
            NUANCE_CHECK_CODE(!options_.default_caption.empty(), NotFound, "image '", p.string(),
                              "' has no caption (expected '", txt.string(), "')");
            records_.push_back({p.string(), options_.default_caption, nlohmann::json::object()});
            continue;
        }
        records_.push_back({p.string(), trim(read_text(txt)), nlohmann::json::object()});
    }
}

const CaptionRecord& ImageCaptionDataset::record(int64_t index) const {
    NUANCE_CHECK(index >= 0 && index < size(), "dataset index ", index, " out of range [0, ", size(), ")");
    return records_[(size_t)index];
}

std::string ImageCaptionDataset::describe(int64_t index) const { return str("image '", record(index).path, "'"); }

Image ImageCaptionDataset::load_image(int64_t index) const {
    const CaptionRecord& r = record(index);
    if (!cache_.empty()) return cache_[(size_t)index];
    Image img = composite_on_white(read_image_rgba(r.path));
    if (options_.resolution > 0) {
        try {
            img = resize_and_crop(img, options_.resolution, options_.resize, options_.center_crop);
        } catch (const Error& e) {
            fail(e.code(), "image '", r.path, "': ", e.what());
        }
    }
    return img;
}

std::string ImageCaptionDataset::augment_caption(int64_t index, Mt19937& rng) const {
    const CaptionRecord& r = record(index);
    // A fixed number of draws per sample whatever the options, so changing one probability leaves the others'
    // decisions (and the flip) unchanged.
    const float u_drop = uniform01(rng), u_style = uniform01(rng), u_kw = uniform01(rng);
    const uint32_t kw_seed = rng();
    if (u_drop < options_.caption_dropout) return "";
    std::string caption = r.caption;
    if (u_style < options_.style_dropout && r.meta.contains("style")) {
        const std::string suffix = ", " + r.meta["style"].get<std::string>() + " style";
        if (caption.size() >= suffix.size() && caption.compare(caption.size() - suffix.size(), suffix.size(), suffix) == 0)
            caption.resize(caption.size() - suffix.size());
    }
    if (u_kw < options_.keyword_prob && r.meta.contains("keywords") && !r.meta["keywords"].empty()) {
        std::vector<std::string> kws = r.meta["keywords"].get<std::vector<std::string>>();
        Mt19937 krng(kw_seed);
        const uint32_t n = 1 + uniform_below(krng, (uint32_t)std::min<size_t>(kws.size(), options_.max_keywords));
        // Partial Fisher-Yates: the first n of a uniform shuffle.
        for (uint32_t i = 0; i < n; ++i) {
            std::swap(kws[i], kws[i + uniform_below(krng, (uint32_t)(kws.size() - i))]);
            caption += (caption.empty() ? "" : ", ") + kws[i];
        }
    }
    return caption;
}

Sample ImageCaptionDataset::get(int64_t index, Mt19937& rng) const {
    const uint32_t u_flip = rng();  // drawn whether or not flips are on (see augment_caption)
    const bool flip = options_.random_flip && (u_flip & 1u);
    Sample s;
    s.caption = augment_caption(index, rng);
    s.image = image_to_chw(load_image(index), flip);
    return s;
}

}  // namespace nuance
