// Shape letters: B batch, C latent channels, h/w latent size, L prompt tokens, D text width.
#include "train/lcm_distill.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include "autograd/functions.h"
#include "autograd/param_grads.h"
#include "backends/backend.h"
#include "core/error.h"
#include "core/mt19937.h"
#include "dist/comm.h"
#include "io/json_field.h"
#include "io/json_file.h"
#include "io/weights.h"
#include "ops/elementwise.h"
#include "models/sd/stable_diffusion.h"
#include "samplers/denoiser.h"
#include "samplers/schedule.h"
#include "train/checkpoint.h"
#include "train/data_loader.h"
#include "train/data_parallel.h"
#include "train/dataset.h"
#include "train/lora_network.h"
#include "train/lora_train.h"
#include "train/model_graph.h"
#include "train/optim.h"
#include "train/train_arch.h"
#include "train/train_loop.h"
#include "train/train_options.h"

namespace fs = std::filesystem;

namespace nuance {

BoundaryScalings consistency_boundary(double timestep, double timestep_scaling, double sigma_data) {
    const double s = timestep * timestep_scaling, sd2 = sigma_data * sigma_data;
    return {sd2 / (s * s + sd2), s / std::sqrt(s * s + sd2)};
}

DdimSolver::DdimSolver(const NoiseSchedule& schedule, int num_ddim_steps) {
    const int T = schedule.num_train_timesteps();
    NUANCE_CHECK(num_ddim_steps >= 1 && num_ddim_steps <= T, "DDIM solver: ", num_ddim_steps,
                 " steps for a schedule of ", T, " timesteps (expected 1..", T, ")");
    const auto& ac = schedule.alphas_cumprod();
    skip_ = T / num_ddim_steps;
    for (int i = 0; i < num_ddim_steps; ++i) {
        timesteps_.push_back((int64_t)(i + 1) * skip_ - 1);
        ac_prev_.push_back(i == 0 ? ac[0] : ac[(size_t)timesteps_[(size_t)i - 1]]);
    }
}

int64_t DdimSolver::timestep(int index) const {
    NUANCE_CHECK(index >= 0 && index < steps(), "DDIM solver: index ", index, " outside 0..", steps() - 1);
    return timesteps_[(size_t)index];
}

int64_t DdimSolver::prev_timestep(int index) const { return std::max<int64_t>(0, timestep(index) - skip_); }

float DdimSolver::alpha_cumprod_prev(int index) const {
    timestep(index);  // range check
    return ac_prev_[(size_t)index];
}

Tensor DdimSolver::step(const Tensor& x0, const Tensor& eps, const std::vector<int>& index) const {
    const int64_t B = x0.size(0);
    NUANCE_CHECK(x0.dim() == 4 && eps.shape() == x0.shape() && (int64_t)index.size() == B, "DDIM solver: x0 ",
                 x0.shape(), ", eps ", eps.shape(), ", ", index.size(), " indices");
    std::vector<float> a(B), s(B);
    for (int64_t b = 0; b < B; ++b) {
        const float ap = alpha_cumprod_prev(index[(size_t)b]);
        a[(size_t)b] = std::sqrt(ap);
        s[(size_t)b] = std::sqrt(1.0f - ap);
    }
    return x0 * Tensor::from_vector(a, {B, 1, 1, 1}) + eps * Tensor::from_vector(s, {B, 1, 1, 1});
}

void validate_lcm_options(const TrainOptions& o, const LcmOptions& l) {
    NUANCE_CHECK(o.model == "lcm", "train_lcm: --model is '", o.model, "', not lcm");
    validate_train_options(o);
    NUANCE_CHECK(!l.teacher.empty(), "train: --model lcm needs --teacher (a diffusers model folder, e.g. "
                                     "models/nuance-emoji)");
    NUANCE_CHECK(std::isfinite(l.w_min) && std::isfinite(l.w_max) && l.w_min >= 0 && l.w_max <= 100 &&
                     l.w_min <= l.w_max,
                 "train: --w-min/--w-max must satisfy 0 <= w-min <= w-max <= 100, got ", l.w_min, " and ", l.w_max);
    NUANCE_CHECK(l.num_ddim_steps >= 1 && l.num_ddim_steps <= 1000, "train: --num-ddim-steps must be in 1..1000, got ",
                 l.num_ddim_steps);
    NUANCE_CHECK(std::isfinite(l.target_ema) && l.target_ema >= 0 && l.target_ema < 1,
                 "train: --ema-decay must be in [0, 1), got ", l.target_ema);
    NUANCE_CHECK(l.loss == "huber" || l.loss == "l2", "train: --loss must be huber or l2, got '", l.loss, "'");
    NUANCE_CHECK(std::isfinite(l.huber_c) && l.huber_c > 0 && l.huber_c <= 10, "train: --huber-c must be in (0, 10], got ",
                 l.huber_c);
    NUANCE_CHECK(l.w_embedding_dim >= 2 && l.w_embedding_dim <= 4096, "train: --w-embedding-dim must be in 2..4096, got ",
                 l.w_embedding_dim);
    NUANCE_CHECK(l.default_guidance == 0 || (std::isfinite(l.default_guidance) && l.default_guidance >= 1 &&
                                             l.default_guidance <= 101),
                 "train: --lcm-guidance must be 0 (the teacher's default) or in [1, 101], got ", l.default_guidance);
    NUANCE_CHECK(l.lora || !l.lora_w_range, "train: a guidance range for the LoRA needs --lora-rank");
    NUANCE_CHECK(!l.lora_w_range || l.default_guidance == 0, "train: LCM-LoRA takes either --lcm-guidance (one baked "
                 "scale) or --w-min / --w-max (a range, as diffusers' LCM-LoRA script), not both");
    if (l.lora) {
        NUANCE_CHECK(o.lora_rank >= 1 && o.lora_rank <= kMaxLoraRank, "train: --lora-rank must be in 1..", kMaxLoraRank,
                     ", got ", o.lora_rank);
        NUANCE_CHECK(std::isfinite(o.lora_alpha) && o.lora_alpha > 0 && o.lora_alpha <= 1e6,
                     "train: --lora-alpha must be a finite number in (0, 1e6], got ", o.lora_alpha);
        parse_lora_targets(o.lora_targets);
    }
}

namespace {

nlohmann::json lcm_json(const TrainOptions& o, const LcmOptions& l) {
    nlohmann::json j = {{"teacher", l.teacher},       {"w_min", l.w_min},         {"w_max", l.w_max},
                        {"num_ddim_steps", l.num_ddim_steps}, {"ema_decay", l.target_ema}, {"loss", l.loss},
                        {"huber_c", l.huber_c},       {"w_embedding_dim", l.w_embedding_dim},
                        {"guidance", l.default_guidance}};
    if (l.lora) j["lora"] = {{"rank", o.lora_rank}, {"alpha", o.lora_alpha}, {"targets", o.lora_targets}};
    if (l.lora_w_range) j["lora"]["w_range"] = {l.w_min, l.w_max};  // (only when set: older checkpoints resume)
    return j;
}

// Copies `from`'s weights (same names) into `to` as owned F32 tensors; `to`'s extra weights (cond_proj) are zeroed.
void copy_weights(UNet2DConditionModel& from, UNet2DConditionModel& to) {
    std::map<std::string, Param*> src;
    for_each_param(from, [&](const std::string& n, Param& p) { src[n] = &p; });
    for_each_param(to, [&](const std::string& n, Param& p) {
        auto it = src.find(n);
        if (it == src.end()) {
            p.value = Tensor::zeros(p.shape, DType::F32);
            return;
        }
        NUANCE_CHECK(it->second->value.shape() == p.shape, "lcm: teacher weight '", n, "' is ",
                     it->second->value.shape(), ", the student's ", p.shape);
        p.value = it->second->value.f32().contiguous().clone();
    });
}

// Per-row constants as a [B, 1, 1, 1] tensor.
Tensor rows_of(const std::vector<float>& v) { return Tensor::from_vector(v, {(int64_t)v.size(), 1, 1, 1}); }

}  // namespace

struct LcmRun : TrainTask {
    TrainOptions o;
    LcmOptions l;
    std::unique_ptr<StableDiffusionModel> teacher;
    UNetConfig student_cfg;
    std::unique_ptr<UNet2DConditionModel> student, target;
    std::vector<Param*> student_params, target_params;
    std::unique_ptr<Dataset> data;
    std::unique_ptr<DataLoader> loader;
    ParamGrads params;
    std::unique_ptr<AdamW> opt;
    NoiseSchedule schedule;
    std::unique_ptr<DdimSolver> solver;
    bool v_prediction = false;
    Tensor uncond_context;  // [1, L, D]
    std::vector<Tensor> moments_cache;
    int64_t step = 0;
    // LCM-LoRA: the adapters on the teacher's UNet (the student is teacher + adapters), the adapters' own
    // ParamGrads (what checkpoints hold), and the fixed ω of the guidance baked in.
    std::unique_ptr<LoraNetwork> lora;
    ParamGrads trainable;
    float lora_w = 0;
    // Data parallelism (train/data_parallel.h): this rank's rows of every global batch. Every random number of a step
    // is drawn for the whole global batch and sliced, so any number of ranks sees the numbers one process would.
    dist::Range rows;

