// Shape letters: B batch, C channels, H/W image size, h/w latent size, L = 77 prompt tokens.
#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include "autograd/functions.h"
#include "autograd/param_grads.h"
#include "core/error.h"
#include "core/mt19937.h"
#include "io/atomic_file.h"
#include "io/json_field.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "ops/elementwise.h"
#include "samplers/schedule.h"
#include "text/clip_tokenizer.h"
#include "train/checkpoint.h"
#include "train/data_loader.h"
#include "train/data_parallel.h"
#include "train/dataset.h"
#include "train/fashion_mnist.h"
#include "train/lora_train.h"
#include "train/model_graph.h"
#include "train/optim.h"
#include "train/qat.h"
#include "train/train_arch.h"
#include "train/train_loop.h"
#include "train/train_options.h"

namespace fs = std::filesystem;

namespace nuance {

nlohmann::json default_arch(const std::string& model) {
    // The default model (models/nuance-emoji): 32x32 RGB images, a 16x16x4 latent, ~30 MB in f16.
    nlohmann::json vae = {{"block_out_channels", {64, 128}}, {"layers_per_block", 1}, {"latent_channels", 4},
                          {"norm_num_groups", 32}};
    nlohmann::json unet = {{"block_out_channels", {64, 128, 128}}, {"layers_per_block", 1},
                           {"attention_levels", {false, true, true}}, {"transformer_depth", 1}, {"heads", 4},
                           {"norm_num_groups", 32}};
    nlohmann::json te = {{"hidden", 128}, {"layers", 3}, {"heads", 4}, {"intermediate", 512}, {"max_positions", 77}};
    if (model == "vae") return {{"vae", vae}};
    if (model == "ldm") return {{"unet", unet}, {"text_encoder", te}};
    if (model == "ddpm")
        return {{"unet", {{"block_out_channels", {32, 64, 64}}, {"layers_per_block", 1},
                          {"attention_levels", {false, false, true}}, {"transformer_depth", 1}, {"heads", 4},
                          {"norm_num_groups", 32}}},
                {"text_encoder", {{"hidden", 64}, {"layers", 2}, {"heads", 4}, {"intermediate", 256}}}};
    if (model == "lora") return nlohmann::json::object();  // the base model's architecture; nothing to override
    fail(ErrorCode::InvalidArgument, "unknown model kind '", model, "' (expected vae, ldm, ddpm or lora)");
}

nlohmann::json merged_arch(const TrainOptions& o) {
    nlohmann::json a = default_arch(o.model);
    NUANCE_CHECK(o.arch.is_object(), "--arch must be a JSON object, got ", o.arch.dump());
    for (auto& [k, v] : o.arch.items()) {
        NUANCE_CHECK(a.contains(k), "--arch: '", k, "' is not a part of a ", o.model, " model (parts: ", a.dump(), ")");
        NUANCE_CHECK(v.is_object(), "--arch: '", k, "' must be an object");
        for (auto& [kk, vv] : v.items()) a[k][kk] = vv;
    }
    return a;
}

namespace {

// torch's default init for conv/linear (kaiming_uniform with a = sqrt(5): U(±1/sqrt(fan_in))), ones/zeros for
// norms, N(0, 0.02) for embeddings as CLIP.
void init_for_training(Module& m, uint64_t seed) {
    Mt19937 rng(seed);
    TorchCpuRng normal(seed ^ 0x9e3779b97f4a7c15ull);
    for_each_param(m, [&](const std::string& name, Param& p) {
        const int64_t n = shape_numel(p.shape);
        const bool embedding = name.find("embedding") != std::string::npos && p.shape.size() == 2;
        if (!embedding && p.shape.size() >= 2) {
            p.value = kaiming_uniform(p.shape, n / p.shape[0], rng);
            return;
        }
        Tensor t = Tensor::empty(p.shape, DType::F32);
        float* d = t.data<float>();
        const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
        if (embedding) {
            normal.fill_randn(d, n);
            for (int64_t i = 0; i < n; ++i) d[i] *= 0.02f;
        } else {  // 1-D: norms' weights and biases
            const float v = is_bias ? 0.0f : 1.0f;
            for (int64_t i = 0; i < n; ++i) d[i] = v;
        }
        p.value = t;
    });
}

Tensor tokenize(const std::vector<std::string>& captions, int64_t max_len) {
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    std::vector<int64_t> ids;
    for (const auto& c : captions) {
        auto v = tok.encode_padded(c, ClipTokenizer::kEosId, (int)max_len);
        ids.insert(ids.end(), v.begin(), v.end());
    }
    return Tensor::from_ids(ids, {(int64_t)captions.size(), max_len});
}

}  // namespace

NoisedBatch add_training_noise(const Tensor& x0, const Tensor& noise, const std::vector<int64_t>& t,
                               const NoiseSchedule& schedule, const std::string& prediction) {
    const int64_t B = x0.size(0);
    NUANCE_CHECK(x0.dim() == 4 && noise.shape() == x0.shape() && (int64_t)t.size() == B,
                 "add_training_noise: x0 ", x0.shape(), ", noise ", noise.shape(), ", ", t.size(), " timesteps");
    const auto& ac = schedule.alphas_cumprod();
    std::vector<float> ts(B), sa(B), sb(B);
    for (int64_t i = 0; i < B; ++i) {
        const int64_t ti = t[(size_t)i];
        NUANCE_CHECK(ti >= 0 && ti < (int64_t)ac.size(), "add_training_noise: timestep ", ti, " outside 0..",
                     ac.size() - 1);
        ts[(size_t)i] = (float)ti;
        sa[(size_t)i] = std::sqrt(ac[(size_t)ti]);
        sb[(size_t)i] = std::sqrt(1.0f - ac[(size_t)ti]);
    }
    const Tensor A = Tensor::from_vector(sa, {B, 1, 1, 1}), S = Tensor::from_vector(sb, {B, 1, 1, 1});
    NoisedBatch nb;
    nb.x_t = x0 * A + noise * S;
    nb.target = prediction == "v_prediction" ? noise * A - x0 * S : noise;
    nb.timesteps = Tensor::from_vector(ts, {B});
    return nb;
}

Tensor min_snr_weights(const std::vector<int64_t>& t, const NoiseSchedule& schedule, float gamma,
                       const std::string& prediction) {
    NUANCE_CHECK(std::isfinite(gamma) && gamma > 0, "min_snr_weights: gamma must be > 0, got ", gamma);
    const auto& ac = schedule.alphas_cumprod();
    std::vector<float> w;
    for (int64_t ti : t) {
        NUANCE_CHECK(ti >= 0 && ti < (int64_t)ac.size(), "min_snr_weights: timestep ", ti, " outside 0..",
                     ac.size() - 1);
        const double a = ac[(size_t)ti], snr = a / std::max(1e-12, 1.0 - a), lo = std::min(snr, (double)gamma);
        // (a zero-terminal-SNR schedule's last step has SNR 0: epsilon takes the limit 1 there, not 0 / 0)
        w.push_back((float)(prediction == "v_prediction" ? lo / (snr + 1.0) : snr > 0 ? lo / snr : 1.0));
    }
    return Tensor::from_vector(w, {(int64_t)w.size(), 1, 1, 1});
}

// ---- the run ----

struct TrainRun : TrainTask {
    TrainOptions o;
    nlohmann::json arch;
    std::unique_ptr<AutoencoderKL> vae;  // trained (vae) or frozen (ldm)
    std::unique_ptr<UNet2DConditionModel> unet;
    std::unique_ptr<ClipTextModel> te;
    std::unique_ptr<Dataset> data;
    const ImageCaptionDataset* image_data = nullptr;  // `data` when it is an image folder
    std::unique_ptr<DataLoader> loader;
    ParamGrads params;
    std::unique_ptr<AdamW> opt;
    std::unique_ptr<Ema> ema;
    std::unique_ptr<FakeQuantizer> fq;  // --qat
    NoiseSchedule schedule;
    int64_t step = 0;
    // ldm: the frozen VAE's posterior of each data set image, computed on first use (no flips: one per index).
    std::vector<Tensor> moments_cache;
    // Data parallelism (train/data_parallel.h): this rank's rows of every global batch; all rows in one process.
    dist::Range rows;

