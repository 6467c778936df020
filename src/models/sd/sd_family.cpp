#include "models/sd/sd_family.h"

#include "io/json_field.h"
#include "io/weights.h"
#include "models/model_defaults.h"
#include "models/sd/sd_split_files.h"

namespace nuance {

namespace {

constexpr const char* kUnet = "model.diffusion_model.";

std::optional<SDDetection> detect_single_file(const TensorIndex& t) {
    if (bare_unet_layout(t)) {  // a UNet-only file: text encoders and VAE from --clip-l / --clip-g / --vae
        bool known = false;
        const SDFamily f = bare_unet_family(t, &known);
        return SDDetection{f, known ? 40 : 5};
    }
    if (!t.has_prefix(std::string(kUnet) + "input_blocks.")) return std::nullopt;  // not an SD UNet
    // The same decisions as models/convert/original_format.cpp's split_original.
    if (t.has_prefix("conditioner.embedders.0.model.") && !t.has_prefix("conditioner.embedders.1."))
        return SDDetection{SDFamily::SDXL, 100};  // SDXL refiner: the loader says it is not supported yet
    if (t.has_prefix("conditioner.embedders.1.")) return SDDetection{SDFamily::SDXL, 100};
    if (t.has_prefix("cond_stage_model.model.")) return SDDetection{SDFamily::SD2, 100};
    if (t.has_prefix("cond_stage_model.transformer.")) return SDDetection{SDFamily::SD1, 100};
    if (t.has_prefix(std::string(kUnet) + "label_emb.0.")) return SDDetection{SDFamily::SDXL, 50};
    if (const auto* k = t.find_first(kUnet, ".attn2.to_k.weight"); k && k->second.shape.size() == 2) {
        if (k->second.shape[1] == 768) return SDDetection{SDFamily::SD1, 50};
        if (k->second.shape[1] == 1024) return SDDetection{SDFamily::SD2, 50};
    }
    return SDDetection{SDFamily::SD1, 1};
}

std::optional<SDDetection> detect_folder(const TensorIndex& t) {
    if (!t.components.count("unet")) {
        if (t.components.count("transformer")) return std::nullopt;  // SD3 / Flux / DiT pipelines
        return SDDetection{SDFamily::SD1, 1};
    }
    const std::string cls = t.config_string("model_index", "_class_name");
    if (cls.find("XL") != std::string::npos || t.components.count("text_encoder_2"))
        return SDDetection{SDFamily::SDXL, 100};
    return SDDetection{t.config_string("text_encoder", "hidden_act") == "gelu" ? SDFamily::SD2 : SDFamily::SD1, 100};
}

// The VAE's downscale from vae/config.json: 2^(levels - 1) (8 for SD's four levels).
int vae_downscale(const nlohmann::json& vcfg) {
    auto it = vcfg.find("block_out_channels");
    if (it == vcfg.end() || !it->is_array() || it->empty() || it->size() > 8) return 8;
    return 1 << (it->size() - 1);
}

// Defaults without loading: the folder's JSON files, or the single file's family.
GenerationDefaults probe_sd_defaults(const ModelSource& src) {
    const std::string& path = src.path;
    if (!src.folder()) {
        const auto d = detect_sd_family(src.index);
        return sd_family_defaults(d ? d->family : SDFamily::SD1, true);
    }
    const std::string mi = path + "/model_index.json";
    const nlohmann::json index = read_small_model_json(mi);
    const std::string cls = json_field<std::string>(index, "_class_name", "", "'" + mi + "'");
    const bool xl = cls.find("XL") != std::string::npos || is_directory(path + "/text_encoder_2");
    const std::string sc = path + "/scheduler/scheduler_config.json";
    const bool v =
        json_field<std::string>(read_small_model_json(sc), "prediction_type", "", "'" + sc + "'") == "v_prediction";
    GenerationDefaults d = sd_family_defaults(xl ? SDFamily::SDXL : SDFamily::SD1, false);
    if (!xl && v) d.width = d.height = 768;  // as the loader: v-prediction folders are SD2-768
    const nlohmann::json ucfg = read_small_model_json(path + "/unet/config.json");
    if (auto s = ucfg.find("sample_size"); s != ucfg.end() && s->is_number_integer()) {
        const long long side = s->get<long long>() * vae_downscale(read_small_model_json(path + "/vae/config.json"));
        if (side >= 8 && side <= 16384) d.width = d.height = (int)side;
    }
    apply_index_defaults(index, mi, d);
    return d;
}

ModelSpec sd_spec(SDFamily f, const char* description) {
    ModelSpec s;
    s.name = sd_family_name(f);
    s.description = description;
    s.detect = [f](const TensorIndex& ix) {
        const auto d = detect_sd_family(ix);
        return d && d->family == f ? d->score : 0;
    };
    s.load = [](const ModelSource& src, const ModelLoadOptions& o) -> std::unique_ptr<DiffusionModel> {
        return load_stable_diffusion(src, o);
    };
    s.defaults = sd_family_defaults(f, f == SDFamily::SD2);
    s.probe_defaults = probe_sd_defaults;
    return s;
}

}  // namespace

std::optional<SDDetection> detect_sd_family(const TensorIndex& ix) {
    return ix.folder ? detect_folder(ix) : detect_single_file(ix);
}

GenerationDefaults sd_family_defaults(SDFamily family, bool v_prediction) {
    GenerationDefaults d;
    d.width = d.height = family == SDFamily::SDXL ? 1024 : (family == SDFamily::SD2 && v_prediction ? 768 : 512);
    d.prompt = "a lighthouse on a cliff at dusk, oil painting";
    return d;
}

const std::vector<std::array<float, 3>>& sd_latent_rgb_factors(SDFamily f) {
    // Rows: latent channels; columns: R, G, B. A1111 modules/sd_vae_approx.py cheap_approximation().
    static const std::vector<std::array<float, 3>> sd1{
        {0.298f, 0.207f, 0.208f}, {0.187f, 0.286f, 0.173f}, {-0.158f, 0.189f, 0.264f}, {-0.184f, -0.271f, -0.473f}};
    static const std::vector<std::array<float, 3>> sdxl{
        {0.3448f, 0.4168f, 0.4395f}, {-0.1953f, -0.0290f, 0.0250f}, {0.1074f, 0.0886f, -0.0163f},
        {-0.3730f, -0.2499f, -0.2088f}};
    return f == SDFamily::SDXL ? sdxl : sd1;
}

std::vector<ModelSpec> sd_model_families() {
    return {sd_spec(SDFamily::SD1, "Stable Diffusion 1.x (CLIP ViT-L/14, UNet, 4-channel latents; also pixel-space "
                                   "DDPM folders)"),
            sd_spec(SDFamily::SD2, "Stable Diffusion 2.x (OpenCLIP ViT-H/14, UNet, epsilon or v-prediction)"),
            sd_spec(SDFamily::SDXL, "Stable Diffusion XL (CLIP ViT-L + OpenCLIP bigG, UNet with ADM time ids)")};
}

}  // namespace nuance