    LcmRun(const TrainOptions& o_, const LcmOptions& l_) : o(o_), l(l_) {}

    // TrainTask (train/train_loop.h)
    Var loss(const Batch& b, Mt19937& rng) override { return distillation_loss(b, rng); }
    void after_step() override { update_target(); }
    ParamGrads& param_set() override { return params; }
    ParamGrads& replica_set() override { return lora ? trainable : params; }
    AdamW& optimizer() override { return *opt; }
    DataLoader& data_loader() override { return *loader; }
    int64_t& step_counter() override { return step; }

    void build() {
        NUANCE_CHECK_CODE(is_directory(l.teacher), NotFound, "train: --teacher '", l.teacher,
                          "' is not a folder (expected a diffusers model folder such as models/nuance-emoji)");
        NUANCE_CHECK_CODE(fs::exists(l.teacher + "/model_index.json"), NotFound, "train: --teacher '", l.teacher,
                          "' has no model_index.json (expected a diffusers model folder)");
        ModelLoadOptions mo;
        mo.precision = Precision::FP32;
        teacher = std::make_unique<StableDiffusionModel>(load_stable_diffusion(l.teacher, mo));
        NUANCE_CHECK(teacher->vae && !teacher->pixel_space(), "train: --teacher '", l.teacher,
                     "' is a pixel-space model; latent consistency distillation needs a VAE");
        NUANCE_CHECK(teacher->family == SDFamily::SD1 || teacher->family == SDFamily::SD2, "train: --teacher '",
                     l.teacher, "' is ", sd_family_name(teacher->family),
                     "; lcm distils SD1/SD2-architecture UNets (no SDXL micro-conditioning)");
        NUANCE_CHECK(teacher->unet->config().time_cond_proj_dim == 0, "train: --teacher '", l.teacher,
                     "' is already a guidance-conditioned (LCM) student");
        NUANCE_CHECK(teacher->inpaint_channels() == 0, "train: --teacher '", l.teacher, "' is an inpainting model");
        const Objective obj = teacher->objective();
        NUANCE_CHECK(obj.prediction == Prediction::Epsilon || obj.prediction == Prediction::V, "train: --teacher '",
                     l.teacher, "' predicts ", prediction_name(obj.prediction), "; lcm takes epsilon or v_prediction");
        v_prediction = obj.prediction == Prediction::V;
        schedule = NoiseSchedule(obj.noise);
        NUANCE_CHECK(l.num_ddim_steps <= schedule.num_train_timesteps(), "train: --num-ddim-steps ",
                     l.num_ddim_steps, " exceeds the teacher's ", schedule.num_train_timesteps(), " timesteps");
        solver = std::make_unique<DdimSolver>(schedule, l.num_ddim_steps);
        const int64_t f = teacher->vae_scale();
        NUANCE_CHECK(o.resolution % f == 0, "train: --resolution ", o.resolution, " is not a multiple of the ",
                     "teacher's VAE downscale ", f);

        if (l.lora) {
            build_lora();
        } else {
            build_student();
        }
        NoGradGuard ng;
        uncond_context = encode_text({""});
    }

