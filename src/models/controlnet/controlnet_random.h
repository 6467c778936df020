// Random-weight ControlNets shaped for a model's UNet (tests and smoke runs; nothing can be downloaded here), in the
// three file layouts load_controlnet reads: diffusers names, the original `control_model.*` layout, and ControlNet
// 1.0's "difference" files (deltas on top of the model's own UNet weights, with a `difference` marker tensor).
#pragma once
#include <cstdint>
#include <string>

#include "models/diffusion_model.h"

namespace nuance {

enum class ControlNetLayout { Diffusers, Original, Difference };
ControlNetLayout parse_controlnet_layout(const std::string& s);  // "diffusers" | "original" | "difference"

// Writes the file (safetensors, F32) for `m` (an SD1.x/2.x/XL model; Error naming the family otherwise). The same
// seed gives the same ControlNet in every layout.
void write_random_controlnet(const DiffusionModel& m, const std::string& path, ControlNetLayout layout, uint64_t seed);

}  // namespace nuance
