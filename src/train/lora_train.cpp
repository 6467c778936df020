// Shape letters: B batch, C latent channels, h/w latent size, L prompt tokens.
#include "train/lora_train.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "autograd/functions.h"
#include "autograd/param_grads.h"
#include "core/error.h"
#include "core/mt19937.h"
#include "io/atomic_file.h"
#include "io/json_field.h"
#include "io/weights.h"
#include "models/quantize_weights.h"
#include "models/sd/stable_diffusion.h"
#include "pipelines/generate.h"
#include "pipelines/generate_defaults.h"
#include "samplers/schedule.h"
#include "train/checkpoint.h"
#include "train/data_loader.h"
#include "train/data_parallel.h"
#include "train/dataset.h"
#include "train/lora_network.h"
#include "train/model_graph.h"
#include "train/optim.h"
#include "train/train_loop.h"
#include "train/train_options.h"

namespace fs = std::filesystem;

namespace nuance {

std::string lora_export_path(const std::string& output) {
    fs::path p(output);
    std::string stem = p.filename().string();
    if (stem.empty() || stem == "." || stem == "..") stem = fs::absolute(p).lexically_normal().parent_path().filename().string();
    if (stem.empty()) stem = "lora";
    return (p / (stem + ".safetensors")).string();
}

namespace {

std::string utc_now_epoch() { return std::to_string((long long)std::time(nullptr)); }

nlohmann::json lora_json(const TrainOptions& o) {
    nlohmann::json j = {{"rank", o.lora_rank}, {"alpha", o.lora_alpha}, {"targets", o.lora_targets},
                        {"train_text_encoder", o.train_text_encoder}};
    if (o.lora_dora) j["dora"] = true;
    if (o.lora_tucker) j["tucker"] = true;
    if (o.lora_train_norm) j["train_norm"] = true;
    if (o.lora_constraint > 0) j["constraint"] = o.lora_constraint;
    if (o.lora_rescaled) j["rescaled"] = true;
    if (o.lora_algo != "lora") {  // (a LoRA run's checkpoints keep their old metadata)
        j["algo"] = o.lora_algo;
        j["factor"] = o.lora_factor;
        j["decompose_both"] = o.lora_decompose_both;
    }
    if (o.lora_dropout > 0) j["network_dropout"] = o.lora_dropout;  // (only when set: older checkpoints resume)
    if (o.lora_rank_dropout > 0) j["rank_dropout"] = o.lora_rank_dropout;
    if (o.lora_module_dropout > 0) j["module_dropout"] = o.lora_module_dropout;
    if (o.lora_conv_rank > 0) {
        j["conv_rank"] = o.lora_conv_rank;
        j["conv_alpha"] = o.lora_conv_alpha;
    }
    if (!o.lora_network_weights.empty()) j["network_weights"] = o.lora_network_weights;  // (its alphas)
    if (!o.reg_data.empty()) {  // a resumed run must draw from the same two sets with the same weight
        j["reg_data"] = o.reg_data;
        j["prior_loss_weight"] = o.prior_loss_weight;
    }
    return j;
}

// Image files (.png, .jpg, .jpeg) anywhere under `dir` (0 when it does not exist): what a sidecar data set reads.
int64_t count_image_files(const std::string& dir) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) return 0;
    NUANCE_CHECK_CODE(fs::is_directory(dir, ec), InvalidArgument, "train: --reg-data '", dir, "' is not a folder");
    int64_t n = 0;
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        std::error_code e2;
        n += is_image_ext(it->path()) && it->is_regular_file(e2);
    }
    NUANCE_CHECK_CODE(!ec, Io, "train: cannot list --reg-data '", dir, "': ", ec.message());
    return n;
}

