#include "models/controlnet/control_stack.h"

#include <algorithm>
#include <cmath>

#include "ops/ops.h"

namespace nuance {

const char* control_mode_name(ControlMode m) {
    switch (m) {
        case ControlMode::Balanced: return "balanced";
        case ControlMode::PromptMoreImportant: return "prompt";
        case ControlMode::ControlMoreImportant: return "control";
        case ControlMode::Guess: return "guess";
    }
    return "?";
}

const char* control_mode_label(ControlMode m) {
    switch (m) {
        case ControlMode::Balanced: return "Balanced";
        case ControlMode::PromptMoreImportant: return "My prompt is more important";
        case ControlMode::ControlMoreImportant: return "ControlNet is more important";
        case ControlMode::Guess: return "Guess mode";
    }
    return "?";
}

ControlMode parse_control_mode(const std::string& s, const std::string& what) {
    if (s == "balanced" || s == "Balanced" || s == "0") return ControlMode::Balanced;
    if (s == "prompt" || s == "My prompt is more important" || s == "1") return ControlMode::PromptMoreImportant;
    if (s == "control" || s == "ControlNet is more important" || s == "2") return ControlMode::ControlMoreImportant;
    if (s == "guess") return ControlMode::Guess;
    fail(ErrorCode::InvalidArgument, what, ": unknown control mode '", s,
         "' (expected balanced, prompt, control, guess, or the A1111 labels \"Balanced\", \"My prompt is more "
         "important\", \"ControlNet is more important\")");
}

ControlResize parse_control_resize(const std::string& s, const std::string& what) {
    if (s == "Just Resize" || s == "just" || s == "0") return ControlResize::Just;
    if (s == "Crop and Resize" || s == "crop" || s == "1") return ControlResize::Crop;
    if (s == "Resize and Fill" || s == "fill" || s == "2") return ControlResize::Fill;
    fail(ErrorCode::InvalidArgument, what, ": unknown resize mode '", s,
         "' (expected \"Just Resize\", \"Crop and Resize\", \"Resize and Fill\" or 0/1/2)");
}

Image fit_control_image(const Image& img, int width, int height, ControlResize mode) {
    if (img.width == width && img.height == height) return img;
    if (mode == ControlResize::Just) return resize_image(img, width, height);
    const int C = img.channels;
    if (mode == ControlResize::Crop) {  // the centred source region of the output's aspect, then resized to it
        const double target = (double)width / height;
        int cw = img.width, ch = img.height;
        if ((double)img.width / img.height > target) cw = std::clamp((int)std::lround(img.height * target), 1, img.width);
        else ch = std::clamp((int)std::lround(img.width / target), 1, img.height);
        const int x0 = (img.width - cw) / 2, y0 = (img.height - ch) / 2;
        Image crop{cw, ch, C, std::vector<uint8_t>((size_t)cw * ch * C)};
        for (int y = 0; y < ch; ++y)
            std::copy_n(&img.pixels[((size_t)(y + y0) * img.width + x0) * C], (size_t)cw * C,
                        &crop.pixels[(size_t)y * cw * C]);
        return resize_image(crop, width, height);
    }
    // Fill: scaled to fit (never larger than the output), centred on black.
    const double k = std::min((double)width / img.width, (double)height / img.height);
    const int w = std::clamp((int)std::lround(img.width * k), 1, width), h = std::clamp((int)std::lround(img.height * k), 1, height);
    const Image scaled = resize_image(img, w, h);
    Image out{width, height, scaled.channels, std::vector<uint8_t>((size_t)width * height * scaled.channels, 0)};
    const int ox = (w - width) / 2, oy = (h - height) / 2;  // <= 0
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) {
            const int sx = x + ox, sy = y + oy;
            if (sx < 0 || sy < 0 || sx >= w || sy >= h) continue;
            for (int c = 0; c < scaled.channels; ++c)
                out.pixels[((size_t)y * width + x) * scaled.channels + c] =
                    scaled.pixels[((size_t)sy * w + sx) * scaled.channels + c];
        }
    return out;
}

