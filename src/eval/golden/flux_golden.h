// Checks the Flux transformer against the golden cases flux_transformer (diffusers layout) and original_flux (BFL
// layout, F32 and F16 files): used by the tests and `nuance check-golden`.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// For every model of the case ("flux_dev", "flux_schnell"): config from the shapes plus the case's diffusers config,
// forward on the case's inputs, and the packed `out` and `out_unpacked` compared at the case's suggested_atol (also
// the check that flux_pack_latents(latents) gives hidden_states exactly). original_flux additionally runs each
// model's *_f16.safetensors file (lines "<model>_f16.out") and the F32 file under model.diffusion_model. (lines
// "<model>_comfy.out"). Lines are "<case>/<model>.<tensor>". Throws nuance::Error when the case cannot be read.
std::vector<CompareLine> check_golden_flux(const std::string& case_dir);

}  // namespace nuance