    explicit TrainRun(const TrainOptions& opts) : o(opts), arch(merged_arch(opts)) {}

    // TrainTask (train/train_loop.h)
    Var loss(const Batch& b, Mt19937& rng) override {
        if (fq) fq->apply();  // the step's forward and backward on the quantized file's weights; after_backward undoes it
        return diffusion() ? diffusion_loss(b, o.batch, rng) : vae_loss(b, o.batch, rng);
    }
    void after_backward() override {
        if (fq) fq->restore();
    }
    void after_step() override {
        if (ema) ema->update();
    }
    ParamGrads& param_set() override { return params; }
    AdamW& optimizer() override { return *opt; }
    DataLoader& data_loader() override { return *loader; }
    int64_t& step_counter() override { return step; }

    bool diffusion() const { return o.model != "vae"; }
    int64_t image_channels() const { return o.model == "ddpm" ? 1 : 3; }

    void build() {
        if (o.model == "vae") {
            vae = std::make_unique<AutoencoderKL>(vae_config_from_arch(arch["vae"], image_channels()));
            init_for_training(*vae, mix_seed(o.seed, 11));
            register_module(*vae, "vae.");
            return;
        }
        nlohmann::json init_index;
        if (!o.init.empty()) {
            init_index = read_init_index(o.init);
            arch = init_index["_nuance"]["arch"];
        }
        te = std::make_unique<ClipTextModel>(clip_config_from_arch(arch["text_encoder"]));
        int64_t in_ch = image_channels();
        if (o.model == "ldm") {
            vae = load_trained_vae(o.vae.empty() ? o.init : o.vae);
            in_ch = vae->config().latent_channels;
            NUANCE_CHECK(o.resolution % vae->config().downscale() == 0, "resolution ", o.resolution,
                         " is not a multiple of the VAE's downscale ", vae->config().downscale());
        }
        unet = std::make_unique<UNet2DConditionModel>(unet_config_from_arch(arch["unet"], in_ch, te->config().hidden));
        init_for_training(*te, mix_seed(o.seed, 12));
        init_for_training(*unet, mix_seed(o.seed, 13));
        if (!o.init.empty()) {
            load_init_weights(*unet, o.init + "/unet", "diffusion_pytorch_model.safetensors");
            load_init_weights(*te, o.init + "/text_encoder", "model.safetensors");
        }
        register_module(*unet, "unet.");
        register_module(*te, "text_encoder.");
        if (!o.qat.empty()) fq = std::make_unique<FakeQuantizer>(params, "unet.", *qat_recipe(o.qat));
    }

