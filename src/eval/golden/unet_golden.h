#pragma once
#include <vector>

#include "core/compare.h"

namespace nuance {
class GoldenCase;
class UNet2DConditionModel;
// Runs the unet_sd15 / unet_sd2 / unet_sdxl style golden cases (main and odd.* inputs).
std::vector<CompareLine> check_golden_unet(const std::string& case_dir);
// The same comparisons for an already loaded UNet (e.g. from a single-file checkpoint).
std::vector<CompareLine> check_golden_unet_model(const GoldenCase& gc, const UNet2DConditionModel& unet);
}  // namespace nuance
