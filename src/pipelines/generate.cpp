#include "pipelines/generate.h"

#include "backends/cpu/dnnl_cache.h"

#include "core/allocator.h"

#include <chrono>
#include <cstdint>
#include <cmath>

#include "io/json_field.h"
#include "io/weights.h"
#include "pipelines/finite_check.h"
#include "text/prompt_check.h"
#include "ops/ops.h"
#include "pipelines/pixel_space.h"
#include "samplers/guidance.h"
#include "samplers/registry.h"

namespace nuance {

namespace {

struct ResolvedSampler {
    const SamplerInfo* info = nullptr;
    ScheduleType schedule = ScheduleType::Normal;
};

ResolvedSampler resolve_sampler(const GenerateParams& p) {
    ResolvedSampler r;
    const SamplerSpec spec = parse_sampler_spec(p.sampler);
    r.info = spec.sampler;
    // Custom sigmas replace the schedule; an explicit --scheduler wins; else an old-style "DPM++ 2M Karras" name;
    // else the sampler's default.
    if (!p.sigmas.empty()) {
        const ScheduleType t = p.scheduler.empty() ? ScheduleType::Custom : parse_schedule_type(p.scheduler);
        NUANCE_CHECK(t == ScheduleType::Custom || t == ScheduleType::Normal, "custom sigmas replace the schedule; "
                     "drop scheduler '", p.scheduler, "' or the sigma list");
        r.schedule = ScheduleType::Custom;
    } else if (!p.scheduler.empty() && p.scheduler != "auto" && p.scheduler != "automatic")
        r.schedule = parse_schedule_type(p.scheduler);
    else if (spec.schedule)
        r.schedule = *spec.schedule;
    else
        r.schedule = r.info->schedules.empty() ? ScheduleType::Normal : r.info->schedules.front();
    NUANCE_CHECK(sampler_supports(*r.info, r.schedule), "sampler '", r.info->name, "' does not support the '",
                 schedule_type_name(r.schedule), "' schedule");
    return r;
}

NoiseSchedule noise_schedule_for(const StableDiffusionModel& m) {
    NoiseScheduleConfig c;
    // The scheduler config may be set in code or come from a request: wrong types are named errors, not nlohmann's.
    const auto& j = m.scheduler_config;
    constexpr std::string_view where = "scheduler_config";
    c.beta_start = json_field(j, "beta_start", c.beta_start, where);
    c.beta_end = json_field(j, "beta_end", c.beta_end, where);
    c.num_train_timesteps = json_field(j, "num_train_timesteps", c.num_train_timesteps, where);
    if (json_field<std::string>(j, "beta_schedule", "scaled_linear", where) == "linear")
        c.beta_schedule = BetaSchedule::Linear;
    if (json_field(j, "rescale_betas_zero_snr", false, where)) c.rescale_zero_snr = true;
    return NoiseSchedule(c);
}

// The latent the VAE encoder gives for an init image, sized to the output.
Tensor encode_init_image(const StableDiffusionModel& m, const Image& img, int w, int h, const VaeTiling& tiling,
                         Rng& rng) {
    if (m.pixel_space()) return pixel_space_encode(m, img, w, h);  // no VAE: no encoder draw either
    const Image sized = (img.width == w && img.height == h) ? img : resize_image(img, w, h);
    const Tensor x = image_to_tensor(sized);  // [1, 3, H, W] in [-1, 1]
    const DiagonalGaussian post = vae_encode_tiled(*m.vae, x, tiling);  // plain encode unless tiling is on
    const Tensor eps = rng.randn(post.mean.shape());  // diffusers: latent_dist.sample(generator) draws first
    return m.vae->to_latents(post.sample(eps));
}

std::string format_float(float v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

}  // namespace

void validate_params(const StableDiffusionModel& m, const GenerateParams& p) {
    const int64_t f = m.vae_scale();
    NUANCE_CHECK(p.width > 0 && p.height > 0 && p.width % f == 0 && p.height % f == 0, "size ", p.width, "x",
                 p.height, " is not a positive multiple of ", f);
    NUANCE_CHECK(p.width <= 8192 && p.height <= 8192, "size ", p.width, "x", p.height, " is larger than 8192x8192");
    NUANCE_CHECK(p.steps >= 1 && p.steps <= 1000, "steps must be in 1..1000, got ", p.steps);
    NUANCE_CHECK(std::isfinite(p.cfg_scale) && p.cfg_scale >= 0 && p.cfg_scale <= 100, "cfg scale must be in 0..100, got ",
                 p.cfg_scale);
    NUANCE_CHECK(p.batch_count >= 1 && p.batch_count <= 10000, "batch count must be in 1..10000, got ", p.batch_count);
    NUANCE_CHECK(p.seed >= 0 && p.seed <= INT64_MAX - (p.batch_count - 1), "seed must be in 0..",
                 INT64_MAX - (p.batch_count - 1), " (seed + batch count - 1 must fit in 64 bits), got ", p.seed);
    NUANCE_CHECK(std::isfinite(p.eta) && p.eta <= 100, "eta must be a finite number <= 100 (< 0: the sampler's ",
                 "default), got ", p.eta);
    NUANCE_CHECK(std::isfinite(p.strength), "strength must be in (0, 1], got ", p.strength);
    check_prompt_text(p.prompt, "prompt");
    check_prompt_text(p.negative_prompt, "negative prompt");
    NUANCE_CHECK(p.clip_skip >= 0 && p.clip_skip < m.te1.model->config().layers, "clip skip must be in 0..",
                 m.te1.model->config().layers - 1, ", got ", p.clip_skip);
    NUANCE_CHECK(!p.init_image || (p.strength > 0 && p.strength <= 1), "strength must be in (0, 1], got ", p.strength);
    NUANCE_CHECK(!p.init_image || (p.init_image->width > 0 && p.init_image->height > 0), "init image is empty");
    if (p.vae_tiling.enabled) validate_vae_tiling(p.vae_tiling, f);
    NUANCE_CHECK(std::isfinite(p.guidance_rescale) && p.guidance_rescale >= 0 && p.guidance_rescale <= 1,
                 "guidance rescale must be in [0, 1], got ", p.guidance_rescale);
    if (!p.sigmas.empty()) {
        validate_custom_sigmas(p.sigmas);
        NUANCE_CHECK(p.steps == (int)p.sigmas.size() - 1, "the sigma list has ", p.sigmas.size(), " values (",
                     p.sigmas.size() - 1, " steps) but steps is ", p.steps);
    }
    resolve_sampler(p);
}

std::string a1111_infotext(const StableDiffusionModel& m, const GenerateParams& p, int64_t seed,
                           const std::string& model_hash) {
    const ResolvedSampler r = resolve_sampler(p);
    std::string s = p.prompt;
    if (!p.negative_prompt.empty()) s += "\nNegative prompt: " + p.negative_prompt;
    s += str("\nSteps: ", p.steps, ", Sampler: ", r.info->display_name, ", Schedule type: ",
             schedule_type_display_name(r.schedule), ", CFG scale: ", format_float(p.cfg_scale), ", Seed: ", seed,
             ", Size: ", p.width, "x", p.height);
    if (!model_hash.empty()) s += ", Model hash: " + model_hash.substr(0, 10);
    s += ", Model: " + m.name;
    if (p.init_image) s += ", Denoising strength: " + format_float(p.strength);
    const int clip_skip = p.clip_skip > 0 ? p.clip_skip : m.default_clip_skip;
    if (clip_skip > 1 && m.family == SDFamily::SD1) s += str(", Clip skip: ", clip_skip);
    if (p.eta >= 0) s += ", Eta: " + format_float(p.eta);
    if (p.rng == RngKind::Cpu) s += ", RNG: CPU";
    s += ", Version: nuance 0.1.0";
    return s;
}

std::vector<GeneratedImage> generate(const StableDiffusionModel& m, const GenerateParams& p) {
    validate_params(m, p);
    const ResolvedSampler rs = resolve_sampler(p);
    const NoiseSchedule ns = noise_schedule_for(m);
    std::optional<Spacing> spacing;
    std::optional<int> offset;
    // A diffusers folder's scheduler config decides the spacing (diffusers parity, e.g. SDXL's "leading"); single
    // files have none and get the sampler's own default (k-diffusion / A1111 style).
    const std::string spacing_name = json_field<std::string>(m.scheduler_config, "timestep_spacing", "", "scheduler_config");
    if (!spacing_name.empty()) {
        spacing = parse_spacing(spacing_name);
        offset = json_field(m.scheduler_config, "steps_offset", 0, "scheduler_config");
    }
    const Schedule full = make_sampler_schedule(*rs.info, ns, p.steps,
                                                schedule_for_model(rs.schedule, m.family == SDFamily::SDXL), spacing,
                                                offset, p.sigmas);

    ConditioningOptions co;
    co.syntax = p.syntax;
    co.clip_skip = p.clip_skip;
    co.zero_empty = m.family == SDFamily::SDXL;
    const bool use_cfg = p.cfg_scale != 1.0f;
    const std::string weights_hint = "the model weights contain NaN/Inf?";
    auto check_cond = [&](const Conditioning& c, const char* what) {
        check_finite(c.context, [&] { return str("the text encoder output for the ", what); }, weights_hint);
        if (c.pooled.defined())
            check_finite(c.pooled, [&] { return str("the pooled text embedding of the ", what); }, weights_hint);
    };
    Conditioning cond = encode_prompt(m, p.prompt, co);
    check_cond(cond, "prompt");
    Conditioning uncond;
    if (use_cfg) {
        uncond = encode_prompt(m, p.negative_prompt, co);
        check_cond(uncond, "negative prompt");
        match_chunk_counts(m, cond, uncond, co);
    }
    const int64_t C = m.latent_channels(), h = p.height / m.vae_scale(), w = p.width / m.vae_scale();
    const Tensor context = use_cfg ? cat({uncond.context, cond.context}, 0) : cond.context;
    UNetExtra extra;
    if (m.family == SDFamily::SDXL) {
        const int64_t B = use_cfg ? 2 : 1;
        extra.text_embeds = use_cfg ? cat({uncond.pooled, cond.pooled}, 0) : cond.pooled;
        std::vector<float> ids;
        for (int64_t b = 0; b < B; ++b)
            for (float v : {(float)p.height, (float)p.width, 0.0f, 0.0f, (float)p.height, (float)p.width}) ids.push_back(v);
        extra.time_ids = Tensor::from_vector(ids, {B, 6});
    }
    const float cfg = p.cfg_scale;
    ModelFn model = [&](const Tensor& x_in, double t) {
        const Tensor ts = Tensor::scalar((float)t);
        if (!use_cfg) return m.unet->forward(x_in, ts, context, extra);
        const Tensor out = m.unet->forward(cat({x_in, x_in}, 0), ts, context, extra);
        const Tensor u = out.select(0, 0).unsqueeze(0), c = out.select(0, 1).unsqueeze(0);
        const Tensor g = u + (c - u) * cfg;  // eps_u + s (eps_c - eps_u)
        return p.guidance_rescale > 0 ? rescale_noise_cfg(g, c, p.guidance_rescale) : g;
    };
    const std::string hash = m.file_hash();

    std::vector<GeneratedImage> out;
    const auto t0 = std::chrono::steady_clock::now();
    for (int b = 0; b < p.batch_count; ++b) {
        const int64_t seed = p.seed + b;
        auto rng = make_rng(p.rng, (uint64_t)seed);
        Schedule sched = full;
        Tensor x;
        if (p.init_image) {
            const Tensor init = encode_init_image(m, *p.init_image, p.width, p.height, p.vae_tiling, *rng);
            check_finite(init, [] { return std::string("the VAE encoding of the init image"); },
                         "the VAE weights contain NaN/Inf?");
            const int init_steps = std::min(p.steps, (int)((double)p.steps * p.strength));
            const int start = std::max(p.steps - init_steps, 0);
            NUANCE_CHECK(start < p.steps, "strength ", p.strength, " leaves no steps to run");
            sched = slice_schedule(full, start);
            const Tensor noise = p.initial_noise.defined() ? p.initial_noise : rng->randn({1, C, h, w});
            x = init + noise * (float)sched.sigmas.front();
        } else {
            const Tensor noise = p.initial_noise.defined() ? p.initial_noise : rng->randn({1, C, h, w});
            NUANCE_CHECK(noise.shape() == (Shape{1, C, h, w}), "initial noise ", noise.shape(), " for latents [1, ", C,
                         ", ", h, ", ", w, "]");
            x = noise * (float)sched.init_noise_sigma;
        }
        Denoiser den(model, parse_prediction(m.prediction), ns);
        den.set_schedule(sched);
        SamplerOptions so;
        so.rng = rng.get();
        if (p.eta >= 0) so.eta = p.eta;
        so.should_cancel = p.cancelled;
        so.callback = [&](int step, int total, const Tensor& xs, const Tensor& denoised) {
            // One pass over the (small) latents per step: NaN weights fail at the first step, not as a black PNG.
            auto at = [&] {
                return str(" at step ", step + 1, " of ", total, " (sigma ", format_float((float)sched.sigmas[(size_t)step]),
                           p.batch_count > 1 ? str(", image ", b + 1, " of ", p.batch_count) : std::string(), ")");
            };
            check_finite(denoised, [&] { return "the UNet output" + at(); }, weights_hint);
            check_finite(xs, [&] { return "the sampler's latents" + at(); },
                         "the sampler or its settings (eta, sigmas) produced NaN/Inf");
            if (!p.on_progress) return;
            GenerateProgress pr;
            pr.step = step + 1;
            pr.total = total;
            pr.image = b;
            pr.images = p.batch_count;
            pr.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            pr.latents = &xs;
            pr.denoised = &denoised;
            pr.sigma = sched.sigmas[(size_t)step + 1];
            p.on_progress(pr);
        };
        const Tensor latents = run_sampler(*rs.info, den, x, sched, so);
        check_finite(latents, [&] { return str("the sampled latents of image ", b + 1, " (seed ", seed, ")"); },
                     weights_hint);
        GeneratedImage gi;
        gi.seed = seed;
        gi.latents = latents;
        allocator_trim();  // the denoiser's cached activations make room for the decoder's (lower peak RSS)
        // One-shot callers (the CLI) let the UNet's and text encoders' packed weights go before the last decode: the
        // decoder's activations then reuse that memory (at 512² SD1.5 in bf16: 1.7 GB of packed UNet weights).
        if (p.release_weights_before_decode && b + 1 == p.batch_count) cpu::clear_packed_weights();
        gi.decoded = m.pixel_space() ? pixel_space_decode(m, latents)
                                     : vae_decode_tiled(*m.vae, m.vae->from_latents(latents), p.vae_tiling);
        check_finite(gi.decoded, [&] { return str(m.pixel_space() ? "the decoded image " : "the VAE decoder output of image ",
                                                  b + 1, " (seed ", seed, ")"); },
                     m.pixel_space() ? "the model weights contain NaN/Inf?" : "the VAE weights contain NaN/Inf?");
        gi.image = tensor_to_image(gi.decoded);
        gi.infotext = a1111_infotext(m, p, seed, hash);
        if (p.on_image) p.on_image(gi);
        out.push_back(std::move(gi));
        allocator_trim();
    }
    return out;
}

}  // namespace nuance
