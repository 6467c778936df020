// pipeline_inpaint: diffusers' StableDiffusionInpaintPipeline on the tiny SD1.5 components, with a 9-channel
// inpainting UNet ('inpaint9') and with the plain UNet's masked-latent blending ('blend4'), run through generate().
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

std::vector<CompareLine> check_golden_pipeline_inpaint(const std::string& case_dir);

}  // namespace nuance