    void build_lora() {
        widen_params_to_f32(*teacher->unet);
        LoraConfig cfg;
        cfg.rank = o.lora_rank;
        cfg.alpha = o.lora_alpha;
        cfg.targets = parse_lora_targets(o.lora_targets);
        lora = std::make_unique<LoraNetwork>(*teacher->unet, nullptr, cfg, mix_seed(o.seed, 21));
        for_each_param(*teacher->unet, [&](const std::string& n, Param& p) {
            if (!p.value.defined()) return;
            params.add("unet." + n, p);
            params.set_trainable(p, false);
        });
        lora->register_params(params);
        lora->register_params(trainable);
        if (l.lora_w_range) return;  // each sample's ω from [w_min, w_max]
        const float g = l.default_guidance > 0 ? l.default_guidance : teacher->generation_defaults().cfg_scale;
        NUANCE_CHECK(std::isfinite(g) && g >= 1, "train: LCM-LoRA bakes a guidance scale >= 1 into the LoRA; the ",
                     "teacher's default is ", g, " (pass --lcm-guidance)");
        lora_w = g - 1.0f;
    }

    void build_student() {
        student_cfg = teacher->unet->config();
        student_cfg.time_cond_proj_dim = l.w_embedding_dim;
        student = std::make_unique<UNet2DConditionModel>(student_cfg);
        target = std::make_unique<UNet2DConditionModel>(student_cfg);
        copy_weights(*teacher->unet, *student);  // cond_proj = 0: the student starts as the teacher
        copy_weights(*teacher->unet, *target);
        for_each_param(*student, [&](const std::string& n, Param& p) {
            params.add("unet." + n, p);
            student_params.push_back(&p);
        });
        for_each_param(*target, [&](const std::string&, Param& p) { target_params.push_back(&p); });
        NUANCE_CHECK(student_params.size() == target_params.size(), "lcm: student and target differ");
    }

