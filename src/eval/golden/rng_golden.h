// Checks the noise generators against the `rng` golden case: used by `nuance check-golden`.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

std::vector<CompareLine> check_golden_rng(const std::string& case_dir);

}  // namespace nuance