    // --init: the model folder's model_index.json, which must say how nuance trained it (_nuance.arch) with the same
    // objective as this run.
    nlohmann::json read_init_index(const std::string& dir) const {
        NUANCE_CHECK_CODE(is_directory(dir), NotFound, "--init '", dir, "' is not a folder (expected the model folder ",
                          "`nuance train --model ldm` exports: <run>/model)");
        const std::optional<nlohmann::json> idx = read_optional_json_object(dir + "/model_index.json");
        NUANCE_CHECK_CODE(idx.has_value(), NotFound, "--init '", dir, "': no model_index.json");
        const nlohmann::json* nu = idx->contains("_nuance") ? &(*idx)["_nuance"] : nullptr;
        NUANCE_CHECK(nu && nu->is_object() && nu->contains("arch") && (*nu)["arch"].is_object() &&
                         (*nu)["arch"].contains("unet") && (*nu)["arch"].contains("text_encoder"),
                     "--init '", dir, "': model_index.json has no _nuance.arch with a unet and a text_encoder (not a ",
                     "model `nuance train --model ldm` exported; adapt other models with --model lora --base)");
        std::string pred = "epsilon";
        if (nu->contains("options") && (*nu)["options"].is_object() && (*nu)["options"].contains("prediction") &&
            (*nu)["options"]["prediction"].is_string())
            pred = (*nu)["options"]["prediction"].get<std::string>();
        NUANCE_CHECK(pred == o.prediction, "--init '", dir, "' was trained for ", pred, "; pass --prediction ", pred);
        return *idx;
    }

