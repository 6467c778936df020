#include "control/preprocess.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/rng.h"

namespace nuance {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t a = 0;
    while (true) {
        const size_t b = s.find(sep, a);
        out.push_back(s.substr(a, b == std::string::npos ? std::string::npos : b - a));
        if (b == std::string::npos) break;
        a = b + 1;
    }
    return out;
}

double number(const std::string& s, const std::string& what, const std::string& spec) {
    char* end = nullptr;
    const double v = s.empty() ? NAN : std::strtod(s.c_str(), &end);
    NUANCE_CHECK(!s.empty() && end && *end == '\0' && std::isfinite(v), what, " '", spec, "': '", s,
                 "' is not a number");
    return v;
}

Image to_rgb(const Image& in) {
    NUANCE_CHECK(in.width > 0 && in.height > 0 && in.channels >= 1 && in.channels <= 4 &&
                     in.pixels.size() == (size_t)in.width * (size_t)in.height * (size_t)in.channels,
                 "control image: bad image ", in.width, "x", in.height, "x", in.channels);
    if (in.channels == 3) return in;
    Image out{in.width, in.height, 3, {}};
    const size_t n = (size_t)in.width * (size_t)in.height;
    out.pixels.resize(n * 3);
    for (size_t i = 0; i < n; ++i)
        for (int c = 0; c < 3; ++c)
            out.pixels[i * 3 + c] = in.pixels[i * (size_t)in.channels + (in.channels >= 3 ? (size_t)c : 0)];
    return out;
}

Image gray_to_rgb(const Image& g) {
    Image out{g.width, g.height, 3, {}};
    out.pixels.resize(g.pixels.size() * 3);
    for (size_t i = 0; i < g.pixels.size(); ++i) out.pixels[i * 3] = out.pixels[i * 3 + 1] = out.pixels[i * 3 + 2] = g.pixels[i];
    return out;
}

// A smooth random field in [0, 1] of size w x h: uniform noise on a grid of (h / f + 2) x (w / f + 2) points,
// interpolated (bilinear) and normalised to [0, 1] (the extension's make_noise_disk, with nuance's RNG).
std::vector<float> noise_disk(int w, int h, int f, Rng& rng) {
    const int gw = w / f + 2, gh = h / f + 2;
    // uniform [0, 1) from the seeded normal stream (normal CDF)
    std::vector<float> g((size_t)gh * gw);
    rng.fill_randn(g.data(), (int64_t)g.size());
    for (float& v : g) v = 0.5f * (1.0f + std::erf(v / std::sqrt(2.0f)));
    std::vector<float> out((size_t)w * (size_t)h);
    // the grid covers [-f, w + f) like the extension's resize to (w + 2f, h + 2f) then crop
    const double sx = (double)(gw - 1) / (double)(w + 2 * f - 1), sy = (double)(gh - 1) / (double)(h + 2 * f - 1);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const double fx = (x + f) * sx, fy = (y + f) * sy;
            const int x0 = std::min((int)fx, gw - 2), y0 = std::min((int)fy, gh - 2);
            const double ax = fx - x0, ay = fy - y0;
            const double v = (1 - ay) * ((1 - ax) * g[y0 * gw + x0] + ax * g[y0 * gw + x0 + 1]) +
                             ay * ((1 - ax) * g[(y0 + 1) * gw + x0] + ax * g[(y0 + 1) * gw + x0 + 1]);
            out[(size_t)y * w + x] = (float)v;
        }
    const auto [mn, mx] = std::minmax_element(out.begin(), out.end());
    const float lo = *mn, span = std::max(*mx - *mn, 1e-12f);
    for (float& v : out) v = (v - lo) / span;
    return out;
}