    // Captions -> the teacher's text encoder output [B, L, D] (clip skip 1, the SD conditioning).
    Tensor encode_text(const std::vector<std::string>& captions) const {
        const TextEncoderSlot& te = teacher->te1;
        const int L = (int)te.model->config().max_positions;
        std::vector<int64_t> ids;
        for (const auto& c : captions) {
            auto v = te.tokenizer().encode_padded(c, te.pad_id, std::min(L, 77));
            ids.insert(ids.end(), v.begin(), v.end());
        }
        const int64_t B = (int64_t)captions.size();
        return te.model->forward(Tensor::from_ids(ids, {B, (int64_t)ids.size() / B})).last_hidden_state;
    }

    void make_data() {
        NUANCE_CHECK_CODE(!o.data.empty(), InvalidArgument, "train: --data is required (an image folder)");
        NUANCE_CHECK_CODE(is_directory(o.data), NotFound, "train: data folder '", o.data, "' does not exist");
        auto images = make_image_dataset(o, 0.0f);  // the unconditional side comes from the teacher's CFG pass
        const LoaderOptions lo = train_loader_options(o, images.get());
        data = std::move(images);
        loader = std::make_unique<DataLoader>(*data, o.seed, lo);
        moments_cache.assign((size_t)data->size(), Tensor());
    }

    Tensor latents_of(const Batch& b, Mt19937& rng) {
        NoGradGuard ng;
        const int64_t B = (int64_t)b.indices.size();
        std::vector<Tensor> ms;
        for (int64_t i = 0; i < B; ++i) {
            Tensor& m = moments_cache[(size_t)b.indices[(size_t)i]];
            if (!m.defined() || o.random_flip) {
                const Tensor one = teacher->vae->encode_moments(b.images.slice(0, i, i + 1).contiguous()).contiguous();
                if (o.random_flip) {
                    ms.push_back(one);
                    continue;
                }
                m = one;
            }
            ms.push_back(m);
        }
        const DiagonalGaussian post = DiagonalGaussian::from_moments(cat(ms, 0));
        TorchCpuRng normal(rng());
        return teacher->vae->to_latents(post.sample(randn_rows(normal, post.mean.shape())));
    }

    // randn of `shape` with dim 0 the global batch, this rank's rows of it.
    Tensor randn_rows(TorchCpuRng& normal, Shape shape) const {
        shape[0] = o.batch;
        const Tensor full = normal.randn(shape);
        return rows.begin == 0 && rows.end == o.batch ? full : full.slice(0, rows.begin, rows.end).contiguous();
    }

    // (x0, eps) of a raw prediction at per-row sqrt(ᾱ) = a, sqrt(1 - ᾱ) = s.
    std::pair<Tensor, Tensor> x0_eps(const Tensor& out, const Tensor& x, const Tensor& a, const Tensor& s) const {
        if (!v_prediction) return {(x - out * s) / a, out};
        return {x * a - out * s, out * a + x * s};
    }