struct LoraRun : TrainTask {
    TrainOptions o;
    StableDiffusionModel base;
    std::unique_ptr<LoraNetwork> net;
    ParamGrads params;     // frozen base weights + the adapters (what forward binds)
    ParamGrads trainable;  // the adapters alone (replica fingerprints)
    std::unique_ptr<Dataset> data;  // the instance images, or with --reg-data both sets (a ConcatDataset)
    std::unique_ptr<Dataset> instance_images, class_images;
    int64_t n_instance = 0;  // data's rows below this are instance images, the rest class images
    std::unique_ptr<DataLoader> loader;
    std::unique_ptr<AdamW> opt;
    NoiseSchedule schedule;
    int64_t step = 0;
    std::vector<Tensor> moments_cache;
    dist::Range rows;
    std::string started_at = utc_now_epoch();

    explicit LoraRun(const TrainOptions& opts) : o(opts), base(load_base(opts)) {}

    // The base, its weights quantized in memory when --type says so (then frozen blocks as a GGUF base's are).
    static StableDiffusionModel load_base(const TrainOptions& o) {
        const std::optional<QuantizeRecipe> r =
            o.base_weight_type.empty() ? std::nullopt : std::optional(parse_weight_type(o.base_weight_type));
        StableDiffusionModel m = load_stable_diffusion(o.base);
        if (r) {
            const QuantizeWeightsSummary q = quantize_model_weights(m, *r);
            if (dist::is_root()) std::fprintf(stderr, "base weights quantized (--type %s)\n", q.describe().c_str());
        }
        return m;
    }

    // TrainTask (train/train_loop.h): the forward binds the frozen base and the adapters, the ranks compare the
    // adapters.
    Var loss(const Batch& b, Mt19937& rng) override {
        LayerAdapters::Bind adapters(*net);
        return loss(b, o.batch, rng);
    }

    // Prior preservation's class images: the base model draws the ones --reg-data lacks (up to
    // --num-class-images) with --class-prompt at the training resolution and the model's default sampler, steps and
    // CFG, as diffusers' DreamBooth scripts do; each is written as class-NNNNNN.png with the prompt beside it in
    // class-NNNNNN.txt (a folder the sidecar reader and kohya's scripts take). Rank 0 draws, the others wait.
    void make_class_images(const TrainCallback& on_step) {
        if (o.reg_data.empty() || o.num_class_images == 0) return;
        const int64_t have = count_image_files(o.reg_data);
        const int64_t missing = std::max<int64_t>(0, o.num_class_images - have);
        if (missing > 0 && dist::is_root()) {
            std::error_code ec;
            NUANCE_CHECK_CODE(!fs::exists(fs::path(o.reg_data) / "manifest.jsonl", ec), InvalidArgument,
                              "train: --reg-data '", o.reg_data, "' has a manifest.jsonl, which the ", missing,
                              " class images --num-class-images asks for would not be listed in; give a folder ",
                              "without one");
            fs::create_directories(o.reg_data, ec);
            NUANCE_CHECK_CODE(!ec, Io, "train: cannot create --reg-data '", o.reg_data, "': ", ec.message());
            GenerateParams p;
            p.prompt = o.class_prompt;
            p.width = p.height = o.resolution;
            p.steps = 0;
            p.cfg_scale = -1;
            p.sampler.clear();
            apply_generation_defaults(p, base.generation_defaults());
            p.seed = (int64_t)(mix_seed(o.seed, 37) >> 2);  // in [0, 2^62): image k takes seed + k, no overflow
            validate_params(base, p);
            int64_t made = 0, name = 0;
            const auto t0 = std::chrono::steady_clock::now();
            for (; made < missing; ++name) {
                char stem[32];
                std::snprintf(stem, sizeof stem, "class-%06lld", (long long)name);
                const fs::path png = fs::path(o.reg_data) / (std::string(stem) + ".png");
                if (fs::exists(png, ec)) continue;  // a name an earlier run (or the user) took
                GenerateParams one = p;
                one.seed = p.seed + name;
                write_png(png.string(), generate(base, one).at(0).image);
                const fs::path txt = fs::path(o.reg_data) / (std::string(stem) + ".txt");
                std::ofstream f(txt, std::ios::binary);
                f << o.class_prompt;
                f.close();
                NUANCE_CHECK_CODE(f.good(), Io, "train: cannot write the class image caption '", txt.string(), "'");
                ++made;
                if (on_step) {
                    TrainProgress pr;
                    pr.stage = "class images";
                    pr.step = made;
                    pr.total = missing;
                    pr.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                    on_step(pr);
                }
            }
        }
        dist::barrier();
    }
    ParamGrads& param_set() override { return params; }
    ParamGrads& replica_set() override { return trainable; }
    AdamW& optimizer() override { return *opt; }
    DataLoader& data_loader() override { return *loader; }
    int64_t& step_counter() override { return step; }

