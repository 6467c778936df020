// The Flux.1 registry entry ("flux": dev and schnell) and its detection from a TensorIndex.
//   single file: BFL transformer keys (img_in / double_blocks.*), bare or under model.diffusion_model. (ComfyUI), or
//     diffusers names (x_embedder + transformer_blocks.*) -> 50 (transformer only: the text encoders and the VAE
//     come from --clip-l --t5xxl --vae); with ComfyUI's text_encoders.* or vae.* / first_stage_model.* too -> 100;
//   diffusers folder whose transformer/ holds Flux keys (or a FluxPipeline model_index.json) -> 100.
#pragma once
#include <memory>
#include <vector>

#include "models/flux/flux_model.h"
#include "models/model_family.h"

namespace nuance {

int detect_flux(const TensorIndex& ix);

// Builds a FluxModel from a single file (+ split components) or a diffusers folder. Errors: --clip-g refused by
// name; a missing CLIP-L / T5 / VAE names the keys looked for and the flag that supplies it.
std::unique_ptr<FluxModel> load_flux(const ModelSource& src, const ModelLoadOptions& opts);

ModelSpec flux_model_spec();

}  // namespace nuance
