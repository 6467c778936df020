// Parity check of the sampler layer against tests/data/golden/schedulers (full diffusers sampling loops driven by a
// deterministic fake model, with every intermediate latent and the pre-drawn noise). Used by the unit tests and by
// the parity tool.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// Runs every golden scheduler entry it supports and returns one line per compared quantity, named
// "schedulers/<entry>.<what>" (timesteps, sigmas, alphas_cumprod, model_in, x, noise_order), plus one SKIP line
// ("schedulers/<entry>", skip = true, reason) for each entry it does not support yet.
// case_dir holds case.json and io.safetensors. Missing/corrupt files throw nuance::Error.
std::vector<CompareLine> check_golden_schedulers(const std::string& case_dir);

}  // namespace nuance