Image shuffle(const Image& in, uint64_t seed) {
    const int W = in.width, H = in.height, f = 256;
    auto rng = make_rng(RngKind::Cpu, seed);
    const std::vector<float> fx = noise_disk(W, H, f, *rng), fy = noise_disk(W, H, f, *rng);
    Image out{W, H, 3, std::vector<uint8_t>((size_t)W * H * 3)};
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {  // cv2.remap(img, flow, INTER_LINEAR): sample at (fx * (W-1), fy * (H-1))
            const double sx = fx[(size_t)y * W + x] * (W - 1), sy = fy[(size_t)y * W + x] * (H - 1);
            const int x0 = std::min((int)sx, std::max(W - 2, 0)), y0 = std::min((int)sy, std::max(H - 2, 0));
            const int x1 = std::min(x0 + 1, W - 1), y1 = std::min(y0 + 1, H - 1);
            const double ax = sx - x0, ay = sy - y0;
            for (int c = 0; c < 3; ++c) {
                auto p = [&](int xx, int yy) { return (double)in.pixels[((size_t)yy * W + xx) * 3 + c]; };
                const double v = (1 - ay) * ((1 - ax) * p(x0, y0) + ax * p(x1, y0)) + ay * ((1 - ax) * p(x0, y1) + ax * p(x1, y1));
                out.pixels[((size_t)y * W + x) * 3 + c] = (uint8_t)std::clamp(std::lround(v), 0L, 255L);
            }
        }
    return out;
}

}  // namespace

Preprocessor parse_preprocessor(const std::string& spec, const std::string& what) {
    NUANCE_CHECK(spec.size() <= 256, what, ": preprocessor spec of ", spec.size(), " characters");
    const std::vector<std::string> parts = split(spec, ':');
    Preprocessor p;
    const std::string m = parts[0];
    auto args = [&](size_t most) {
        NUANCE_CHECK(parts.size() <= most + 1, what, " '", spec, "': ", m, " takes at most ", most,
                     most == 1 ? " parameter" : " parameters");
    };
    if (m == "none" || m.empty()) {
        args(0);
        p.module = "none";
    } else if (m == "canny") {
        args(2);
        p.module = "canny";
        if (parts.size() > 1) p.a = number(parts[1], what, spec);
        if (parts.size() > 2) p.b = number(parts[2], what, spec);
    } else if (m == "invert") {
        args(0);
        p.module = "invert";
    } else if (m == "threshold" || m == "scribble") {
        args(1);
        p.module = m;
        if (parts.size() > 1) p.a = number(parts[1], what, spec);
    } else if (m == "tile" || m == "tile_resample") {
        args(1);
        p.module = "tile";
        if (parts.size() > 1) p.a = number(parts[1], what, spec);
    } else if (m == "shuffle") {
        args(1);
        p.module = "shuffle";
        if (parts.size() > 1) {
            const double s = number(parts[1], what, spec);
            NUANCE_CHECK(s >= 0 && s <= 9007199254740992.0 && s == std::floor(s), what, " '", spec,
                         "': the shuffle seed must be a whole number >= 0, got ", parts[1]);
            p.seed = (uint64_t)s;
        }
    } else {
        fail(ErrorCode::InvalidArgument, what, ": unknown preprocessor '", m,
             "' (this build runs none, canny[:low:high], invert, threshold[:t], scribble[:t], tile[:factor], "
             "shuffle[:seed]; give an already preprocessed image with 'none' for the others)");
    }
    // Ranges, checked here so that a bad value is refused before a model is loaded.
    if (p.module == "canny") {
        NUANCE_CHECK(p.a < 0 || p.a <= 1e6, what, " '", spec, "': low threshold must be in 0..1e6, got ", p.a);
        NUANCE_CHECK(p.b < 0 || p.b <= 1e6, what, " '", spec, "': high threshold must be in 0..1e6, got ", p.b);
    }
    if (p.module == "threshold" || p.module == "scribble")
        NUANCE_CHECK(p.a < 0 || p.a <= 255, what, " '", spec, "': threshold must be in 0..255, got ", p.a);
    if (p.module == "tile")
        NUANCE_CHECK(p.a < 0 || (p.a >= 1 && p.a <= 8), what, " '", spec, "': tile factor must be in 1..8, got ", p.a);
    return p;
}

