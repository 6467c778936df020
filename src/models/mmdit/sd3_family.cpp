#include "models/mmdit/sd3_family.h"

#include "backends/backend.h"
#include "io/json_file.h"
#include "io/weights.h"
#include "models/convert/original_parts.h"
#include "models/mmdit/mmdit_load.h"
#include "models/mmdit/sd3_model.h"
#include "models/model_defaults.h"
#include "models/t5/t5_loader.h"

namespace nuance {

namespace {

using TensorMap = std::map<std::string, Tensor>;

constexpr const char* kDiffusion = "model.diffusion_model.";
constexpr const char* kClipL = "text_encoders.clip_l.transformer.";
constexpr const char* kClipG = "text_encoders.clip_g.transformer.";
constexpr const char* kT5 = "text_encoders.t5xxl.transformer.";
constexpr const char* kVae = "first_stage_model.";
constexpr float kScaling = 1.5305f, kShift = 0.0609f;  // SD3's vae/config.json

bool is_sd3_index_file(const TensorIndex& t, const std::string& p = "") {
    return t.has_prefix(p + "model.diffusion_model.joint_blocks.") ||
           (t.has_prefix(p + "joint_blocks.0.x_block.") && t.has_prefix(p + "x_embedder.")) ||
           (t.has(p + "pos_embed.proj.weight") && t.has_prefix(p + "transformer_blocks.0.attn.add_q_proj."));
}

LoadOptions weight_options(const std::string& source, Precision p) {
    LoadOptions o;
    o.source = source;
    o.matrices_as_stored = true;
    o.matrix_compute = p;
    return o;
}

// transformers (text_model.*) or OpenCLIP (transformer.resblocks.*) CLIP tensors under `prefix` -> transformers
// names. Empty when there are none.
TensorMap clip_tensors(const TensorMap& all, const std::string& prefix) {
    const TensorMap t = strip_prefix(all, prefix);
    if (t.count("text_model.embeddings.token_embedding.weight") || t.count("embeddings.token_embedding.weight"))
        return original_format::clip_from_hf(t);
    if (t.count("token_embedding.weight") && t.count("transformer.resblocks.0.ln_1.weight"))
        return original_format::clip_from_open_clip(t);
    return {};
}

void load_clip(SD3ClipSlot& s, const TensorMap& t, const nlohmann::json* cfg, const std::string& source,
               Precision p) {
    ClipTextConfig c;
    try {
        c = ClipTextConfig::detect(t);
        if (cfg) c.apply_hf_config(*cfg);
    } catch (const Error& e) {
        fail(e.code(), "'", source, "': ", e.what());
    }
    s.model = std::make_unique<ClipTextModel>(c);
    load_module(*s.model, t, weight_options(source, p));
    s.source = source;
}

// A --clip-l / --clip-g file: the text model at the top level or under one prefix (e.g. an SD3 all-in-one file).
void load_clip_file(SD3ClipSlot& s, const std::string& path, const char* flag, const char* own_prefix,
                    Precision p) {
    const WeightFile wf = load_weights(path);
    TensorMap t = clip_tensors(wf.tensors, "");
    if (t.empty()) t = clip_tensors(wf.tensors, own_prefix);
    NUANCE_CHECK(!t.empty(), flag, " '", path, "': no CLIP text encoder found (expected text_model.* as transformers ",
                 "saves it, transformer.resblocks.* as OpenCLIP does, or ", own_prefix, "text_model.*)");
    load_clip(s, t, nullptr, path, p);
}

void load_clip_dir(SD3ClipSlot& s, const std::string& root, const std::string& sub, const std::string& tok,
                   const char* flag, Precision p) {
    const std::string dir = root + "/" + sub;
    const std::string w = find_first_file(dir, {"model.safetensors", "model.safetensors.index.json",
                                                "pytorch_model.bin", "model.fp16.safetensors"});
    NUANCE_CHECK_CODE(!w.empty(), NotFound, "SD3 diffusers folder '", root, "': no weights in ", sub, "/; pass the ",
                      "text encoder with ", flag);
    const auto cfg = read_optional_json_object(dir + "/config.json");
    load_clip(s, original_format::clip_from_hf(load_weights(w).tensors), cfg ? &*cfg : nullptr, w, p);
    const std::string vocab = root + "/" + tok + "/vocab.json", merges = root + "/" + tok + "/merges.txt";
    if (path_exists(vocab) || path_exists(merges)) {
        require_regular_file(vocab, "tokenizer file");
        require_regular_file(merges, "tokenizer file");
        s.own_tokenizer = std::make_unique<ClipTokenizer>(ClipTokenizer::from_files(vocab, merges));
    }
}

std::unique_ptr<AutoencoderKL> build_vae(const TensorMap& diffusers_names, const nlohmann::json* cfg,
                                         const std::string& source, Precision p) {
    AutoencoderKLConfig c;
    try {
        c = AutoencoderKLConfig::detect(diffusers_names);
        c.scaling_factor = kScaling;
        c.shift_factor = kShift;
        if (cfg) c.apply_diffusers_config(*cfg);
    } catch (const Error& e) {
        fail(e.code(), "'", source, "': ", e.what());
    }
    auto m = std::make_unique<AutoencoderKL>(c);
    load_module(*m, diffusers_names, weight_options(source, p));
    return m;
}

// VAE tensors of a single file: diffusers names at the top level, or the original layout (first_stage_model.* or
// bare encoder.down.*) mapped to diffusers names. Empty when there are none.
TensorMap vae_tensors(const TensorMap& all) {
    if (all.count("encoder.down_blocks.0.resnets.0.conv1.weight")) {
        TensorMap t;
        for (const auto& [k, v] : all)
            if (k.starts_with("encoder.") || k.starts_with("decoder.") || k.starts_with("quant_conv.") ||
                k.starts_with("post_quant_conv."))
                t.emplace(k, v);
        return t;
    }
    TensorMap bare = strip_prefix(all, kVae);
    if (bare.empty() && all.count("encoder.down.0.block.0.conv1.weight"))
        for (const auto& [k, v] : all)
            if (k.starts_with("encoder.") || k.starts_with("decoder.") || k.starts_with("quant_conv.") ||
                k.starts_with("post_quant_conv."))
                bare.emplace(k, v);
    return bare.empty() ? TensorMap{} : original_format::vae_from_original(bare);
}

bool has_prefix_in(const TensorMap& t, const std::string& p) {
    auto it = t.lower_bound(p);
    return it != t.end() && it->first.starts_with(p);
}

std::unique_ptr<SD3Model> load_single(const ModelSource& src, const ModelLoadOptions& o, Precision p) {
    const std::string& path = src.path;
    std::shared_ptr<const WeightFile> file = src.file ? src.file : std::make_shared<const WeightFile>(load_weights(path));
    const TensorMap& all = file->tensors;
    auto m = std::make_unique<SD3Model>();
    m->transformer = load_sd3_transformer(read_sd3_transformer(path), p);
    auto missing = [&](const char* what, const char* keys, const char* flag) {
        fail(ErrorCode::InvalidArgument, "'", path, "' is an SD3 transformer without ", what, " (", keys,
             "); pass one with ", flag);
    };
    if (!o.clip_l.empty()) load_clip_file(m->clip_l, o.clip_l, "--clip-l", kClipL, p);
    else if (auto t = clip_tensors(all, kClipL); !t.empty()) load_clip(m->clip_l, t, nullptr, path, p);
    else missing("a CLIP-L text encoder", "text_encoders.clip_l.*", "--clip-l (e.g. clip_l.safetensors)");
    if (!o.clip_g.empty()) load_clip_file(m->clip_g, o.clip_g, "--clip-g", kClipG, p);
    else if (auto t = clip_tensors(all, kClipG); !t.empty()) load_clip(m->clip_g, t, nullptr, path, p);
    else missing("a CLIP-G text encoder", "text_encoders.clip_g.*", "--clip-g (e.g. clip_g.safetensors)");
    if (!o.t5xxl.empty()) {
        m->t5 = load_t5_encoder(o.t5xxl, p);
        m->t5_source = o.t5xxl;
    } else if (has_prefix_in(all, kT5)) {
        m->t5 = load_t5_encoder(all, kT5, path, p);
        m->t5_source = path;
    }
    if (!o.vae_path.empty()) {
        const TensorMap v = vae_tensors(load_weights(o.vae_path).tensors);
        NUANCE_CHECK(!v.empty(), "--vae '", o.vae_path, "': no VAE tensors found (expected first_stage_model.*, ",
                     "encoder.down.* or diffusers' encoder.down_blocks.*)");
        auto cfg = o.configs.find("vae");
        m->vae = build_vae(v, cfg == o.configs.end() ? nullptr : &cfg->second, o.vae_path, p);
    } else if (auto v = vae_tensors(all); !v.empty()) {
        auto cfg = o.configs.find("vae");
        m->vae = build_vae(v, cfg == o.configs.end() ? nullptr : &cfg->second, path, p);
    } else {
        missing("a VAE", "first_stage_model.*", "--vae (e.g. the 16-channel SD3 VAE, diffusion_pytorch_model.safetensors)");
    }
    return m;
}

std::unique_ptr<SD3Model> load_folder(const ModelSource& src, const ModelLoadOptions& o, Precision p) {
    const std::string& root = src.path;
    auto m = std::make_unique<SD3Model>();
    m->transformer = load_sd3_transformer(read_sd3_transformer(root), p);
    if (!o.clip_l.empty()) load_clip_file(m->clip_l, o.clip_l, "--clip-l", kClipL, p);
    else load_clip_dir(m->clip_l, root, "text_encoder", "tokenizer", "--clip-l", p);
    if (!o.clip_g.empty()) load_clip_file(m->clip_g, o.clip_g, "--clip-g", kClipG, p);
    else load_clip_dir(m->clip_g, root, "text_encoder_2", "tokenizer_2", "--clip-g", p);
    if (!o.t5xxl.empty()) {
        m->t5 = load_t5_encoder(o.t5xxl, p);
        m->t5_source = o.t5xxl;
    } else if (is_directory(root + "/text_encoder_3")) {
        m->t5 = load_t5_encoder(root + "/text_encoder_3", p);
        m->t5_source = root + "/text_encoder_3";
    }
    // The folder's own T5 tokenizer (spiece.model or tokenizer.json) replaces the built-in vocabulary.
    m->t5_tokenizer = T5Tokenizer::from_folder(root + "/tokenizer_3");
    if (!o.vae_path.empty()) {
        const TensorMap v = vae_tensors(load_weights(o.vae_path).tensors);
        NUANCE_CHECK(!v.empty(), "--vae '", o.vae_path, "': no VAE tensors found (expected first_stage_model.*, ",
                     "encoder.down.* or diffusers' encoder.down_blocks.*)");
        m->vae = build_vae(v, nullptr, o.vae_path, p);
    } else {
        const std::string vw = find_first_file(root + "/vae", {"diffusion_pytorch_model.safetensors",
                                                               "diffusion_pytorch_model.fp16.safetensors",
                                                               "diffusion_pytorch_model.bin"});
        NUANCE_CHECK_CODE(!vw.empty(), NotFound, "SD3 diffusers folder '", root, "': no weights in vae/; pass a ",
                          "VAE with --vae");
        const auto cfg = read_optional_json_object(root + "/vae/config.json");
        m->vae = build_vae(load_weights(vw).tensors, cfg ? &*cfg : nullptr, vw, p);
    }
    const std::string sc = root + "/scheduler/scheduler_config.json";
    if (auto j = read_optional_json_object(sc)) {
        if (j->contains("shift")) {
            const nlohmann::json& s = (*j)["shift"];
            NUANCE_CHECK(s.is_number() && s.get<double>() > 0 && s.get<double>() <= 100, "'", sc,
                         "': 'shift' must be a number in (0, 100] (got ", s.dump().substr(0, 64), ")");
            m->shift = s.get<double>();
        }
        const auto dyn = j->find("use_dynamic_shifting");
        NUANCE_CHECK_CODE(dyn == j->end() || dyn->is_null() || *dyn == false, Unsupported, "'", sc,
                          "': use_dynamic_shifting is ", dyn->dump().substr(0, 64),
                          "; SD3 runs a static shift only");
    }
    return m;
}

GenerationDefaults probe_sd3_defaults(const ModelSource& src) {
    // The variant from the shapes in the index: depth from the block count, qk-norm and dual attention from names.
    std::string v = "sd3-medium";
    const std::string base = src.folder() ? "transformer/" : "";
    if (src.index.has_prefix(base + "transformer_blocks.37.") || src.index.has_prefix(std::string(kDiffusion) + "joint_blocks.37.") ||
        src.index.has_prefix("joint_blocks.37."))
        v = "sd3.5-large";
    else if (src.index.find_first("", ".attn2.to_q.weight") || src.index.find_first("", ".x_block.attn2.qkv.weight"))
        v = "sd3.5-medium";
    GenerationDefaults d = sd3_variant_defaults(v);
    if (src.folder()) apply_folder_defaults(src.path, d);
    return d;
}

}  // namespace

int detect_sd3(const TensorIndex& ix) {
    if (ix.folder) {
        const std::string cls = ix.config_string("model_index", "_class_name");
        if (cls.starts_with("StableDiffusion3")) return 100;
        if (ix.config_string("transformer", "_class_name") == "SD3Transformer2DModel") return 100;
        return is_sd3_index_file(ix, "transformer/") ? 100 : 0;
    }
    if (!is_sd3_index_file(ix)) return 0;
    if (ix.has_prefix(kClipL) || ix.has_prefix(kClipG) || ix.has_prefix(kVae)) return 100;
    return 50;
}

std::unique_ptr<DiffusionModel> load_sd3(const ModelSource& src, const ModelLoadOptions& o) {
    NUANCE_CHECK_CODE(o.prediction.empty() || o.prediction == "flow", Unsupported, "--prediction '", o.prediction,
                      "': SD3 is a flow-matching model (its prediction is the velocity); leave --prediction out");
    NUANCE_CHECK_CODE(o.clip_h.empty(), Unsupported, "--clip-h '", o.clip_h,
                      "': SD3 has no OpenCLIP ViT-H text encoder (it uses --clip-l, --clip-g and --t5xxl)");
    const Precision p = resolve_precision(o.precision);
    std::unique_ptr<SD3Model> m = src.folder() ? load_folder(src, o, p) : load_single(src, o, p);
    m->clip_g.pad_id = 0;  // diffusers' tokenizer_2 (CLIP-G) pads with '!' (id 0), tokenizer (CLIP-L) with EOS
    m->check_widths();
    if (!m->t5 && o.logger)
        o.logger->warn("SD3 '", src.path, "': no T5-XXL text encoder, the T5 part of the conditioning is zeros ",
                       "(prompt adherence suffers); pass one with --t5xxl (e.g. t5xxl_fp16.safetensors)");
    m->variant_name = sd3_variant_of(m->transformer->config());
    m->path = src.path;
    m->name = stem(src.path);
    m->precision = p;
    return m;
}

std::vector<ModelSpec> sd3_model_families() {
    ModelSpec s;
    s.name = "sd3";
    s.description = "Stable Diffusion 3 / 3.5 (MMDiT; CLIP-L + CLIP-G + T5-XXL, 16-channel latents, flow matching)";
    s.detect = detect_sd3;
    s.load = load_sd3;
    s.defaults = sd3_variant_defaults("sd3-medium");
    s.probe_defaults = probe_sd3_defaults;
    return {std::move(s)};
}

}  // namespace nuance
