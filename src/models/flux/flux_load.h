// Loading a Flux.1 transformer from the files people have: BFL single files (flux1-dev.safetensors, bare or under
// `model.diffusion_model.` as ComfyUI saves), a bare diffusers file (diffusion_pytorch_model.safetensors), a
// diffusers `transformer/` folder (config.json + weights, sharded or not) or a pipeline folder holding one.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "models/flux/flux_transformer.h"
#include "nn/module.h"

namespace nuance {

enum class FluxLayout { Diffusers, Bfl };

// Builds and loads the model from tensors already read (any float dtype; F16/BF16 stay as stored when
// o.matrices_as_stored, else convert at load). `config` is a diffusers config.json object (or empty). Every tensor of
// the transformer must be used and have exactly the expected shape; errors name the file (o.source), the tensor
// (its BFL key for BFL files) and both shapes. *layout (optional) reports which layout was found.
std::unique_ptr<FluxTransformer2DModel> build_flux_transformer(const std::map<std::string, Tensor>& tensors,
                                                               const nlohmann::json& config, const LoadOptions& o,
                                                               FluxLayout* layout = nullptr);

// A file or folder as above. A folder is a transformer/ folder (config.json + diffusion_pytorch_model*) or a
// pipeline root with transformer/. Errors name the path.
std::unique_ptr<FluxTransformer2DModel> load_flux_transformer(const std::string& path, const LoadOptions& o,
                                                              FluxLayout* layout = nullptr);

// True when the tensors look like a Flux transformer in either layout (for detection).
bool is_flux_transformer(const std::map<std::string, Tensor>& tensors);

}  // namespace nuance