Preprocessor preprocessor_from_a1111(const std::string& module, double threshold_a, double threshold_b,
                                     int processor_res, const std::string& what) {
    std::string m = module;
    if (m == "invert (from white bg & black line)") m = "invert";
    if (m == "tile_resample") m = "tile";
    Preprocessor p = parse_preprocessor(m, what);
    if (p.module == "shuffle") {
        p.seed = threshold_a >= 0 && std::isfinite(threshold_a) ? (uint64_t)threshold_a : 0;
    } else {
        // The extension sends -1 (or its slider defaults) for unused sliders: keep the module's default then.
        const std::string spec = m + (threshold_a >= 0 ? ":" + std::to_string(threshold_a) : std::string()) +
                                 (p.module == "canny" && threshold_b >= 0 ? ":" + std::to_string(threshold_b) : std::string());
        if (p.module != "none" && p.module != "invert" && (threshold_a >= 0 || threshold_b >= 0))
            p = parse_preprocessor(threshold_a >= 0 ? spec : m, what);
        if (p.module == "canny" && threshold_a < 0 && threshold_b >= 0) p.b = threshold_b;
    }
    NUANCE_CHECK(processor_res >= -1 && processor_res <= 4096, what, ": processor_res must be in 64..4096 (or -1), got ",
                 processor_res);
    p.resolution = processor_res > 0 ? processor_res : 0;
    return p;
}

std::vector<std::string> preprocessor_modules() {
    return {"none", "canny", "invert (from white bg & black line)", "threshold", "scribble", "tile_resample",
            "shuffle"};
}

Image run_preprocessor(const Preprocessor& p, const Image& in_raw) {
    Image in = to_rgb(in_raw);
    if (p.resolution > 0 && p.module != "none") {  // the extension's processor_res: the short side
        const int s = std::min(in.width, in.height);
        const double k = (double)p.resolution / s, wd = in.width * k, hd = in.height * k;
        NUANCE_CHECK(wd * hd <= 8192.0 * 8192.0, "preprocessor: processor_res ", p.resolution, " makes a ",
                     std::llround(wd), "x", std::llround(hd), " image from ", in.width, "x", in.height,
                     " (more than 8192x8192 pixels)");
        const int w = std::max(1, (int)std::lround(wd)), h = std::max(1, (int)std::lround(hd));
        if (w != in.width || h != in.height) in = resize_image(in, w, h);
    }
    if (p.module == "none") return in;
    if (p.module == "canny") return gray_to_rgb(canny(in, p.a < 0 ? 100 : p.a, p.b < 0 ? 200 : p.b));
    if (p.module == "invert") {
        for (auto& v : in.pixels) v = (uint8_t)(255 - v);
        return in;
    }
    if (p.module == "threshold") {
        const double t = p.a < 0 ? 127 : p.a;
        for (auto& v : in.pixels) v = v > t ? 255 : 0;
        return in;
    }
    if (p.module == "scribble") {
        const double t = p.a < 0 ? 127 : p.a;
        const size_t n = (size_t)in.width * in.height;
        for (size_t i = 0; i < n; ++i) {
            const double g = (in.pixels[i * 3] + in.pixels[i * 3 + 1] + in.pixels[i * 3 + 2]) / 3.0;
            in.pixels[i * 3] = in.pixels[i * 3 + 1] = in.pixels[i * 3 + 2] = 255.0 - g > t ? 255 : 0;
        }
        return in;
    }
    if (p.module == "tile") {
        const double f = p.a < 0 ? 1.0 : p.a;
        const int w = std::max(1, (int)(in.width / f)), h = std::max(1, (int)(in.height / f));
        return (w == in.width && h == in.height) ? in : resize_image(in, w, h);
    }
    if (p.module == "shuffle") return shuffle(in, p.seed);
    fail(ErrorCode::InvalidArgument, "unknown preprocessor '", p.module, "'");
}

}  // namespace nuance
