// Checks AutoencoderKL against the golden case (tests/data/golden/vae): used by the tests and `nuance check-golden`.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// For every model in case.json ("vae_sd", "vae_flux"): config from the shapes plus the case's diffusers config
// (norm_num_groups, scaling/shift factors), then encoder_out, moments, mean, logvar, sample (from the case's eps)
// and decoded (from the case's latent) are compared with the reference at the case's suggested_atol.
// Lines are named "<case>/<model>.<tensor>" (vae/vae_sd.decoded). Throws nuance::Error when the case folder or
// its files cannot be read.
std::vector<CompareLine> check_golden_vae(const std::string& case_dir);

}  // namespace nuance
