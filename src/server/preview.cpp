#include "server/preview.h"

#include <algorithm>
#include <cmath>

#include "models/taesd/taesd.h"

namespace nuance::server {

namespace {

Image map_latents(const Tensor& latents, const LatentFormat& lf, int target_side, float scale) {
    Image out;
    Tensor x = latents;
    if (x.dim() == 4) {
        if (x.size(0) != 1) x = x.select(0, 0);
        else x = x.squeeze(0);
    }
    const auto& m = lf.rgb_factors;
    const int64_t C = (int64_t)m.size();
    if (C == 0 || x.dim() != 3 || x.size(0) != C || x.size(1) <= 0 || x.size(2) <= 0) return out;
    const int h = (int)x.size(1), w = (int)x.size(2);
    const std::vector<float> v = x.f32().contiguous().to_vector();
    const int k = std::clamp(target_side / std::max(h, w), 1, 8);
    out.width = w * k;
    out.height = h * k;
    out.channels = 3;
    out.pixels.resize((size_t)out.width * out.height * 3);
    const size_t plane = (size_t)h * w;
    for (int y = 0; y < h; ++y) {
        for (int xx = 0; xx < w; ++xx) {
            uint8_t rgb[3];
            for (int c = 0; c < 3; ++c) {
                float s = 0;
                for (int64_t l = 0; l < C; ++l) s += v[(size_t)l * plane + (size_t)y * w + xx] * scale * m[(size_t)l][c];
                const float u = std::clamp((s + 1.0f) * 0.5f, 0.0f, 1.0f);
                rgb[c] = std::isfinite(u) ? (uint8_t)std::lround(u * 255.0f) : 0;
            }
            for (int dy = 0; dy < k; ++dy) {
                uint8_t* row = out.pixels.data() + ((size_t)(y * k + dy) * out.width + (size_t)xx * k) * 3;
                for (int dx = 0; dx < k; ++dx) std::copy(rgb, rgb + 3, row + dx * 3);
            }
        }
    }
    return out;
}

}  // namespace

Image latent_preview(const Tensor& latents, const LatentFormat& lf, int target_side) {
    return map_latents(latents, lf, target_side, 1.0f);
}

Image progress_preview(const Tensor& latents, double sigma, const Tensor* denoised, const LatentFormat& lf,
                       int target_side, const TinyAutoencoder* tae) {
    const double s = std::isfinite(sigma) && sigma > 0 ? 1.0 / std::sqrt(1.0 + sigma * sigma) : 1.0;
    if (tae && tae->has_decoder() && !lf.pixel_space && tae->config().latent_channels == lf.channels) {
        const Tensor x0 = denoised && denoised->defined() ? *denoised : latents * (float)s;
        return tensor_to_image(tae->decode(x0.dim() == 3 ? x0.unsqueeze(0) : x0.select(0, 0).unsqueeze(0)));
    }
    if (denoised && denoised->defined()) return map_latents(*denoised, lf, target_side, 1.0f);
    return map_latents(latents, lf, target_side, (float)s);
}

}  // namespace nuance::server
