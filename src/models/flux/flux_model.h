// Flux.1 (dev / schnell, Black Forest Labs 2024) as a DiffusionModel: the registry's "flux" family
// (models/flux/flux_family.cpp) builds it from the files people have; the pipeline only sees the seam.
// Conditioning as diffusers 0.31's FluxPipeline: T5 last_hidden_state of max_sequence_length tokens (dev 512,
// schnell 256) as "context", CLIP-L pooler_output (77 tokens, no projection) as "pooled"; txt_ids zeros, img_ids
// (0, row, col) of the packed 2x2 grid. Shape letters: B batch, C = 16 latent channels, h/w latent size,
// Li = (h/2)(w/2) image tokens, Lt text tokens, Dj T5 width, P pooled width.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "models/clip/clip_text.h"
#include "models/diffusion_model.h"
#include "models/flux/flux_transformer.h"
#include "models/t5/t5_encoder.h"
#include "models/vae/autoencoder_kl.h"
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"

namespace nuance {

struct FluxModel : DiffusionModel {
    std::unique_ptr<FluxTransformer2DModel> transformer;
    std::unique_ptr<ClipTextModel> clip_l;        // text_encoder (CLIP-L): pooled
    std::unique_ptr<ClipTokenizer> clip_tokenizer;  // a diffusers folder's own; else the built-in vocabulary
    std::unique_ptr<T5EncoderModel> t5;           // text_encoder_2 (T5-XXL): context
    std::unique_ptr<T5Tokenizer> t5_tokenizer;    // a diffusers folder's tokenizer_2/; else the built-in vocabulary
    std::unique_ptr<AutoencoderKL> vae;           // 16 channels, scaling 0.3611, shift 0.1159
    int max_sequence_length = 512;                // T5 tokens (schnell 256)
    // diffusers scheduler/scheduler_config.json when the folder has one (shift, use_dynamic_shifting, base/max).
    nlohmann::json scheduler_config = nlohmann::json::object();

    bool schnell() const { return !transformer->cfg.guidance_embeds; }

    std::string family_name() const override { return "flux"; }
    std::string variant() const override { return schnell() ? "flux-schnell" : "flux-dev"; }
    std::string describe() const override;
    std::string network_name() const override { return "transformer"; }
    std::vector<std::pair<std::string, Module*>> modules() override;
    LatentFormat latent_format() const override;
    Objective objective() const override;
    GuidanceKind guidance() const override { return schnell() ? GuidanceKind::None : GuidanceKind::Distilled; }
    GenerationDefaults generation_defaults() const override;
    Conditioning encode(const ConditioningRequest& r) const override;
    Tensor predict(const Tensor& x_in, double timestep, const Conditioning& cond,
                   const StepContext& step) const override;
    Tensor decode(const Tensor& latents, const VaeTiling& tiling) const override;
    Tensor encode_image(const Image& img, int w, int h, const VaeTiling& tiling, Rng& rng) const override;
    std::string infotext_fields(const ConditioningRequest&) const override;
};

// dev: 1024², 28 steps (FluxPipeline's default), guidance 3.5, euler; schnell: 1024², 4 steps, guidance 0, euler.
GenerationDefaults flux_defaults(bool schnell);

}  // namespace nuance
