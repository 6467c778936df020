// Checks the DiT transformer against the golden case (tests/data/golden/dit): used by the tests and
// `nuance check-golden`.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// Loads the case's diffusers state dict with its config (heads, sample_size from case.json), runs
// forward(hidden_states, timestep, class_labels) and compares `out` at the case's suggested_atol: one line
// "dit/out". Throws nuance::Error when the case folder or its files cannot be read.
std::vector<CompareLine> check_golden_dit(const std::string& case_dir);

}  // namespace nuance
