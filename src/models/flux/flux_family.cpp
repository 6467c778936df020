// The "flux" family: detection over every file layout, and load() from a BFL / ComfyUI / diffusers single file with
// its split components (--clip-l --t5xxl --vae), an all-in-one ComfyUI checkpoint, or a diffusers folder.
#include "models/flux/flux_family.h"

#include "backends/backend.h"
#include "io/json_file.h"
#include "io/weights.h"
#include "models/convert/original_parts.h"
#include "models/flux/flux_load.h"
#include "models/t5/t5_loader.h"

namespace nuance {

namespace {

constexpr const char* kComfyClip = "text_encoders.clip_l.transformer.";
constexpr const char* kComfyT5 = "text_encoders.t5xxl.transformer.";

bool has_flux_transformer(const TensorIndex& t, const std::string& p) {
    const bool bfl = t.has(p + "img_in.weight") && t.has_prefix(p + "double_blocks.");
    const bool dif = t.has(p + "x_embedder.weight") &&
                     (t.has_prefix(p + "single_transformer_blocks.") || t.has_prefix(p + "transformer_blocks."));
    return bfl || dif;
}

// The VAE of a single file: ComfyUI saves it under "vae." (Flux all-in-one) or "first_stage_model.".
std::string vae_prefix_of(const std::map<std::string, Tensor>& t) {
    for (const char* p : {"vae.", "first_stage_model."})
        for (auto it = t.lower_bound(p); it != t.end() && it->first.rfind(p, 0) == 0; ++it)
            if (it->first.find("encoder.") != std::string::npos || it->first.find("decoder.") != std::string::npos)
                return p;
    return "";
}

LoadOptions weight_options(const std::string& source, Precision p) {
    LoadOptions o;
    o.source = source;
    o.matrices_as_stored = true;
    o.matrix_compute = p;
    return o;
}

// VAE tensors in diffusers names from diffusers names, or the original layout (BFL's ae.safetensors: encoder.down.N.
// block.M..., the SD original VAE layout without quant convs) under `prefix`.
std::map<std::string, Tensor> vae_tensors(const std::map<std::string, Tensor>& t, const std::string& prefix,
                                          const std::string& source) {
    std::map<std::string, Tensor> bare = strip_prefix(t, prefix);
    if (prefix.empty()) {  // a --vae file: keep only the VAE's own keys
        for (auto it = bare.begin(); it != bare.end();) {
            const std::string& k = it->first;
            const bool mine = k.rfind("encoder.", 0) == 0 || k.rfind("decoder.", 0) == 0 ||
                              k.rfind("quant_conv.", 0) == 0 || k.rfind("post_quant_conv.", 0) == 0;
            it = mine ? std::next(it) : bare.erase(it);
        }
    }
    NUANCE_CHECK(!bare.empty(), "VAE file '", source, "' has no recognisable VAE tensors (encoder.*, decoder.*)");
    if (bare.count("encoder.down_blocks.0.resnets.0.conv1.weight")) return rename_legacy_vae_attention(bare);
    return original_format::vae_from_original(bare);
}

std::unique_ptr<AutoencoderKL> build_vae(const std::map<std::string, Tensor>& t, const nlohmann::json* cfg,
                                         const std::string& source, Precision p) {
    AutoencoderKLConfig c = AutoencoderKLConfig::detect(t);  // 16 channels: Flux's 0.3611 / 0.1159
    if (cfg) c.apply_diffusers_config(*cfg);
    NUANCE_CHECK(c.latent_channels == 16, "VAE '", source, "' has ", c.latent_channels,
                 " latent channels; Flux.1 uses the 16-channel autoencoder (ae.safetensors)");
    auto m = std::make_unique<AutoencoderKL>(c);
    load_module(*m, t, weight_options(source, p));
    return m;
}

std::unique_ptr<ClipTextModel> build_clip(const std::map<std::string, Tensor>& t, const nlohmann::json* cfg,
                                          const std::string& source, Precision p) {
    ClipTextConfig c = ClipTextConfig::detect(t);
    if (cfg) c.apply_hf_config(*cfg);
    auto m = std::make_unique<ClipTextModel>(c);
    load_module(*m, t, weight_options(source, p));
    return m;
}

std::unique_ptr<ClipTextModel> clip_from_file(const std::string& path, Precision p) {
    WeightFile wf = load_weights(path);
    // ComfyUI's clip_l.safetensors holds transformers names (text_model.*), sometimes under the all-in-one prefix.
    const std::string prefix = wf.tensors.count(std::string(kComfyClip) + "text_model.embeddings.token_embedding.weight")
                                   ? kComfyClip : "";
    return build_clip(strip_prefix(wf.tensors, prefix), nullptr, path, p);
}

std::optional<nlohmann::json> config_of(const std::string& file) { return read_optional_json_object(file); }

void load_folder(FluxModel& m, const std::string& root, const ModelLoadOptions& o, Precision p) {
    m.transformer = load_flux_transformer(root, weight_options("", p));
    if (!o.clip_l.empty()) {
        m.clip_l = clip_from_file(o.clip_l, p);
    } else {
        const std::string w = find_first_file(root + "/text_encoder", {"model.safetensors", "pytorch_model.bin",
                                                                       "model.fp16.safetensors"});
        NUANCE_CHECK_CODE(!w.empty(), NotFound, "diffusers folder '", root,
                          "': no CLIP-L weights in text_encoder/; pass one with --clip-l");
        const auto cfg = config_of(root + "/text_encoder/config.json");
        m.clip_l = build_clip(load_weights(w).tensors, cfg ? &*cfg : nullptr, w, p);
        const std::string vocab = root + "/tokenizer/vocab.json", merges = root + "/tokenizer/merges.txt";
        if (path_exists(vocab) && path_exists(merges))
            m.clip_tokenizer = std::make_unique<ClipTokenizer>(ClipTokenizer::from_files(vocab, merges));
    }
    // Without T5 Flux has no usable conditioning (zeros give noise-like images): refuse, naming the flag.
    NUANCE_CHECK_CODE(!o.t5xxl.empty() || is_directory(root + "/text_encoder_2"), NotFound, "diffusers folder '",
                      root, "' has no text_encoder_2/ (T5-XXL), which Flux needs; pass one with --t5xxl");
    m.t5 = load_t5_encoder(o.t5xxl.empty() ? root + "/text_encoder_2" : o.t5xxl, p);
    // The folder's own T5 tokenizer (spiece.model or tokenizer.json) replaces the built-in vocabulary.
    m.t5_tokenizer = T5Tokenizer::from_folder(root + "/tokenizer_2");
    if (!o.vae_path.empty()) {
        m.vae = build_vae(vae_tensors(load_weights(o.vae_path).tensors, "", o.vae_path), nullptr, o.vae_path, p);
    } else {
        const std::string w = find_first_file(root + "/vae", {"diffusion_pytorch_model.safetensors",
                                                              "diffusion_pytorch_model.bin"});
        NUANCE_CHECK_CODE(!w.empty(), NotFound, "diffusers folder '", root, "': no weights in vae/; pass one with --vae");
        const auto cfg = config_of(root + "/vae/config.json");
        m.vae = build_vae(load_weights(w).tensors, cfg ? &*cfg : nullptr, w, p);
    }
    if (auto s = config_of(root + "/scheduler/scheduler_config.json")) m.scheduler_config = std::move(*s);
}

void load_single(FluxModel& m, const std::string& path, const WeightFile& wf, const ModelLoadOptions& o,
                 Precision p) {
    const auto& t = wf.tensors;
    m.transformer = build_flux_transformer(t, nlohmann::json(), weight_options(path, p));
    if (!o.clip_l.empty()) {
        m.clip_l = clip_from_file(o.clip_l, p);
    } else {
        NUANCE_CHECK_CODE(t.count(std::string(kComfyClip) + "text_model.embeddings.token_embedding.weight"), NotFound,
                          "'", path, "' has no CLIP-L text encoder (", kComfyClip,
                          "*); pass one with --clip-l (e.g. clip_l.safetensors)");
        m.clip_l = build_clip(strip_prefix(t, kComfyClip), nullptr, path, p);
    }
    if (!o.t5xxl.empty()) {
        m.t5 = load_t5_encoder(o.t5xxl, p);
    } else {
        NUANCE_CHECK_CODE(t.lower_bound(kComfyT5) != t.end() && t.lower_bound(kComfyT5)->first.rfind(kComfyT5, 0) == 0,
                          NotFound, "'", path, "' has no T5-XXL text encoder (", kComfyT5,
                          "*), which Flux needs; pass one with --t5xxl (e.g. t5xxl_fp16.safetensors)");
        m.t5 = load_t5_encoder(t, kComfyT5, path, p);
    }
    if (!o.vae_path.empty()) {
        m.vae = build_vae(vae_tensors(load_weights(o.vae_path).tensors, "", o.vae_path), nullptr, o.vae_path, p);
    } else {
        const std::string prefix = vae_prefix_of(t);
        NUANCE_CHECK_CODE(!prefix.empty(), NotFound, "'", path,
                          "' has no VAE (vae.* or first_stage_model.*); pass one with --vae (e.g. ae.safetensors)");
        m.vae = build_vae(vae_tensors(t, prefix, path), nullptr, path, p);
    }
}

}  // namespace

int detect_flux(const TensorIndex& ix) {
    if (ix.folder) {
        if (!ix.components.count("transformer")) return 0;
        if (has_flux_transformer(ix, "transformer/") || ix.config_string("model_index", "_class_name") == "FluxPipeline")
            return 100;
        return 0;
    }
    for (const char* p : {"", "model.diffusion_model.", "transformer."}) {
        if (!has_flux_transformer(ix, p)) continue;
        const bool complete = ix.has_prefix(kComfyClip) || ix.has_prefix(kComfyT5) || ix.has_prefix("vae.") ||
                              ix.has_prefix("first_stage_model.");
        return complete ? 100 : 50;
    }
    return 0;
}

std::unique_ptr<FluxModel> load_flux(const ModelSource& src, const ModelLoadOptions& o) {
    NUANCE_CHECK_CODE(o.clip_g.empty(), Unsupported, "--clip-g '", o.clip_g,
                      "': Flux.1 has no CLIP-G text encoder (it uses --clip-l and --t5xxl)");
    NUANCE_CHECK_CODE(o.clip_h.empty(), Unsupported, "--clip-h '", o.clip_h,
                      "': Flux.1 has no OpenCLIP ViT-H text encoder (it uses --clip-l and --t5xxl)");
    const Precision p = resolve_precision(o.precision);
    auto m = std::make_unique<FluxModel>();
    if (src.folder()) load_folder(*m, src.path, o, p);
    else load_single(*m, src.path, src.file ? *src.file : load_weights(src.path), o, p);
    const int64_t pooled = m->clip_l->config().hidden, joint = m->t5->config().d_model;
    const FluxConfig& c = m->transformer->cfg;
    // Components from different models do not fit: name the file, both widths and the flag that may be wrong.
    const auto from = [&](const std::string& flag, const std::string& value) {
        return value.empty() ? std::string() : str(" (", flag, " '", value, "')");
    };
    NUANCE_CHECK(pooled == c.pooled_projection_dim, "Flux '", src.path, "': the CLIP-L text encoder's width ", pooled,
                 from("--clip-l", o.clip_l), " does not match the transformer's pooled_projection_dim ",
                 c.pooled_projection_dim);
    NUANCE_CHECK(joint == c.joint_attention_dim, "Flux '", src.path, "': the T5 text encoder's d_model ", joint,
                 from("--t5xxl", o.t5xxl), " does not match the transformer's joint_attention_dim ",
                 c.joint_attention_dim);
    NUANCE_CHECK(m->vae->config().latent_channels * 4 == c.in_channels, "Flux '", src.path, "': the VAE's ",
                 m->vae->config().latent_channels, " latent channels", from("--vae", o.vae_path),
                 " do not pack into the transformer's in_channels ", c.in_channels);
    m->max_sequence_length = m->schnell() ? 256 : 512;
    m->path = src.path;
    m->name = stem(src.path);
    m->precision = p;
    return m;
}

ModelSpec flux_model_spec() {
    ModelSpec s;
    s.name = "flux";
    s.description = "FLUX.1 dev / schnell (CLIP-L pooled + T5-XXL, rectified-flow transformer, 16-channel latents; "
                    "dev: distilled guidance, schnell: none)";
    s.detect = detect_flux;
    s.load = [](const ModelSource& src, const ModelLoadOptions& o) -> std::unique_ptr<DiffusionModel> {
        return load_flux(src, o);
    };
    s.defaults = flux_defaults(false);
    s.probe_defaults = [](const ModelSource& src) {
        // schnell has no guidance_in / guidance_embedder
        const TensorIndex& t = src.index;
        bool dev = false;
        for (const char* k : {"guidance_in.in_layer.weight", "model.diffusion_model.guidance_in.in_layer.weight",
                              "transformer.time_text_embed.guidance_embedder.linear_1.weight",
                              "time_text_embed.guidance_embedder.linear_1.weight",
                              "transformer/time_text_embed.guidance_embedder.linear_1.weight"})
            dev = dev || t.has(k);
        return flux_defaults(!dev);
    };
    return s;
}

}  // namespace nuance
