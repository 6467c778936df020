// Checks the CLIP text encoder against the golden case (tests/data/golden/clip_text): used by the tests and by
// `nuance check-golden`.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// For every model in case.json ("clip_l", "clip_g"): loads its weights, takes the config from the shapes plus the
// case's transformers config (heads, hidden_act), runs the ids fed to it and compares every output tensor
// (last_hidden_state, hidden_states.0..N, penultimate_final_ln, pooler_output, text_embeds) with the reference.
// Tolerances are the case's suggested_atol; outputs without one (hidden_states) get the model's largest
// suggested atol per unit of max|ref|, scaled by max(1, max|ref|) of that output (said in `reason`).
// Lines are named "<case>/<model>.<tensor>" (clip_text/clip_l.hidden_states.2). Throws nuance::Error when the case
// folder or its files cannot be read.
std::vector<CompareLine> check_golden_clip_text(const std::string& case_dir);

}  // namespace nuance
