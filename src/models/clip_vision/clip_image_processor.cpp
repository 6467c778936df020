#include "models/clip_vision/clip_image_processor.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "ops/shape_ops.h"

namespace nuance {

namespace {
constexpr int kMaxSide = 8192;

int side_field(const nlohmann::json& v, const char* what) {
    NUANCE_CHECK(v.is_number_integer(), "CLIP image processor: '", what, "' must be an integer, got ", v.dump());
    const int64_t s = v.get<int64_t>();
    NUANCE_CHECK(s >= 1 && s <= kMaxSide, "CLIP image processor: '", what, "' = ", s, " must be in 1..", kMaxSide);
    return (int)s;
}

void triple(const nlohmann::json& j, const char* key, float* dst, bool nonzero) {
    if (!j.contains(key) || j[key].is_null()) return;
    const auto& v = j[key];
    NUANCE_CHECK(v.is_array() && v.size() == 3, "CLIP image processor: '", key, "' must be 3 numbers, got ", v.dump());
    for (int c = 0; c < 3; ++c) {
        NUANCE_CHECK(v[c].is_number() && std::isfinite(v[c].get<double>()) && (!nonzero || v[c].get<double>() != 0),
                     "CLIP image processor: '", key, "'[", c, "] = ", v[c].dump(), " is not a usable number");
        dst[c] = (float)v[c].get<double>();
    }
}
}  // namespace

ClipImageProcessor ClipImageProcessor::for_image_size(int image_size) {
    NUANCE_CHECK(image_size >= 1 && image_size <= kMaxSide, "CLIP image processor: image size ", image_size,
                 " must be in 1..", kMaxSide);
    ClipImageProcessor p;
    p.shortest_edge = p.crop_height = p.crop_width = image_size;
    return p;
}

ClipImageProcessor ClipImageProcessor::from_json(const nlohmann::json& j) {
    NUANCE_CHECK(j.is_object(), "CLIP image processor: the config must be a JSON object");
    ClipImageProcessor p;
    if (j.contains("size") && !j["size"].is_null()) {
        const auto& s = j["size"];
        if (s.is_object()) {
            NUANCE_CHECK(s.contains("shortest_edge"), "CLIP image processor: 'size' ", s.dump(),
                         " has no 'shortest_edge' (only shortest-edge resizing is supported)");
            p.shortest_edge = side_field(s["shortest_edge"], "size.shortest_edge");
        } else {
            p.shortest_edge = side_field(s, "size");
        }
    }
    if (j.contains("crop_size") && !j["crop_size"].is_null()) {
        const auto& s = j["crop_size"];
        if (s.is_object()) {
            NUANCE_CHECK(s.contains("height") && s.contains("width"), "CLIP image processor: 'crop_size' ", s.dump(),
                         " needs height and width");
            p.crop_height = side_field(s["height"], "crop_size.height");
            p.crop_width = side_field(s["width"], "crop_size.width");
        } else {
            p.crop_height = p.crop_width = side_field(s, "crop_size");
        }
    }
    if (j.contains("resample") && !j["resample"].is_null())
        NUANCE_CHECK(j["resample"] == 3, "CLIP image processor: resample ", j["resample"].dump(),
                     " is not supported (3 = bicubic)");
    if (j.contains("rescale_factor") && !j["rescale_factor"].is_null()) {
        NUANCE_CHECK(j["rescale_factor"].is_number() && std::isfinite(j["rescale_factor"].get<double>()) &&
                         j["rescale_factor"].get<double>() > 0,
                     "CLIP image processor: rescale_factor ", j["rescale_factor"].dump(), " must be a positive number");
        p.rescale_factor = j["rescale_factor"].get<double>();
    }
    triple(j, "image_mean", p.mean, false);
    triple(j, "image_std", p.std, true);
    for (auto [key, dst] : {std::pair<const char*, bool*>{"do_resize", &p.do_resize},
                            {"do_center_crop", &p.do_center_crop},
                            {"do_rescale", &p.do_rescale},
                            {"do_normalize", &p.do_normalize}})
        if (j.contains(key) && j[key].is_boolean()) *dst = j[key].get<bool>();
    return p;
}

Image ClipImageProcessor::resize(const Image& im) const {
    NUANCE_CHECK(im.width > 0 && im.height > 0, "CLIP image processor: empty image (", im.width, "x", im.height, ")");
    if (!do_resize) return im;
    const bool portrait = im.height > im.width;
    const int64_t shrt = portrait ? im.width : im.height, lng = portrait ? im.height : im.width;
    // transformers: new_long = int(shortest_edge * long / short), in Python floats
    const double nl = (double)shortest_edge * (double)lng / (double)shrt;
    NUANCE_CHECK(nl >= 1 && nl <= 65536, "CLIP image processor: a ", im.width, "x", im.height,
                 " image would be resized to a long side of ", nl, " pixels");
    const int new_long = (int)nl;
    const int w = portrait ? shortest_edge : new_long, h = portrait ? new_long : shortest_edge;
    if (w == im.width && h == im.height) return im;
    return resize_image(im, w, h, ResampleFilter::Bicubic);
}

Tensor ClipImageProcessor::operator()(const std::vector<Image>& images) const {
    NUANCE_CHECK(!images.empty(), "CLIP image processor: no images");
    std::vector<Tensor> out;
    for (const Image& src : images) {
        NUANCE_CHECK(src.channels == 1 || src.channels == 3 || src.channels == 4, "CLIP image processor: ",
                     src.channels, " channels (1, 3 or 4 supported)");
        const Image im = resize(src);
        const int H = do_center_crop ? crop_height : im.height, W = do_center_crop ? crop_width : im.width;
        // transformers center_crop: top = (h - ch) // 2 (floor); when the crop overhangs, the image is first
        // zero-padded to max(h, ch) with ceil((new - h) / 2) rows/cols before it.
        auto offsets = [](int in, int crop, int& pad, int& start) {
            pad = crop > in ? (crop - in + 1) / 2 : 0;
            const int t = (in - crop) >= 0 ? (in - crop) / 2 : -((crop - in + 1) / 2);  // floor division
            start = t + pad;  // in padded coordinates
        };
        int pad_y = 0, pad_x = 0, y0 = 0, x0 = 0;
        if (do_center_crop) {
            offsets(im.height, H, pad_y, y0);
            offsets(im.width, W, pad_x, x0);
        }
        Tensor t = Tensor::empty({3, H, W}, DType::F32);
        float* d = t.data<float>();
        const int ch = im.channels;
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < H; ++y)
                for (int x = 0; x < W; ++x) {
                    const int sy = y0 + y - pad_y, sx = x0 + x - pad_x;
                    double v = 0.0;
                    if (sy >= 0 && sy < im.height && sx >= 0 && sx < im.width)
                        v = im.pixels[((size_t)sy * im.width + sx) * ch + (ch == 1 ? 0 : c)];
                    float f = do_rescale ? (float)(v * rescale_factor) : (float)v;
                    if (do_normalize) f = (f - mean[c]) / std[c];
                    d[((size_t)c * H + y) * W + x] = f;
                }
        out.push_back(t.unsqueeze(0));
    }
    return out.size() == 1 ? out[0] : cat(out, 0);
}

}  // namespace nuance