    void build() {
        NUANCE_CHECK_CODE(base.vae && base.unet && base.te1.model, Unsupported, "train --model lora: the base '",
                          o.base, "' has no VAE (a pixel-space model); LoRA training needs a latent diffusion model");
        if (sdxl()) {
            NUANCE_CHECK_CODE(base.te2.model != nullptr, Unsupported, "train --model lora: the SDXL base '", o.base,
                              "' has no second text encoder (text_encoder_2)");
            NUANCE_CHECK_CODE(!o.train_text_encoder, Unsupported, "train --model lora: --train-text-encoder on the ",
                              "SDXL base '", o.base, "': training the SDXL text encoders is not supported yet; ",
                              "train the UNet's LoRA (drop the flag)");
        }
        NUANCE_CHECK(o.resolution % base.vae->config().downscale() == 0, "train: resolution ", o.resolution,
                     " is not a multiple of the VAE's downscale ", base.vae->config().downscale());
        widen_params_to_f32(*base.unet);
        if (!sdxl()) widen_params_to_f32(*base.te1.model);  // SDXL: the frozen encoders run their inference forward
        LoraConfig cfg;
        cfg.algo = parse_lora_algo(o.lora_algo);
        cfg.factor = o.lora_factor;
        cfg.decompose_both = o.lora_decompose_both;
        cfg.dora = o.lora_dora;
        cfg.tucker = o.lora_tucker;
        cfg.train_norm = o.lora_train_norm;
        cfg.oft_constraint = o.lora_constraint;
        cfg.oft_rescaled = o.lora_rescaled;
        cfg.rank = o.lora_rank;
        cfg.alpha = o.lora_alpha;
        cfg.targets = parse_lora_targets(o.lora_targets);
        cfg.conv_rank = o.lora_conv_rank;
        cfg.conv_alpha = o.lora_conv_alpha;
        cfg.dropout = o.lora_dropout;
        cfg.rank_dropout = o.lora_rank_dropout;
        cfg.module_dropout = o.lora_module_dropout;
        net = std::make_unique<LoraNetwork>(*base.unet, o.train_text_encoder ? base.te1.model.get() : nullptr, cfg,
                                            mix_seed(o.seed, 21));
        if (!o.lora_network_weights.empty()) {  // (a resumed run too: the file's alphas; the checkpoint's values win)
            const LoraFile f = load_lora(o.lora_network_weights);
            LoraComponents comps{{"unet", base.unet.get()}};
            if (o.train_text_encoder) comps.emplace_back("text_encoder", base.te1.model.get());
            const LoraNetwork::InitReport r = net->init_from(f, lora_module_targets(comps, f));
            const std::string msg = str("--network-weights '", o.lora_network_weights, "': ", r.adapters, " adapters start from the ",
                         "file", r.fresh ? str(", ", r.fresh, " from their initialisation") : std::string(),
                         r.unused.empty() ? std::string() : str("; ", r.unused.size(), " of its ", f.modules.size(),
                                                                 " modules adapt no layer trained here (e.g. ",
                                                                 r.unused.front(), ")"));
            if (dist::is_root()) std::fprintf(stderr, "%s\n", msg.c_str());
        }
        auto add_frozen = [&](Module& m, const std::string& prefix) {
            for_each_param(m, [&](const std::string& name, Param& p) {
                if (!p.value.defined()) return;
                params.add(prefix + name, p);
                params.set_trainable(p, false);
            });
        };
        add_frozen(*base.unet, "unet.");
        if (!sdxl()) add_frozen(*base.te1.model, "text_encoder.");
        net->register_params(params);
        net->register_params(trainable);
    }

