// A Stable Diffusion model (SD1.x, SD2.x, SDXL) as found on disk: the components, their configs, and the
// conventions the pipeline needs (prediction type, clip skip, latent scaling). Loaded from an original single-file
// checkpoint (safetensors or .ckpt), or a diffusers folder.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "core/logger.h"
#include "models/clip/clip_text.h"
#include "models/unet/unet2d.h"
#include "models/vae/autoencoder_kl.h"
#include "text/clip_tokenizer.h"

namespace nuance {

enum class SDFamily { SD1, SD2, SDXL };
const char* sd_family_name(SDFamily f);

struct ModelLoadOptions {
    std::string vae_path;    // --vae: replaces the checkpoint's VAE (single file, original or diffusers names)
    std::string prediction;  // "" = from the model, else "epsilon" | "v_prediction"
    // Component configs (diffusers config.json content) that override what shapes cannot tell (head counts, norm
    // groups); keys "unet", "vae", "text_encoder", "text_encoder_2". A diffusers folder supplies its own.
    std::map<std::string, nlohmann::json> configs;
    const Logger* logger = nullptr;
    // Precision of every matmul/conv (Auto: cpu::default_precision()). Weight matrices stay as stored in the file
    // (mmap'd) and are converted and packed once, on first use, so a bf16 model needs no fp32 copy at any time.
    Precision precision = Precision::FP32;
};

struct TextEncoderSlot {
    std::unique_ptr<ClipTextModel> model;
    std::unique_ptr<ClipTokenizer> own_tokenizer;  // from a diffusers folder; else the built-in vocab
    int pad_id = 49407;
    const ClipTokenizer& tokenizer() const { return own_tokenizer ? *own_tokenizer : ClipTokenizer::builtin(); }
};

struct StableDiffusionModel {
    SDFamily family = SDFamily::SD1;
    std::string path;        // what the user passed
    std::string name;        // file stem or folder name (A1111's "Model")
    std::string prediction;  // "epsilon" | "v_prediction"
    Precision precision = Precision::FP32;  // resolved (never Auto)
    int default_clip_skip = 1;
    // The image size the model was trained at (pixels, square): 512 for SD1, 768 for SD2 v-models, 1024 for SDXL,
    // or unet/config.json's sample_size times the VAE's downscale for a diffusers folder that states it.
    int native_size = 512;
    nlohmann::json scheduler_config = nlohmann::json::object();  // diffusers scheduler_config.json, when present
    TextEncoderSlot te1, te2;  // te2 only for SDXL
    std::unique_ptr<UNet2DConditionModel> unet;
    // Null for a pixel-space model (diffusers' DDPMPipeline layout, `nuance train --model ddpm`): the UNet denoises
    // the image itself (1 or 3 channels in [-1, 1]); see pipelines/pixel_space.h.
    std::unique_ptr<AutoencoderKL> vae;

    // SHA-256 of the checkpoint file ("" for folders), computed on first use and kept (A1111's "Model hash").
    std::string file_hash() const;

    bool pixel_space() const { return !vae; }
    int64_t latent_channels() const { return vae ? vae->config().latent_channels : unet->config().in_channels; }
    int64_t vae_scale() const { return vae ? vae->config().downscale() : 1; }
    std::string describe() const;

private:
    struct HashCache {
        std::mutex mu;
        bool done = false;
        std::string value;
    };
    std::shared_ptr<HashCache> hash_ = std::make_shared<HashCache>();
};

StableDiffusionModel load_stable_diffusion(const std::string& path, const ModelLoadOptions& opts = {});

}  // namespace nuance