    // b: this rank's rows of a global batch of o.batch.
    Var distillation_loss(const Batch& b, Mt19937& rng) {
        const int64_t B = (int64_t)b.indices.size(), G = o.batch;
        NUANCE_CHECK_CODE(B == rows.end - rows.begin, Internal, "lcm: ", B, " rows for the range [", rows.begin, ", ",
                          rows.end, ")");
        const Tensor x0 = latents_of(b, rng);
        const auto& ac = schedule.alphas_cumprod();
        std::vector<int> index(G);
        std::vector<float> t_start(G), t_prev(G), a_t(G), s_t(G), a_p(G), s_p(G), w(G);
        std::vector<float> cs_start(G), co_start(G), cs_prev(G), co_prev(G);
        for (int64_t i = 0; i < G; ++i) {  // drawn for every row of the global batch, in row order
            const int k = (int)uniform_below(rng, (uint32_t)solver->steps());
            index[(size_t)i] = k;
            const int64_t ts = solver->timestep(k), tp = solver->prev_timestep(k);
            t_start[(size_t)i] = (float)ts;
            t_prev[(size_t)i] = (float)tp;
            a_t[(size_t)i] = std::sqrt(ac[(size_t)ts]);
            s_t[(size_t)i] = std::sqrt(1.0f - ac[(size_t)ts]);
            a_p[(size_t)i] = std::sqrt(ac[(size_t)tp]);
            s_p[(size_t)i] = std::sqrt(1.0f - ac[(size_t)tp]);
            // (drawn for every sample, also when one scale is baked in: the runs' other draws then do not depend on
            // it, and a one-point range [g - 1, g - 1] is the baked run bit for bit)
            const float drawn = l.w_min + (l.w_max - l.w_min) * uniform01(rng);
            w[(size_t)i] = lora && !l.lora_w_range ? lora_w : drawn;
            const BoundaryScalings bs = consistency_boundary((double)ts), bp = consistency_boundary((double)tp);
            cs_start[(size_t)i] = (float)bs.c_skip;
            co_start[(size_t)i] = (float)bs.c_out;
            cs_prev[(size_t)i] = (float)bp.c_skip;
            co_prev[(size_t)i] = (float)bp.c_out;
        }
        // This rank's rows of the per-row values.
        auto mine = [&](auto& v) { v.assign(v.begin() + rows.begin, v.begin() + rows.end); };
        mine(index), mine(t_start), mine(t_prev), mine(a_t), mine(s_t), mine(a_p), mine(s_p), mine(w);
        mine(cs_start), mine(co_start), mine(cs_prev), mine(co_prev);
        TorchCpuRng normal(rng());
        const Tensor noise = randn_rows(normal, x0.shape());
        const Tensor At = rows_of(a_t), St = rows_of(s_t), Ap = rows_of(a_p), Sp = rows_of(s_p);
        const Tensor x_t = x0 * At + noise * St;  // add_noise at t_start
        const Tensor w_emb = lora ? Tensor() : guidance_scale_embedding(w, l.w_embedding_dim);
        const Tensor ts = Tensor::from_vector(t_start, {B}), tp = Tensor::from_vector(t_prev, {B});

        Tensor target_f;
        Tensor ctx;
        {
            NoGradGuard ng;
            ctx = encode_text(b.captions);
            // Teacher: cond and uncond rows in one batch, CFG at ω on x0 and eps, one DDIM step back.
            const Tensor u = uncond_context.expand({B, uncond_context.size(1), uncond_context.size(2)});
            const Tensor both = teacher->unet->forward(cat({x_t, x_t}, 0), cat({ts, ts}, 0), cat({ctx, u.contiguous()}, 0));
            const Tensor out_c = both.slice(0, 0, B), out_u = both.slice(0, B, 2 * B);
            const auto [x0_c, eps_c] = x0_eps(out_c, x_t, At, St);
            const auto [x0_u, eps_u] = x0_eps(out_u, x_t, At, St);
            const Tensor W = rows_of(w);
            const Tensor pred_x0 = x0_c + (x0_c - x0_u) * W;
            const Tensor pred_eps = eps_c + (eps_c - eps_u) * W;
            const Tensor x_prev = solver->step(pred_x0, pred_eps, index);
            // Target network at (x_prev, t_prev): f = c_skip x_prev + c_out x0. LCM-LoRA: the student itself.
            Tensor out_t;
            if (lora) {
                LayerAdapters::Bind adapters(*lora);
                out_t = unet_forward(*teacher->unet, Var(x_prev), tp, Var(ctx)).value();
            } else {
                UNetExtra ex;
                ex.timestep_cond = w_emb;
                out_t = target->forward(x_prev, tp, ctx, ex);
            }
            const Tensor x0_t = x0_eps(out_t, x_prev, Ap, Sp).first;
            target_f = x_prev * rows_of(cs_prev) + x0_t * rows_of(co_prev);
        }
        // Student at (x_t, t_start): f = c_skip x_t + c_out x0(out), with x0 linear in out:
        // eps: x0 = (x_t - s out) / a;  v: x0 = a x_t - s out.
        Var out;
        if (lora) {
            LayerAdapters::Bind adapters(*lora);  // bound for the student's forward only (the teacher's is plain)
            out = unet_forward(*teacher->unet, Var(x_t), ts, Var(ctx));
        } else {
            out = unet_forward(*student, Var(x_t), ts, Var(ctx), w_emb);
        }
        std::vector<float> k_x(B), k_out(B);
        for (int64_t i = 0; i < B; ++i) {
            const float a = a_t[(size_t)i], s = s_t[(size_t)i];
            const float x0_x = v_prediction ? a : 1.0f / a, x0_out = v_prediction ? -s : -s / a;
            k_x[(size_t)i] = cs_start[(size_t)i] + co_start[(size_t)i] * x0_x;
            k_out[(size_t)i] = co_start[(size_t)i] * x0_out;
        }
        const Var f = Var(x_t * rows_of(k_x)) + out * Var(rows_of(k_out));
        const Var d = f - Var(target_f);
        if (l.loss == "l2") return mean(square(d));
        const float c = l.huber_c;
        return mean(sqrt(square(d) + c * c) - c);
    }