    void make_data() {
        NUANCE_CHECK_CODE(!o.data.empty(), InvalidArgument, "train: --data is required (an image folder)");
        NUANCE_CHECK_CODE(is_directory(o.data), NotFound, "train: data folder '", o.data, "' does not exist");
        const bool prior = !o.reg_data.empty();  // the batch-size check then applies to both sets together
        auto images = make_image_dataset(o, o.caption_dropout, o.instance_prompt, prior ? 1 : -1);
        LoaderOptions lo = train_loader_options(o, images.get());
        if (!o.reg_data.empty()) {
            NUANCE_CHECK_CODE(is_directory(o.reg_data), NotFound, "train: --reg-data folder '", o.reg_data,
                              "' does not exist (give --class-prompt and --num-class-images to draw its images)");
            TrainOptions ro = o;
            ro.data = o.reg_data;
            ro.exclude_concepts.clear();
            ro.limit = 0;
            class_images = make_image_dataset(ro, o.caption_dropout, o.class_prompt, 1);
            NUANCE_CHECK(images->size() + class_images->size() >= o.batch, "train: --data '", o.data, "' and ",
                         "--reg-data '", o.reg_data, "' hold ", images->size(), " + ", class_images->size(),
                         " images, fewer than the batch size ", o.batch);
            lo.weights = prior_preservation_weights(lo.weights, images->size(), class_images->size());
            instance_images = std::move(images);
            data = std::make_unique<ConcatDataset>(*instance_images, *class_images);
            n_instance = instance_images->size();
        } else {
            data = std::move(images);
            n_instance = data->size();
        }
        loader = std::make_unique<DataLoader>(*data, o.seed, lo);
        moments_cache.assign((size_t)data->size(), Tensor());
    }

    // Per-row loss weights of a batch: 1 for instance images, --prior-loss-weight for class images (kohya's
    // loss_weights); empty when every row weighs 1.
    Tensor row_weights(const Batch& b) const {
        if (!class_images || o.prior_loss_weight == 1.0f) return Tensor();
        std::vector<float> w;
        for (int64_t i : b.indices) w.push_back(i >= n_instance ? o.prior_loss_weight : 1.0f);
        return Tensor::from_vector(w, {(int64_t)w.size(), 1, 1, 1});
    }

    void make_optimizer() {
        AdamWOptions ao;
        ao.lr = o.lr;
        ao.weight_decay = o.weight_decay;
        opt = std::make_unique<AdamW>(params, ao);
    }

    Tensor randn_rows(TorchCpuRng& normal, Shape shape, int64_t B) const {
        shape[0] = B;
        const Tensor full = normal.randn(shape);
        return rows.begin == 0 && rows.end == B ? full : full.slice(0, rows.begin, rows.end).contiguous();
    }

    // The frozen VAE's latents of the batch (posterior moments cached per image unless flipped), sampled.
    Tensor latents_of(const Batch& b, int64_t global_B, Mt19937& rng) {
        const int64_t B = (int64_t)b.indices.size();
        std::vector<Tensor> ms;
        std::vector<int64_t> missing;
        for (int64_t i = 0; i < B; ++i)
            if (!moments_cache[(size_t)b.indices[(size_t)i]].defined() || o.random_flip) missing.push_back(i);
        if (!missing.empty()) {
            NoGradGuard ng;
            std::vector<Tensor> imgs;
            for (int64_t i : missing) imgs.push_back(b.images.slice(0, i, i + 1));
            const Tensor mom = base.vae->encode_moments(cat(imgs, 0));
            for (size_t k = 0; k < missing.size(); ++k) {
                const Tensor one = mom.slice(0, (int64_t)k, (int64_t)k + 1).contiguous();
                if (!o.random_flip) moments_cache[(size_t)b.indices[(size_t)missing[k]]] = one;
                else ms.push_back(one);
            }
        }
        if (!o.random_flip)
            for (int64_t i = 0; i < B; ++i) ms.push_back(moments_cache[(size_t)b.indices[(size_t)i]]);
        const DiagonalGaussian post = DiagonalGaussian::from_moments(cat(ms, 0));
        TorchCpuRng normal(rng());
        return base.vae->to_latents(post.sample(randn_rows(normal, post.mean.shape(), global_B)));
    }

