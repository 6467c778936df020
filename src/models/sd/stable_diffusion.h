// A Stable Diffusion model (SD1.x, SD2.x, SDXL) as found on disk: the components, their configs, and the
// conventions the pipeline needs (prediction type, clip skip, latent scaling). Loaded from an original single-file
// checkpoint (safetensors or .ckpt), or a diffusers folder. Registered as the families "sd1", "sd2", "sdxl"
// (models/sd/sd_family.cpp); code above models/ sees it only as a DiffusionModel.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/logger.h"
#include "models/model_family.h"
#include "models/clip/clip_text.h"
#include "models/unet/unet2d.h"
#include "models/vae/autoencoder_kl.h"
#include "text/clip_tokenizer.h"

namespace nuance {

enum class SDFamily { SD1, SD2, SDXL };
const char* sd_family_name(SDFamily f);

struct TextEncoderSlot {
    std::unique_ptr<ClipTextModel> model;
    std::unique_ptr<ClipTokenizer> own_tokenizer;  // from a diffusers folder; else the built-in vocab
    int pad_id = 49407;
    const ClipTokenizer& tokenizer() const { return own_tokenizer ? *own_tokenizer : ClipTokenizer::builtin(); }
};

// The SD families' DiffusionModel (models/sd/sd_model.cpp implements the interface over these members).
struct StableDiffusionModel : DiffusionModel {
    SDFamily family = SDFamily::SD1;
    std::string prediction;  // "epsilon" | "v_prediction"
    int default_clip_skip = 1;
    // The image size the model was trained at (pixels, square): 512 for SD1, 768 for SD2 v-models, 1024 for SDXL,
    // or unet/config.json's sample_size times the VAE's downscale for a diffusers folder that states it.
    int native_size = 512;
    nlohmann::json scheduler_config = nlohmann::json::object();  // diffusers scheduler_config.json, when present
    TextEncoderSlot te1, te2;  // te2 only for SDXL
    std::unique_ptr<UNet2DConditionModel> unet;
    // Null for a pixel-space model (diffusers' DDPMPipeline layout, `nuance train --model ddpm`): the UNet denoises
    // the image itself (1 or 3 channels in [-1, 1]); see models/sd/pixel_space.h.
    std::unique_ptr<AutoencoderKL> vae;

    // DiffusionModel
    std::string family_name() const override { return sd_family_name(family); }
    std::string variant() const override;
    std::string describe() const override;
    std::string network_name() const override { return "UNet"; }
    std::vector<std::pair<std::string, Module*>> modules() override;
    LatentFormat latent_format() const override;
    Objective objective() const override;
    // A guidance-conditioned student (unet time_cond_proj_dim > 0, `nuance train --model lcm`) takes the scale as an
    // input, one pass per step (diffusers' LatentConsistencyModelPipeline); every other SD model uses CFG.
    GuidanceKind guidance() const override;
    GenerationDefaults generation_defaults() const override;
    void validate_request(const ConditioningRequest& r) const override;
    Conditioning encode(const ConditioningRequest& r) const override;
    void match_for_batch(const std::vector<Conditioning*>& rows, const ConditioningRequest& like) const override;
    int64_t inpaint_channels() const override;
    Tensor predict(const Tensor& x_in, double timestep, const Conditioning& cond,
                   const StepContext& step) const override;
    Tensor decode(const Tensor& latents, const VaeTiling& tiling) const override;
    // predict() without the inpainting concat: x_in has the UNet's own input channels.
    Tensor unet_predict(const Tensor& x_in, double timestep, const Conditioning& cond, const StepContext& step) const;
    // A guidance-conditioned (LCM) student's raw output -> the same output with LCMScheduler's boundary condition
    // applied to the x0 it implies (c_skip(t) x + c_out(t) x0, timestep_scaling 10).
    Tensor consistency_output(const Tensor& out, const Tensor& x_in, double timestep) const;
    Tensor encode_image(const Image& img, int w, int h, const VaeTiling& tiling, Rng& rng) const override;
    Tensor encode_pixels(const Tensor& image, const VaeTiling& tiling, Rng& rng) const override;
    std::string infotext_fields(const ConditioningRequest& r) const override;
    std::shared_ptr<const ControlNetModel> load_control_net(const std::string& path,
                                                            const std::string& what) const override;
    void validate_control_net(const ControlNetModel& net, const std::string& what) const override;
};

// Loads an SD1.x / SD2.x / SDXL model (original single file, diffusers folder, pixel-space DDPM folder) from an
// opened source (the registry's load()), or from a path.
std::unique_ptr<StableDiffusionModel> load_stable_diffusion(const ModelSource& src, const ModelLoadOptions& opts);
StableDiffusionModel load_stable_diffusion(const std::string& path, const ModelLoadOptions& opts = {});

}  // namespace nuance
