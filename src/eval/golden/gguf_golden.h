// Checks GGUF dequantization and the GGUF UNet files against the `gguf` golden case.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

std::vector<CompareLine> check_golden_gguf(const std::string& case_dir);

}  // namespace nuance