    bool sdxl() const { return base.family == SDFamily::SDXL; }

    Tensor tokens(const std::vector<std::string>& captions, const TextEncoderSlot& te) const {
        const ClipTokenizer& tok = te.tokenizer();
        const int64_t L = te.model->config().max_positions;
        std::vector<int64_t> ids;
        for (const auto& c : captions) {
            auto v = tok.encode_padded(c, te.pad_id, (int)L);
            ids.insert(ids.end(), v.begin(), v.end());
        }
        return Tensor::from_ids(ids, {(int64_t)captions.size(), L});
    }
    Tensor tokens(const std::vector<std::string>& captions) const { return tokens(captions, base.te1); }

    // SDXL's conditioning from the frozen encoders (as the sampling path, sd_conditioning.cpp): both encoders'
    // penultimate hidden states side by side, the second encoder's projected pooled output, and the micro-
    // conditioning time ids (original size, crop (0, 0), target size) of the square training images.
    Tensor sdxl_context(const std::vector<std::string>& captions, UNetExtra& extra) const {
        NoGradGuard ng;
        const ClipTextOutput o1 = base.te1.model->forward(tokens(captions, base.te1));
        const ClipTextOutput o2 = base.te2.model->forward(tokens(captions, base.te2));
        extra.text_embeds = o2.text_embeds.defined() ? o2.text_embeds : o2.pooled;
        const int64_t B = (int64_t)captions.size();
        const float r = (float)o.resolution;
        std::vector<float> ids;
        for (int64_t b = 0; b < B; ++b)
            for (float v : {r, r, 0.0f, 0.0f, r, r}) ids.push_back(v);
        extra.time_ids = Tensor::from_vector(ids, {B, 6});
        return cat({o1.hidden_states[o1.hidden_states.size() - 2], o2.hidden_states[o2.hidden_states.size() - 2]}, -1);
    }

    Var loss(const Batch& b, int64_t B, Mt19937& rng) {
        // The adapters' dropouts for this step (none when every rate is 0): keyed by the step and the global rows
        const LoraNetwork::DropoutStep drop(*net, mix_seed(o.seed, 22), step, rows.begin, rows.end - rows.begin);
        const Tensor x0 = latents_of(b, B, rng);
        std::vector<int64_t> t_all(B);
        for (int64_t i = 0; i < B; ++i) t_all[(size_t)i] = uniform_below(rng, (uint32_t)schedule.num_train_timesteps());
        const std::vector<int64_t> t(t_all.begin() + rows.begin, t_all.begin() + rows.end);
        TorchCpuRng normal(rng());
        Tensor noise = randn_rows(normal, x0.shape(), B);
        if (o.noise_offset > 0)  // kohya's noise offset: one draw per row and channel, after the noise
            noise = noise + randn_rows(normal, {B, x0.size(1), 1, 1}, B) * o.noise_offset;
        const NoisedBatch nb = add_training_noise(x0, noise, t, schedule, base.prediction);
        Tensor w = row_weights(b);
        if (o.min_snr_gamma > 0) {  // times the prior-preservation weights, as kohya applies both
            const Tensor snr_w = min_snr_weights(t, schedule, o.min_snr_gamma, base.prediction);
            w = w.defined() ? (w * snr_w).contiguous() : snr_w;
        }
        auto loss_of = [&](const Var& pred) {
            // kohya: mean over each row, times its weight, mean over the batch (= the mean of the weighted squares)
            return w.defined() ? mean(mul(square(sub(pred, Var(nb.target))), Var(w))) : mse_loss(pred, Var(nb.target));
        };
        if (sdxl()) {
            UNetExtra extra;
            const Var ctx(sdxl_context(b.captions, extra));
            return loss_of(unet_forward(*base.unet, Var(nb.x_t), nb.timesteps, ctx, extra));
        }
        Var ctx;
        if (o.train_text_encoder) {
            ctx = clip_encode(*base.te1.model, tokens(b.captions), base.default_clip_skip);
        } else {
            NoGradGuard ng;  // the frozen text encoder: a constant, no tape
            ctx = Var(clip_encode(*base.te1.model, tokens(b.captions), base.default_clip_skip).value());
        }
        return loss_of(unet_forward(*base.unet, Var(nb.x_t), nb.timesteps, ctx));
    }