    // θ⁻ ← decay θ⁻ + (1 - decay) θ (diffusers' update_ema).
    void update_target() {
        if (lora) return;  // LCM-LoRA: no target network
        const float dcy = l.target_ema;
        for (size_t i = 0; i < student_params.size(); ++i) {
            Tensor& tv = target_params[i]->value;
            const Tensor& sv = student_params[i]->value;
            float* t = tv.data<float>();
            const float* s = sv.data<float>();
            for (int64_t k = 0; k < tv.numel(); ++k) t[k] = dcy * t[k] + (1.0f - dcy) * s[k];
        }
        clear_packed_weights();  // the target's weights changed in place
    }

    void save(const std::string& path) override {
        std::vector<std::pair<std::string, Tensor>> tensors;
        for (auto& e : (lora ? trainable : params).entries()) tensors.emplace_back("model." + e.name, e.param->value);
        size_t i = 0;
        if (!lora)
            for (auto& e : params.entries()) tensors.emplace_back("target." + e.name, target_params[i++]->value);
        for (auto& [k, v] : opt->state_dict()) tensors.emplace_back("optim." + k, v);
        nlohmann::json meta;
        meta["step"] = step;
        meta["model"] = "lcm";
        meta["options"] = options_json(o);
        meta["lcm"] = lcm_json(o, l);
        if (!lora) meta["student"] = unet_diffusers_config(student_cfg, o.resolution / teacher->vae_scale());
        const LoaderState ls = loader->state();
        meta["loader"] = {{"seed", ls.seed}, {"epoch", ls.epoch}, {"position", ls.position}};
        save_checkpoint_file(path, tensors, meta);
    }

