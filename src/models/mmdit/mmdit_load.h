// Opening an SD3 / SD3.5 transformer from the files people have:
//   - Stability's original single file (sd3_medium.safetensors, sd3.5_large.safetensors, or an all-in-one file that
//     also holds text_encoders.* and first_stage_model.*): keys model.diffusion_model.* (also accepted without the
//     prefix, as ComfyUI saves a bare diffusion model), mapped by mmdit_original.h;
//   - a bare diffusers transformer file (diffusion_pytorch_model.safetensors, diffusers keys);
//   - a diffusers folder: transformer/ itself or the pipeline root holding it, with its config.json (optional).
// Weight matrices stay in the file's dtype (mmap'd; F16 / BF16 / mixed files are converted when packed), everything
// else is upcast to F32 at load.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "models/mmdit/mmdit.h"

namespace nuance {

struct SD3TransformerWeights {
    std::map<std::string, Tensor> tensors;  // diffusers names
    nlohmann::json config;                  // transformer/config.json, or null
    std::string source;                     // the weight file, for messages
    bool original_layout = false;
};

// True when `t` looks like an SD3 MMDiT in either layout (for family detection).
bool is_sd3_transformer(const std::map<std::string, Tensor>& t);

// Reads and maps the tensors of `path` (file or folder, see above). Errors name the path; a file that is not an
// SD3 transformer lists the key prefixes it has.
SD3TransformerWeights read_sd3_transformer(const std::string& path);

// Config (detected + config.json), module, load. A file that is recognisably SD3 but lacks a tensor names it in
// the file's own layout; a tensor of the wrong shape is named with both shapes.
std::unique_ptr<SD3Transformer2DModel> load_sd3_transformer(const SD3TransformerWeights& w,
                                                            Precision matrix_compute = Precision::FP32);
std::unique_ptr<SD3Transformer2DModel> load_sd3_transformer(const std::string& path,
                                                            Precision matrix_compute = Precision::FP32);

}  // namespace nuance
