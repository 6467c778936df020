#include "pipelines/hires.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "io/image.h"
#include "ops/interpolate.h"
#include "ops/ops.h"
#include "pipelines/generate.h"

namespace nuance {

namespace {

struct UpscalerName {
    HiresUpscaler kind;
    const char* a1111;
    const char* cli;
};

constexpr UpscalerName kUpscalers[] = {
    {HiresUpscaler::Latent, "Latent", "latent"},
    {HiresUpscaler::LatentNearest, "Latent (nearest)", "latent-nearest"},
    {HiresUpscaler::LatentNearestExact, "Latent (nearest-exact)", "latent-nearest-exact"},
    {HiresUpscaler::Lanczos, "Lanczos", "lanczos"},
    {HiresUpscaler::Nearest, "Nearest", "nearest"},
    {HiresUpscaler::None, "None", "none"},
};

std::string lower(std::string s) {
    for (char& c : s) c = (char)std::tolower((unsigned char)c);
    return s;
}

std::string format_float(float v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

// The centre of an image: `w` x `h` pixels from (x, y).
Image crop(const Image& im, int x, int y, int w, int h) {
    Image out;
    out.width = w;
    out.height = h;
    out.channels = im.channels;
    out.pixels.resize((size_t)w * h * im.channels);
    for (int r = 0; r < h; ++r)
        std::copy_n(im.pixels.data() + ((size_t)(y + r) * im.width + x) * im.channels, (size_t)w * im.channels,
                    out.pixels.data() + (size_t)r * w * im.channels);
    return out;
}

}  // namespace

HiresUpscaler parse_hires_upscaler(const std::string& name) {
    const std::string n = lower(name);
    for (const auto& u : kUpscalers)
        if (n == lower(u.a1111) || n == u.cli) return u.kind;
    std::string list;
    for (const auto& u : kUpscalers) list += (list.empty() ? "" : ", ") + std::string(u.cli);
    fail(ErrorCode::InvalidArgument, "unknown hires upscaler '", name, "' (known: ", list,
         "; or A1111's names: Latent, Latent (nearest), Latent (nearest-exact), Lanczos, Nearest, None)");
}

const char* hires_upscaler_name(HiresUpscaler k) {
    for (const auto& u : kUpscalers)
        if (u.kind == k) return u.a1111;
    return "Latent";
}

bool hires_upscaler_is_latent(HiresUpscaler u) {
    return u == HiresUpscaler::Latent || u == HiresUpscaler::LatentNearest || u == HiresUpscaler::LatentNearestExact;
}

std::vector<std::string> hires_upscaler_names() {
    std::vector<std::string> out;
    for (const auto& u : kUpscalers) out.push_back(u.a1111);
    return out;
}

HiresTarget hires_target(const HiresParams& h, int width, int height, int64_t factor) {
    parse_hires_upscaler(h.upscaler);
    NUANCE_CHECK(std::isfinite(h.scale) && h.scale >= 1.0f && h.scale <= 8.0f, "hires scale must be in 1..8, got ",
                 h.scale);
    NUANCE_CHECK(h.resize_x >= 0 && h.resize_x <= 8192 && h.resize_y >= 0 && h.resize_y <= 8192,
                 "hires resize must be in 0..8192 (0: from the scale or the aspect ratio), got ", h.resize_x, "x",
                 h.resize_y);
    NUANCE_CHECK(std::isfinite(h.strength) && h.strength > 0 && h.strength <= 1,
                 "hires denoising strength must be in (0, 1], got ", h.strength);
    NUANCE_CHECK(h.steps >= 0 && h.steps <= 1000, "hires steps must be in 0..1000 (0: the first pass's), got ", h.steps);
    NUANCE_CHECK(width > 0 && height > 0 && factor > 0, "hires fix: bad first-pass size ", width, "x", height);
    // A1111 StableDiffusionProcessingTxt2Img.calculate_target_resolution
    int64_t up_x, up_y, trunc_x = 0, trunc_y = 0;
    if (h.resize_x == 0 && h.resize_y == 0) {
        up_x = (int64_t)((double)width * h.scale);
        up_y = (int64_t)((double)height * h.scale);
    } else if (h.resize_y == 0) {
        up_x = h.resize_x;
        up_y = (int64_t)h.resize_x * height / width;
    } else if (h.resize_x == 0) {
        up_x = (int64_t)h.resize_y * width / height;
        up_y = h.resize_y;
    } else {
        if ((double)width / height < (double)h.resize_x / h.resize_y) {
            up_x = h.resize_x;
            up_y = (int64_t)h.resize_x * height / width;
        } else {
            up_x = (int64_t)h.resize_y * width / height;
            up_y = h.resize_y;
        }
        trunc_x = (up_x - h.resize_x) / factor;
        trunc_y = (up_y - h.resize_y) / factor;
    }
    HiresTarget t;
    t.latent_w = up_x / factor;
    t.latent_h = up_y / factor;
    t.crop_x = trunc_x;
    t.crop_y = trunc_y;
    const int64_t w = (t.latent_w - trunc_x) * factor, hh = (t.latent_h - trunc_y) * factor;
    NUANCE_CHECK(w > 0 && hh > 0 && w <= 8192 && hh <= 8192 && t.latent_w * factor <= 16384 &&
                     t.latent_h * factor <= 16384,
                 "hires target size ", w, "x", hh, " (from ", width, "x", height, ") must be in 1..8192 per side");
    t.width = (int)w;
    t.height = (int)hh;
    return t;
}

Tensor hires_upscale_latents(const Tensor& x, HiresUpscaler u, int64_t h, int64_t w) {
    switch (u) {
        case HiresUpscaler::Latent: return interpolate_bilinear(x, h, w);
        case HiresUpscaler::LatentNearest: return interpolate_nearest(x, h, w);
        case HiresUpscaler::LatentNearestExact: return interpolate_nearest_exact(x, h, w);
        default: fail(ErrorCode::InvalidArgument, "hires upscaler '", hires_upscaler_name(u), "' works on images, not latents");
    }
}

std::string hires_infotext(const HiresParams& h) {
    std::string s = ", Denoising strength: " + format_float(h.strength);
    if (h.resize_x > 0 || h.resize_y > 0) s += str(", Hires resize: ", h.resize_x, "x", h.resize_y);
    else s += ", Hires upscale: " + format_float(h.scale);
    if (h.steps > 0) s += str(", Hires steps: ", h.steps);
    s += std::string(", Hires upscaler: ") + hires_upscaler_name(parse_hires_upscaler(h.upscaler));
    return s;
}

std::vector<GeneratedImage> generate_hires(const DiffusionModel& m, const GenerateParams& p) {
    const HiresUpscaler up = parse_hires_upscaler(p.hires.upscaler);
    const int64_t f = m.vae_scale();
    const HiresTarget t = hires_target(p.hires, p.width, p.height, f);
    NUANCE_CHECK(!p.init_image && !p.init_latents.defined(), "hires fix is for txt2img: drop the init image or hires");
    auto progress = [&](int pass, int b) -> std::function<void(const GenerateProgress&)> {
        if (!p.on_progress) return nullptr;
        return [&p, pass, b](const GenerateProgress& pr) {
            GenerateProgress q = pr;
            q.image = b;
            q.images = p.batch_count;
            q.pass = pass;
            q.passes = 2;
            p.on_progress(q);
        };
    };
    std::vector<GeneratedImage> out;
    for (int b = 0; b < p.batch_count; ++b) {
        const int64_t seed = p.seed + b;
        GenerateParams p1 = p;
        p1.hires.enabled = false;
        p1.batch_count = 1;
        p1.seed = seed;
        p1.on_image = nullptr;
        p1.on_progress = progress(0, b);
        p1.release_weights_before_decode = false;
        p1.skip_decode = hires_upscaler_is_latent(up);  // A1111 decodes the first pass only for image upscalers
        const GeneratedImage first = generate(m, p1).front();

        GenerateParams p2 = p;
        p2.hires.enabled = false;
        p2.batch_count = 1;
        p2.seed = seed;
        p2.width = t.width;
        p2.height = t.height;
        p2.steps = p.hires.steps > 0 ? p.hires.steps : p.steps;
        if (p.hires.steps > 0 && p.hires.steps != p.steps) p2.sigmas.clear();
        p2.strength = p.hires.strength;
        p2.on_image = nullptr;
        p2.on_progress = progress(1, b);
        p2.release_weights_before_decode = p.release_weights_before_decode && b + 1 == p.batch_count;
        const int64_t cx = t.crop_x / 2, cy = t.crop_y / 2;
        if (hires_upscaler_is_latent(up)) {
            const Tensor lat = hires_upscale_latents(first.latents, up, t.latent_h, t.latent_w);
            // A1111 sample_hr_pass: samples[:, :, ty//2 : h-(ty+1)//2, tx//2 : w-(tx+1)//2]
            p2.init_latents = lat.slice(2, cy, t.latent_h - (t.crop_y + 1) / 2)
                                  .slice(3, cx, t.latent_w - (t.crop_x + 1) / 2)
                                  .contiguous();
        } else {
            const int W = (int)(t.latent_w * f), H = (int)(t.latent_h * f);
            Image big;
            if (up == HiresUpscaler::Nearest) big = tensor_to_image(interpolate_nearest(image_to_tensor(first.image), H, W));
            else big = resize_image(first.image, W, H);  // Lanczos; A1111's "None" is a plain PIL LANCZOS resize too
            p2.init_image = crop(big, (int)(cx * f), (int)(cy * f), t.width, t.height);
        }
        GeneratedImage g = generate(m, p2).front();
        g.infotext = a1111_infotext(m, p, seed, m.file_hash());
        if (p.on_image) p.on_image(g);
        out.push_back(std::move(g));
    }
    return out;
}

}  // namespace nuance
