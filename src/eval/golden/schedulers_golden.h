// Parity check of the sampler layer against tests/data/golden/schedulers (full diffusers sampling loops driven by a
// deterministic fake model, with every intermediate latent and the pre-drawn noise). Used by the unit tests and by
// the parity tool.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// Runs every golden scheduler entry it supports and returns one line per compared quantity, named
// "<label>/<entry>.<what>" (timesteps, sigmas, alphas_cumprod, model_in or model_calls, x, noise_order), plus one
// SKIP line ("<label>/<entry>", skip = true, reason) for each entry it does not support yet. The x line's max_abs
// is the largest difference over all recorded latents.
// case_dir holds case.json and io.safetensors: the `schedulers` case, or the `scheduler_sweep` case
// (tools/make_sampler_sweep_golden.py: per-entry x_init, toy model and nuance sampler; no model_in).
// Missing/corrupt files throw nuance::Error.
std::vector<CompareLine> check_golden_schedulers(const std::string& case_dir,
                                                 const std::string& label = "schedulers");

}  // namespace nuance