    // ---- checkpoints ----

    void save(const std::string& path) override {
        std::vector<std::pair<std::string, Tensor>> tensors;
        for (auto& e : trainable.entries()) tensors.emplace_back("model." + e.name, e.param->value);
        for (auto& [k, v] : opt->state_dict()) tensors.emplace_back("optim." + k, v);
        nlohmann::json meta;
        meta["step"] = step;
        meta["model"] = "lora";
        meta["lora"] = lora_json(o);
        meta["base"] = o.base;
        meta["options"] = options_json(o);
        meta["started_at"] = started_at;
        const LoaderState ls = loader->state();
        meta["loader"] = {{"seed", ls.seed}, {"epoch", ls.epoch}, {"position", ls.position}};
        meta["world_size"] = dist::size();
        save_checkpoint_file(path, tensors, meta);
    }

    void load(const std::string& path) override {
        CheckpointFile ck = load_checkpoint_file(path);
        const nlohmann::json& meta = ck.meta;
        const std::string where = "checkpoint '" + path + "': nuance_train metadata";
        const std::string model = json_field<std::string>(meta, "model", "?", where);
        NUANCE_CHECK(model == "lora", "checkpoint '", path, "' is a ", model, " run, not lora");
        NUANCE_CHECK(meta.contains("lora") && meta["lora"] == lora_json(o), "checkpoint '", path,
                     "' is a LoRA of another configuration: it has ",
                     meta.contains("lora") ? meta["lora"].dump() : std::string("none"), ", this run ",
                     lora_json(o).dump());
        for (auto& e : trainable.entries()) {
            auto it = ck.tensors.find("model." + e.name);
            NUANCE_CHECK(it != ck.tensors.end(), "checkpoint '", path, "' has no tensor 'model.", e.name,
                         "' (a LoRA of another base model?)");
            NUANCE_CHECK(it->second.shape() == e.param->shape, "checkpoint '", path, "': 'model.", e.name, "' is ",
                         it->second.shape(), ", this base model wants ", e.param->shape);
            e.param->value.copy_(it->second);
        }
        std::map<std::string, Tensor> optim;
        for (auto& [k, v] : ck.tensors)
            if (k.rfind("optim.", 0) == 0) optim[k.substr(6)] = v;
        opt->load_state_dict(optim);
        step = json_required<int64_t>(meta, "step", where);
        started_at = json_field<std::string>(meta, "started_at", started_at, where);
        LoaderState ls;
        const std::string lw = where + " loader";
        NUANCE_CHECK(meta.contains("loader") && meta["loader"].is_object(), where, ": no loader state");
        ls.seed = json_required<uint64_t>(meta["loader"], "seed", lw);
        ls.epoch = json_required<int64_t>(meta["loader"], "epoch", lw);
        ls.position = json_required<int64_t>(meta["loader"], "position", lw);
        loader->set_state(ls);
    }

