// The generation settings a model is meant to be used with: size, steps, CFG scale, sampler, schedule and an example
// prompt. Every front end (CLI, C API, server, web page) starts from these, so a 32x32 model is not asked for 512x512.
//
// Sources, later ones winning:
//   1. the family: SD1 512, SD2 v-prediction 768, SDXL 1024; 20 steps, CFG 7, Euler a (A1111's defaults);
//   2. the model's native size (StableDiffusionModel::native_size; for a diffusers folder unet/config.json's
//      sample_size times the VAE's downscale);
//   3. a diffusers folder's model_index.json "_nuance": {"defaults": {"width", "height", "steps", "cfg_scale",
//      "sampler", "scheduler", "prompt", "negative_prompt"}} (models/nuance-emoji has one).
// A defaults block that is not what it should be (wrong type, out of range, unknown sampler) is an Error naming the
// file and the field.
#pragma once
#include <string>

#include "models/stable_diffusion.h"

namespace nuance {

struct GenerationDefaults {
    int width = 512, height = 512;
    int steps = 20;
    float cfg_scale = 7.0f;
    std::string sampler = "euler_a";
    std::string scheduler;        // "" = the sampler's own (A1111 "Automatic")
    std::string prompt;           // an example prompt that shows what the model does
    std::string negative_prompt;
};

// For a loaded model.
GenerationDefaults generation_defaults(const StableDiffusionModel& m);

// Without loading the model: reads a diffusers folder's JSON files, or a single file's tensor names (safetensors
// header / torch pickle), to tell the family. Errors name the file.
GenerationDefaults probe_generation_defaults(const std::string& path);

}  // namespace nuance