    void load(const std::string& path) override {
        CheckpointFile ck = load_checkpoint_file(path);
        const nlohmann::json& meta = ck.meta;
        const std::string where = "checkpoint '" + path + "': nuance_train metadata";
        const std::string model = json_field<std::string>(meta, "model", "?", where);
        NUANCE_CHECK(model == "lcm", "checkpoint '", path, "' is a ", model, " run, not lcm");
        const nlohmann::json want = lcm_json(o, l).value("lora", nlohmann::json());
        const nlohmann::json has = meta.contains("lcm") && meta["lcm"].is_object()
                                       ? meta["lcm"].value("lora", nlohmann::json())
                                       : nlohmann::json();
        NUANCE_CHECK(has == want, "checkpoint '", path, "' is ",
                     has.is_null() ? std::string("a full-student run") : str("an LCM-LoRA run of ", has.dump()),
                     ", this run ", want.is_null() ? std::string("a full student") : str("an LCM-LoRA of ", want.dump()));
        if (lora) {
            for (auto& e : trainable.entries()) {
                auto it = ck.tensors.find("model." + e.name);
                NUANCE_CHECK(it != ck.tensors.end(), "checkpoint '", path, "' has no tensor 'model.", e.name,
                             "' (an LCM-LoRA of another teacher?)");
                NUANCE_CHECK(it->second.shape() == e.param->shape, "checkpoint '", path, "': 'model.", e.name, "' is ",
                             it->second.shape(), ", this teacher wants ", e.param->shape);
                e.param->value.copy_(it->second);
            }
        } else {
            size_t i = 0;
            for (auto& e : params.entries()) {
                for (const char* kind : {"model.", "target."}) {
                    auto it = ck.tensors.find(kind + e.name);
                    NUANCE_CHECK(it != ck.tensors.end(), "checkpoint '", path, "' has no tensor '", kind, e.name,
                                 "' (a checkpoint of another teacher or --w-embedding-dim?)");
                    NUANCE_CHECK(it->second.shape() == e.param->shape, "checkpoint '", path, "': '", kind, e.name,
                                 "' is ", it->second.shape(), ", the student wants ", e.param->shape);
                    (kind[0] == 'm' ? e.param->value : target_params[i]->value).copy_(it->second);
                }
                ++i;
            }
        }
        clear_packed_weights();
        std::map<std::string, Tensor> optim;
        for (auto& [k, v] : ck.tensors)
            if (k.rfind("optim.", 0) == 0) optim[k.substr(6)] = v;
        opt->load_state_dict(optim);
        step = json_required<int64_t>(meta, "step", where);
        NUANCE_CHECK(meta.contains("loader") && meta["loader"].is_object(), where, ": no loader state");
        LoaderState ls;
        ls.seed = json_required<uint64_t>(meta["loader"], "seed", where);
        ls.epoch = json_required<int64_t>(meta["loader"], "epoch", where);
        ls.position = json_required<int64_t>(meta["loader"], "position", where);
        loader->set_state(ls);
    }

