// Checks the full SD1.5 txt2img pipeline against the `pipeline_sd15` golden case.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

std::vector<CompareLine> check_golden_pipeline_sd15(const std::string& case_dir);

}  // namespace nuance
