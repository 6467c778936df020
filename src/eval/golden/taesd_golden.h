// Checks the tiny autoencoders (models/taesd) against the golden case (tests/data/golden/taesd): used by the tests
// and `nuance check-golden`.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// For every model in case.json ("taesd": 4 channels, "taef1": 16): loaded from its diffusers file, then
// encoded / decoded / roundtrip / scaled_latents at the case's suggested_atol, latents_u8 exact (a flip is allowed
// only where the reference's scaled*255 lies within the encoded atol of a .5 boundary), latents_dequant from the
// stored u8, forward = decode(stored latents_dequant) at the decoded atol. The model's ORIGINAL-layout files
// (<model>_encoder/_decoder.safetensors) loaded together must give bit-identical encoded and decoded
// ("<model>.original.encoded"/".decoded", atol 0); each loaded alone gives just its half.
std::vector<CompareLine> check_golden_taesd(const std::string& case_dir);

}  // namespace nuance
