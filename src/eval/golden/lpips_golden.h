// Checks LPIPS (eval/lpips.h) against the golden case `lpips` (tests/data/golden/lpips): used by the tests and by
// `nuance check-golden`.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// For each model of the case (lpips_alex, lpips_vgg -> line prefix "alex" / "vgg") and each pair set of "pairs"
// (p64, p48x80): runs the image pairs <set>.in0/in1 and compares dist, per_layer, spatial, diffsum{k} and diff{k}
// (the reference may keep only the first pairs of diff{k}). Tolerances are the case's suggested_atol; the spatial
// maps have none and get 1e-5 x max(1, max|ref|) (said in the line's reason). Lines "lpips/<net>.<set>.<tensor>".
// Throws nuance::Error when the case folder or its files cannot be read.
std::vector<CompareLine> check_golden_lpips(const std::string& case_dir);

}  // namespace nuance
