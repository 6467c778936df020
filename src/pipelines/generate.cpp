#include "pipelines/generate.h"

#include "backends/backend.h"

#include "core/allocator.h"

#include <chrono>
#include <cstdint>
#include <cmath>

#include "adapters/lora_library.h"
#include "io/json_field.h"
#include "io/weights.h"
#include "models/taesd/taesd.h"
#include "pipelines/finite_check.h"
#include "pipelines/inpaint.h"
#include "text/prompt_check.h"
#include "ops/ops.h"
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

// The sampling schedule from the model's objective. VP: the sampler's discretisation of the training schedule
// (diffusers parity for spacing/steps_offset from a scheduler config). Flow: FlowMatchEulerDiscrete with the model's
// static shift (SD3) or the dynamic shift of this image's token count (Flux), or the user's sigmas verbatim.
Schedule schedule_for(const Objective& obj, const ResolvedSampler& rs, const GenerateParams& p, int64_t h, int64_t w) {
    if (!obj.is_flow())
        return make_sampler_schedule(*rs.info, NoiseSchedule(obj.noise), p.steps,
                                     schedule_for_model(rs.schedule, obj.sdxl_tables), obj.spacing, obj.steps_offset,
                                     p.sigmas);
    const int T = obj.noise.num_train_timesteps;
    if (!p.sigmas.empty()) {
        Schedule s;
        for (size_t i = 0; i < p.sigmas.size(); ++i) {
            NUANCE_CHECK(p.sigmas[i] <= 1.0, "a flow-matching model takes sigmas in [0, 1], got ", p.sigmas[i],
                         " at position ", i);
            s.sigmas.push_back(p.sigmas[i]);
            if (i + 1 < p.sigmas.size()) s.timesteps.push_back(p.sigmas[i] * obj.flow_timestep_scale);
        }
        s.flow = true;
        return s;
    }
    NUANCE_CHECK(rs.schedule == ScheduleType::Normal, "schedule '", schedule_type_name(rs.schedule), "' is for ",
                 "discrete-time models; a flow-matching model uses its own shifted schedule ('normal') or custom sigmas");
    FlowScheduleConfig fc;
    fc.steps = p.steps;
    fc.num_train_timesteps = T;
    fc.shift = obj.flow.shift;
    fc.dynamic = obj.flow.dynamic;
    if (fc.dynamic) {
        const int64_t tps = std::max<int64_t>(obj.flow.tokens_per_side, 1);
        fc.mu = flux_mu((h / tps) * (w / tps), obj.flow.base_seq_len, obj.flow.max_seq_len, obj.flow.base_shift,
                        obj.flow.max_shift);
    }
    if (obj.flow.linspace_sigmas) fc.custom_sigmas = np_linspace(1.0, 1.0 / p.steps, p.steps);
    Schedule s = make_flow_schedule(fc);
    // The schedule pairs each sigma with diffusers' timestep sigma * num_train_timesteps, and the Denoiser answers from
    // that table; the network takes sigma * flow_timestep_scale.
    if (obj.flow_timestep_scale != (double)T)
        for (double& t : s.timesteps) t *= obj.flow_timestep_scale / T;
    return s;
}

// The two sides of the guidance for one side's text.
ConditioningRequest request_for(const GenerateParams& p, bool negative) {
    ConditioningRequest r;
    r.text = strip_lora_tags(negative ? p.negative_prompt : p.prompt);  // A1111: extra-network tags are not text
    r.negative = negative;
    r.syntax = p.syntax;
    r.clip_skip = p.clip_skip;
    r.class_label = p.class_label;
    r.slg = p.slg;
    r.embeddings = p.embeddings;
    return r;
}

bool two_passes(GuidanceKind k, float cfg_scale) {
    return (k == GuidanceKind::ClassifierFree || k == GuidanceKind::ClassConditional) && cfg_scale != 1.0f;
}

std::string format_float(float v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

}  // namespace