    // Every parameter of `m` from the component's weights file (names and shapes as write_component wrote them).
    static void load_init_weights(Module& m, const std::string& dir, const std::string& file) {
        const std::string path = dir + "/" + file;
        NUANCE_CHECK_CODE(file_exists(path), NotFound, "--init: no ", path);
        const WeightFile w = load_safetensors(path);
        size_t used = 0;
        for_each_param(m, [&](const std::string& name, Param& p) {
            auto it = w.tensors.find(name);
            NUANCE_CHECK(it != w.tensors.end(), "--init: '", path, "' has no tensor '", name,
                         "' (the model_index.json architecture does not match the weights)");
            NUANCE_CHECK(it->second.shape() == p.shape, "--init: '", path, "': '", name, "' is ", it->second.shape(),
                         ", the architecture wants ", p.shape);
            p.value = it->second.f32().contiguous().clone();
            ++used;
        });
        NUANCE_CHECK(used == w.tensors.size(), "--init: '", path, "' has ", w.tensors.size() - used,
                     " tensor(s) the architecture does not use");
    }

    void register_module(Module& m, const std::string& prefix) {
        for_each_param(m, [&](const std::string& name, Param& p) { params.add(prefix + name, p); });
    }

    void make_data() {
        const int64_t L = o.limit;
        if (o.model == "ddpm") {
            FashionMnistOptions f;
            if (!o.data.empty()) f.dir = o.data;
            f.pad_to_32 = o.resolution == 32;
            NUANCE_CHECK(o.resolution == 28 || o.resolution == 32, "ddpm on Fashion-MNIST: resolution must be 28 or 32, got ",
                         o.resolution);
            f.random_flip = o.random_flip;
            f.caption_dropout = o.caption_dropout;
            f.limit = L;
            data = std::make_unique<FashionMnistDataset>(f);
        } else {
            NUANCE_CHECK_CODE(!o.data.empty(), InvalidArgument, "train: --data is required (an image folder)");
            NUANCE_CHECK_CODE(is_directory(o.data), NotFound, "train: data folder '", o.data, "' does not exist");
            auto images = make_image_dataset(o, o.model == "vae" ? 0.0f : o.caption_dropout);
            image_data = images.get();
            data = std::move(images);
        }
        NUANCE_CHECK(data->size() > 0, "train: the data set '", o.data, "' is empty");
        NUANCE_CHECK(data->size() >= o.batch, "train: the data set has ", data->size(), " images, fewer than the batch size ",
                     o.batch);
        loader = std::make_unique<DataLoader>(*data, o.seed, train_loader_options(o, image_data));
        moments_cache.assign((size_t)data->size(), Tensor());
    }

    void make_optimizer() {
        AdamWOptions ao;
        ao.lr = o.lr;
        ao.weight_decay = o.weight_decay;
        opt = std::make_unique<AdamW>(params, ao);
        if (o.ema_decay > 0) {
            EmaOptions eo;
            eo.decay = o.ema_decay;
            ema = std::make_unique<Ema>(params, eo);
        }
    }

    // ---- losses ----

    // VAE: L1 + MSE reconstruction of a posterior sample, plus kl_weight * KL(q(z|x) || N(0, I)) per element.
    // The random numbers are drawn for the whole global batch of `B` rows and sliced to this rank's rows, so that any
    // number of ranks sees the same ones a single process would.
    Tensor my_rows(const Tensor& full) const { return full.slice(0, rows.begin, rows.end).contiguous(); }
    Tensor randn_rows(TorchCpuRng& normal, Shape shape, int64_t B) const {
        shape[0] = B;
        return rows.begin == 0 && rows.end == B ? normal.randn(shape) : my_rows(normal.randn(shape));
    }