    // <out>/model: the teacher's folder (text encoder, VAE, tokenizer ... copied as they are) with the student UNet,
    // an LCMScheduler config and model_index defaults for 4-step sampling.
    std::string export_model() {
        const std::string dir = o.output + "/model";
        std::error_code ec;
        fs::create_directories(dir, ec);
        NUANCE_CHECK_CODE(!ec, Io, "cannot create '", dir, "': ", ec.message());
        for (const auto& e : fs::directory_iterator(l.teacher)) {
            const std::string name = e.path().filename().string();
            if (name == "unet" || name == "scheduler" || name == "model_index.json") continue;
            fs::copy(e.path(), dir + "/" + name,
                     fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
            NUANCE_CHECK_CODE(!ec, Io, "cannot copy '", e.path().string(), "' to '", dir, "': ", ec.message());
        }
        write_component(dir + "/unet", *student, "diffusion_pytorch_model.safetensors",
                        unet_diffusers_config(student_cfg, o.resolution / teacher->vae_scale()));
        nlohmann::json sched = teacher->scheduler_config.is_object() ? teacher->scheduler_config : nlohmann::json::object();
        sched["_class_name"] = "LCMScheduler";
        sched["original_inference_steps"] = l.num_ddim_steps;
        sched["timestep_scaling"] = 10.0;
        sched.erase("_diffusers_version");
        write_json(dir + "/scheduler/scheduler_config.json", sched);
        nlohmann::json index = read_json_object(l.teacher + "/model_index.json");
        GenerationDefaults td = teacher->generation_defaults();
        float g = l.default_guidance;
        if (g == 0) g = std::clamp(td.cfg_scale, 1.0f + l.w_min, 1.0f + l.w_max);
        nlohmann::json nu = index.contains("_nuance") && index["_nuance"].is_object() ? index["_nuance"]
                                                                                      : nlohmann::json::object();
        nlohmann::json defaults = nu.contains("defaults") && nu["defaults"].is_object() ? nu["defaults"]
                                                                                         : nlohmann::json::object();
        defaults["sampler"] = "lcm";
        defaults["steps"] = 4;
        defaults["cfg_scale"] = g;
        nu["defaults"] = defaults;
        nu["lcm"] = {{"teacher", l.teacher}, {"distilled_steps", step}, {"options", options_json(o)},
                     {"lcm", lcm_json(o, l)}};
        nu["trained_steps"] = step;
        index["_nuance"] = nu;
        index["scheduler"] = {"diffusers", "LCMScheduler"};
        index["_class_name"] = "LatentConsistencyModelPipeline";
        write_json(dir + "/model_index.json", index);
        return dir;
    }

    // LCM-LoRA: <out>/<name>.safetensors in kohya's format with kohya's ss_* metadata and how to sample with it.
    std::string export_lora() {
        const std::string path = lora_export_path(o.output);
        const bool conv = lora->config().targets.conv;
        const std::string dim = std::to_string(o.lora_rank), alpha = str(o.lora_alpha);
        nlohmann::json args = nlohmann::json::object();
        if (conv) args = {{"conv_dim", dim}, {"conv_alpha", alpha}};
        args["nuance_targets"] = o.lora_targets;
        const bool sd2 = teacher->family == SDFamily::SD2;
        const std::string baked = l.lora_w_range ? str("trained over guidance ", 1.0f + l.w_min, "-", 1.0f + l.w_max)
                                                 : str("guidance ", lora_w + 1.0f, " is baked in");
        const std::string usage = str("LCM-LoRA of ", fs::path(l.teacher).filename().string(),
                                      " (nuance train --model lcm --lora-rank): sample with --sampler lcm --steps 4 "
                                      "--cfg-scale 1 (", baked, ")");
        const std::map<std::string, std::string> meta = {
            {"ss_network_module", "networks.lora"},
            {"ss_network_dim", dim},
            {"ss_network_alpha", alpha},
            {"ss_network_args", args.dump()},
            {"ss_network_train_unet_only", "True"},
            {"ss_network_train_text_encoder_only", "False"},
            {"ss_base_model_version", sd2 ? "sd_v2" : "sd_v1"},
            {"ss_v2", sd2 ? "True" : "False"},
            {"ss_sd_model_name", fs::path(l.teacher).filename().string()},
            {"ss_output_name", fs::path(path).stem().string()},
            {"ss_learning_rate", str(o.lr)},
            {"ss_unet_lr", str(o.lr)},
            {"ss_lr_scheduler", "cosine"},
            {"ss_lr_warmup_steps", std::to_string(o.warmup)},
            {"ss_max_train_steps", std::to_string(o.steps)},
            {"ss_steps", std::to_string(step)},
            {"ss_batch_size_per_device", std::to_string(o.batch)},
            {"ss_resolution", str("(", o.resolution, ", ", o.resolution, ")")},
            {"ss_training_comment", usage},
            {"modelspec.sai_model_spec", "1.0.0"},
            {"modelspec.architecture", sd2 ? "stable-diffusion-v2-512/lora/lcm" : "stable-diffusion-v1/lora/lcm"},
            {"modelspec.implementation", "diffusers"},
            {"modelspec.title", fs::path(path).stem().string()},
            {"modelspec.resolution", str(o.resolution, "x", o.resolution)},
            {"modelspec.usage_hint", usage},
            {"nuance_lcm", nlohmann::json{{"teacher", l.teacher}, {"distilled_steps", step},
                                          {"guidance", l.lora_w_range ? nlohmann::json{1.0f + l.w_min, 1.0f + l.w_max}
                                                                      : nlohmann::json(lora_w + 1.0f)},
                                          {"options", options_json(o)},
                                          {"lcm", lcm_json(o, l)}}.dump()},
        };
        lora->save_kohya(path, meta);
        return path;
    }
};

TrainReport train_lcm(const TrainOptions& opts, const LcmOptions& lopts, const TrainCallback& on_step) {
    validate_lcm_options(opts, lopts);
    LcmRun run(opts, lopts);
    run.rows = local_rows(opts.batch);
    run.build();
    run.make_data();
    AdamWOptions ao;
    ao.lr = opts.lr;
    ao.weight_decay = opts.weight_decay;
    run.opt = std::make_unique<AdamW>(run.params, ao);
    TrainLoopOptions lo;
    lo.rng_salt = 0x1c3;
    lo.rows = run.rows;
    TrainReport rep = run_train_loop(opts, run, lo, on_step);
    if (dist::is_root()) rep.exported = run.lora ? run.export_lora() : run.export_model();
    dist::barrier();  // no rank leaves before the export is written
    return rep;
}

}  // namespace nuance
