// Checks the original (CompVis/SGM single-file) layouts against the `original_format` golden case.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

std::vector<CompareLine> check_golden_original_format(const std::string& case_dir);

}  // namespace nuance