void validate_params(const DiffusionModel& m, const GenerateParams& p) {
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
    NUANCE_CHECK(p.clip_skip >= 0, "clip skip must be >= 0, got ", p.clip_skip);
    NUANCE_CHECK(p.class_label >= -1, "class label must be >= 0 (or -1: the model's default), got ", p.class_label);
    m.validate_request(request_for(p, false));
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
    NUANCE_CHECK(p.control.size() <= 8, p.control.size(), " ControlNet units (at most 8)");
    for (size_t i = 0; i < p.control.size(); ++i) {
        const std::string what = str("ControlNet ", i, p.control[i].name.empty() ? "" : " '" + p.control[i].name + "'");
        validate_control_unit(p.control[i], what);
        m.validate_control_net(*p.control[i].net, what);
    }
    resolve_sampler(p);
    if (p.taesd) {
        NUANCE_CHECK(!m.latent_format().pixel_space, m.family_name(), " model '", m.name, "' works in pixel space: ",
                     "it has no latents for ", p.taesd->describe());
        check_tae_matches(*p.taesd, m.latent_format().channels, str(m.family_name(), " model '", m.name, "'"));
        NUANCE_CHECK(!p.taesd_decode || p.taesd->has_decoder(), p.taesd->describe(), " has no decoder weights");
    }
    NUANCE_CHECK(!p.taesd_decode || p.taesd, "taesd decode needs a tiny autoencoder");
    if (p.init_latents.defined()) {
        const LatentFormat lf = m.latent_format();
        const Shape want{1, lf.channels, p.height / lf.downscale, p.width / lf.downscale};
        NUANCE_CHECK(p.init_latents.shape() == want, "init latents ", p.init_latents.shape(), " for a ", p.width, "x",
                     p.height, " image: expected ", want);
        NUANCE_CHECK(p.strength > 0 && p.strength <= 1, "strength must be in (0, 1], got ", p.strength);
    }
    if (p.hires.enabled) {
        hires_target(p.hires, p.width, p.height, f);
        NUANCE_CHECK(!p.init_image && !p.init_latents.defined(), "hires fix is for txt2img: drop the init image or hires");
        NUANCE_CHECK(p.sigmas.empty() || p.hires.steps == 0 || p.hires.steps == p.steps, "hires steps ", p.hires.steps,
                     " differ from the ", p.steps, " steps of the custom sigmas: leave hires steps at 0");
    }
}

std::string a1111_infotext(const DiffusionModel& m, const GenerateParams& p, int64_t seed,
                           const std::string& model_hash) {
    const ResolvedSampler r = resolve_sampler(p);
    std::string s = p.prompt;
    if (!p.negative_prompt.empty()) s += "\nNegative prompt: " + p.negative_prompt;
    s += str("\nSteps: ", p.steps, ", Sampler: ", r.info->display_name, ", Schedule type: ",
             schedule_type_display_name(r.schedule));
    // Distilled guidance is a model input (Forge writes "Distilled CFG Scale"); CFG is then 1 (one pass).
    switch (m.guidance()) {
        case GuidanceKind::Distilled: s += ", CFG scale: 1, Distilled CFG Scale: " + format_float(p.cfg_scale); break;
        case GuidanceKind::None: s += ", CFG scale: 1"; break;
        default: s += ", CFG scale: " + format_float(p.cfg_scale);
    }
    s += str(", Seed: ", seed, ", Size: ", p.width, "x", p.height);
    if (!model_hash.empty()) s += ", Model hash: " + model_hash.substr(0, 10);
    s += ", Model: " + m.name;
    if (p.init_image) s += ", Denoising strength: " + format_float(p.strength);
    if (p.hires.enabled) s += hires_infotext(p.hires);
    s += m.infotext_fields(request_for(p, false));
    for (size_t i = 0; i < p.control.size(); ++i) {  // sd-webui-controlnet's infotext entry (its field names)
        const ControlUnit& u = p.control[i];
        s += str(", ControlNet ", i, ": \"Module: ", u.module.empty() ? "none" : u.module, ", Model: ", u.name,
                 ", Weight: ", format_float(u.weight), ", Guidance Start: ", format_float(u.start),
                 ", Guidance End: ", format_float(u.end), ", Control Mode: ", control_mode_label(u.mode), "\"");
    }
    if (p.eta >= 0) s += ", Eta: " + format_float(p.eta);
    if (p.rng == RngKind::Cpu) s += ", RNG: CPU";
    s += p.extra_infotext;
    s += ", Version: nuance 0.1.0";
    return s;
}

