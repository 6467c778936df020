// DiT (Peebles & Xie 2022) as a DiffusionModel (models/diffusion_model.h): a class-conditional transformer on the SD
// VAE's 4-channel latents (scaling 0.18215), epsilon prediction with learned sigma (the variance half is dropped in
// predict), DiT's linear-beta VP schedule, classifier-free guidance against the null class (GuidanceKind::
// ClassConditional). Built by the "dit" registry entry (models/dit/dit_family.h) from every layout load_dit reads
// (the original facebookresearch .pt / .safetensors, a bare diffusers transformer file, a DiTPipeline folder); the
// single files have no VAE, which must then come with --vae (sd-vae-ft-ema / -mse).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "models/dit/dit.h"
#include "models/dit/dit_load.h"
#include "models/model_family.h"
#include "models/vae/autoencoder_kl.h"

namespace nuance {

class DiTModel : public DiffusionModel {
public:
    std::unique_ptr<DiTTransformer2DModel> transformer;
    std::unique_ptr<AutoencoderKL> vae;
    DiTLayout layout = DiTLayout::Diffusers;
    nlohmann::json scheduler_config = nlohmann::json::object();  // a pipeline folder's scheduler/, else empty

    std::string family_name() const override { return "dit"; }
    std::string variant() const override;  // "DiT-XL/2-256" for the paper's presets, else "DiT-<width>x<depth>/<p>"
    std::string describe() const override;
    std::string network_name() const override { return "DiT"; }
    std::vector<std::pair<std::string, Module*>> modules() override;

    LatentFormat latent_format() const override;
    Objective objective() const override;
    GuidanceKind guidance() const override { return GuidanceKind::ClassConditional; }
    GenerationDefaults generation_defaults() const override;

    // The class a request asks for: its class_label, else its text as a class name or number (parse_class_label);
    // the negative side is the null class (num_classes). Errors say that DiT takes a class, not a prompt.
    int64_t class_of(const ConditioningRequest& r) const;
    void validate_request(const ConditioningRequest& r) const override { class_of(r); }
    Conditioning encode(const ConditioningRequest& r) const override;  // {"class_labels": [1] int64}
    Tensor predict(const Tensor& x_in, double timestep, const Conditioning& cond,
                   const StepContext& step) const override;

    // diffusers' DiTPipeline guides every latent channel; the original repo's forward_with_cfg guides only the first
    // 3 ("for exact reproducibility") and keeps the conditional row's other channels: each layout as its reference.
    Tensor combine_guidance(const Tensor& uncond, const Tensor& cond, float scale) const override;

    Tensor decode(const Tensor& latents, const VaeTiling& tiling) const override;
    Tensor encode_image(const Image& img, int w, int h, const VaeTiling& tiling, Rng& rng) const override;
    std::string infotext_fields(const ConditioningRequest& r) const override;  // ", Class label: 207"

    // The image side the model was trained at (sample_size x the VAE's downscale), 0 when the file does not say.
    int64_t native_size() const;
};

// Builds a DiTModel from an opened source (the "dit" ModelSpec's load). Errors: split text-encoder flags and
// --prediction are refused naming the flag; a transformer without a VAE says to pass --vae; a VAE whose latent
// channels differ from the transformer's names both.
std::unique_ptr<DiffusionModel> load_dit_model(const ModelSource& src, const ModelLoadOptions& o);

}  // namespace nuance
