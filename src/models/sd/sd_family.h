// The Stable Diffusion registry entries (sd1, sd2, sdxl) and their detection from a TensorIndex.
#pragma once
#include <array>
#include <optional>
#include <vector>

#include "models/model_family.h"
#include "models/sd/stable_diffusion.h"

namespace nuance {

// Which SD family a source holds, with how sure detection is (ModelSpec::detect's score), or nullopt.
//   original single file (model.diffusion_model.input_blocks.*): the text encoder's key names decide (SDXL's
//     conditioner.embedders.1, SD2's OpenCLIP cond_stage_model.model, SD1's cond_stage_model.transformer) -> 100;
//     UNet-only: SDXL's label_emb, else the cross-attention width 768 / 1024 -> 50; an SD UNet of another width
//     -> sd1 at 1 (the loader then names what it cannot tell);
//   a UNet-only file without the model.diffusion_model. prefix (ComfyUI-GGUF's .gguf, a bare UNet safetensors,
//     original or diffusers names; models/sd/sd_split_files.h) -> its family at 40 (5 when the width is unknown);
//   diffusers folder with unet/: SDXL with text_encoder_2/ or an "XL" pipeline class; SD2 when text_encoder's
//     config says hidden_act "gelu"; else SD1 -> 100. A folder without unet/ or transformer/ -> sd1 at 1 (the
//     loader's messages say what is missing).
struct SDDetection {
    SDFamily family = SDFamily::SD1;
    int score = 0;
};
std::optional<SDDetection> detect_sd_family(const TensorIndex& ix);

// SD1 512, SD2 v-prediction 768, SDXL 1024; 20 steps, CFG 7, Euler a (A1111's defaults).
GenerationDefaults sd_family_defaults(SDFamily family, bool v_prediction);

std::vector<ModelSpec> sd_model_families();

// Live-preview latent -> RGB factors (A1111 sd_vae_approx cheap_approximation): SD1/SD2, and SDXL's.
const std::vector<std::array<float, 3>>& sd_latent_rgb_factors(SDFamily f);

}  // namespace nuance