std::vector<GeneratedImage> generate(const DiffusionModel& m, const GenerateParams& p) {
    // Masks, outpainting and inpainting networks go through the pixel side first (pipelines/inpaint.h), which comes
    // back here with the working image and mask.
    if (!p.inpaint.prepared && (p.mask || p.inpaint.outpainting() || m.inpaint_channels() > 0))
        return generate_inpaint(m, p);
    validate_params(m, p);
    if (p.hires.enabled) return generate_hires(m, p);
    const ResolvedSampler rs = resolve_sampler(p);
    const Objective obj = m.objective();
    const LatentFormat lf = m.latent_format();
    const int64_t C = lf.channels, h = p.height / lf.downscale, w = p.width / lf.downscale;
    const Schedule full = schedule_for(obj, rs, p, h, w);

    const GuidanceKind kind = m.guidance();
    const bool use_cfg = two_passes(kind, p.cfg_scale);
    const std::string weights_hint = "the model weights contain NaN/Inf?";
    auto check_cond = [&](const Conditioning& c, const char* what) {
        for (const auto& kv : c.tensors) {
            const std::string& name = kv.first;  // not a structured binding: the lambda below captures it (clang 14)
            const Tensor& t = kv.second;
            if (!t.defined() || !dtype_is_float(t.dtype()))
                continue;  // class labels, token ids
            // SD's names keep their established wording; other families' tensors are named as they are.
            check_finite(t, [&] {
                return name == "context" ? str("the text encoder output for the ", what)
                       : name == "pooled" ? str("the pooled text embedding of the ", what)
                                          : str("the conditioning '", name, "' of the ", what);
            }, weights_hint);
        }
    };
    const ConditioningRequest cond_req = request_for(p, false);
    Conditioning cond = m.encode(cond_req);
    check_cond(cond, "prompt");
    Conditioning uncond;
    if (use_cfg) {
        uncond = m.encode(request_for(p, true));
        check_cond(uncond, "negative prompt");
        m.match_for_batch({&uncond, &cond}, cond_req);
    }
    const Conditioning batch = use_cfg ? m.batch_conditioning({&uncond, &cond}) : cond;
    if (p.release_text_encoder_weights) m.release_text_encoder_weights();
    StepContext step_ctx;
    ControlStack control;
    if (!p.control.empty()) {
        control = ControlStack::prepare(p.control, p.width, p.height);
        step_ctx.control = &control;
        step_ctx.cfg_rows = use_cfg;
    }
    step_ctx.width = p.width;
    step_ctx.height = p.height;
    step_ctx.guidance = kind == GuidanceKind::Distilled ? p.cfg_scale : 0.0f;
    const float cfg = p.cfg_scale;
    ModelFn model = [&](const Tensor& x_in, double t) {
        if (!use_cfg) return m.predict(x_in, t, batch, step_ctx);
        const Tensor out = m.predict(cat({x_in, x_in}, 0), t, batch, step_ctx);
        const Tensor u = out.select(0, 0).unsqueeze(0), c = out.select(0, 1).unsqueeze(0);
        const Tensor g = m.guide(x_in, t, batch, step_ctx, cond_req, u, c, cfg);  // u + s (c - u) unless the family says otherwise
        return p.guidance_rescale > 0 ? rescale_noise_cfg(g, c, p.guidance_rescale) : g;
    };
    const std::string hash = m.file_hash();

    std::vector<GeneratedImage> out;
    const auto t0 = std::chrono::steady_clock::now();
    for (int b = 0; b < p.batch_count; ++b) {
        const int64_t seed = p.seed + b;
        auto own_rng = make_rng(p.rng, (uint64_t)seed);
        Rng* rng = p.rng_override ? p.rng_override : own_rng.get();
        Schedule sched = full;
        Tensor x;
        std::optional<InpaintSampling> ip;
        if (p.mask) {
            ip.emplace(start_inpaint(m, p, full, *rng));
            sched = ip->schedule;
            x = ip->x;
            step_ctx.concat = ip->concat;
        } else if (p.init_image || p.init_latents.defined()) {
            const Tensor init = p.init_latents.defined() ? p.init_latents
                                                         : m.encode_image(*p.init_image, p.width, p.height, p.vae_tiling, *rng);
            check_finite(init, [] { return std::string("the VAE encoding of the init image"); },
                         "the VAE weights contain NaN/Inf?");
            const int init_steps = std::min(p.steps, (int)((double)p.steps * p.strength));
            const int start = std::max(p.steps - init_steps, 0);
            NUANCE_CHECK(start < p.steps, "strength ", p.strength, " leaves no steps to run");
            sched = slice_schedule(full, start);
            const Tensor noise = p.initial_noise.defined() ? p.initial_noise : rng->randn({1, C, h, w});
            const float s0 = (float)sched.sigmas.front();
            // VE: x = x0 + sigma eps; flow: x = (1 - sigma) x0 + sigma eps (diffusers scale_noise)
            x = full.flow ? init * (1.0f - s0) + noise * s0 : init + noise * s0;
        } else {
            const Tensor noise = p.initial_noise.defined() ? p.initial_noise : rng->randn({1, C, h, w});
            NUANCE_CHECK(noise.shape() == (Shape{1, C, h, w}), "initial noise ", noise.shape(), " for latents [1, ", C,
                         ", ", h, ", ", w, "]");
            x = noise * (float)sched.init_noise_sigma;
        }
        Denoiser den = obj.is_flow() ? Denoiser::flow(model, obj.flow_timestep_scale)
                                     : Denoiser(model, obj.prediction, NoiseSchedule(obj.noise));
        den.set_schedule(sched);
        std::optional<Denoiser> blended;  // masked-latent blending of ordinary models (pipelines/inpaint.h)
        if (ip && ip->blends()) blended.emplace(ip->wrap(den));
        SamplerOptions so;
        so.rng = rng;
        if (p.eta >= 0) so.eta = p.eta;
        so.should_cancel = p.cancelled;
        step_ctx.step = 0;  // ControlNet start/end and SD3 skip layers count the steps this image runs
        step_ctx.steps = (int)sched.sigmas.size() - 1;
        so.callback = [&](int step, int total, const Tensor& xs_raw, const Tensor& denoised) {
            const Tensor xs = ip ? ip->shown(xs_raw, step, total) : xs_raw;
            step_ctx.step = step + 1;
            allocator_trim_stale();  // the cache keeps one step's working set (core/allocator.h)
            // One pass over the (small) latents per step: NaN weights fail at the first step, not as a black PNG.
            auto at = [&] {
                return str(" at step ", step + 1, " of ", total, " (sigma ", format_float((float)sched.sigmas[(size_t)step]),
                           p.batch_count > 1 ? str(", image ", b + 1, " of ", p.batch_count) : std::string(), ")");
            };
            check_finite(denoised, [&] { return "the " + m.network_name() + " output" + at(); }, weights_hint);
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
        Tensor latents = run_sampler(*rs.info, blended ? *blended : den, x, sched, so);
        if (ip) latents = ip->finish(latents);
        check_finite(latents, [&] { return str("the sampled latents of image ", b + 1, " (seed ", seed, ")"); },
                     weights_hint);
        GeneratedImage gi;
        gi.seed = seed;
        gi.latents = latents;
        allocator_trim();  // the denoiser's cached activations make room for the decoder's (lower peak RSS)
        // One-shot callers (the CLI) let the UNet's and text encoders' packed weights (and file-mapped pages) go before
        // the last decode: the decoder's activations then reuse that memory (at 512² SD1.5 in bf16: 1.7 GB of packed
        // UNet weights; Flux-dev from a Q4_0 GGUF: 6.8 GB of blocks).
        if (p.release_weights_before_decode && b + 1 == p.batch_count) {
            clear_packed_weights();
            m.release_weights_except_vae();  // the file-mapped blocks (GGUF, fp8) of the denoiser and encoders too
        }
        if (!p.skip_decode) {
            gi.decoded = p.taesd_decode ? p.taesd->decode(latents) : m.decode(latents, p.vae_tiling);
            check_finite(gi.decoded, [&] { return str(lf.pixel_space ? "the decoded image " : p.taesd_decode
                                                      ? "the tiny autoencoder output of image " : "the VAE decoder output of image ",
                                                      b + 1, " (seed ", seed, ")"); },
                         lf.pixel_space ? "the model weights contain NaN/Inf?" : "the VAE weights contain NaN/Inf?");
            gi.image = tensor_to_image(gi.decoded);
        }
        gi.infotext = a1111_infotext(m, p, seed, hash);
        if (p.on_image) p.on_image(gi);
        out.push_back(std::move(gi));
        allocator_trim();
    }
    return out;
}

}  // namespace nuance
