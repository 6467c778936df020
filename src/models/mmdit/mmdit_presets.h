// The released SD3 transformers as configs (their diffusers transformer/config.json), and random-weight files of
// them in the layout people download, for benchmarks and smoke runs (nothing can be downloaded here).
#pragma once
#include <string>
#include <vector>

#include "core/dtype.h"
#include "models/mmdit/mmdit_config.h"

namespace nuance {

// "sd3-medium" (24 blocks of 1536, 2.1 B parameters), "sd3.5-medium" (24 of 1536 with qk RMSNorm and MMDiT-X attn2
// in blocks 0-12, pos_embed_max_size 384, 2.5 B), "sd3.5-large" (38 blocks of 2432, qk RMSNorm, 8.1 B), and "tiny"
// (the golden sd35 shape: 3 blocks of 32, heads of 8, dual attention in 0-1). Unknown names are an error that
// lists these.
MMDiTConfig mmdit_preset(const std::string& name);
std::vector<std::string> mmdit_preset_names();

// Writes a random transformer of config `c` (fan-in scaled normals, norm weights 1) to `path` (atomic
// safetensors), in Stability's original layout (model.diffusion_model.*) or diffusers names, each tensor in
// `dtype` (F32, F16 or BF16; memory: the model in that dtype, plus the fused qkv copies for the original layout).
// Returns the number of parameters.
int64_t write_random_mmdit(const std::string& path, const MMDiTConfig& c, DType dtype, uint64_t seed,
                           bool original_layout = true);

}  // namespace nuance
