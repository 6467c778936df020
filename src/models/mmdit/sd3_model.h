// SD3 / SD3.5 as a DiffusionModel (diffusers' StableDiffusion3Pipeline): CLIP-L + CLIP-G + T5-XXL text conditioning,
// the MMDiT (mmdit.h) predicting the flow velocity, and the 16-channel VAE.
//
//   context = cat_seq( pad_to_T5_width( cat_ch( CLIP-L hidden_states[-2], CLIP-G hidden_states[-2] ) ), T5(256) )
//             [1, 77 + 256, 4096]; without T5 weights the T5 part is zeros (as diffusers with text_encoder_3=None);
//             with the A1111 prompt syntax a prompt over 75 tokens (or with BREAK) has 77k CLIP tokens (A1111)
//   pooled  = cat_ch( CLIP-L text_embeds, CLIP-G text_embeds )   [1, 768 + 1280]
//   flow objective, static shift 3.0 (scheduler config), timestep = sigma * 1000; latents (z - 0.0609) * 1.5305.
// Loading (the three file layouts): models/mmdit/sd3_family.h.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/clip/clip_text.h"
#include "models/diffusion_model.h"
#include "models/mmdit/mmdit.h"
#include "models/t5/t5_encoder.h"
#include "models/vae/autoencoder_kl.h"
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"

namespace nuance {

// One CLIP text encoder of SD3 with its tokenizer (the built-in vocabulary unless a folder has its own).
struct SD3ClipSlot {
    std::unique_ptr<ClipTextModel> model;
    std::unique_ptr<ClipTokenizer> own_tokenizer;
    int pad_id = 49407;  // tokenizer (CLIP-L): <|endoftext|>; tokenizer_2 (CLIP-G): '!' = 0
    std::string source;  // where it came from (describe)
    const ClipTokenizer& tokenizer() const { return own_tokenizer ? *own_tokenizer : ClipTokenizer::builtin(); }
};

struct SD3Model : DiffusionModel {
    SD3ClipSlot clip_l, clip_g;
    std::unique_ptr<T5EncoderModel> t5;  // null: the T5 part of the context is zeros
    std::unique_ptr<T5Tokenizer> t5_tokenizer;  // a diffusers folder's tokenizer_3/; null: the built-in vocabulary
    std::string t5_source;
    std::unique_ptr<SD3Transformer2DModel> transformer;
    std::unique_ptr<AutoencoderKL> vae;
    double shift = 3.0;        // FlowMatchEulerDiscreteScheduler shift (scheduler_config.json)
    int t5_max_length = 256;   // diffusers' max_sequence_length
    std::string variant_name;  // "sd3-medium", "sd3.5-medium", "sd3.5-large", "sd3" (other shapes)
    int native_size = 1024;

    std::string family_name() const override { return "sd3"; }
    std::string variant() const override { return variant_name; }
    std::string describe() const override;
    std::string network_name() const override { return "transformer"; }
    std::vector<std::pair<std::string, Module*>> modules() override;

    LatentFormat latent_format() const override;
    Objective objective() const override;
    GuidanceKind guidance() const override { return GuidanceKind::ClassifierFree; }
    GenerationDefaults generation_defaults() const override;

    // clip skip (beyond 1 = none) and class labels mean nothing to SD3: refused by name rather than ignored.
    void validate_request(const ConditioningRequest& r) const override;
    // PromptSyntax::A1111 (the default): the prompt syntax on every encoder, as A1111 (CLIP-L/G: 75-token windows,
    // emphasis with the window's mean restored) and ComfyUI (T5: weighted tokens moved away from the empty prompt's
    // encoding); a prompt without syntax of up to 75 CLIP tokens gives exactly diffusers' conditioning.
    // PromptSyntax::Literal: diffusers' encode_prompt (the text as it is, 77 CLIP tokens).
    Conditioning encode(const ConditioningRequest& r) const override;
    // Rows with fewer CLIP windows get empty-prompt windows (A1111), so "context" rows have one length.
    void match_for_batch(const std::vector<Conditioning*>& rows, const ConditioningRequest& like) const override;
    // The CLIP part of the context, [1, 77k, D] (zero-padded to the T5 width); pooled [1, Pl + Pg] of the first window.
    // `embeddings` (weighted only): textual-inversion embeddings the text may name, each with clip_l and clip_g
    // vectors (SDXL embeddings), written into both encoders' windows as A1111 does on SDXL.
    Tensor encode_clip(const std::string& text, bool weighted, Tensor* pooled,
                       const EmbeddingLibrary* embeddings = nullptr) const;
    Tensor predict(const Tensor& x_in, double timestep, const Conditioning& cond,
                   const StepContext& step) const override;
    Tensor decode(const Tensor& latents, const VaeTiling& tiling) const override;
    Tensor encode_image(const Image& img, int w, int h, const VaeTiling& tiling, Rng& rng) const override;
    std::string infotext_fields(const ConditioningRequest&) const override;
    // CFG plus skip-layer guidance on the steps of its window (diffusers >= 0.32 StableDiffusion3Pipeline).
    Tensor guide(const Tensor& x_in, double timestep, const Conditioning& batch, const StepContext& step,
                 const ConditioningRequest& request, const Tensor& uncond, const Tensor& cond,
                 float scale) const override;

    // Skip-layer guidance as it runs. Unset layers: 7,8,9 (the SD3.5-Medium model card's, sd.cpp's default) when the
    // variant is sd3.5-medium (with more than 9 blocks) or a scale was given, else none (off, as diffusers' default); unset scale: 2.8
    // (diffusers' default).
    struct Slg {
        std::vector<int64_t> layers;
        float scale = 0.0f;
        double start = 0.01, stop = 0.2;
        bool on() const { return !layers.empty() && scale != 0.0f; }
        bool active_at(int step, int steps) const;  // start*N < i < stop*N
    };
    Slg resolve_slg(const SkipLayerGuidance& s) const;

    // Checks that the text encoders' widths make the transformer's context and pooled widths (InvalidArgument naming
    // the components and the widths). Called by the loader.
    void check_widths() const;
};

// The model card's settings for a variant: 1024², euler; sd3.5-large 28 steps CFG 3.5, sd3.5-medium 40 steps CFG
// 4.5, sd3-medium (and unknown shapes) 28 steps CFG 7.
GenerationDefaults sd3_variant_defaults(const std::string& variant);

// The variant from the transformer's config: the mmdit presets' shapes, else "sd3".
std::string sd3_variant_of(const MMDiTConfig& c);

}  // namespace nuance
