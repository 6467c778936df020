// The SD3 / SD3.5 registry entry (models/model_family.h): detection over every file layout and the loader.
//
// Layouts:
//   * Stability's all-in-one single file: model.diffusion_model.joint_blocks.* + text_encoders.{clip_l,clip_g,
//     t5xxl}.transformer.* + first_stage_model.* (sd3_medium_incl_clips_t5xxlfp8.safetensors ...);
//   * a transformer-only file (sd3.5_large.safetensors: Stability keys with or without model.diffusion_model.;
//     or diffusers keys) with --clip-l --clip-g [--t5xxl] --vae files (ComfyUI style). The CLIP files may be in
//     transformers layout (text_model.*, text_projection.weight: ComfyUI's clip_l/clip_g.safetensors) or OpenCLIP's
//     (transformer.resblocks.*, text_projection [D, P]);
//   * a diffusers StableDiffusion3Pipeline folder: transformer/, text_encoder/ (CLIP-L), text_encoder_2/ (CLIP-G),
//     text_encoder_3/ (T5, optional), tokenizer*/, vae/, scheduler/.
// A --clip-l / --clip-g / --t5xxl / --vae file replaces the checkpoint's own component. Without T5 weights the T5
// part of the context is zeros (diffusers' behaviour with text_encoder_3=None) and a warning says how to pass one.
#pragma once
#include <memory>
#include <vector>

#include "models/model_family.h"

namespace nuance {

// 100: an all-in-one file or an SD3 diffusers folder; 50: a transformer-only file; 0: not SD3.
int detect_sd3(const TensorIndex& ix);

std::unique_ptr<DiffusionModel> load_sd3(const ModelSource& src, const ModelLoadOptions& o);

std::vector<ModelSpec> sd3_model_families();  // {"sd3"}

}  // namespace nuance
