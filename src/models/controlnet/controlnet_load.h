// Opening ControlNet files: original lllyasviel files (`control_v11p_sd15_canny.pth` / `.safetensors`, keys
// `control_model.*`, also without the prefix), the "difference" files of ControlNet 1.0's transfer tool (deltas on
// top of the base UNet: need the model), single files with diffusers names (A1111's `diffusers_xl_*.safetensors`),
// and diffusers folders (`config.json` + `diffusion_pytorch_model.safetensors`, or a parent holding `controlnet/`).
#pragma once
#include <memory>
#include <string>

#include "models/controlnet/controlnet.h"

namespace nuance {

struct ControlNetLoadOptions {
    Precision precision = Precision::FP32;  // matmul/conv precision, as the model's
    // The base model's UNet: needed by "difference" files; also checked against (check_controlnet_fits).
    const UNet2DConditionModel* base_unet = nullptr;
    std::string base_desc;  // "model 'v1-5.safetensors' (sd15)" for messages
    std::string what = "ControlNet";  // the flag or field in messages ("--control-net")
};

std::unique_ptr<ControlNetModel> load_controlnet(const std::string& path, const ControlNetLoadOptions& o = {});

// "SD1.x", "SD2.x", "SDXL" or "custom" by the cross-attention width / add embedding.
std::string controlnet_family(const ControlNetConfig& c);

// Error (InvalidArgument) naming both sides (`cn_name` as is: "--control-net 'x.safetensors'") when the ControlNet's residuals cannot be added to this UNet's skips
// (an SDXL ControlNet with an SD1.5 model and vice versa, other widths or depths).
void check_controlnet_fits(const ControlNetModel& cn, const std::string& cn_name, const UNet2DConditionModel& unet,
                           const std::string& model_desc);

}  // namespace nuance