void validate_control_unit(const ControlUnit& u, const std::string& what) {
    NUANCE_CHECK(u.net != nullptr, what, ": no ControlNet model");
    NUANCE_CHECK(u.image.width > 0 && u.image.height > 0, what, ": no control image");
    NUANCE_CHECK(std::isfinite(u.weight) && u.weight >= 0.0f && u.weight <= 10.0f, what, ": weight must be in 0..10, got ",
                 u.weight);
    NUANCE_CHECK(std::isfinite(u.start) && std::isfinite(u.end) && u.start >= 0.0f && u.end <= 1.0f &&
                     u.start < u.end,
                 what, ": start/end must satisfy 0 <= start < end <= 1, got start ", u.start, ", end ", u.end);
}

bool control_active(const ControlUnit& u, int step, int steps) {
    if (steps <= 0) return true;
    const double a = (double)step / steps, b = (double)(step + 1) / steps;
    return !(a < u.start || b > u.end);
}

ControlStack ControlStack::prepare(const std::vector<ControlUnit>& units, int width, int height) {
    ControlStack s;
    s.units = units;
    for (const ControlUnit& u : units) {
        const Image sized = fit_control_image(u.image, width, height, u.resize);
        s.hints.push_back(image_to_tensor(sized) * 0.5f + 0.5f);  // [-1, 1] -> [0, 1] (x / 255)
    }
    return s;
}

namespace {

// Per-residual scales of a unit: n down residuals + the mid one (index n).
std::vector<float> unit_scales(ControlMode mode, float weight, size_t n) {
    std::vector<float> s(n + 1, weight);
    if (mode == ControlMode::PromptMoreImportant || mode == ControlMode::ControlMoreImportant) {
        for (size_t k = 0; k <= n; ++k) s[k] = weight * (float)std::pow(0.825, (double)(n - k));
    } else if (mode == ControlMode::Guess) {  // torch.logspace(-1, 0, n + 1): 10^(-1 + k / n)
        for (size_t k = 0; k <= n; ++k) s[k] = weight * (float)std::pow(10.0, -1.0 + (double)k / (double)n);
    }
    return s;
}

Tensor rows(const Tensor& t, int64_t from, int64_t count) { return t.narrow(0, from, count).contiguous(); }

}  // namespace

ControlResiduals ControlStack::residuals(const Tensor& x, const Tensor& t, const Tensor& context,
                                         const UNetExtra& extra, int step, int steps, bool cfg_rows) const {
    ControlResiduals sum;
    const int64_t B = x.size(0);
    for (size_t i = 0; i < units.size(); ++i) {
        const ControlUnit& u = units[i];
        if (!control_active(u, step, steps) || u.weight == 0.0f) continue;
        const bool cond_only = cfg_rows && B == 2 &&
                               (u.mode == ControlMode::ControlMoreImportant || u.mode == ControlMode::Guess);
        ControlResiduals r;
        if (cond_only) {  // diffusers guess mode: the ControlNet sees the cond row; the uncond row gets zeros
            UNetExtra e;
            if (extra.text_embeds.defined()) e.text_embeds = rows(extra.text_embeds, 1, 1);
            if (extra.time_ids.defined()) e.time_ids = rows(extra.time_ids, 1, 1);
            r = u.net->forward(rows(x, 1, 1), t, rows(context, 1, 1), hints[i], e);
            for (auto& d : r.down) d = cat({Tensor::zeros(d.shape()), d}, 0);
            r.mid = cat({Tensor::zeros(r.mid.shape()), r.mid}, 0);
        } else {
            r = u.net->forward(x, t, context, hints[i], extra);
        }
        const std::vector<float> sc = unit_scales(u.mode, u.weight, r.down.size());
        for (size_t k = 0; k < r.down.size(); ++k) r.down[k] = r.down[k] * sc[k];
        r.mid = r.mid * sc.back();
        if (sum.down.empty()) {
            sum = std::move(r);
            continue;
        }
        NUANCE_CHECK(sum.down.size() == r.down.size(), "ControlNet '", u.name, "' gives ", r.down.size(),
                     " residuals, the others ", sum.down.size());
        for (size_t k = 0; k < r.down.size(); ++k) sum.down[k] = sum.down[k] + r.down[k];
        sum.mid = sum.mid + r.mid;
    }
    return sum;
}

}  // namespace nuance
