// StableDiffusionModel as a DiffusionModel: latent format, objective, conditioning, predict, VAE (SD1.x/2.x/XL).
// Shape letters: B batch (uncond + cond rows), C latent channels, h/w latent size, H/W image size, L tokens.
#include <algorithm>
#include <cmath>

#include "io/json_field.h"
#include "io/weights.h"
#include "models/controlnet/control_stack.h"
#include "models/controlnet/controlnet_load.h"
#include "models/model_defaults.h"
#include "models/sd/pixel_space.h"
#include "models/sd/sd_conditioning.h"
#include "models/sd/sd_family.h"
#include "models/sd/stable_diffusion.h"
#include "ops/ops.h"
#include "samplers/schedule.h"

namespace nuance {

namespace {

ConditioningOptions options_of(const StableDiffusionModel& m, const ConditioningRequest& r) {
    ConditioningOptions co;
    co.syntax = r.syntax;
    co.clip_skip = r.clip_skip;
    co.zero_empty = m.family == SDFamily::SDXL;  // diffusers force_zeros_for_empty_prompt
    co.embeddings = r.embeddings.get();
    return co;
}

}  // namespace

std::string StableDiffusionModel::variant() const {
    switch (family) {
        case SDFamily::SD1: return pixel_space() ? "sd1-pixel" : "sd15";
        case SDFamily::SD2: return prediction == "v_prediction" ? "sd2-v" : "sd2";
        case SDFamily::SDXL: return "sdxl";
    }
    return "?";
}

std::vector<std::pair<std::string, Module*>> StableDiffusionModel::modules() {
    std::vector<std::pair<std::string, Module*>> out{{"text_encoder", te1.model.get()}};
    if (te2.model) out.push_back({"text_encoder_2", te2.model.get()});
    out.push_back({"unet", unet.get()});
    if (vae) out.push_back({"vae", vae.get()});
    return out;
}

LatentFormat StableDiffusionModel::latent_format() const {
    LatentFormat f;
    if (!vae) {  // pixel space: the image itself
        f.channels = unet->config().in_channels;
        f.downscale = 1;
        f.scaling_factor = 1.0f;
        f.pixel_space = true;
        return f;
    }
    f.channels = vae->config().latent_channels;
    f.downscale = vae->config().downscale();
    f.scaling_factor = vae->scaling_factor();
    f.shift_factor = vae->shift_factor();
    if (f.channels == 4) f.rgb_factors = sd_latent_rgb_factors(family);
    return f;
}

Objective StableDiffusionModel::objective() const {
    Objective o;
    o.prediction = parse_prediction(prediction);
    // The scheduler config may be set in code or come from a request: wrong types are named errors, not nlohmann's.
    const auto& j = scheduler_config;
    constexpr std::string_view where = "scheduler_config";
    NoiseScheduleConfig& c = o.noise;
    c.beta_start = json_field(j, "beta_start", c.beta_start, where);
    c.beta_end = json_field(j, "beta_end", c.beta_end, where);
    c.num_train_timesteps = json_field(j, "num_train_timesteps", c.num_train_timesteps, where);
    if (json_field<std::string>(j, "beta_schedule", "scaled_linear", where) == "linear")
        c.beta_schedule = BetaSchedule::Linear;
    if (json_field(j, "rescale_betas_zero_snr", false, where)) c.rescale_zero_snr = true;
    // A diffusers folder's scheduler config decides the spacing (diffusers parity, e.g. SDXL's "leading"); single
    // files have none and get the sampler's own default (k-diffusion / A1111 style).
    const std::string spacing = json_field<std::string>(j, "timestep_spacing", "", where);
    if (!spacing.empty()) {
        o.spacing = parse_spacing(spacing);
        o.steps_offset = json_field(j, "steps_offset", 0, where);
    }
    o.sdxl_tables = family == SDFamily::SDXL;
    return o;
}

GuidanceKind StableDiffusionModel::guidance() const {
    return unet && unet->config().time_cond_proj_dim > 0 ? GuidanceKind::Distilled : GuidanceKind::ClassifierFree;
}

void StableDiffusionModel::validate_request(const ConditioningRequest& r) const {
    NUANCE_CHECK(r.clip_skip >= 0 && r.clip_skip < te1.model->config().layers, "clip skip must be in 0..",
                 te1.model->config().layers - 1, ", got ", r.clip_skip);
    // --class-label without a prompt would otherwise silently make an unconditional image.
    NUANCE_CHECK(r.class_label < 0, "class label ", r.class_label, ": ", sd_family_name(family),
                 " is conditioned on text, not on a class (--class-label is for class-conditional models such as DiT)");
}

Conditioning StableDiffusionModel::encode(const ConditioningRequest& r) const {
    const SDConditioning c = encode_prompt(*this, r.text, options_of(*this, r));
    Conditioning out;
    out["context"] = c.context;                     // [1, 77k, D]
    if (c.pooled.defined()) out["pooled"] = c.pooled;  // [1, P] (SDXL)
    return out;
}

void StableDiffusionModel::match_for_batch(const std::vector<Conditioning*>& rows,
                                           const ConditioningRequest& like) const {
    // Pads shorter contexts with empty-prompt chunks so the rows share a batch (A1111 does the same).
    int64_t most = 0;
    for (const Conditioning* c : rows) most = std::max(most, c->at("context").size(1));
    Tensor empty;
    for (Conditioning* c : rows) {
        const Tensor ctx = c->at("context");
        if (ctx.size(1) == most) continue;
        if (!empty.defined()) {
            ConditioningRequest e = like;
            e.text.clear();
            empty = encode_prompt(*this, "", options_of(*this, e)).context;
        }
        std::vector<Tensor> parts{ctx};
        for (int64_t n = ctx.size(1); n < most; n += empty.size(1)) parts.push_back(empty);
        (*c)["context"] = cat(parts, 1);
    }
}

int64_t StableDiffusionModel::inpaint_channels() const {
    return pixel_space() ? 0 : unet->config().in_channels - latent_channels();
}

Tensor StableDiffusionModel::predict(const Tensor& x_in, double timestep, const Conditioning& cond,
                                     const StepContext& step) const {
    const int64_t B = x_in.size(0);
    const int64_t extra_ch = inpaint_channels();
    if (extra_ch > 0) {  // inpainting UNet: cat([x, mask, masked-image latents]) on the channels (diffusers)
        NUANCE_CHECK(step.concat.defined() && step.concat.dim() == 4 && step.concat.size(0) == 1 &&
                         step.concat.size(1) == extra_ch && step.concat.size(2) == x_in.size(2) &&
                         step.concat.size(3) == x_in.size(3),
                     "inpainting UNet: expected the mask and masked-image latents as [1, ", extra_ch, ", ",
                     x_in.size(2), ", ", x_in.size(3), "], got ",
                     step.concat.defined() ? shape_str(step.concat.shape()) : std::string("none"));
        std::vector<Tensor> rows(B, step.concat);
        const Tensor x9 = cat({x_in, B == 1 ? step.concat : cat(rows, 0)}, 1);
        StepContext plain = step;
        plain.concat = Tensor();
        return unet_predict(x9, timestep, cond, plain);
    }
    return unet_predict(x_in, timestep, cond, step);
}

Tensor StableDiffusionModel::unet_predict(const Tensor& x_in, double timestep, const Conditioning& cond,
                                          const StepContext& step) const {
    const int64_t B = x_in.size(0);
    UNetExtra extra;
    if (family == SDFamily::SDXL) {  // ADM conditioning: pooled text + (original size, crop, target size) ids
        extra.text_embeds = cond.at("pooled");  // [B, 1280]
        std::vector<float> ids;
        const float H = (float)step.height, W = (float)step.width;
        for (int64_t b = 0; b < B; ++b)
            for (float v : {H, W, 0.0f, 0.0f, H, W}) ids.push_back(v);
        extra.time_ids = Tensor::from_vector(ids, {B, 6});
    }
    const Tensor t = Tensor::scalar((float)timestep);
    if (unet->config().time_cond_proj_dim > 0)  // LCM student: diffusers' pipeline embeds w = guidance_scale - 1
        extra.timestep_cond = guidance_scale_embedding({step.guidance - 1.0f}, unet->config().time_cond_proj_dim);
    if (step.control) {  // ControlNet residuals, summed over the units active at this step
        ControlResiduals r =
            step.control->residuals(x_in, t, cond.at("context"), extra, step.step, step.steps, step.cfg_rows);
        extra.down_residuals = std::move(r.down);
        extra.mid_residual = r.mid;
    }
    const Tensor out = unet->forward(x_in, t, cond.at("context"), extra);  // [B, C, h, w]
    return unet->config().time_cond_proj_dim > 0 ? consistency_output(out, x_in, timestep) : out;
}

Tensor StableDiffusionModel::consistency_output(const Tensor& out, const Tensor& x_in, double timestep) const {
    // diffusers' LCMScheduler: denoised = c_skip(t) x + c_out(t) x0 (timestep_scaling from the scheduler config,
    // default 10; sigma_data 0.5), x the VP sample (= x_in). Returned in the model's own prediction form, so that the
    // Denoiser's x0 of it is that denoised estimate whatever the sampler.
    const Objective o = objective();
    const NoiseSchedule ns(o.noise);
    const auto& ac = ns.alphas_cumprod();
    const double tc = std::clamp(timestep, 0.0, (double)ac.size() - 1);
    const size_t lo = (size_t)std::floor(tc), hi = std::min(lo + 1, ac.size() - 1);
    const double a = ac[lo] + (tc - (double)lo) * ((double)ac[hi] - ac[lo]);
    const float sa = (float)std::sqrt(a), sb = (float)std::sqrt(std::max(1e-12, 1.0 - a));
    const double scaling = json_field(scheduler_config, "timestep_scaling", 10.0, "scheduler_config");
    const double st = timestep * scaling, sd2 = 0.25;
    const float c_skip = (float)(sd2 / (st * st + sd2)), c_out = (float)(st / std::sqrt(st * st + sd2));
    const bool v = o.prediction == Prediction::V;
    const Tensor x0 = v ? x_in * sa - out * sb : (x_in - out * sb) / sa;
    const Tensor f = x_in * c_skip + x0 * c_out;
    return v ? (x_in * sa - f) / sb : (x_in - f * sa) / sb;
}

Tensor StableDiffusionModel::decode(const Tensor& latents, const VaeTiling& tiling) const {
    if (pixel_space()) return pixel_space_decode(*this, latents);
    return vae_decode_tiled(*vae, vae->from_latents(latents), tiling);
}

Tensor StableDiffusionModel::encode_image(const Image& img, int w, int h, const VaeTiling& tiling, Rng& rng) const {
    if (pixel_space()) return pixel_space_encode(*this, img, w, h);  // no VAE: no encoder draw either
    const Image sized = (img.width == w && img.height == h) ? img : resize_image(img, w, h);
    return encode_pixels(image_to_tensor(sized), tiling, rng);  // [1, 3, H, W] in [-1, 1]
}

Tensor StableDiffusionModel::encode_pixels(const Tensor& x, const VaeTiling& tiling, Rng& rng) const {
    NUANCE_CHECK(!pixel_space(), "a pixel-space model has no VAE to encode with");
    NUANCE_CHECK(x.dim() == 4 && x.size(0) == 1 && x.size(1) == 3, "VAE encode: expected an image [1, 3, H, W], got ",
                 shape_str(x.shape()));
    const DiagonalGaussian post = vae_encode_tiled(*vae, x, tiling);  // plain encode unless tiling is on
    const Tensor eps = rng.randn(post.mean.shape());  // diffusers: latent_dist.sample(generator) draws first
    return vae->to_latents(post.sample(eps));
}

std::string StableDiffusionModel::infotext_fields(const ConditioningRequest& r) const {
    const int clip_skip = r.clip_skip > 0 ? r.clip_skip : default_clip_skip;
    return clip_skip > 1 && family == SDFamily::SD1 ? str(", Clip skip: ", clip_skip) : std::string();
}

std::shared_ptr<const ControlNetModel> StableDiffusionModel::load_control_net(const std::string& path,
                                                                              const std::string& what) const {
    ControlNetLoadOptions o;
    o.precision = precision;
    o.base_unet = unet.get();
    o.base_desc = str("model '", name, "' (", variant(), ")");
    o.what = what;
    std::shared_ptr<const ControlNetModel> net = load_controlnet(path, o);
    validate_control_net(*net, str(what, " '", base_name(path), "'"));
    return net;
}

void StableDiffusionModel::validate_control_net(const ControlNetModel& net, const std::string& what) const {
    NUANCE_CHECK(!pixel_space(), what, ": model '", name, "' is a pixel-space model; ControlNets work on latents");
    check_controlnet_fits(net, what, *unet, str("model '", name, "' (", variant(), ")"));
}

GenerationDefaults StableDiffusionModel::generation_defaults() const {
    GenerationDefaults d = sd_family_defaults(family, prediction == "v_prediction");
    if (native_size >= 8 && native_size <= 16384) d.width = d.height = native_size;
    if (is_directory(path)) apply_folder_defaults(path, d);
    return d;
}

}  // namespace nuance
