// Checks the SD3 MMDiT against the golden cases (tests/data/golden/sd3_transformer and original_sd3): used by the
// tests and `nuance check-golden`.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// For every model in case.json ("sd3", "sd35"): the transformer is opened from its weights file (diffusers layout
// for sd3_transformer; Stability's original layout for original_sd3, where the F16 twin "<stem>_f16.safetensors"
// is checked too), the case's config.json-style config applied, and "<model>.out" compared with the forward of
// "<model>.hidden_states / timestep / encoder_hidden_states / pooled_projections" at the case's suggested_atol.
// Lines: "<case>/<model>.out" and, for the F16 files, "<case>/<model>.out[f16 file]".
std::vector<CompareLine> check_golden_sd3(const std::string& case_dir);

}  // namespace nuance