    // b: this rank's rows of a global batch of B.
    Var vae_loss(const Batch& b, int64_t B, Mt19937& rng) {
        const Var x(b.images);
        const Var moments = vae_encode_moments(*vae, x);
        auto [mean_v, logvar_raw] = chunk<2>(moments, 1);
        const Var logvar = clamp(logvar_raw, -30.0f, 20.0f);
        TorchCpuRng normal(rng());
        const Var eps(randn_rows(normal, mean_v.shape(), B));
        const Var z = mean_v + exp(logvar * 0.5f) * eps;
        const Var rec = vae_decode(*vae, z);
        const Var kl = mean(square(mean_v) + exp(logvar) - logvar - 1.0f) * 0.5f;
        return l1_loss(rec, x) + mse_loss(rec, x) + kl * o.kl_weight;
    }

    Tensor latents_of(const Batch& b, int64_t global_B, Mt19937& rng) {
        if (o.model == "ddpm") return b.images;
        const int64_t B = (int64_t)b.indices.size();
        std::vector<Tensor> ms;
        std::vector<int64_t> missing;
        for (int64_t i = 0; i < B; ++i)
            if (!moments_cache[(size_t)b.indices[(size_t)i]].defined() || o.random_flip) missing.push_back(i);
        if (!missing.empty()) {
            NoGradGuard ng;
            std::vector<Tensor> imgs;
            for (int64_t i : missing) imgs.push_back(b.images.slice(0, i, i + 1));
            const Tensor mom = vae->encode_moments(cat(imgs, 0));
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
        return vae->to_latents(post.sample(randn_rows(normal, post.mean.shape(), global_B)));
    }

    Var diffusion_loss(const Batch& b, int64_t B, Mt19937& rng) {
        const Tensor x0 = latents_of(b, B, rng);
        std::vector<int64_t> t_all(B);
        for (int64_t i = 0; i < B; ++i) t_all[(size_t)i] = uniform_below(rng, (uint32_t)schedule.num_train_timesteps());
        const std::vector<int64_t> t(t_all.begin() + rows.begin, t_all.begin() + rows.end);
        TorchCpuRng normal(rng());
        Tensor noise = randn_rows(normal, x0.shape(), B);
        if (o.noise_offset > 0)  // kohya's noise offset: one draw per row and channel, after the noise
            noise = noise + randn_rows(normal, {B, x0.size(1), 1, 1}, B) * o.noise_offset;
        const NoisedBatch nb = add_training_noise(x0, noise, t, schedule, o.prediction);
        const Var ctx = clip_encode(*te, tokenize(b.captions, te->config().max_positions));
        const Var pred = unet_forward(*unet, Var(nb.x_t), nb.timesteps, ctx);
        if (o.min_snr_gamma > 0)  // mean over each row times its weight, mean over the rows
            return mean(mul(square(sub(pred, Var(nb.target))),
                            Var(min_snr_weights(t, schedule, o.min_snr_gamma, o.prediction))));
        return mse_loss(pred, Var(nb.target));
    }

    // ---- checkpoints ----

    void save(const std::string& path) override {
        std::vector<std::pair<std::string, Tensor>> tensors;
        for (auto& e : params.entries()) tensors.emplace_back("model." + e.name, e.param->value);
        for (auto& [k, v] : opt->state_dict()) tensors.emplace_back("optim." + k, v);
        if (ema)
            for (auto& [k, v] : ema->state_dict()) tensors.emplace_back("ema." + k, v);
        nlohmann::json meta;
        meta["step"] = step;
        meta["model"] = o.model;
        meta["arch"] = arch;
        meta["options"] = options_json(o);
        const LoaderState ls = loader->state();
        meta["loader"] = {{"seed", ls.seed}, {"epoch", ls.epoch}, {"position", ls.position}};
        meta["ema_updates"] = ema ? ema->updates() : 0;
        meta["world_size"] = dist::size();
        if (vae && o.model == "ldm") meta["vae_scaling_factor"] = vae->config().scaling_factor;
        save_checkpoint_file(path, tensors, meta);
    }

    void load(const std::string& path) override {
        CheckpointFile ck = load_checkpoint_file(path);
        const nlohmann::json& meta = ck.meta;
        const std::string where = "checkpoint '" + path + "': nuance_train metadata";
        const std::string model = json_field<std::string>(meta, "model", "?", where);
        NUANCE_CHECK(model == o.model, "checkpoint '", path, "' is a ", model, " run, not ", o.model);
        const std::string has = meta.contains("arch") ? meta["arch"].dump().substr(0, 200) : std::string("null");
        NUANCE_CHECK(meta.contains("arch") && meta["arch"] == arch, "checkpoint '", path,
                     "' does not match the configured architecture: it has ", has, ", this run ", arch.dump());
        for (auto& e : params.entries()) {
            auto it = ck.tensors.find("model." + e.name);
            NUANCE_CHECK(it != ck.tensors.end(), "checkpoint '", path, "' has no tensor 'model.", e.name, "'");
            NUANCE_CHECK(it->second.shape() == e.param->shape, "checkpoint '", path, "': 'model.", e.name, "' is ",
                         it->second.shape(), ", the model wants ", e.param->shape);
            e.param->value.copy_(it->second);
        }
        std::map<std::string, Tensor> optim, emas;
        for (auto& [k, v] : ck.tensors) {
            if (k.rfind("optim.", 0) == 0) optim[k.substr(6)] = v;
            if (k.rfind("ema.", 0) == 0) emas[k.substr(4)] = v;
        }
        opt->load_state_dict(optim);
        if (ema) ema->load_state_dict(emas, json_field<int64_t>(meta, "ema_updates", 0, where));
        step = json_required<int64_t>(meta, "step", where);
        const int64_t ranks_then = json_field<int64_t>(meta, "world_size", 1, where);
        if (ranks_then != dist::size() && dist::is_root())
            std::fprintf(stderr,
                         "note: '%s' was written by a run of %lld rank(s), this one has %d: the data order and random "
                         "numbers are the same (they do not depend on the ranks), the gradient sums round differently\n",
                         path.c_str(), (long long)ranks_then, dist::size());
        LoaderState ls;
        const std::string loader_where = where + " loader";
        ls.seed = json_required<uint64_t>(meta["loader"], "seed", loader_where);
        ls.epoch = json_required<int64_t>(meta["loader"], "epoch", loader_where);
        ls.position = json_required<int64_t>(meta["loader"], "position", loader_where);
        loader->set_state(ls);
    }

    // ---- export ----

    std::string export_model() {
        const std::string dir = o.output + (o.model == "vae" ? "/vae" : "/model");
        if (ema) ema->swap_into_params();
        try {
            if (o.model == "vae") {
                calibrate_scaling_factor();
                export_vae(*vae, dir, o.resolution);
            } else {
                export_pipeline(dir);
            }
        } catch (...) {
            if (ema) ema->swap_into_params();
            throw;
        }
        if (ema) ema->swap_into_params();
        return dir;
    }

    // LDM's rule: scale latents to unit variance, 1 / std of posterior means over (up to) 1,024 images.
    void calibrate_scaling_factor() {
        NoGradGuard ng;
        const int64_t n = std::min<int64_t>(data->size(), 1024);
        double s = 0, s2 = 0;
        int64_t cnt = 0;
        Mt19937 rng(o.seed);
        for (int64_t i0 = 0; i0 < n; i0 += 64) {
            std::vector<Tensor> imgs;
            for (int64_t i = i0; i < std::min(n, i0 + 64); ++i) imgs.push_back(data->get(i, rng).image.unsqueeze(0));
            const Tensor m = DiagonalGaussian::from_moments(vae->encode_moments(cat(imgs, 0))).mean.contiguous();
            const float* p = m.data<float>();
            for (int64_t k = 0; k < m.numel(); ++k) s += p[k], s2 += (double)p[k] * p[k], ++cnt;
        }
        const double var = s2 / (double)cnt - (s / (double)cnt) * (s / (double)cnt);
        vae->set_scaling_factor(var > 0 ? (float)(1.0 / std::sqrt(var)) : 1.0f);
    }

    nlohmann::json nuance_meta() const {
        nlohmann::json m = {{"trained_steps", step}, {"options", options_json(o)}, {"arch", arch}};
        if (!o.init.empty()) {  // fine-tuned: the steps of the model it started from come first
            const std::optional<nlohmann::json> idx = read_optional_json_object(o.init + "/model_index.json");
            if (idx && idx->contains("_nuance")) {
                m["init"] = (*idx)["_nuance"];
                // the generation defaults (size, steps, CFG, sampler, example prompt) follow the model it refines
                const nlohmann::json& nu = (*idx)["_nuance"];
                if (nu.is_object() && nu.contains("defaults") && nu["defaults"].is_object()) m["defaults"] = nu["defaults"];
            }
        }
        if (fq) m["qat"] = {{"type", qat_recipe(o.qat)->name}, {"tensors", fq->tensors_per_type()}};
        return m;
    }

    void export_pipeline(const std::string& dir) {
        const int64_t sample = o.model == "ldm" ? o.resolution / vae->config().downscale() : o.resolution;
        write_component(dir + "/unet", *unet, "diffusion_pytorch_model.safetensors",
                        unet_diffusers_config(unet->config(), sample));
        write_component(dir + "/text_encoder", *te, "model.safetensors", clip_hf_config(te->config()));
        if (vae) export_vae(*vae, dir + "/vae", o.resolution);
        // ddpm: diffusers' DDPMPipeline layout (unet/ + scheduler/ with a DDPMScheduler, no vae/), plus the text
        // encoder of its class-name captions; generate detects it by the missing VAE (models/sd/pixel_space.h).
        const bool pixel = o.model == "ddpm";
        const char* sched_class = pixel ? "DDPMScheduler" : "DDIMScheduler";
        nlohmann::json sched = {{"_class_name", sched_class}, {"num_train_timesteps", 1000},
                                {"beta_start", 0.00085}, {"beta_end", 0.012}, {"beta_schedule", "scaled_linear"},
                                {"prediction_type", o.prediction}, {"steps_offset", 1}, {"clip_sample", false}};
        if (pixel) sched["variance_type"] = "fixed_small";
        else sched["set_alpha_to_one"] = false;
        write_json(dir + "/scheduler/scheduler_config.json", sched);
        nlohmann::json index = {{"_class_name", pixel ? "DDPMPipeline" : "StableDiffusionPipeline"},
                                {"_nuance", nuance_meta()},
                                {"unet", {"diffusers", "UNet2DConditionModel"}},
                                {"text_encoder", {"transformers", "CLIPTextModel"}},
                                {"scheduler", {"diffusers", sched_class}}};
        if (vae) index["vae"] = {"diffusers", "AutoencoderKL"};
        write_json(dir + "/model_index.json", index);
    }
};

// ---- entry point ----

TrainReport train(const TrainOptions& opts, const TrainCallback& on_step) {
    validate_train_options(opts);  // every numeric option bounded (train/train_options.h)
    if (opts.model == "lora") return train_lora(opts, on_step);
    TrainRun run(opts);
    run.rows = local_rows(opts.batch);
    run.build();
    run.make_data();
    run.make_optimizer();
    TrainLoopOptions lo;
    lo.rows = run.rows;
    TrainReport rep = run_train_loop(opts, run, lo, on_step);
    if (dist::is_root()) rep.exported = run.export_model();
    dist::barrier();  // no rank leaves before the export is written
    return rep;
}

}  // namespace nuance
