#include "pipelines/inpaint.h"

#include <algorithm>
#include <cmath>

#include "core/checked.h"
#include "ops/ops.h"
#include "pipelines/finite_check.h"
#include "pipelines/inpaint_image.h"

namespace nuance {

InpaintFill parse_inpaint_fill(const std::string& name) {
    std::string k;
    for (char c : name) k += (c == '_' || c == ' ') ? '-' : (char)std::tolower((unsigned char)c);
    if (k == "fill" || k == "0") return InpaintFill::Fill;
    if (k == "original" || k == "1") return InpaintFill::Original;
    if (k == "latent-noise" || k == "2") return InpaintFill::LatentNoise;
    if (k == "latent-nothing" || k == "3") return InpaintFill::LatentNothing;
    fail(ErrorCode::InvalidArgument, "unknown inpaint fill '", name.substr(0, 64),
         "' (valid: fill (0), original (1), latent-noise (2), latent-nothing (3))");
}

const char* inpaint_fill_name(InpaintFill f) {
    switch (f) {
        case InpaintFill::Fill: return "fill";
        case InpaintFill::Original: return "original";
        case InpaintFill::LatentNoise: return "latent-noise";
        case InpaintFill::LatentNothing: return "latent-nothing";
    }
    return "?";
}

int round_up_to(int v, int factor) { return v <= 0 ? 0 : (v + factor - 1) / factor * factor; }

Tensor inpaint_mask_condition(const Image& mask) {
    NUANCE_CHECK(mask.channels == 1 && mask.width > 0 && mask.height > 0 &&
                     mask.pixels.size() == (size_t)mask.width * mask.height,
                 "inpaint mask: expected a non-empty 1-channel image, got ", mask.width, "x", mask.height, "x",
                 mask.channels);
    std::vector<float> v(mask.pixels.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = mask.pixels[i] / 255.0f >= 0.5f ? 1.0f : 0.0f;
    return Tensor::from_vector(v, {1, 1, mask.height, mask.width});
}

Tensor inpaint_nearest_downsample(const Tensor& m, int64_t h, int64_t w) {
    NUANCE_CHECK(m.dim() == 4 && m.size(0) == 1 && m.size(1) == 1 && h > 0 && w > 0, "mask ", m.shape(),
                 " to ", h, "x", w);
    const int64_t H = m.size(2), W = m.size(3);
    const Tensor c = m.contiguous();
    const float* src = c.data<float>();
    std::vector<float> v((size_t)(h * w));
    for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) v[(size_t)(i * w + j)] = src[(i * H / h) * W + (j * W / w)];
    return Tensor::from_vector(v, {1, 1, h, w});
}

Tensor InpaintSampling::noised(double sigma) const {
    const float s = (float)sigma;
    return flow ? image_latents * (1.0f - s) + noise * s : image_latents + noise * s;
}

Tensor InpaintSampling::mix(const Tensor& a, const Tensor& b) const {
    return b * (1.0f - blend_mask) + blend_mask * a;  // diffusers: (1 - mask) * init_latents_proper + mask * latents
}

Denoiser InpaintSampling::wrap(Denoiser& inner) const {
    const double first = schedule.sigmas.front();
    return Denoiser::direct(
        [this, &inner, first](const Tensor& x, double sigma) {
            // diffusers blends after each step; at strength 1 the first call sees the pure noise everywhere.
            const bool skip = pure_noise_start && sigma >= first;
            const Tensor d = inner(skip ? x : mix(x, noised(sigma)), sigma);
            return mix(d, image_latents);
        },
        flow);
}

Tensor InpaintSampling::shown(const Tensor& x, int step, int total) const {
    if (!blends()) return x;
    if (step + 1 < total) return mix(x, noised(schedule.sigmas[(size_t)step + 1]));
    const double last = schedule.sigmas.back();  // the last step blends with the image latents themselves
    return mix(x, flow || last == 0 ? image_latents : image_latents * (float)std::sqrt(last * last + 1.0));
}

Tensor InpaintSampling::finish(const Tensor& latents) const { return blends() ? mix(latents, image_latents) : latents; }

InpaintSampling start_inpaint(const DiffusionModel& m, const GenerateParams& p, const Schedule& full, Rng& rng) {
    NUANCE_CHECK(p.init_image && p.mask, "start_inpaint: the working image and mask are missing");
    const LatentFormat lf = m.latent_format();
    const int64_t C = lf.channels, h = p.height / lf.downscale, w = p.width / lf.downscale;
    InpaintSampling s;
    s.flow = full.flow;
    const Image mask = resize_mask(p.mask->channels == 1 ? *p.mask : mask_from_image(*p.mask, MaskConvention::White, "mask"),
                                   p.width, p.height);
    const Tensor cond_mask = inpaint_mask_condition(mask);              // [1, 1, H, W]
    const Tensor mask_latents = inpaint_nearest_downsample(cond_mask, h, w);  // [1, 1, h, w]
    const bool ninech = m.inpaint_channels() > 0;
    NUANCE_CHECK(!ninech || m.inpaint_channels() == C + 1, "inpainting network takes ", m.inpaint_channels(),
                 " extra channels; expected ", C + 1, " (mask + latents)");

    // strength as img2img: the tail of the schedule; strength 1 starts from pure noise (diffusers is_strength_max).
    const int init_steps = std::min(p.steps, (int)((double)p.steps * p.strength));
    const int start = std::max(p.steps - init_steps, 0);
    NUANCE_CHECK(start < p.steps, "strength ", p.strength, " leaves no steps to run");
    s.schedule = start == 0 ? full : slice_schedule(full, start);
    s.pure_noise_start = start == 0;

    // diffusers' order of draws: image latents, noise, masked-image latents.
    const Image sized = (p.init_image->width == p.width && p.init_image->height == p.height)
                            ? *p.init_image
                            : resize_image(*p.init_image, p.width, p.height);
    const Tensor image = image_to_tensor(sized);  // [1, 3, H, W]
    if (!ninech || !s.pure_noise_start) {
        s.image_latents = m.encode_image(sized, p.width, p.height, p.vae_tiling, rng);
        check_finite(s.image_latents, [] { return std::string("the VAE encoding of the init image"); },
                     "the VAE weights contain NaN/Inf?");
        if (p.inpaint.fill == InpaintFill::LatentNoise)  // A1111: masked latents replaced by seeded noise
            s.image_latents = s.image_latents * (1.0f - mask_latents) + rng.randn({1, C, h, w}) * mask_latents;
        else if (p.inpaint.fill == InpaintFill::LatentNothing)
            s.image_latents = s.image_latents * (1.0f - mask_latents);
    }
    s.noise = p.initial_noise.defined() ? p.initial_noise : rng.randn({1, C, h, w});
    NUANCE_CHECK(s.noise.shape() == (Shape{1, C, h, w}), "initial noise ", s.noise.shape(), " for latents [1, ", C,
                 ", ", h, ", ", w, "]");
    const float s0 = (float)s.schedule.sigmas.front();
    if (s.pure_noise_start)
        s.x = s.noise * (float)s.schedule.init_noise_sigma;
    else
        s.x = s.flow ? s.image_latents * (1.0f - s0) + s.noise * s0 : s.image_latents + s.noise * s0;
    if (ninech) {
        const Tensor masked = image * (1.0f - cond_mask);  // the area to repaint set to 0 (mid-grey)
        const Tensor masked_latents = m.encode_pixels(masked, p.vae_tiling, rng);
        s.concat = cat({mask_latents, masked_latents}, 1);
    } else {
        s.blend_mask = mask_latents;
    }
    return s;
}

}  // namespace nuance
