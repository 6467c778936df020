// The generation settings a model is meant to be used with: size, steps, CFG scale, sampler, schedule and an example
// prompt. Every front end (CLI, C API, server, web page) starts from these, so a 32x32 model is not asked for 512x512.
//
// Sources, later ones winning:
//   1. the family: SD1 512, SD2 v-prediction 768, SDXL 1024; 20 steps, CFG 7, Euler a (A1111's defaults);
//   2. the model's native size (the model's native size; for a diffusers folder unet/config.json's
//      sample_size times the VAE's downscale);
//   3. a diffusers folder's model_index.json "_nuance": {"defaults": {"width", "height", "steps", "cfg_scale",
//      "sampler", "scheduler", "prompt", "negative_prompt"}} (models/nuance-emoji has one).
// A defaults block that is not what it should be (wrong type, out of range, unknown sampler) is an Error naming the
// file and the field.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "models/model_family.h"

namespace nuance {

// GenerationDefaults is declared in models/diffusion_model.h; probe_generation_defaults (without loading) in
// models/model_family.h.

// For a loaded model.
inline GenerationDefaults generation_defaults(const DiffusionModel& m) { return m.generation_defaults(); }

// Source 3 above: <folder>/model_index.json's "_nuance": {"defaults": {...}} over `d` (nothing when absent).
void apply_folder_defaults(const std::string& folder, GenerationDefaults& d);
void apply_index_defaults(const nlohmann::json& index, const std::string& file, GenerationDefaults& d);

// A small model JSON file (model_index.json, a config) read as hostile input, or an empty object when nothing
// exists there. Errors name the file.
nlohmann::json read_small_model_json(const std::string& path);

}  // namespace nuance
