#pragma once
#include <vector>

#include "core/compare.h"

namespace nuance {
// Runs the unet_sd15 / unet_sd2 / unet_sdxl style golden cases (main and odd.* inputs).
std::vector<CompareLine> check_golden_unet(const std::string& case_dir);
}  // namespace nuance
