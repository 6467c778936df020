// DiTModel: the DiT family's DiffusionModel (conditioning = a class label, predict = eps half of the output, SD VAE).
// Shape letters: B batch (null-class rows first, then the class rows), C latent channels, h/w latent size.
#include "models/dit/dit_model.h"

#include "backends/backend.h"
#include "io/json_field.h"
#include "io/json_file.h"
#include "io/weights.h"
#include "models/convert/original_parts.h"
#include "models/dit/dit_family.h"
#include "models/dit/dit_sampling.h"
#include "models/dit/imagenet_classes.h"
#include "models/model_defaults.h"
#include "models/sd/sd_family.h"
#include "ops/ops.h"

namespace nuance {

namespace {

constexpr const char* kVaeHint = "pass the Stable Diffusion VAE DiT was trained with (sd-vae-ft-ema or "
                                 "sd-vae-ft-mse: 4 latent channels, scaling 0.18215) with --vae";

LoadOptions weight_options(const std::string& source, Precision p) {
    LoadOptions o;
    o.source = source;
    o.matrices_as_stored = true;
    o.matrix_compute = p;
    return o;
}

const nlohmann::json* option_config(const ModelLoadOptions& o, const std::string& key) {
    auto it = o.configs.find(key);
    return it == o.configs.end() ? nullptr : &it->second;
}

// A VAE from its own file (--vae: diffusers names, or the original layout with or without first_stage_model.) or
// from a pipeline folder's vae/ (with its config.json).
std::unique_ptr<AutoencoderKL> build_vae(const std::map<std::string, Tensor>& file_tensors, const nlohmann::json* cfg,
                                         const std::string& source, Precision p) {
    std::map<std::string, Tensor> t;
    const std::string prefix = "first_stage_model.";
    for (const auto& [k, v] : file_tensors) t[k.rfind(prefix, 0) == 0 ? k.substr(prefix.size()) : k] = v;
    const auto has_prefix = [&](const char* p) {
        auto it = t.lower_bound(p);
        return it != t.end() && it->first.rfind(p, 0) == 0;
    };
    if (!has_prefix("encoder.down_blocks.") && !has_prefix("decoder.up_blocks.") &&
        (has_prefix("encoder.down.") || has_prefix("decoder.up.") || has_prefix("decoder.mid."))) {
        // The original (CompVis) layout: keep the VAE's own keys (a whole SD checkpoint passed as --vae carries a
        // UNet and text encoders too) and map them to diffusers names, as the SD family does.
        std::map<std::string, Tensor> bare;
        for (const auto& [k, v] : t)
            for (const char* own : {"encoder.", "decoder.", "quant_conv.", "post_quant_conv."})
                if (k.rfind(own, 0) == 0) bare[k] = v;
        t = original_format::vae_from_original(bare);
    }
    t = rename_legacy_vae_attention(t);
    NUANCE_CHECK(t.count("decoder.conv_in.weight"), "VAE '", source, "' has no decoder (decoder.conv_in.weight): ",
                 "it is not an AutoencoderKL file; ", kVaeHint);
    AutoencoderKLConfig c = AutoencoderKLConfig::detect(t);
    try {
        if (cfg && !cfg->empty()) c.apply_diffusers_config(*cfg);
    } catch (const nlohmann::json::exception& e) {
        fail(ErrorCode::InvalidArgument, "VAE config for '", source, "': ", e.what());
    }
    auto m = std::make_unique<AutoencoderKL>(c);
    load_module(*m, t, weight_options(source, p));
    return m;
}

void refuse_unused_flags(const ModelLoadOptions& o, const std::string& path) {
    for (const auto& [flag, value] : {std::pair<const char*, const std::string*>{"--clip-l", &o.clip_l},
                                      {"--clip-g", &o.clip_g}, {"--clip-h", &o.clip_h}, {"--t5xxl", &o.t5xxl}})
        NUANCE_CHECK_CODE(value->empty(), Unsupported, flag, " '", *value, "': DiT ('", path,
                          "') is class-conditional and uses no text encoder; give the class with --class-label N or ",
                          "an ImageNet class name as the prompt");
    NUANCE_CHECK_CODE(o.prediction.empty() || o.prediction == "epsilon" || o.prediction == "eps", Unsupported,
                      "--prediction '", o.prediction, "': DiT ('", path,
                      "') predicts epsilon (with a learned variance); it has no other prediction type");
}

// DiT's preset names (models.py DiT_models): depth and width -> "XL", "L", "B", "S".
const char* preset_name(int64_t depth, int64_t hidden) {
    if (depth == 28 && hidden == 1152) return "XL";
    if (depth == 24 && hidden == 1024) return "L";
    if (depth == 12 && hidden == 768) return "B";
    if (depth == 12 && hidden == 384) return "S";
    return nullptr;
}

}  // namespace

std::unique_ptr<DiffusionModel> load_dit_model(const ModelSource& src, const ModelLoadOptions& o) {
    const std::string& path = src.path;
    refuse_unused_flags(o, path);
    const Precision prec = resolve_precision(o.precision);
    auto m = std::make_unique<DiTModel>();
    DiTLoadOptions dopt;
    dopt.load = weight_options(path, prec);
    // Without a VAE there is nothing to decode: said before the transformer is read.
    const std::string pipe_vae = path + "/vae";
    if (o.vae_path.empty() && !(src.folder() && is_directory(pipe_vae))) {
        const bool original = !src.folder() && src.index.has("x_embedder.proj.weight");
        fail(ErrorCode::InvalidArgument, src.folder() ? "DiT folder '" : "'", path,
             src.folder() ? "' has no vae/"
                          : str("' is a DiT transformer (", original ? "original" : "diffusers", " layout) without a VAE"),
             "; ", kVaeHint);
    }
    const nlohmann::json* tcfg = option_config(o, "transformer");
    LoadedDiT d;
    if (src.folder()) {
        if (tcfg) {  // the caller's config says what the folder's would (heads)
            dopt.heads = json_field<int64_t>(*tcfg, "num_attention_heads", 0, "transformer config");
            NUANCE_CHECK(dopt.heads >= 0 && dopt.heads <= 4096, "transformer config: num_attention_heads must be in ",
                         "0..4096, got ", dopt.heads);
        }
        d = load_dit(path, dopt);
    } else {
        const WeightFile wf = src.file ? WeightFile{} : load_weights(path);
        const auto& tensors = src.file ? src.file->tensors : wf.tensors;
        d = load_dit_tensors(tensors, path, dopt, tcfg);
    }
    m->transformer = std::move(d.model);
    m->layout = d.layout;
    if (!o.vae_path.empty()) {
        const WeightFile vw = load_weights(o.vae_path);
        m->vae = build_vae(vw.tensors, option_config(o, "vae"), o.vae_path, prec);
    } else {
        const std::string vw = find_first_file(pipe_vae, {"diffusion_pytorch_model.safetensors",
                                                          "diffusion_pytorch_model.fp16.safetensors",
                                                          "diffusion_pytorch_model.bin"});
        NUANCE_CHECK_CODE(!vw.empty(), NotFound, "DiT folder '", path, "': no weights in vae/ ",
                          "(diffusion_pytorch_model.safetensors); ", kVaeHint);
        const std::optional<nlohmann::json> vcfg = read_optional_json_object(pipe_vae + "/config.json");
        m->vae = build_vae(load_weights(vw).tensors, vcfg ? &*vcfg : option_config(o, "vae"), vw, prec);
    }
    const DiTConfig& c = m->transformer->config();
    NUANCE_CHECK(m->vae->config().latent_channels == c.in_channels, "DiT '", path, "' works on ", c.in_channels,
                 "-channel latents but the VAE '", o.vae_path.empty() ? pipe_vae : o.vae_path, "' makes ",
                 m->vae->config().latent_channels);
    NUANCE_CHECK(c.out_channels == c.in_channels || c.learned_sigma(), "DiT '", path, "' outputs ", c.out_channels,
                 " channels for ", c.in_channels, " latent channels (expected ", c.in_channels, " or ",
                 2 * c.in_channels, ")");
    if (src.folder()) {
        const std::string sc = path + "/scheduler/scheduler_config.json";
        if (auto j = read_optional_json_object(sc)) {
            m->scheduler_config = std::move(*j);
            try {
                m->objective();  // checks every field it reads
            } catch (const Error& e) {
                fail(e.code(), "'", sc, "': ", e.what());
            }
        }
    }
    m->path = path;
    m->name = stem(path);
    m->precision = prec;
    return m;
}

std::string DiTModel::variant() const {
    const DiTConfig& c = transformer->config();
    const char* p = preset_name(c.depth, c.hidden);
    const std::string base = p ? str("DiT-", p, "/", c.patch_size) : str("DiT-", c.hidden, "x", c.depth, "/", c.patch_size);
    const int64_t s = native_size();
    return s > 0 ? str(base, "-", s) : base;
}

std::string DiTModel::describe() const {
    const DiTConfig& c = transformer->config();
    std::string s = str("family: dit\nlayout: ", dit_layout_name(layout), "\n");
    s += str("transformer: DiT width=", c.hidden, " depth=", c.depth, " heads=", c.heads, " patch=", c.patch_size,
             " mlp=", c.mlp_hidden, " classes=", c.num_classes, " (null class ", c.num_classes, ") sample_size=",
             c.sample_size > 0 ? std::to_string(c.sample_size) : std::string("any"),
             " learned_sigma=", c.learned_sigma() ? "yes" : "no", "\n");
    s += str("vae: channels=", vae->config().block_out_channels, " latent=", vae->config().latent_channels,
             " scaling=", vae->config().scaling_factor, "\n");
    s += str("conditioning: class label 0..", c.num_classes - 1,
             c.num_classes == kImageNetClasses ? " (ImageNet-1k; a class name as the prompt works too)" : "", "\n");
    return s;
}

std::vector<std::pair<std::string, Module*>> DiTModel::modules() {
    return {{"transformer", transformer.get()}, {"vae", vae.get()}};
}

int64_t DiTModel::native_size() const {
    const int64_t s = transformer->config().sample_size;
    return s > 0 ? s * vae->config().downscale() : 0;
}

LatentFormat DiTModel::latent_format() const {
    LatentFormat f;
    f.channels = vae->config().latent_channels;
    f.downscale = vae->config().downscale();
    f.scaling_factor = vae->scaling_factor();
    f.shift_factor = vae->shift_factor();
    if (f.channels == 4) f.rgb_factors = sd_latent_rgb_factors(SDFamily::SD1);  // the same SD VAE
    return f;
}

Objective DiTModel::objective() const {
    Objective o;
    o.prediction = Prediction::Epsilon;
    o.noise = dit_noise_schedule().config();
    // A pipeline folder's scheduler config may restate the betas (diffusers parity); wrong types are named errors.
    const auto& j = scheduler_config;
    constexpr std::string_view where = "DiT scheduler_config";
    NoiseScheduleConfig& c = o.noise;
    c.beta_start = json_field(j, "beta_start", c.beta_start, where);
    c.beta_end = json_field(j, "beta_end", c.beta_end, where);
    c.num_train_timesteps = json_field(j, "num_train_timesteps", c.num_train_timesteps, where);
    const std::string bs = json_field<std::string>(j, "beta_schedule", "linear", where);
    NUANCE_CHECK(bs == "linear" || bs == "scaled_linear", where, ": beta_schedule '", bs,
                 "' is not one DiT uses (linear)");
    c.beta_schedule = bs == "linear" ? BetaSchedule::Linear : BetaSchedule::ScaledLinear;
    const std::string spacing = json_field<std::string>(j, "timestep_spacing", "", where);
    if (!spacing.empty()) o.spacing = parse_spacing(spacing);
    o.steps_offset = json_field(j, "steps_offset", 0, where);  // DDIMScheduler's default, as DiTPipeline runs it
    // Hostile values are named here, before a schedule of a billion steps is built from them.
    NUANCE_CHECK(c.num_train_timesteps >= 2 && c.num_train_timesteps <= 100000, where,
                 ": num_train_timesteps must be in [2, 100000], got ", c.num_train_timesteps);
    NUANCE_CHECK(c.beta_start > 0 && c.beta_start < 1 && c.beta_end > 0 && c.beta_end < 1, where,
                 ": beta_start and beta_end must be in (0, 1), got ", c.beta_start, " and ", c.beta_end);
    NUANCE_CHECK(*o.steps_offset >= 0 && *o.steps_offset <= 100000, where, ": steps_offset must be in [0, 100000], got ",
                 *o.steps_offset);
    const std::string pred = json_field<std::string>(j, "prediction_type", "epsilon", where);
    NUANCE_CHECK(pred == "epsilon", where, ": prediction_type '", pred, "': DiT predicts epsilon");
    return o;
}

GenerationDefaults DiTModel::generation_defaults() const {
    GenerationDefaults d = dit_model_spec().defaults;
    const int64_t s = native_size();
    if (s >= 8 && s <= 16384) d.width = d.height = (int)s;
    if (transformer->config().num_classes != kImageNetClasses) d.prompt = "0";  // a class number: no names known
    if (is_directory(path)) apply_folder_defaults(path, d);
    return d;
}

int64_t DiTModel::class_of(const ConditioningRequest& r) const {
    const int64_t K = transformer->config().num_classes;
    if (r.negative) {
        NUANCE_CHECK(r.text.empty(), "DiT takes no negative prompt (got '", r.text, "'): the unconditional side of ",
                     "its guidance is the null class ", K);
        return K;
    }
    NUANCE_CHECK(r.class_label < K, "class label ", r.class_label, " is out of range for this DiT: 0..", K - 1);
    int64_t from_text = -1;
    if (!r.text.empty()) {
        try {
            from_text = parse_class_label(r.text, K);
        } catch (const Error& e) {
            if (r.class_label >= 0)
                fail(ErrorCode::InvalidArgument, "DiT takes a class label, not a prompt: --class-label ",
                     r.class_label, " is given, drop the prompt '", r.text, "' (or make it that class's name)");
            fail(ErrorCode::InvalidArgument, "DiT takes a class label, not a prompt: '", r.text, "' is not one of its ",
                 "classes (", e.what(), "). Pass ",
                 "--class-label N (0..", K - 1, ")", K == kImageNetClasses ? " or an ImageNet class name as the "
                 "prompt (the names are listed in src/models/dit/imagenet_classes.inc)" : "");
        }
    }
    if (r.class_label >= 0) {
        NUANCE_CHECK(from_text < 0 || from_text == r.class_label, "--class-label ", r.class_label,
                     " and the prompt '", r.text, "' (class ", from_text, ") name different classes; give one");
        return r.class_label;
    }
    NUANCE_CHECK(from_text >= 0, "DiT needs a class: --class-label N (0..", K - 1, ")",
                 K == kImageNetClasses ? " or an ImageNet class name as the prompt (e.g. \"golden retriever\")" : "");
    return from_text;
}

Conditioning DiTModel::encode(const ConditioningRequest& r) const {
    Conditioning c;
    c["class_labels"] = Tensor::from_ids({class_of(r)}, {1});  // [1]; the null class on the negative side
    return c;
}

Tensor DiTModel::predict(const Tensor& x_in, double timestep, const Conditioning& cond, const StepContext& step) const {
    const DiTConfig& c = transformer->config();
    const int64_t B = x_in.size(0), h = x_in.size(2), w = x_in.size(3);
    NUANCE_CHECK(c.sample_size <= 0 || (h == c.sample_size && w == c.sample_size), "DiT '", name, "' makes ",
                 native_size(), "x", native_size(), " images only (its position embedding is fixed for ",
                 c.sample_size, "x", c.sample_size, " latents), got ", step.width, "x", step.height);
    const Tensor& y = cond.at("class_labels");  // [B]
    NUANCE_CHECK(y.dim() == 1 && y.size(0) == B, "DiT: ", y.shape(), " class labels for ", B, " latents");
    const Tensor t = Tensor::full({B}, (float)timestep);                      // timesteps.expand(B)
    const Tensor out = transformer->forward(x_in, t, y);                      // [B, Co, h, w]
    return out.narrow(1, 0, c.in_channels).contiguous();                      // eps; learned sigma dropped
}

Tensor DiTModel::combine_guidance(const Tensor& uncond, const Tensor& cond, float scale) const {
    const Tensor g = DiffusionModel::combine_guidance(uncond, cond, scale);  // u + s (c - u)   [1, C, h, w]
    const int64_t C = g.size(1);
    if (layout != DiTLayout::Original || C <= 3) return g;
    // models.py forward_with_cfg: eps, rest = out[:, :3], out[:, 3:]; only eps is guided.
    return cat({g.narrow(1, 0, 3), cond.narrow(1, 3, C - 3)}, 1);
}

Tensor DiTModel::decode(const Tensor& latents, const VaeTiling& tiling) const {
    return vae_decode_tiled(*vae, vae->from_latents(latents), tiling);  // DiTPipeline: decode(latents / 0.18215)
}

Tensor DiTModel::encode_image(const Image& img, int w, int h, const VaeTiling& tiling, Rng& rng) const {
    const Image sized = (img.width == w && img.height == h) ? img : resize_image(img, w, h);
    const DiagonalGaussian post = vae_encode_tiled(*vae, image_to_tensor(sized), tiling);
    const Tensor eps = rng.randn(post.mean.shape());
    return vae->to_latents(post.sample(eps));
}

std::string DiTModel::infotext_fields(const ConditioningRequest& r) const {
    return str(", Class label: ", class_of(r));
}

}  // namespace nuance
