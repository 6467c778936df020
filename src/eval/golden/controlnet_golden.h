// The `controlnet` golden case: diffusers ControlNetModel residuals (x conditioning_scale) and unet_sd15's output
// with them added (the UNet comes from the sibling unet_sd15 case folder, as case.json's "unet_weights" says).
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

std::vector<CompareLine> check_golden_controlnet(const std::string& case_dir);

}  // namespace nuance
