#include "models/sd/stable_diffusion.h"

#include "backends/backend.h"

#include "io/json_file.h"
#include "io/weights.h"
#include "models/convert/original_format.h"
#include "models/convert/original_parts.h"
#include "models/clip/clip_text.h"
#include "models/sd/sd_split_files.h"
#include <set>

namespace nuance {

const char* sd_family_name(SDFamily f) {
    switch (f) {
        case SDFamily::SD1: return "sd1";
        case SDFamily::SD2: return "sd2";
        case SDFamily::SDXL: return "sdxl";
    }
    return "?";
}

namespace {

// A component config and the file it came from ("" when it came from ModelLoadOptions or is absent).
struct Config {
    nlohmann::json json = nlohmann::json::object();
    std::string file;
};

Config config_or_empty(const ModelLoadOptions& o, const std::string& key) {
    auto it = o.configs.find(key);
    return it == o.configs.end() ? Config{} : Config{it->second, ""};
}

// <dir>/config.json when present (it must then be a readable JSON object), else the options' config for `key`.
Config folder_config(const std::string& file, const ModelLoadOptions& o, const std::string& key) {
    if (auto j = read_optional_json_object(file)) return Config{std::move(*j), file};
    return config_or_empty(o, key);
}

// Runs `f` (which applies `cfg` and builds the module from it), prefixing any complaint with the config file's
// name: a bad value may only show when the module is built (e.g. norm groups that do not divide a width).
template <class F>
auto with_config(const Config& cfg, F&& f) {
    try {
        return f();
    } catch (const Error& e) {
        if (cfg.file.empty()) throw;
        fail(e.code(), "'", cfg.file, "': ", e.what());
    } catch (const nlohmann::json::exception& e) {  // a value of the wrong JSON type
        fail(ErrorCode::InvalidArgument, cfg.file.empty() ? std::string("config") : "'" + cfg.file + "'", ": ",
             e.what());
    }
}

LoadOptions weight_options(const std::string& source, Precision p) {
    LoadOptions o;
    o.source = source;
    o.matrices_as_stored = true;
    o.matrix_compute = p;
    return o;
}

std::unique_ptr<ClipTextModel> build_clip(const std::map<std::string, Tensor>& t, const Config& cfg,
                                          const std::string& source, Precision p) {
    ClipTextConfig c = ClipTextConfig::detect(t);
    auto m = with_config(cfg, [&] {
        if (!cfg.json.empty()) c.apply_hf_config(cfg.json);
        return std::make_unique<ClipTextModel>(c);
    });
    load_module(*m, t, weight_options(source, p));
    return m;
}

std::unique_ptr<UNet2DConditionModel> build_unet(const std::map<std::string, Tensor>& t, const Config& cfg,
                                                 const std::string& source, int64_t pooled_dim, Precision p) {
    UNetConfig c = UNetConfig::detect(t);
    // SDXL's add_embedding input = pooled text embedding + 6 sinusoidal time ids: infer the time-id width from the
    // pooled width of the second text encoder when no config says it.
    if (c.text_time && pooled_dim > 0 && c.add_in_dim > pooled_dim && (c.add_in_dim - pooled_dim) % 6 == 0)
        c.addition_time_embed_dim = (c.add_in_dim - pooled_dim) / 6;
    auto m = with_config(cfg, [&] {
        if (!cfg.json.empty()) {
            c.apply_json(cfg.json);
            for (size_t i = 0; i < c.heads.size(); ++i)  // head counts come only from the config: check them here
                NUANCE_CHECK(c.heads[i] > 0 && i < c.block_out_channels.size() &&
                                 c.block_out_channels[i] % c.heads[i] == 0,
                             "attention heads ", c.heads, " do not divide the block widths ", c.block_out_channels);
            NUANCE_CHECK(c.norm_num_groups > 0, "norm_num_groups = ", c.norm_num_groups);
        }
        return std::make_unique<UNet2DConditionModel>(c);
    });
    load_module(*m, t, weight_options(source, p));
    return m;
}

std::unique_ptr<AutoencoderKL> build_vae(const std::map<std::string, Tensor>& t_in, const Config& cfg,
                                         const std::string& source, SDFamily fam, Precision p) {
    const std::map<std::string, Tensor> t = rename_legacy_vae_attention(t_in);  // query/key/value/proj_attn names
    AutoencoderKLConfig c = AutoencoderKLConfig::detect(t);
    if (fam == SDFamily::SDXL) c.scaling_factor = 0.13025f;
    auto m = with_config(cfg, [&] {
        if (!cfg.json.empty()) c.apply_diffusers_config(cfg.json);
        return std::make_unique<AutoencoderKL>(c);
    });
    load_module(*m, t, weight_options(source, p));
    return m;
}

// A --vae file: diffusers names, or the original layout with or without the first_stage_model. prefix.
std::map<std::string, Tensor> vae_tensors_from_file(const std::string& path) {
    WeightFile wf = load_weights(path);
    if (wf.tensors.count("encoder.down_blocks.0.resnets.0.conv1.weight")) return wf.tensors;
    const std::string prefix = "first_stage_model.";
    std::map<std::string, Tensor> bare;
    for (auto& [k, v] : wf.tensors) {
        if (k.rfind(prefix, 0) == 0) bare[k.substr(prefix.size())] = v;
        else if (k.rfind("encoder.", 0) == 0 || k.rfind("decoder.", 0) == 0 || k.rfind("quant_conv.", 0) == 0 ||
                 k.rfind("post_quant_conv.", 0) == 0)
            bare[k] = v;
    }
    NUANCE_CHECK(!bare.empty(), "VAE file '", path, "' has no recognisable VAE tensors (encoder.*, decoder.*)");
    return original_format::vae_from_original(bare);
}

int pad_id_from_tokenizer_config(const std::string& dir, int fallback) {
    for (const char* f : {"/special_tokens_map.json", "/tokenizer_config.json"}) {
        const auto j = read_optional_json_object(dir + f);
        if (!j || !j->contains("pad_token")) continue;
        const nlohmann::json& p = (*j)["pad_token"];
        std::string pad;
        if (p.is_string()) pad = p.get<std::string>();
        else if (p.is_object() && p.contains("content") && p["content"].is_string())
            pad = p["content"].get<std::string>();
        if (pad == "!") return 0;
        if (pad == "<|endoftext|>") return ClipTokenizer::kEosId;
    }
    return fallback;
}

void load_text_encoder_dir(TextEncoderSlot& slot, const std::string& root, const std::string& sub,
                           const std::string& tok_sub, int default_pad, const ModelLoadOptions& o, Precision p) {
    const std::string dir = root + "/" + sub;
    const std::string w = find_first_file(dir, {"model.safetensors", "model.safetensors.index.json",
                                                "pytorch_model.bin", "model.fp16.safetensors"});
    NUANCE_CHECK_CODE(!w.empty(), NotFound, "diffusers folder '", root, "': no weights in ", sub, "/");
    WeightFile wf = load_weights(w);
    slot.model = build_clip(wf.tensors, folder_config(dir + "/config.json", o, sub), w, p);
    const std::string tdir = root + "/" + tok_sub;
    const std::string vocab = tdir + "/vocab.json", merges = tdir + "/merges.txt";
    if (path_exists(vocab) || path_exists(merges)) {  // a tokenizer folder with one of the two is broken
        require_regular_file(vocab, "tokenizer file");
        require_regular_file(merges, "tokenizer file");
        slot.own_tokenizer = std::make_unique<ClipTokenizer>(ClipTokenizer::from_files(vocab, merges));
    }
    slot.pad_id = pad_id_from_tokenizer_config(tdir, default_pad);
}

// scheduler_config.json values the pipeline reads, checked here so that a bad one is reported against its file.
void check_scheduler_config(const nlohmann::json& j, const std::string& file) {
    auto bad = [&](const char* key, const char* why) {
        fail(ErrorCode::InvalidArgument, "'", file, "': '", key, "' ", why, " (got ", j[key].dump().substr(0, 64), ")");
    };
    for (const char* k : {"prediction_type", "timestep_spacing", "beta_schedule"})
        if (j.contains(k) && !j[k].is_string()) bad(k, "must be a string");
    for (const char* k : {"rescale_betas_zero_snr"})
        if (j.contains(k) && !j[k].is_boolean()) bad(k, "must be a boolean");
    if (j.contains("num_train_timesteps") &&
        (!j["num_train_timesteps"].is_number_integer() || j["num_train_timesteps"].get<int64_t>() < 2 ||
         j["num_train_timesteps"].get<int64_t>() > 100000))
        bad("num_train_timesteps", "must be an integer in [2, 100000]");
    if (j.contains("steps_offset") && (!j["steps_offset"].is_number_integer() || j["steps_offset"].get<int64_t>() < 0 ||
                                       j["steps_offset"].get<int64_t>() > 100000))
        bad("steps_offset", "must be an integer in [0, 100000]");
    for (const char* k : {"beta_start", "beta_end"})
        if (j.contains(k) && (!j[k].is_number() || !(j[k].get<double>() > 0 && j[k].get<double>() < 1)))
            bad(k, "must be a number in (0, 1)");
}

StableDiffusionModel load_diffusers_folder(const std::string& root, const ModelLoadOptions& o) {
    const Precision prec = resolve_precision(o.precision);
    StableDiffusionModel m;
    const std::string mi = root + "/model_index.json";
    NUANCE_CHECK_CODE(path_exists(mi), NotFound, "'", root,
                      "' is a folder without model_index.json (not a diffusers model)");
    const nlohmann::json index = read_json_object(mi);
    NUANCE_CHECK(!index.contains("_class_name") || index["_class_name"].is_string(), "'", mi,
                 "': _class_name is not a string");
    const std::string cls = index.value("_class_name", std::string());
    const bool xl = cls.find("XL") != std::string::npos || is_directory(root + "/text_encoder_2");
    if (auto ucls = read_optional_json_object(root + "/unet/config.json"))
        NUANCE_CHECK_CODE(!ucls->contains("_class_name") || (*ucls)["_class_name"] != "UNet2DModel", Unsupported,
                          "diffusers folder '", root, "': unet/ is an unconditional UNet2DModel (", cls,
                          "), which nuance does not run yet; it runs UNet2DConditionModel, as `nuance train ",
                          "--model ddpm` exports it");
    load_text_encoder_dir(m.te1, root, "text_encoder", "tokenizer", ClipTokenizer::kEosId, o, prec);
    if (xl) load_text_encoder_dir(m.te2, root, "text_encoder_2", "tokenizer_2", 0, o, prec);
    m.family = xl ? SDFamily::SDXL : (m.te1.model->config().act == ClipAct::QuickGelu ? SDFamily::SD1 : SDFamily::SD2);
    if (m.family == SDFamily::SD2) m.te1.pad_id = pad_id_from_tokenizer_config(root + "/tokenizer", 0);
    const std::vector<std::string> names{"diffusion_pytorch_model.safetensors",
                                         "diffusion_pytorch_model.safetensors.index.json",
                                         "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.bin"};
    const std::string uw = find_first_file(root + "/unet", names);
    NUANCE_CHECK_CODE(!uw.empty(), NotFound, "diffusers folder '", root, "': no weights in unet/");
    const Config ucfg = folder_config(root + "/unet/config.json", o, "unet");
    const int64_t pooled = m.te2.model ? m.te2.model->config().projection_dim : 0;
    m.unet = build_unet(load_weights(uw).tensors, ucfg, uw, pooled, prec);
    // Pixel space: diffusers' DDPMPipeline layout (no vae/), or an older nuance ddpm export (no vae/, a 1- or
    // 3-channel UNet that outputs what it takes).
    const int64_t in_ch = m.unet->config().in_channels;
    const bool pixel = o.vae_path.empty() && !is_directory(root + "/vae") &&
                       (cls == "DDPMPipeline" || ((in_ch == 1 || in_ch == 3) && m.unet->config().out_channels == in_ch));
    if (pixel) {
        NUANCE_CHECK(in_ch == 1 || in_ch == 3, "diffusers folder '", root, "': a pixel-space (", cls,
                     ") UNet must take 1 or 3 image channels, got ", in_ch);
        NUANCE_CHECK(m.unet->config().out_channels == in_ch, "diffusers folder '", root, "': a pixel-space UNet must ",
                     "output its ", in_ch, " input channels, got ", m.unet->config().out_channels);
    } else if (!o.vae_path.empty()) {
        m.vae = build_vae(vae_tensors_from_file(o.vae_path), config_or_empty(o, "vae"), o.vae_path, m.family, prec);
    } else {
        const std::string vw = find_first_file(root + "/vae", names);
        NUANCE_CHECK_CODE(!vw.empty(), NotFound, "diffusers folder '", root, "': no weights in vae/");
        m.vae = build_vae(load_weights(vw).tensors, folder_config(root + "/vae/config.json", o, "vae"), vw, m.family,
                          prec);
    }
    const std::string sc = root + "/scheduler/scheduler_config.json";
    if (auto j = read_optional_json_object(sc)) {
        check_scheduler_config(*j, sc);
        m.scheduler_config = std::move(*j);
    }
    m.prediction = m.scheduler_config.value("prediction_type", std::string("epsilon"));
    m.default_clip_skip = 1;
    m.native_size = m.family == SDFamily::SDXL ? 1024 : (m.prediction == "v_prediction" ? 768 : 512);
    if (ucfg.json.contains("sample_size") && !ucfg.json["sample_size"].is_null()) {
        const nlohmann::json& ss = ucfg.json["sample_size"];
        const int64_t scale = m.vae_scale();
        NUANCE_CHECK(ss.is_number_integer() && ss.get<int64_t>() > 0 && ss.get<int64_t>() <= 16384 / scale,
                     ucfg.file.empty() ? std::string("unet config") : "'" + ucfg.file + "'",
                     ": sample_size must be an integer in [1, ", 16384 / scale, "] (got ", ss.dump().substr(0, 64),
                     ")");
        m.native_size = (int)(ss.get<int64_t>() * scale);
    }
    return m;
}

// A single file: an original checkpoint (model.diffusion_model.* with its text encoders and VAE, or the UNet alone),
// or a UNet-only file without that prefix (sd_split_files.h). --clip-l / --clip-g / --vae replace the file's own
// components or supply the ones it lacks; a missing one is an error naming every flag still needed.
StableDiffusionModel load_single_file(const std::string& path, const WeightFile& wf, const ModelLoadOptions& o) {
    const Precision prec = resolve_precision(o.precision);
    StableDiffusionModel m;
    ComponentWeights cw;
    bool unet_only = false;
    if (is_original_layout(wf.tensors)) {
        cw = split_original(wf.tensors);
        if (cw.family == "unknown" && cw.text_encoder.empty()) {  // the UNet alone (sd.cpp's UNet .gguf): it decides
            const SDFamily f = o.family == "sd2"    ? SDFamily::SD2
                               : o.family == "sdxl" ? SDFamily::SDXL
                               : o.family == "sd1"  ? SDFamily::SD1
                                                    : bare_unet_family(TensorIndex::of(
                                                          strip_prefix(wf.tensors, "model.diffusion_model.")));
            cw.family = sd_family_name(f);
        }
        NUANCE_CHECK_CODE(cw.family == "sd1" || cw.family == "sd2" || cw.family == "sdxl", Unsupported, "'", path,
                          "': model family '", cw.family, "' is not supported yet (supported: sd1, sd2, sdxl)");
        m.family = cw.family == "sdxl" ? SDFamily::SDXL : cw.family == "sd2" ? SDFamily::SD2 : SDFamily::SD1;
        unet_only = cw.text_encoder.empty() && cw.vae.empty();
    } else if (const TensorIndex ix = TensorIndex::of(wf.tensors); const auto layout = bare_unet_layout(ix)) {
        // --family sd1|sd2|sdxl says what the cross-attention width cannot (e.g. a tiny test model's).
        m.family = o.family == "sd2"    ? SDFamily::SD2
                   : o.family == "sdxl" ? SDFamily::SDXL
                   : o.family == "sd1"  ? SDFamily::SD1
                                        : bare_unet_family(ix);
        cw.unet = bare_unet_tensors(wf.tensors, *layout);
        unet_only = true;
    } else {
        std::set<std::string> prefixes;
        for (const auto& [k, _] : wf.tensors) {
            prefixes.insert(k.substr(0, k.find('.')));
            if (prefixes.size() > 8) break;
        }
        fail(ErrorCode::Unsupported, "unknown model family in '", path,
             "': no Stable Diffusion UNet (model.diffusion_model.*, or a UNet alone: input_blocks.* / down_blocks.*) ",
             "found; top-level names: ", std::vector<std::string>(prefixes.begin(), prefixes.end()));
    }
    const bool xl = m.family == SDFamily::SDXL, sd2 = m.family == SDFamily::SD2;
    // SD2's one text encoder is OpenCLIP ViT-H (--clip-h); SD1's and SDXL's first are CLIP-L (--clip-l).
    if (sd2 && !o.clip_l.empty())
        fail(ErrorCode::InvalidArgument, "--clip-l '", o.clip_l, "': '", path, "' is an SD2 UNet, whose text encoder ",
             "is OpenCLIP ViT-H: pass it with --clip-h");
    if (!sd2 && !o.clip_h.empty())
        fail(ErrorCode::InvalidArgument, "--clip-h '", o.clip_h, "': '", path, "' is an ", sd_family_name(m.family),
             " UNet; --clip-h is SD2's OpenCLIP ViT-H text encoder (", sd_family_name(m.family), " takes --clip-l",
             xl ? " and --clip-g" : "", ")");
    if (!o.clip_g.empty() && !xl)
        fail(ErrorCode::InvalidArgument, "--clip-g '", o.clip_g, "': '", path, "' is an ", sd_family_name(m.family),
             " UNet, which takes one text encoder (--clip-l); --clip-g is SDXL's second");
    std::vector<std::pair<std::string, std::string>> missing;  // what, flag
    const std::string& te1_file = sd2 ? o.clip_h : o.clip_l;
    if (te1_file.empty() && cw.text_encoder.empty())
        missing.emplace_back(xl    ? "CLIP-L text encoder (conditioner.embedders.0.*)"
                             : sd2 ? "OpenCLIP ViT-H text encoder (cond_stage_model.model.*)"
                                   : "text encoder (cond_stage_model.*)",
                             sd2 ? "--clip-h" : "--clip-l");
    if (xl && o.clip_g.empty() && cw.text_encoder_2.empty())
        missing.emplace_back("OpenCLIP bigG text encoder (conditioner.embedders.1.*)", "--clip-g");
    if (o.vae_path.empty() && cw.vae.empty()) missing.emplace_back("VAE (first_stage_model.*)", "--vae");
    if (missing.size() == 1)
        fail(ErrorCode::InvalidArgument, "'", path, "' has no ", missing[0].first, "; pass one with ",
             missing[0].second);
    if (!missing.empty()) {
        std::string what, flags;
        for (size_t i = 0; i < missing.size(); ++i) {
            const char* sep = i == 0 ? "" : i + 1 == missing.size() ? " and " : ", ";
            what += sep + missing[i].first;
            flags += sep + missing[i].second + " FILE";
        }
        fail(ErrorCode::InvalidArgument, "'", path, "' ", unet_only ? "holds only a UNet (" : "is incomplete (",
             sd_family_name(m.family), "): it has no ", what, "; pass them with ", flags,
             sd2 ? " (the text encoder: diffusers' text_encoder/model.safetensors or OpenCLIP's ViT-H-14 file)"
                 : str(" (ComfyUI keeps them as clip_l.safetensors", xl ? ", clip_g.safetensors" : "",
                       " and a VAE file)"));
    }
    m.te1.model = te1_file.empty() ? build_clip(cw.text_encoder, config_or_empty(o, "text_encoder"), path, prec)
                                   : build_clip(clip_tensors_from_file(te1_file, sd2 ? SplitClip::H : SplitClip::L),
                                                config_or_empty(o, "text_encoder"), te1_file, prec);
    m.te1.pad_id = m.family == SDFamily::SD2 ? 0 : ClipTokenizer::kEosId;
    if (xl) {
        m.te2.model = o.clip_g.empty()
                          ? build_clip(cw.text_encoder_2, config_or_empty(o, "text_encoder_2"), path, prec)
                          : build_clip(clip_tensors_from_file(o.clip_g, SplitClip::G), config_or_empty(o, "text_encoder_2"),
                                       o.clip_g, prec);
        NUANCE_CHECK(m.te2.model->config().projection_dim > 0, "'", o.clip_g.empty() ? path : o.clip_g,
                     "': SDXL's second text encoder needs its text_projection (the pooled embedding)");
        m.te2.pad_id = 0;
    }
    const int64_t pooled = m.te2.model ? m.te2.model->config().projection_dim : 0;
    m.unet = build_unet(cw.unet, config_or_empty(o, "unet"), path, pooled, prec);
    {  // the text encoders' width is the UNet's cross-attention width (SDXL: both side by side)
        const int64_t w1 = m.te1.model->config().hidden, w2 = m.te2.model ? m.te2.model->config().hidden : 0;
        const int64_t want = m.unet->config().cross_attention_dim;
        if (w1 + w2 != want) {
            const std::string& f1 = te1_file.empty() ? path : te1_file;
            if (xl)
                fail(ErrorCode::InvalidArgument, "text encoders of widths ", w1, " ('", f1, "') and ", w2, " ('",
                     o.clip_g.empty() ? path : o.clip_g, "') give ", w1 + w2, " features, but the UNet in '", path,
                     "' takes ", want, " (", sd_family_name(m.family), ")");
            fail(ErrorCode::InvalidArgument, "the text encoder in '", f1, "' has width ", w1, ", but the UNet in '",
                 path, "' takes ", want, " (", sd_family_name(m.family), sd2 && want == 1024 ? ": OpenCLIP ViT-H" : "",
                 m.family == SDFamily::SD1 && want == 768 ? ": CLIP-L" : "", ")");
        }
    }
    m.vae = o.vae_path.empty()
                ? build_vae(cw.vae, config_or_empty(o, "vae"), path, m.family, prec)
                : build_vae(vae_tensors_from_file(o.vae_path), config_or_empty(o, "vae"), o.vae_path, m.family, prec);
    // SD2's original text encoder keeps all 24 OpenCLIP layers and uses the penultimate one (diffusers drops the
    // last layer instead); SD2 768 models predict v, the 512-base model epsilon (no way to tell from the weights).
    m.default_clip_skip = m.family == SDFamily::SD2 && m.te1.model->config().layers == 24 ? 2 : 1;
    m.prediction = m.family == SDFamily::SD2 ? "v_prediction" : "epsilon";
    m.native_size = xl ? 1024 : (m.family == SDFamily::SD2 ? 768 : 512);
    return m;
}

}  // namespace

std::unique_ptr<StableDiffusionModel> load_stable_diffusion(const ModelSource& src, const ModelLoadOptions& o) {
    const std::string& path = src.path;
    NUANCE_CHECK_CODE(o.t5xxl.empty(), Unsupported, "--t5xxl '", o.t5xxl, "': the Stable Diffusion families (sd1, ",
                      "sd2, sdxl) have no T5 text encoder ('", path, "')");
    if (src.folder())
        for (const auto& [flag, value] : {std::pair<const char*, const std::string*>{"--clip-l", &o.clip_l},
                                          {"--clip-g", &o.clip_g}, {"--clip-h", &o.clip_h}})
            NUANCE_CHECK_CODE(value->empty(), Unsupported, flag, " '", *value, "': a diffusers folder ('", path,
                              "') takes its text encoders from its text_encoder*/ folders");
    auto mp = std::make_unique<StableDiffusionModel>(
        src.folder() ? load_diffusers_folder(path, o)
                     : load_single_file(path, src.file ? *src.file : load_weights(path), o));
    StableDiffusionModel& m = *mp;
    m.path = path;
    m.name = stem(path);
    m.precision = resolve_precision(o.precision);
    if (!o.prediction.empty()) {
        NUANCE_CHECK(o.prediction == "epsilon" || o.prediction == "v_prediction" || o.prediction == "v" ||
                         o.prediction == "eps",
                     "unknown prediction type '", o.prediction, "' (valid: epsilon, v_prediction)");
        m.prediction = (o.prediction == "v" || o.prediction == "v_prediction") ? "v_prediction" : "epsilon";
    }
    // An inpainting UNet (SD1.5/SD2/SDXL inpainting files) takes the latents + mask (1) + masked-image latents.
    const int64_t in_ch = m.unet->config().in_channels, lat = m.latent_channels();
    NUANCE_CHECK(in_ch == lat || (!m.pixel_space() && in_ch == 2 * lat + 1), "model '", path, "': UNet takes ",
                 in_ch, " channels but the VAE makes ", lat, " (an inpainting UNet takes ", 2 * lat + 1, ")");
    NUANCE_CHECK(m.unet->config().out_channels == lat, "model '", path, "': UNet outputs ",
                 m.unet->config().out_channels, " channels but the VAE takes ", lat);
    const int64_t ctx = m.te1.model->config().hidden + (m.te2.model ? m.te2.model->config().hidden : 0);
    NUANCE_CHECK(m.unet->config().cross_attention_dim == ctx, "model '", path, "': UNet expects ",
                 m.unet->config().cross_attention_dim, "-wide text conditioning, the text encoders give ", ctx);
    return mp;
}

StableDiffusionModel load_stable_diffusion(const std::string& path, const ModelLoadOptions& o) {
    return std::move(*load_stable_diffusion(open_model_source(path), o));
}

std::string StableDiffusionModel::describe() const {
    std::string s = str("family: ", sd_family_name(family), "\nprediction: ", prediction, "\n");
    s += str("text_encoder: CLIP hidden=", te1.model->config().hidden, " layers=", te1.model->config().layers,
             " heads=", te1.model->config().heads, " act=", clip_act_name(te1.model->config().act), "\n");
    if (te2.model)
        s += str("text_encoder_2: CLIP hidden=", te2.model->config().hidden, " layers=", te2.model->config().layers,
                 " projection=", te2.model->config().projection_dim, "\n");
    s += "unet: " + unet->config().describe() + "\n";
    if (vae)
        s += str("vae: channels=", vae->config().block_out_channels, " latent=", vae->config().latent_channels,
                 " scaling=", vae->config().scaling_factor, "\n");
    else
        s += str("pixel space: no VAE, ", unet->config().in_channels, " image channels\n");
    return s;
}

}  // namespace nuance
