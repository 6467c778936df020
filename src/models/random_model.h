// Random-weight Stable Diffusion checkpoints in the original single-file layout, at full size (for benchmarks and
// smoke runs; nothing can be downloaded here) or tiny (for tests). Same classes and key maps as real models.
#pragma once
#include <string>

#include "core/dtype.h"

namespace nuance {

struct RandomModelOptions {
    std::string family = "sd15";  // sd15 | sd2 | sdxl
    DType dtype = DType::F16;     // F16 | F32 (| BF16)
    bool tiny = false;            // small widths/depths, same structure
    bool inpaint = false;         // an inpainting UNet: 9 input channels (latents + mask + masked-image latents)
    uint64_t seed = 0;
};

// Writes the checkpoint (atomic safetensors) and returns the number of parameters.
int64_t write_random_checkpoint(const std::string& path, const RandomModelOptions& o);

}  // namespace nuance