    // kohya's train_network.py metadata (the fields A1111's and ComfyUI's LoRA browsers show).
    std::map<std::string, std::string> metadata(const std::string& path) const {
        const bool conv = net->config().targets.conv;
        const std::string dim = std::to_string(o.lora_rank), alpha = str(o.lora_alpha);
        nlohmann::json args = nlohmann::json::object();
        if (conv) {  // kohya's LoCon network_args: the 3x3 convolutions' rank and alpha
            double conv_alpha = o.lora_alpha;
            for (const auto& a : net->adapters())
                if (a->conv && (a->base->shape[2] > 1 || a->base->shape[3] > 1)) conv_alpha = a->alpha;
            args = {{"conv_dim", std::to_string(o.lora_conv_rank > 0 ? o.lora_conv_rank : o.lora_rank)},
                    {"conv_alpha", str(conv_alpha)}};
        }
        const bool lycoris = o.lora_algo != "lora" || o.lora_dora || o.lora_tucker || o.lora_train_norm;
        if (lycoris) {  // LyCORIS's network_args (lycoris.kohya): the algorithm and, for LoKr, its factorization
            args["algo"] = lora_algo_name(parse_lora_algo(o.lora_algo));  // LyCORIS' spelling ("oft" -> "diag-oft")
            if (o.lora_dora) args["dora_wd"] = "True";
            if (o.lora_tucker) args["use_tucker"] = "True";
            if (o.lora_train_norm) args["train_norm"] = "True";
            if (o.lora_constraint > 0) args["constraint"] = str(o.lora_constraint);
            if (o.lora_rescaled) args["rescaled"] = "True";
            if (o.lora_algo == "lokr") {
                args["factor"] = std::to_string(o.lora_factor);
                args["decompose_both"] = o.lora_decompose_both ? "True" : "False";
            }
            if (!conv) args["conv_dim"] = "0";  // LyCORIS adapts no 3x3 convolution without a conv_dim
        }
        // kohya's and LyCORIS' network_args for the dropouts (strings, as their --network_args write them)
        if (o.lora_rank_dropout > 0) args["rank_dropout"] = str(o.lora_rank_dropout);
        if (o.lora_module_dropout > 0) args["module_dropout"] = str(o.lora_module_dropout);
        args["nuance_targets"] = o.lora_targets;
        const int64_t per_epoch = std::max<int64_t>(1, data->size() / o.batch);
        const std::string res = "(" + std::to_string(o.resolution) + ", " + std::to_string(o.resolution) + ")";
        const std::string v = sdxl() ? "sdxl_base_v1-0" : base.family == SDFamily::SD2 ? "sd_v2" : "sd_v1";
        return {
            {"ss_network_module", lycoris ? "lycoris.kohya" : "networks.lora"},
            {"ss_network_dim", dim},
            {"ss_network_alpha", alpha},
            {"ss_network_args", args.dump()},
            {"ss_network_train_unet_only", o.train_text_encoder ? "False" : "True"},
            {"ss_network_train_text_encoder_only", "False"},
            {"ss_base_model_version", v},
            {"ss_v2", base.family == SDFamily::SD2 ? "True" : "False"},
            {"ss_sd_model_name", fs::path(o.base).filename().string()},
            {"ss_output_name", fs::path(path).stem().string()},
            {"ss_learning_rate", str(o.lr)},
            {"ss_unet_lr", str(o.lr)},
            {"ss_text_encoder_lr", o.train_text_encoder ? str(o.lr) : std::string("None")},
            {"ss_lr_scheduler", "cosine"},
            {"ss_lr_warmup_steps", std::to_string(o.warmup)},
            {"ss_optimizer", "torch.optim.AdamW(weight_decay=" + str(o.weight_decay) + ")"},
            {"ss_max_grad_norm", str(o.max_grad_norm)},
            {"ss_max_train_steps", std::to_string(o.steps)},
            {"ss_steps", std::to_string(step)},
            {"ss_epoch", std::to_string(step / per_epoch)},
            {"ss_num_epochs", std::to_string((o.steps + per_epoch - 1) / per_epoch)},
            {"ss_num_batches_per_epoch", std::to_string(per_epoch)},
            {"ss_batch_size_per_device", std::to_string(o.batch / std::max(1, dist::size()))},
            {"ss_total_batch_size", std::to_string(o.batch)},
            {"ss_gradient_accumulation_steps", "1"},
            {"ss_num_train_images", std::to_string(n_instance)},
            {"ss_num_reg_images", std::to_string(data->size() - n_instance)},
            {"ss_resolution", res},
            {"ss_seed", std::to_string(o.seed)},
            {"ss_mixed_precision", o.precision == Precision::BF16 ? "bf16" : "no"},
            {"ss_full_fp16", "False"},
            // kohya writes --clip_skip (SD2 bases train on the penultimate layer); its SDXL scripts have none
            {"ss_clip_skip", !sdxl() && base.default_clip_skip > 1 ? std::to_string(base.default_clip_skip)
                                                                  : std::string("None")},
            {"ss_noise_offset", o.noise_offset > 0 ? str(o.noise_offset) : std::string("None")},
            {"ss_network_dropout", o.lora_dropout > 0 ? str(o.lora_dropout) : std::string("None")},
            {"ss_min_snr_gamma", o.min_snr_gamma > 0 ? str(o.min_snr_gamma) : std::string("None")},
            {"ss_caption_dropout_rate", str(o.caption_dropout)},
            {"ss_flip_aug", o.random_flip ? "True" : "False"},
            {"ss_cache_latents", o.random_flip ? "False" : "True"},
            {"ss_prior_loss_weight", str(o.prior_loss_weight)},
            {"ss_training_started_at", started_at},
            {"ss_training_finished_at", utc_now_epoch()},
            {"ss_training_comment",
             "nuance train --model lora --network " + o.lora_algo + (o.lora_dora ? " --dora" : "") +
                 (o.lora_tucker ? " --tucker" : "") + (o.lora_train_norm ? " --train-norm" : "")},
            {"modelspec.sai_model_spec", "1.0.0"},
            {"modelspec.architecture", sdxl()                           ? "stable-diffusion-xl-v1-base/lora"
                                       : base.family == SDFamily::SD2 ? "stable-diffusion-v2-512/lora"
                                                                      : "stable-diffusion-v1/lora"},
            {"modelspec.implementation", "diffusers"},
            {"modelspec.title", fs::path(path).stem().string()},
            {"modelspec.resolution", std::to_string(o.resolution) + "x" + std::to_string(o.resolution)},
            {"modelspec.prediction_type", base.prediction == "v_prediction" ? "v" : "epsilon"},
        };
    }
};

}  // namespace

TrainReport train_lora(const TrainOptions& opts, const TrainCallback& on_step) {
    validate_train_options(opts);
    NUANCE_CHECK(opts.model == "lora", "train_lora: --model is '", opts.model, "'");
    NUANCE_CHECK(!opts.base.empty(), "train --model lora: --base (the model to adapt) is required");
    LoraRun run(opts);
    run.rows = local_rows(opts.batch);
    run.make_class_images(on_step);  // with the base model as loaded, before its weights are widened for training
    run.build();
    run.make_data();
    run.make_optimizer();
    TrainLoopOptions lo;
    lo.rows = run.rows;
    TrainReport rep = run_train_loop(opts, run, lo, on_step);
    if (dist::is_root()) {
        rep.exported = lora_export_path(opts.output);
        const DType dt = opts.save_precision == "fp16" ? DType::F16 : opts.save_precision == "bf16" ? DType::BF16
                                                                                                  : DType::F32;
        run.net->save_kohya(rep.exported, run.metadata(rep.exported), dt);
    }
    dist::barrier();
    return rep;
}

}  // namespace nuance
